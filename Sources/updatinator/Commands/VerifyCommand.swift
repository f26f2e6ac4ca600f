import ArgumentParser
import Foundation
import Updatinator

struct VerifyCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Checks a manifest's or channel file's signatures against a keyring.",
        discussion: """
            Exits with 0 only when enough trusted, unrevoked keys signed the file (FILE.sig) and \
            the file is well formed; channel metadata must also not have expired.
            """)

    @Argument(help: "The manifest or channels/NAME.json file to verify.")
    var file: String

    @Option(help: "The directory of trusted public keys.")
    var keyring = DefaultPaths.keyring

    @Flag(help: "Print the result as JSON.")
    var json = false

    func execute() throws {
        let ring = try Keyring(directory: keyring)
        let verified = try SignedDocument.verify(fileAt: file, keyring: ring, now: Int64(Date().timeIntervalSince1970))
        if json {
            return try Console.writeJSON(["file": file, "kind": verified.kind, "image": verified.image, "version": verified.version,
                                          "signers": verified.signers, "summary": verified.summary])
        }
        Console.print("\(file): OK, \(verified.summary), signed by \(verified.signers.joined(separator: ", "))")
    }
}
