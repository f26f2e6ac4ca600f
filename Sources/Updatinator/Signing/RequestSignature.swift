import CSodium

/// The signature a device (or, later, a school server towards its upstream) puts on each
/// request: Ed25519 with the purpose `request`, over the method, the path, the BLAKE2b-256 of
/// the body, the sender's id, a time and a fresh nonce. It travels in headers, so a request's
/// body stays the protocol's JSON:
///
/// ```
/// Updatinator-Device: laptop-17
/// Updatinator-Time: 1765000000
/// Updatinator-Nonce: 32 lowercase hex digits
/// Updatinator-Key: the public key, 64 lowercase hex digits
/// Updatinator-Signature: 128 lowercase hex digits
/// Updatinator-Enrolment: 64 lowercase hex digits (only with an enrolment token)
/// ```
///
/// The receiver checks the signature against the key it holds for the id (or the one sent, at
/// enrolment), the time against its own clock and the nonce against those it saw.
public struct RequestSignature: Sendable, Equatable {
    public var sender: String
    public var time: Int64
    public var nonce: String
    public var key: PublicKey
    public var signature: [UInt8]
    /// The proof that the sender knows the deployment's enrolment token (`enrolmentProof`).
    public var enrolment: [UInt8]?

    public enum Header {
        public static let device = "Updatinator-Device"
        public static let time = "Updatinator-Time"
        public static let nonce = "Updatinator-Nonce"
        public static let key = "Updatinator-Key"
        public static let signature = "Updatinator-Signature"
        public static let enrolment = "Updatinator-Enrolment"
    }

    /// What is signed: the request's method, path, body hash, sender, time and nonce, one a line.
    public static func message(method: String, path: String, bodyHash: ContentHash, sender: String, time: Int64, nonce: String) -> [UInt8] {
        Array("\(method)\n\(path)\n\(bodyHash.hex)\n\(sender)\n\(time)\n\(nonce)".utf8)
    }

    /// Signs a request with `key` at `time` and a new nonce.
    public static func sign(method: String, path: String, body: [UInt8], sender: String, key: SecretKey, time: Int64,
                            enrolment: [UInt8]? = nil) -> RequestSignature {
        let nonce = Hex.encode((0..<16).map { _ in UInt8.random(in: 0...255) })
        let message = message(method: method, path: path, bodyHash: Blake2b.hash(body), sender: sender, time: time, nonce: nonce)
        return RequestSignature(sender: sender, time: time, nonce: nonce, key: key.publicKey,
                                signature: key.sign(message, purpose: .request), enrolment: enrolment)
    }

    /// The headers that carry the signature, as `Name: value` lines.
    public var headerLines: [String] {
        var lines = ["\(Header.device): \(sender)", "\(Header.time): \(time)", "\(Header.nonce): \(nonce)",
                     "\(Header.key): \(Hex.encode(key.bytes))", "\(Header.signature): \(Hex.encode(signature))"]
        if let enrolment { lines.append("\(Header.enrolment): \(Hex.encode(enrolment))") }
        return lines
    }

    /// The signature a request's headers carry (`header` looks one up by name); nil when the
    /// request carries none, an error naming the header when one is malformed.
    public static func parse(header: (String) -> String?) throws -> RequestSignature? {
        guard let sender = header(Header.device) else { return nil }
        func required(_ name: String) throws -> String {
            guard let value = header(name) else { throw UpdError(.verification, "the request has \(Header.device) but no \(name)") }
            return value
        }
        guard WireCoding.isIdentifier(sender) else { throw UpdError(.verification, "\(Header.device): not a device id") }
        guard let time = Int64(try required(Header.time)) else { throw UpdError(.verification, "\(Header.time): seconds since the epoch expected") }
        let nonce = try required(Header.nonce)
        guard nonce.utf8.count == 32, Hex.decode(Array(nonce.utf8), count: 16) != nil else {
            throw UpdError(.verification, "\(Header.nonce): 32 lowercase hex digits expected")
        }
        guard let keyBytes = Hex.decode(Array(try required(Header.key).utf8), count: PublicKey.byteCount),
              let key = PublicKey(bytes: keyBytes) else {
            throw UpdError(.verification, "\(Header.key): 64 lowercase hex digits expected")
        }
        guard let signature = Hex.decode(Array(try required(Header.signature).utf8), count: 64) else {
            throw UpdError(.verification, "\(Header.signature): 128 lowercase hex digits expected")
        }
        var enrolment: [UInt8]?
        if let proof = header(Header.enrolment) {
            guard let bytes = Hex.decode(Array(proof.utf8), count: 32) else {
                throw UpdError(.verification, "\(Header.enrolment): 64 lowercase hex digits expected")
            }
            enrolment = bytes
        }
        return RequestSignature(sender: sender, time: time, nonce: nonce, key: key, signature: signature, enrolment: enrolment)
    }

    /// Whether `key` signed this request as received: its method, path and the hash of its body.
    public func isValid(method: String, path: String, bodyHash: ContentHash, key: PublicKey) -> Bool {
        key.isValidSignature(signature, over: Self.message(method: method, path: path, bodyHash: bodyHash, sender: sender, time: time, nonce: nonce),
                             purpose: .request)
    }

    /// The proof that a device knows the enrolment token: BLAKE2b-256 of its public key, keyed
    /// with the token's own hash. A listener learns nothing it could use for another key.
    public static func enrolmentProof(token: [UInt8], key: PublicKey) -> [UInt8] {
        Sodium.ensureInitialized()
        let tokenKey = Blake2b.hash(Array("updatinator-enrolment-v1".utf8) + [0] + token).bytes
        var out = [UInt8](repeating: 0, count: 32)
        _ = crypto_generichash(&out, 32, key.bytes, UInt64(key.bytes.count), tokenKey, tokenKey.count)
        return out
    }

    /// Compares two proofs in constant time.
    public static func sameProof(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count == b.count && sodium_memcmp(a, b, a.count) == 0
    }
}

/// Signs what one sender sends: its id, its key, and the enrolment token it presents. Devices
/// sign their checks, reports and batch requests with it; a school server could sign its
/// requests to an upstream the same way.
public struct RequestSigner: Sendable {
    public let sender: String
    public let key: SecretKey
    let enrolment: [UInt8]?

    public init(sender: String, key: SecretKey, enrolmentToken: [UInt8]? = nil) {
        self.sender = sender
        self.key = key
        enrolment = enrolmentToken.map { RequestSignature.enrolmentProof(token: $0, key: key.publicKey) }
    }

    /// The header lines of a signed request at `time`.
    public func headers(method: String, path: String, body: [UInt8], time: Int64) -> [String] {
        RequestSignature.sign(method: method, path: path, body: body, sender: sender, key: key, time: time, enrolment: enrolment).headerLines
    }

    /// A short form of the public key for people to compare: `keyID` (16 hex digits).
    public var fingerprint: String { key.publicKey.keyID }
}

extension PublicKey {
    /// The key in lowercase hex, as the inventory keeps it.
    public var hex: String { Hex.encode(bytes) }

    public init?(hex: String) {
        guard let bytes = Hex.decode(Array(hex.utf8), count: Self.byteCount) else { return nil }
        self.init(bytes: bytes)
    }
}
