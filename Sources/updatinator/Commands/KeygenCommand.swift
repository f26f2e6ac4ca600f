import ArgumentParser
import Updatinator

struct KeygenCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Creates a new Ed25519 signing key pair.",
        discussion: "The secret key file is created with mode 0600. Neither file is ever overwritten.")

    @Option(help: "Where to write the secret key.")
    var secretKey: String

    @Option(help: "Where to write the public key, for keyrings.")
    var publicKey: String

    func execute() throws {
        let key = SecretKey.generate()
        try KeyFile.writeKeyPair(key, secretPath: secretKey, publicPath: publicKey)
        Console.print("created key \(key.publicKey.keyID): secret \(secretKey), public \(publicKey)")
    }
}
