import ArgumentParser
import Foundation
import Updatinator

struct GenerateCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Turns an image tree into a manifest and compressed blobs in a repository.",
        discussion: """
            Writes REPO/images/IMAGE/VERSION.manifest, a blob for every content the repository \
            lacks, and REPO/repo.json; with --sign-key also the manifest's signature. Symlinks are \
            never followed and the tree's .updatinator/ state directory is skipped. The manifest \
            records a creation time only when SOURCE_DATE_EPOCH is set, so generating the same \
            tree twice gives the same bytes.
            """)

    @Option(help: "The image tree to describe.")
    var tree: String

    @Option(help: "The repository to write into; created when missing.")
    var repo: String

    @Option(help: "The image name, e.g. olpc-ext3.")
    var image: String

    @Option(help: "The image version, e.g. 406.")
    var version: String

    @Option(help: "Sign the manifest with this secret key.")
    var signKey: String?

    @Option(help: "The zlib level (0-9) of a new repository's blobs; default 6.")
    var compressionLevel: Int32?

    @Option(help: "How many files to hash and compress at once; default one per core.")
    var jobs: Int?

    func validate() throws {
        if let level = compressionLevel, !(0...9).contains(level) {
            throw ValidationError("--compression-level must be between 0 and 9.")
        }
        if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1.") }
    }

    func execute() throws {
        let start = Date()
        var generator = ImageGenerator(tree: tree, repository: repo, image: image, version: version)
        if let signKey { generator.signingKey = try KeyFile.readSecret(signKey) }
        generator.compressionLevel = compressionLevel
        if let jobs { generator.workers = jobs }
        generator.created = Environment.sourceDateEpoch
        generator.progress = { p in
            ProgressDisplay.show("hashing", "hashing: \(p.filesDone)/\(p.filesTotal) files, \(formatBytes(p.bytesDone)) of \(formatBytes(p.bytesTotal))",
                                 done: p.bytesTotal > 0 ? Double(p.bytesDone) / Double(p.bytesTotal) : nil)
        }
        let result = try generator.run()
        Console.endProgress()
        let s = result.statistics
        let seconds = String(format: "%.2f", Date().timeIntervalSince(start))
        Console.print("\(result.manifestPath): \(s.entries) entries, \(s.contents) contents "
            + "(\(s.blobsNew) new blobs, \(s.blobsReused) reused), \(formatBytes(s.rawBytes)) raw, "
            + "\(formatBytes(s.blobBytes)) compressed, \(seconds) s"
            + (result.signedBy.map { ", signed by \($0)" } ?? ""))
    }
}
