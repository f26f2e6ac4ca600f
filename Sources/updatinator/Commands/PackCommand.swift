import ArgumentParser
import Updatinator

struct PackCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Writes an image version's pack, for clients of static mirrors.",
        discussion: """
            Writes REPO/images/IMAGE/VERSION.pack: the version's blobs in path order, then the \
            deltas its delta index lists, end to end; and signs the delta index again, now \
            recording the pack's size (where each piece lies follows from the manifest and the \
            index). A client of an http(s) mirror fetches what its plan needs from the pack \
            with a few multi-range requests instead of one request per content. Run it after \
            `delta` for the version, and again after more deltas (which make the pack stale: \
            clients then fetch one by one).
            """)

    @Option(help: "The repository.")
    var repo: String

    @Argument(help: "The image version, as IMAGE/VERSION.")
    var version: String

    @Option(help: "The secret key that signs the delta index again, with the pack's size.")
    var secretKey: String

    func execute() throws {
        let repository = try Repository(opening: repo)
        let key = try KeyFile.readSecret(secretKey)
        let manifest = try DeltaCommand.manifest(version, in: repository)
        let index = try PackIndex.write(repository: repository, manifest: manifest, key: key)
        let blobs = index.entries.filter { $0.base == nil }.count
        Console.print("\(version): packed \(blobs) blobs and \(index.entries.count - blobs) deltas, \(formatBytes(index.bytes))")
    }
}
