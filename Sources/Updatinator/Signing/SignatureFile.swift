/// A detached signature file: a header line, then one `ed25519 KEYID SIGNATURE` line per signer.
///
/// ```
/// updatinator-signature 1
/// ed25519 8f3a5c0d9b2e7f11 6c1f…(128 hex digits)
/// ```
public struct SignatureFile: Equatable, Sendable {
    public struct Signature: Equatable, Sendable {
        public let keyID: String
        public let bytes: [UInt8]
    }

    static let header = "updatinator-signature 1"
    public static let maxSignatures = 64
    public static let signatureByteCount = 64

    public private(set) var signatures: [Signature] = []

    public init() {}

    public static func parse(_ bytes: [UInt8], source: String) throws -> SignatureFile {
        guard bytes.count <= 64 * 1024 else { throw UpdError(.corrupt, "\(source): too large for a signature file") }
        guard bytes.last == 10 else { throw UpdError(.corrupt, "\(source): truncated (no final newline)") }
        let lines = bytes.dropLast().split(separator: 10, omittingEmptySubsequences: false)
        guard lines[0].elementsEqual(header.utf8) else {
            throw UpdError(.corrupt, "\(source) line 1: expected '\(header)'")
        }
        var file = SignatureFile()
        for (index, line) in lines.dropFirst().enumerated() {
            let n = index + 2
            let fields = line.split(separator: 32, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[0].elementsEqual("ed25519".utf8),
                  let id = Hex.decode(fields[1], count: 8),
                  let signature = Hex.decode(fields[2], count: signatureByteCount) else {
                throw UpdError(.corrupt, "\(source) line \(n): expected 'ed25519 KEYID SIGNATURE' in lowercase hex")
            }
            guard file.signatures.count < maxSignatures else {
                throw UpdError(.corrupt, "\(source) line \(n): more than \(maxSignatures) signatures")
            }
            file.signatures.append(Signature(keyID: Hex.encode(id), bytes: signature))
        }
        return file
    }

    public func encoded() -> [UInt8] {
        var text = Self.header + "\n"
        for s in signatures { text += "ed25519 \(s.keyID) \(Hex.encode(s.bytes))\n" }
        return Array(text.utf8)
    }

    /// Adds a signature, replacing an earlier one by the same key.
    public mutating func add(_ signature: [UInt8], by key: PublicKey) {
        signatures.removeAll { $0.keyID == key.keyID }
        signatures.append(Signature(keyID: key.keyID, bytes: signature))
    }

    /// Signs `content` with `key` and records the signature.
    public mutating func sign(_ content: [UInt8], with key: SecretKey, purpose: SignaturePurpose) {
        add(key.sign(content, purpose: purpose), by: key.publicKey)
    }
}
