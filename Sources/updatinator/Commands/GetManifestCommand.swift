import ArgumentParser
import Foundation
import Updatinator

struct GetManifestCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "get-manifest",
        abstract: "Downloads an image version's manifest and its signature from mirrors.",
        discussion: """
            Writes DIR/VERSION.manifest and DIR/VERSION.manifest.sig, from the first mirror that \
            has them. With --keyring, the manifest must also verify against it.
            """)

    @OptionGroup var mirrors: MirrorOptions

    @Argument(help: "The image name.")
    var image: String

    @Argument(help: "The image version.")
    var version: String

    @Option(help: "The directory to write the manifest and its signature into.")
    var out: String

    @Option(help: "Verify the manifest against this directory of trusted keys.")
    var keyring: String?

    func execute() throws {
        try Manifest.checkName(image, what: "image name")
        try Manifest.checkName(version, what: "version")
        let fetcher = try mirrors.makeFetcher()
        let remote = Repository.manifestPath(image: image, version: version)
        let local = "\(out)/\(version).manifest"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try fetcher.fetchFile(remote, to: local, maxBytes: UInt64(ManifestParser.maxManifestBytes))
        try fetcher.fetchFile(remote + ".sig", to: local + ".sig", maxBytes: 64 * 1024)
        let manifest = try keyring.map { try ManifestFile.readVerified(local, keyring: Keyring(directory: $0)) } ?? ManifestFile.read(local)
        Console.print("\(local): \(manifest.manifest.image) \(manifest.manifest.version), \(manifest.manifest.entries.count) entries"
            + (keyring == nil ? "" : ", signature verified"))
    }
}
