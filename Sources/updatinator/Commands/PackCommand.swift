import ArgumentParser
import Updatinator

struct PackCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Writes an image version's pack, for clients of static mirrors.",
        discussion: """
            Writes REPO/images/IMAGE/VERSION.pack: the version's blobs in path order, then the \
            deltas its delta index lists, end to end; and its signed index (.pack-index, \
            .pack-index.sig), where each lies. A client of an http(s) mirror fetches what its \
            plan needs from the pack with a few multi-range requests instead of one request per \
            content. Run it after `delta` for the version, and again after more deltas.
            """)

    @Option(help: "The repository.")
    var repo: String

    @Argument(help: "The image version, as IMAGE/VERSION.")
    var version: String

    @Option(help: "The secret key that signs the pack's index.")
    var secretKey: String

    func execute() throws {
        let repository = try Repository(opening: repo)
        let key = try KeyFile.readSecret(secretKey)
        let manifest = try DeltaCommand.manifest(version, in: repository)
        let deltas = try DeltaBuilder(repository: repository).readIndex(image: manifest.image, version: manifest.version)
        let index = try PackIndex.write(repository: repository, manifest: manifest, deltas: deltas, key: key)
        let blobs = index.entries.filter { $0.base == nil }.count
        let bytes = index.entries.last.map { $0.offset + $0.bytes } ?? 0
        Console.print("\(version): packed \(blobs) blobs and \(index.entries.count - blobs) deltas, \(formatBytes(bytes))")
    }
}
