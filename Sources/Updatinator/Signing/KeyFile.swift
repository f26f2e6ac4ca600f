import Glibc

/// Reads and writes key files: two lines of text, a header and `ed25519 HEX`.
///
/// ```
/// updatinator-public-key 1
/// ed25519 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c
/// ```
public enum KeyFile {
    static let publicHeader = "updatinator-public-key 1"
    static let secretHeader = "updatinator-secret-key 1"

    public static func encode(_ key: PublicKey) -> [UInt8] {
        Array("\(publicHeader)\ned25519 \(Hex.encode(key.bytes))\n".utf8)
    }

    public static func encode(_ key: SecretKey) -> [UInt8] {
        Array("\(secretHeader)\ned25519 \(Hex.encode(key.bytes))\n".utf8)
    }

    public static func parsePublic(_ bytes: [UInt8], source: String) throws -> PublicKey {
        let raw = try parse(bytes, header: publicHeader, byteCount: PublicKey.byteCount, source: source)
        return PublicKey(bytes: raw)!
    }

    public static func parseSecret(_ bytes: [UInt8], source: String) throws -> SecretKey {
        let raw = try parse(bytes, header: secretHeader, byteCount: SecretKey.byteCount, source: source)
        guard let key = SecretKey(bytes: raw) else {
            throw UpdError(.corrupt, "\(source) line 2: not a valid Ed25519 secret key")
        }
        return key
    }

    private static func parse(_ bytes: [UInt8], header: String, byteCount: Int, source: String) throws -> [UInt8] {
        guard bytes.count <= 4096 else { throw UpdError(.corrupt, "\(source): too large for a key file") }
        let lines = bytes.split(separator: 10, omittingEmptySubsequences: false)
        guard lines.count == 3, lines[2].isEmpty else {
            throw UpdError(.corrupt, "\(source): a key file has exactly two lines")
        }
        guard lines[0].elementsEqual(header.utf8) else {
            throw UpdError(.corrupt, "\(source) line 1: expected '\(header)'")
        }
        let prefix = Array("ed25519 ".utf8)
        guard lines[1].starts(with: prefix), let raw = Hex.decode(lines[1].dropFirst(prefix.count), count: byteCount) else {
            throw UpdError(.corrupt, "\(source) line 2: expected 'ed25519' and \(byteCount * 2) lowercase hex digits")
        }
        return raw
    }

    /// Reads a public key file; a symlink is followed (keyrings are the administrator's, like
    /// `/etc`), but it must lead to a regular file: a FIFO or device is refused (`unsafe`).
    public static func readPublic(_ path: String) throws -> PublicKey {
        try parsePublic(Sys.readFile(path, limit: 4096, followSymlink: true), source: path)
    }

    /// Reads a secret key file the operator names; a symlink is followed to a regular file.
    public static func readSecret(_ path: String) throws -> SecretKey {
        try parseSecret(Sys.readFile(path, limit: 4096, followSymlink: true), source: path)
    }

    /// Writes a new key pair, making the directories they go in (a new keyring); the secret key
    /// file is created with mode 0600 and never overwritten.
    public static func writeKeyPair(_ key: SecretKey, secretPath: String, publicPath: String) throws {
        for path in [secretPath, publicPath] where (try Sys.lstatIfExists(path)) != nil {
            throw UpdError(.usage, "\(path) already exists; refusing to overwrite a key")
        }
        for path in [secretPath, publicPath] { try Sys.mkdirs(Sys.parentDirectory(of: path)) }
        try Sys.writeFileAtomically(secretPath, encode(key), mode: 0o600)
        do {
            try Sys.writeFileAtomically(publicPath, encode(key.publicKey), mode: 0o644)
        } catch {
            // Both halves or neither: a secret key without its public half would block the rerun.
            Sys.unlink(secretPath)
            throw error
        }
    }
}
