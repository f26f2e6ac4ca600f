import CSodium

/// What a signature is for. The purpose is part of the signed message, so a signature
/// made for one kind of document never verifies as another.
public enum SignaturePurpose: String, Sendable {
    case manifest
    case channel
    /// A school server's answer to a device (`Decision`), signed with its decision key.
    case decision
    /// The deltas a repository offers into an image version (`DeltaIndex`).
    case deltas
    /// A request a device sends its school server (`RequestSignature`), signed with its device key.
    case request
    /// What a national server allows a school's devices to run (`NationalRollout`), signed with its decision key.
    case rollout

    func message(for content: [UInt8]) -> [UInt8] {
        Array("updatinator-\(rawValue)-v1".utf8) + [0] + content
    }
}

/// An Ed25519 public key.
public struct PublicKey: Hashable, Sendable {
    public static let byteCount = 32
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        self.bytes = bytes
    }

    /// A short identifier: the first 8 bytes of the key's BLAKE2b-256 digest, in hex.
    public var keyID: String { String(Blake2b.hash(bytes).hex.prefix(16)) }

    /// Checks a detached signature over `content` made for `purpose`.
    public func isValidSignature(_ signature: [UInt8], over content: [UInt8], purpose: SignaturePurpose) -> Bool {
        guard signature.count == Int(crypto_sign_BYTES) else { return false }
        Sodium.ensureInitialized()
        let message = purpose.message(for: content)
        return crypto_sign_verify_detached(signature, message, UInt64(message.count), bytes) == 0
    }
}

/// An Ed25519 secret key with its public half.
public struct SecretKey: Sendable {
    public static let byteCount = 64
    public let bytes: [UInt8]
    public let publicKey: PublicKey

    /// Generates a new random key pair.
    public static func generate() -> SecretKey {
        Sodium.ensureInitialized()
        var pk = [UInt8](repeating: 0, count: PublicKey.byteCount)
        var sk = [UInt8](repeating: 0, count: byteCount)
        crypto_sign_keypair(&pk, &sk)
        return SecretKey(bytes: sk)!
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        Sodium.ensureInitialized()
        var pk = [UInt8](repeating: 0, count: PublicKey.byteCount)
        guard crypto_sign_ed25519_sk_to_pk(&pk, bytes) == 0, Array(bytes[32...]) == pk else { return nil }
        self.bytes = bytes
        publicKey = PublicKey(bytes: pk)!
    }

    /// Signs `content` for `purpose`.
    public func sign(_ content: [UInt8], purpose: SignaturePurpose) -> [UInt8] {
        let message = purpose.message(for: content)
        var signature = [UInt8](repeating: 0, count: Int(crypto_sign_BYTES))
        crypto_sign_detached(&signature, nil, message, UInt64(message.count), bytes)
        return signature
    }
}
