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
            to SERVER/v1/report. Exit status 10 when there is nothing to do now (up to date, or \
            deferred by the decision's rules).
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

    @Flag(help: "The tree is the root a system runs from (as apply --live; implied when it is /): its runtime mounts and state are the machine's, /etc is merged.")
    var live = false

    func execute() throws {
        var upgrade = ServerUpgrade(root: root, server: server, keyring: try Keyring(directory: keyring),
                                    decisionKeyring: try Keyring(directory: decisionKeyring),
                                    device: try DeviceIdentity.read(configured: device ?? Environment.deviceID))
        upgrade.mirrors = mirror
        upgrade.channel = channel
        upgrade.peerURL = peerURL
        upgrade.machine = try MachinePaths.of(root: root, live: live)
        if let from { upgrade.from = try ManifestFile.read(from) }
        upgrade.observer = MirrorOptions.observer("upgrading")
        upgrade.faults = Environment.faults
        switch try upgrade.run() {
        case .upToDate(let decision):
            Console.print("\(root) is up to date" + (decision.update ? " (at \(decision.image!) \(decision.version!))" : ""))
            throw ExitCode(UpdError.Code.nothingToDo.exitStatus)
        case .deferred(let why, let decision):
            Console.print("upgrade to \(decision.image!) \(decision.version!) deferred: \(why)")
            throw ExitCode(UpdError.Code.nothingToDo.exitStatus)
        case .applied(let decision, let report):
            Console.endProgress()
            Console.print("\(root) is now at \(decision.image!) \(decision.version!): downloaded \(report.download.blobs) blobs, "
                + "\(formatBytes(report.download.bytes)) (peers offered: \(decision.peers.count)), wrote \(formatBytes(report.bytesWritten)), "
                + "reused \(formatBytes(report.bytesReused)), \(String(format: "%.2f", report.seconds)) s")
            for problem in report.fallbacks { Console.error("warning: \(problem)") }
        }
    }
}
