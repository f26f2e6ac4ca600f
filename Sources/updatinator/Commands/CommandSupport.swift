import ArgumentParser
import Foundation
import Updatinator

/// A subcommand whose library errors become one line on stderr and the documented exit code;
/// with `--json`, that line is a JSON object (`Console.writeJSONError`).
protocol UpdatinatorSubcommand: ParsableCommand {
    func execute() throws
    /// Whether the command reports in JSON: its `--json` flag, for those that have one.
    var json: Bool { get }
}

extension UpdatinatorSubcommand {
    var json: Bool { false }

    func run() throws {
        if json { ProgressDisplay.plainLinesOff.withLock { $0 = true } }
        do {
            try execute()
        } catch let error as ExitCode {
            throw error
        } catch {
            // Any other failure (Foundation's, a Lua host's) is still one documented line.
            let failure = error as? UpdError ?? UpdError.wrapping(error, Self.configuration.commandName ?? "updatinator")
            if json {
                Console.writeJSONError(code: failure.code.rawValue, status: failure.code.exitStatus, message: failure.message)
            } else {
                Console.error(failure.message)
            }
            throw ExitCode(failure.code.exitStatus)
        }
    }
}

enum Console {
    /// How important a line on standard error is, as sd-daemon(3) numbers it.
    enum Priority: Int {
        case error = 3, warning = 4, info = 6
    }

    /// Whether standard error is the journal (systemd sets `JOURNAL_STREAM` to its device and
    /// inode): each line then starts with its priority, `<3>`, `<4>` or `<6>`.
    static let isJournal: Bool = {
        guard let stream = Environment.journalStream else { return false }
        var status = stat()
        return fstat(2, &status) == 0 && UInt64(status.st_dev) == stream.device && UInt64(status.st_ino) == stream.inode
    }()

    /// Whether standard error is a terminal, where progress is shown.
    static let isInteractive = isatty(2) == 1 && !isJournal

    static func error(_ message: String) {
        log(.error, "updatinator: \(message)")
    }

    static func warning(_ message: String) {
        log(.warning, "updatinator: warning: \(message)")
    }

    /// Writes lines to standard error, each with its priority when that is the journal.
    static func log(_ priority: Priority, _ text: String) {
        endProgress()
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        let prefix = isJournal ? "<\(priority.rawValue)>" : ""
        FileHandle.standardError.write(Data(lines.map { prefix + $0 + "\n" }.joined().utf8))
    }

    /// Writes text as it is (a script's `print`).
    static func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    static func print(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// Rewrites the current terminal line with a progress message.
    static func progress(_ line: String) {
        guard isInteractive else { return }
        FileHandle.standardError.write(Data("\r\u{1b}[K\(line)".utf8))
    }

    static func endProgress() {
        guard isInteractive else { return }
        FileHandle.standardError.write(Data("\r\u{1b}[K".utf8))
    }

    static func writeJSON<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        FileHandle.standardOutput.write(try encoder.encode(value) + Data("\n".utf8))
    }

    /// A failure under `--json`: `{"error": {"code": …, "status": …, "message": …}}`, one line on
    /// standard error, where errors go (standard output holds only a command's report).
    static func writeJSONError(code: String, status: Int32, message: String) {
        let error: [String: Any] = ["error": ["code": code, "status": status, "message": message]]
        // A dictionary of strings and a number always serializes.
        let data = try! JSONSerialization.data(withJSONObject: error, options: [.sortedKeys, .withoutEscapingSlashes])
        log(.error, String(decoding: data, as: UTF8.self))
    }

    static func writeJSON(_ value: Any) throws {
        let data = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}

/// Formats byte counts for people: "1.5 MiB".
func formatBytes(_ bytes: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}

/// Everything the CLI reads from its environment, in one place: the library reads none of it.
enum Environment {
    static var variables: [String: String] { ProcessInfo.processInfo.environment }

    /// The crash tests' switches: `UPDATINATOR_KILL_AFTER=N` and `UPDATINATOR_STOP_AFTER=N` (filesystem operations).
    static var faults: FaultInjection {
        FaultInjection(killAfterOperations: variables["UPDATINATOR_KILL_AFTER"].flatMap { Int($0) },
                       stopAfterOperations: variables["UPDATINATOR_STOP_AFTER"].flatMap { Int($0) })
    }

    /// `UPDATINATOR_DEVICE_ID`: this device's id, before /etc/machine-id.
    static var deviceID: String? { variables["UPDATINATOR_DEVICE_ID"] }

    /// `UPDATINATOR_DEVICE_KEY`: this device's key file, before /var/lib/updatinator/device.key
    /// (tests that run several devices on one host give each its own).
    static var deviceKey: String? { variables["UPDATINATOR_DEVICE_KEY"] }

    /// `UPDATINATOR_TIME`: the time scripts see, for tests (seconds since the epoch).
    static var fixedTime: Double? { variables["UPDATINATOR_TIME"].flatMap(Double.init) }

    /// `UPDATINATOR_POWER_SUPPLY`: where scripts read the power supplies, for tests.
    static var powerSupplyDirectory: String? { variables["UPDATINATOR_POWER_SUPPLY"] }

    /// `UPDATINATOR_REBOOT_COMMAND`: how the agent reboots the machine (words split at spaces),
    /// for tests; `systemctl reboot` by default.
    static var rebootCommand: [String] {
        variables["UPDATINATOR_REBOOT_COMMAND"].map { $0.split(separator: " ").map(String.init) } ?? ["systemctl", "reboot"]
    }

    /// `JOURNAL_STREAM` (`DEVICE:INODE`, decimal), which systemd sets when standard error or
    /// output is connected to the journal.
    static var journalStream: (device: UInt64, inode: UInt64)? {
        guard let parts = variables["JOURNAL_STREAM"]?.split(separator: ":"), parts.count == 2,
              let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return nil }
        return (device, inode)
    }

    /// `SOURCE_DATE_EPOCH`, the reproducible-builds convention for a build's timestamp.
    static var sourceDateEpoch: Int64? { variables["SOURCE_DATE_EPOCH"].flatMap { Int64($0) } }
}

/// The device's id, key and enrolment token, which sign what it sends its school server.
enum DeviceCredentials {
    /// The key file: `--device-key`, else UPDATINATOR_DEVICE_KEY, else /var/lib/updatinator/device.key.
    static func keyPath(_ option: String?) -> String {
        option ?? Environment.deviceKey ?? DefaultPaths.deviceKey
    }

    /// The enrolment token: the file named (which must exist), else /etc/updatinator/enrolment-token
    /// when the image carries one, else none.
    static func enrolmentToken(_ file: String?) throws -> [UInt8]? {
        let path = file ?? DefaultPaths.enrolmentToken
        guard file != nil || FileManager.default.fileExists(atPath: path) else { return nil }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw UpdError(.usage, "\(path): cannot read the enrolment token: \((error as NSError).localizedDescription)")
        }
        return Array(text.trimmingCharacters(in: .whitespacesAndNewlines).utf8)
    }

    /// The signer of this device's requests; the key is made on first use.
    static func signer(device: String?, keyFile: String?, enrolmentTokenFile: String?) throws -> RequestSigner {
        RequestSigner(sender: try DeviceIdentity.read(configured: device ?? Environment.deviceID),
                      key: try DeviceIdentity.key(at: keyPath(keyFile)), enrolmentToken: try enrolmentToken(enrolmentTokenFile))
    }
}
