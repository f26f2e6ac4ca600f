import ArgumentParser
import Foundation
import Updatinator

/// Where the management API is and the token that opens it, for every `fleet` subcommand.
struct FleetOptions: ParsableArguments {
    @Option(help: "The school server's URL.")
    var server = "http://localhost:8080"

    @Option(help: "The file holding the operator token.")
    var tokenFile = DefaultPaths.operatorToken

    @Flag(help: "Print the server's JSON answer.")
    var json = false

    @OptionGroup var tls: TLSOptions

    func client() throws -> FleetClient {
        let token: String
        do {
            token = try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            throw UpdError(.usage, "\(tokenFile): cannot read the operator token (--token-file): \((error as NSError).localizedDescription)")
        }
        return FleetClient(server: server, token: token, caFile: tls.caFile)
    }

    /// Prints an answer: as it came with --json, else through `text`.
    func show(_ answer: [UInt8], _ text: ([String: Any]) -> [String]) throws {
        if json {
            Console.write(String(decoding: answer, as: UTF8.self) + "\n")
            return
        }
        guard let object = try JSONSerialization.jsonObject(with: Data(answer)) as? [String: Any] else {
            throw UpdError(.corrupt, "\(server): the answer is not a JSON object")
        }
        for line in text(object) { Console.print(line) }
    }
}

struct FleetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet",
        abstract: "Shows and steers a school server's fleet through its management API.",
        discussion: """
            Every subcommand presents the operator token (--token-file, default \
            /etc/updatinator/operator-token) to the server (--server) and prints what it \
            answers, or its JSON with --json. A refused token exits 2, an API that is off 9, an \
            unknown device or image 64, an action with nothing to do (resuming what is not \
            paused, releasing what is not pinned, admitting an admitted device) 10.
            """,
        subcommands: [FleetDevicesCommand.self, FleetDeviceCommand.self, FleetRolloutsCommand.self, FleetPauseCommand.self,
                      FleetResumeCommand.self, FleetHaltCommand.self, FleetAdvanceCommand.self, FleetPinCommand.self, FleetReleaseCommand.self,
                      FleetAdmitCommand.self, FleetRejectCommand.self])
}

struct FleetDevicesCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(commandName: "devices", abstract: "Lists the devices that match every filter, most recently seen first.")

    @OptionGroup var fleet: FleetOptions
    @Option(help: "The image the device runs.") var image: String?
    @Option(help: "The version the device runs.") var version: String?
    @Option(help: "Its last status: checking, downloading, applying, staged, done, failed or deferred.") var status: String?
    @Option(help: "The school it named in its checks.") var school: String?
    @Option(help: "The last answer to its check: update, up-to-date, held, paused, halted, pinned or policy-error.") var decision: String?
    @Option(help: "Its admission: pending (waiting for an operator), admitted or rejected.") var admission: String?
    @Option(help: "Seen within this many seconds.") var seenWithin: Int?
    @Option(help: "At most this many devices.") var limit = 1000

    func execute() throws {
        var query: [(String, String)] = [("limit", String(limit))]
        for (name, value) in [("image", image), ("version", version), ("status", status), ("school", school), ("decision", decision),
                              ("admission", admission), ("seen_within", seenWithin.map(String.init))] {
            if let value { query.append((name, value)) }
        }
        try fleet.show(try fleet.client().get("/v1/fleet/devices", query: query)) { answer in
            let devices = answer["devices"] as? [[String: Any]] ?? []
            return [Self.row(["DEVICE", "IMAGE", "VERSION", "STATUS", "DECISION", "SCHOOL", "LAST SEEN", "ADMISSION", "KEY"])]
                + devices.map { d in
                    Self.row(["device", "image", "version", "status", "decision", "school"].map { d[$0] as? String ?? "-" }
                             + [(d["last_seen"] as? Int).map(Self.date) ?? "-"]
                             + ["admission", "key_fingerprint"].map { d[$0] as? String ?? "-" })
                } + ["\(devices.count) device\(devices.count == 1 ? "" : "s")"]
        }
    }

    static func row(_ cells: [String]) -> String {
        zip(cells, [24, 14, 10, 12, 13, 12, 21, 10, 16]).map { $0.padding(toLength: max($1, $0.count + 1), withPad: " ", startingAt: 0) }
            .joined().trimmingCharacters(in: .whitespaces)
    }

    static func date(_ seconds: Int) -> String {
        let format = DateFormatter()
        format.dateFormat = "yyyy-MM-dd HH:mm:ss"
        format.timeZone = TimeZone(identifier: "UTC")
        return format.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }
}

struct FleetDeviceCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(commandName: "device", abstract: "Shows one device, its pin and its reports, newest first.")

    @OptionGroup var fleet: FleetOptions
    @Argument(help: "The device's id.") var device: String

    func execute() throws {
        try fleet.show(try fleet.client().get("/v1/fleet/devices/" + FleetClient.encode(device))) { d in
            var lines = ["\(device): \(d["image"] as? String ?? "?") \(d["version"] as? String ?? "?"), \(d["status"] as? String ?? "unknown")"
                         + ((d["decision"] as? String).map { ", last answer: \($0)" } ?? "")]
            if let admission = d["admission"] as? String {
                lines.append("\(admission), key \(d["key_fingerprint"] as? String ?? "?")")
            }
            if let pin = d["pin"] as? [String: Any] { lines.append("pinned to \(pin["image"] as? String ?? "") \(pin["version"] as? String ?? "")") }
            for event in d["history"] as? [[String: Any]] ?? [] {
                let what = ["status", "image", "version", "code"].compactMap { event[$0] as? String }.joined(separator: " ")
                lines.append("  \((event["time"] as? Int).map(FleetDevicesCommand.date) ?? "?")  \(what)"
                             + ((event["message"] as? String).map { ": \($0)" } ?? ""))
            }
            return lines
        }
    }
}

struct FleetRolloutsCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(commandName: "rollouts", abstract: "Shows each image's rollout: its version, state, stage and counts.")

    @OptionGroup var fleet: FleetOptions

    func execute() throws {
        try fleet.show(try fleet.client().get("/v1/rollouts")) { answer in
            (answer["rollouts"] as? [[String: Any]] ?? []).map(Self.describe)
        }
    }

    /// A rollout in one line: "olpc-ext3 → 2: paused (exams), stage 1 of 3 (5 %), 3 done, 1 failed, 0 moving of 40 devices".
    static func describe(_ r: [String: Any]) -> String {
        var parts = ["\(r["state"] as? String ?? "active")" + ((r["reason"] as? String).map { " (\($0))" } ?? "")]
        if let policy = r["policy"] as? [String: Any] {
            if let stage = policy["stage"] as? Int {
                parts.append("stage \(stage)" + ((policy["stages"] as? Int).map { " of \($0)" } ?? "") + ((policy["percent"] as? Int).map { " (\($0) %)" } ?? ""))
            }
            if let halted = policy["halted"] as? String { parts.append("halted by the policy: \(halted)") }
        }
        if let counts = r["counts"] as? [String: Int] {
            parts.append("\(counts["done"] ?? 0) done, \(counts["failed"] ?? 0) failed, \(counts["moving"] ?? 0) moving of \(counts["devices"] ?? 0) devices")
        }
        return "\(r["image"] as? String ?? "?") → \(r["version"] as? String ?? "?"): " + parts.joined(separator: ", ")
    }
}

/// `fleet pause|resume|halt|advance IMAGE`: a command per action, each this body.
protocol FleetRolloutAction: UpdatinatorSubcommand {
    var fleet: FleetOptions { get }
    var image: String { get }
    var reason: String? { get }
}

extension FleetRolloutAction {
    func execute() throws {
        var fields = [String: String]()
        fields["reason"] = reason
        let action = Self.configuration.commandName!
        try fleet.show(try fleet.client().post("/v1/rollouts/\(FleetClient.encode(image))/\(action)", fields)) { [FleetRolloutsCommand.describe($0)] }
    }
}

struct FleetPauseCommand: FleetRolloutAction {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Pauses an image's rollout: devices keep what they run until it is resumed.")
    @OptionGroup var fleet: FleetOptions
    @Argument(help: "The image whose rollout it is.") var image: String
    @Option(help: "Why (devices and the dashboard show it).") var reason: String?
}

struct FleetHaltCommand: FleetRolloutAction {
    static let configuration = CommandConfiguration(commandName: "halt", abstract: "Halts an image's rollout that must not go on, until it is resumed.")
    @OptionGroup var fleet: FleetOptions
    @Argument(help: "The image whose rollout it is.") var image: String
    @Option(help: "Why (devices and the dashboard show it).") var reason: String?
}

struct FleetResumeCommand: FleetRolloutAction {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resumes a paused or halted rollout.")
    @OptionGroup var fleet: FleetOptions
    @Argument(help: "The image whose rollout it is.") var image: String
    var reason: String? { nil }
}

struct FleetAdvanceCommand: FleetRolloutAction {
    static let configuration = CommandConfiguration(commandName: "advance", abstract: "Opens the next stage of the image's staged rollout now.")
    @OptionGroup var fleet: FleetOptions
    @Argument(help: "The image whose rollout it is.") var image: String
    var reason: String? { nil }
}

struct FleetPinCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(commandName: "pin", abstract: "Holds a device at an image version, whatever the policy decides, until it is released.")

    @OptionGroup var fleet: FleetOptions
    @Argument(help: "The device's id.") var device: String
    @Argument(help: "The image.") var image: String
    @Argument(help: "The version.") var version: String

    func execute() throws {
        let answer = try fleet.client().post("/v1/fleet/devices/\(FleetClient.encode(device))/pin", ["image": image, "version": version])
        try fleet.show(answer) { _ in ["\(device) is pinned to \(image) \(version)"] }
    }
}

struct FleetReleaseCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(commandName: "release", abstract: "Releases a pinned device: the policy decides for it again.")

    @OptionGroup var fleet: FleetOptions
    @Argument(help: "The device's id.") var device: String

    func execute() throws {
        let answer = try fleet.client().post("/v1/fleet/devices/\(FleetClient.encode(device))/release", [:])
        try fleet.show(answer) { _ in ["\(device) is released"] }
    }
}

/// `fleet admit|reject ID`: a command per admission, each this body.
protocol FleetAdmissionAction: UpdatinatorSubcommand {
    var fleet: FleetOptions { get }
    var device: String { get }
}

extension FleetAdmissionAction {
    func execute() throws {
        let action = Self.configuration.commandName!
        let answer = try fleet.client().post("/v1/fleet/devices/\(FleetClient.encode(device))/\(action)", [:])
        try fleet.show(answer) { d in ["\(device) is \(d["admission"] as? String ?? "?") (key \(d["key_fingerprint"] as? String ?? "?"))"] }
    }
}

struct FleetAdmitCommand: FleetAdmissionAction {
    static let configuration = CommandConfiguration(
        commandName: "admit",
        abstract: "Admits an enrolled device: it gets decisions and batches, and its reports count.",
        discussion: "Before admitting, compare the key fingerprint that fleet devices shows with the one the device printed when the server refused it (upgrade: ... is pending: an operator must admit it (key FINGERPRINT)).")
    @OptionGroup var fleet: FleetOptions
    @Argument(help: "The device's id.") var device: String
}

struct FleetRejectCommand: FleetAdmissionAction {
    static let configuration = CommandConfiguration(
        commandName: "reject",
        abstract: "Rejects an enrolled device (a stranger, or a stolen laptop): it gets nothing until admitted again.")
    @OptionGroup var fleet: FleetOptions
    @Argument(help: "The device's id.") var device: String
}
