import ArgumentParser
import Updatinator

struct GetManifestCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "get-manifest",
        abstract: "Downloads an image version's manifest and its signature from mirrors.",
        discussion: """
            Writes DIR/VERSION.manifest and DIR/VERSION.manifest.sig, from the first mirror that \
            has them, once the manifest names IMAGE and VERSION and its signature verifies against \
            the keyring; otherwise nothing is written.
            """)

    @OptionGroup var mirrors: MirrorOptions

    @Argument(help: "The image name.")
    var image: String

    @Argument(help: "The image version.")
    var version: String

    @Option(help: "The directory to write the manifest and its signature into.")
    var out: String

    @Option(help: "The directory of trusted public keys that must have signed the manifest.")
    var keyring = DefaultPaths.keyring

    @Flag(help: "Print the result as JSON.")
    var json = false

    func execute() throws {
        let got = try mirrors.makeFetcher().downloadManifest(image: image, version: version, into: out,
                                                             keyring: try Keyring(directory: keyring))
        if json {
            return try Console.writeJSON(["path": got.path!, "image": image, "version": version,
                                          "entries": got.manifest.entries.count, "verified": true])
        }
        Console.print("\(got.path!): \(image) \(version), \(got.manifest.entries.count) entries"
            + ", signature verified")
    }
}
