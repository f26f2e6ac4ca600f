import ArgumentParser
import Updatinator

struct SignCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Adds a signature to a manifest's detached signature file.",
        discussion: """
            The signature is appended to MANIFEST.sig, which is created when missing, so that \
            several keys can sign one manifest for keyrings that require k of n signatures.
            """)

    @Argument(help: "The manifest to sign.")
    var manifest: String

    @Option(help: "The secret key to sign with.")
    var secretKey: String

    func execute() throws {
        let key = try KeyFile.readSecret(secretKey)
        let keyID = try SignedDocument.signManifest(at: manifest, with: key)
        Console.print("signed \(manifest) with key \(keyID)")
    }
}
