import ArgumentParser
import Foundation
import Updatinator

struct UpgradeCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "upgrade",
        abstract: "Asks the school server what to run and moves the tree there.",
        discussion: """
            Sends the installed image and version with a fresh nonce to SERVER/v1/check, \
            verifies the signed decision against the decision keyring (this device, this nonce, \
            not expired), downloads the manifest it names and verifies it against the keyring \
            and the decision's hash, then applies it in place, streaming contents from the peers \
            the decision lists, then the mirrors, then the server; when the decision lists no \
            peers, the contents come from the server in batches, compressed together and \
            against the files the tree has (blob by blob when the server refuses a batch). \
            The decision's rate limit, \
            earliest start and daily window are honoured. Progress and the result are reported \
            to SERVER/v1/report. Every request is signed with the device's key (made at first \
            use); a server that has not admitted the device refuses it, and upgrade exits 17 \
            naming the device's state and key fingerprint. When there is no move now, it says why, with an exit status of \
            its own: 10 up to date, 11 held back by the rollout's stage, 12 the rollout is \
            paused, 13 the rollout is halted, 14 pinned by an operator, 15 the server's policy \
            failed, 16 deferred by the decision's earliest start or daily window.
            """)

    @Option(help: "The tree to upgrade.")
    var root: String

    @Option(help: "The school server's URL.")
    var server: String

    @Option(help: "The directory of trusted build keys, which sign manifests.")
    var keyring = DefaultPaths.keyring

    @Option(help: "The directory of trusted school-server keys, which sign decisions.")
    var decisionKeyring = DefaultPaths.decisionKeyring

    @Option(help: "A repository to download from after the peers and before the server; repeatable.")
    var mirror: [String] = []

    @Option(help: "The manifest the tree matches, for a tree with no installed-manifest record yet.")
    var from: String?

    @Option(help: "The channel to ask for.")
    var channel: String?

    @Option(help: "This device's peer server URL (serve --peer), advertised to the school server.")
    var peerURL: String?

    @Option(help: "This device's id; default UPDATINATOR_DEVICE_ID, else /etc/machine-id.")
    var device: String?

    @Option(help: "This device's secret key, made at first use, which signs its requests; default UPDATINATOR_DEVICE_KEY, else /var/lib/updatinator/device.key.")
    var deviceKey: String?

    @Option(help: "The enrolment token the server admits devices by; default /etc/updatinator/enrolment-token when it exists.")
    var enrolmentTokenFile: String?

    @Flag(help: "The tree is the root a system runs from (as apply --live; implied when it is /): its runtime mounts and state are the machine's, /etc is merged.")
    var live = false

    @Flag(help: "Print the outcome as JSON.")
    var json = false

    @OptionGroup var tls: TLSOptions

    func execute() throws {
        var upgrade = ServerUpgrade(root: root, server: server, keyring: try Keyring(directory: keyring),
                                    decisionKeyring: try Keyring(directory: decisionKeyring),
                                    signer: try DeviceCredentials.signer(device: device, keyFile: deviceKey, enrolmentTokenFile: enrolmentTokenFile))
        upgrade.mirrors = mirror
        upgrade.caFile = tls.caFile
        upgrade.channel = channel
        upgrade.peerURL = peerURL
        upgrade.machine = try MachinePaths.of(root: root, live: live)
        if let from { upgrade.from = try ManifestParser.parse(contentsOf: from) }
        upgrade.observer = MirrorOptions.observer("upgrading")
        upgrade.faults = Environment.faults
        let outcome = try upgrade.run()
        if json { return try printJSON(outcome) }
        switch outcome {
        case .noUpdate(let reason, let message, let decision):
            let offer = decision.update ? " (to \(decision.image!) \(decision.version!))" : ""
            Console.print("\(root): no update: \(reason.summary)\(offer)" + (message.map { ": \($0)" } ?? ""))
            throw ExitCode(reason.exitStatus)
        case .applied(let decision, let report):
            Console.endProgress()
            Console.print("\(root) is now at \(decision.image!) \(decision.version!): downloaded \(report.download.blobs) blobs, "
                + "\(formatBytes(report.download.bytes)) (peers offered: \(decision.peers.count)), wrote \(formatBytes(report.bytesWritten)), "
                + "reused \(formatBytes(report.bytesReused)), \(String(format: "%.2f", report.seconds)) s")
            for problem in report.fallbacks { Console.warning(problem) }
        }
    }

    /// The outcome under `--json`, with the same exit status as in text.
    private func printJSON(_ outcome: ServerUpgrade.Outcome) throws {
        switch outcome {
        case .noUpdate(let reason, let message, let decision):
            var answer: [String: Any] = ["outcome": "no_update", "reason": reason.rawValue, "summary": reason.summary, "status": Int(reason.exitStatus)]
            answer["message"] = message
            if decision.update { (answer["image"], answer["version"]) = (decision.image!, decision.version!) }
            try Console.writeJSON(answer)
            throw ExitCode(reason.exitStatus)
        case .applied(let decision, let report):
            Console.endProgress()
            for problem in report.fallbacks { Console.warning(problem) }
            try Console.writeJSON(ApplyOutcome(image: decision.image!, version: decision.version!, peersOffered: decision.peers.count, report: report))
        }
    }
}

/// `upgrade --json`'s answer after an apply: the decision's image and version, and the apply's report.
private struct ApplyOutcome: Encodable {
    let outcome = "applied"
    let image: String
    let version: String
    let peersOffered: Int
    let report: ApplyReport

    enum CodingKeys: String, CodingKey { case outcome, image, version, peersOffered = "peers_offered", report }
}
