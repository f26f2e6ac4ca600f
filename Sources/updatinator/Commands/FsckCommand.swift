import ArgumentParser
import Updatinator

struct FsckCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck",
        abstract: "Checks a tree, and optionally a repository's blobs, against a manifest.",
        discussion: """
            Lists every difference between the tree and the manifest: missing and unexpected \
            entries, other types, contents, link targets, modes, owners, times and extended \
            attributes. With --repo, also every blob of the manifest that is missing, of the wrong \
            size or corrupt. Exits with 0 only when there is no difference (6 when there are).
            """)

    @Option(help: "The tree to check.")
    var tree: String

    @Option(help: "The manifest the tree should match.")
    var manifest: String

    @Option(help: "Also check this repository's blobs for the manifest's contents.")
    var repo: String?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func execute() throws {
        let expected = try ManifestParser.parse(contentsOf: manifest)
        let checker = TreeChecker(manifest: expected)
        var findings = try checker.checkTree(root: tree)
        if let repo {
            findings += try checker.checkBlobs(Repository(opening: repo).blobs)
        }
        if json {
            try Console.writeJSON([
                "clean": findings.isEmpty,
                "differences": findings.map { ["path": $0.path, "problem": $0.problem] },
            ])
        } else {
            for f in findings { Console.print(f.description) }
        }
        guard findings.isEmpty else {
            throw UpdError(.differences, "\(tree): \(findings.count) differences from \(manifest)")
        }
        if !json {
            Console.print("\(tree): matches \(expected.image) \(expected.version) (\(expected.entries.count) entries)"
                + (repo == nil ? "" : ", all \(expected.contents.count) blobs present and intact"))
        }
    }
}
