import ArgumentParser
import Updatinator

struct AdoptCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "adopt",
        abstract: "Records the image an already-installed tree runs, so that plan, apply and upgrade can start from it.",
        discussion: """
            Verifies the manifest against the keyring, checks the tree against it as fsck does, \
            and records it as the tree's installed manifest (ROOT/.updatinator/installed.manifest), \
            exactly as an apply records the image it installed. A tree that differs from the \
            manifest is refused (exit 6) and nothing is recorded; fsck lists every difference. On \
            the root a system runs from (/, or --live) the machine's runtime mounts and state and \
            its /etc are not checked. Exit 10 when the manifest is already the recorded one.
            """)

    @Option(help: "The installed tree.")
    var root: String

    @Option(help: "The manifest of the image installed on it.")
    var manifest: String

    @Option(help: "The directory of trusted public keys that must have signed the manifest.")
    var keyring = DefaultPaths.keyring

    @Flag(help: "The tree is the root a system runs from (implied when it is /): its runtime mounts, its state and /etc are the machine's and not checked.")
    var live = false

    func execute() throws {
        let target = try Keyring(directory: keyring).verifiedManifest(at: manifest)
        let report = try UpdateEngine.adopt(.init(root: root, target: target, machine: try MachinePaths.of(root: root, live: live)))
        Console.print("\(root) is recorded as running \(target.name) (\(report.entriesChecked) entries checked)"
            + (report.replaced.map { "; it was recorded as \($0)" } ?? ""))
    }
}
