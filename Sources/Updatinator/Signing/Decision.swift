import Foundation

/// A school server's signed answer to a device's check: move to an image version (with the
/// manifest's hash, peers that hold it and bandwidth rules), or no update. It echoes the
/// device's nonce and expires soon, so it cannot be replayed to another device or later.
public struct Decision: Codable, Equatable, Sendable {
    public var device: String
    public var nonce: String
    /// Seconds since the epoch after which the decision must not be acted on.
    public var expires: Int64
    /// The server's clock when it decided, in seconds since the epoch: a time the device may
    /// trust its own clock to be past (`FreshnessState`), and what `expires` is measured from.
    /// Absent from servers before it.
    public var time: Int64?
    public var update: Bool
    public var image: String?
    public var version: String?
    /// The manifest's path in the repository and the BLAKE2b-256 of its bytes, in hex.
    public var manifestPath: String?
    public var manifestHash: String?
    /// The manifest's size in bytes, which caps its download (nil from a server that predates
    /// it: the download is then capped at `ManifestParser.maxManifestBytes`).
    public var manifestSize: UInt64?
    /// Mirrors of devices known to hold the image, nearest first.
    public var peers: [String] = []
    /// Bandwidth rules: bytes per second, the earliest start, and a daily window "HH:MM-HH:MM".
    public var rateLimit: UInt64?
    public var notBefore: Int64?
    public var window: String?
    /// Why there is no update (see `NoUpdateReason`; a reason this client does not know reads
    /// as `held`), and the server's words for it ("stage 1 of 3: 5 % of devices").
    public var reason: String?
    public var message: String?

    /// The reason of a decision without an update: the one it names, else up to date.
    public var noUpdateReason: NoUpdateReason { reason.map(NoUpdateReason.init(decoding:)) ?? .upToDate }

    enum CodingKeys: String, CodingKey {
        case device, nonce, time, expires, update, image, version, peers, window, reason, message
        case manifestPath = "manifest_path", manifestHash = "manifest_hash", manifestSize = "manifest_size", rateLimit = "rate_limit", notBefore = "not_before"
    }

    public init(device: String, nonce: String, expires: Int64, update: Bool) {
        self.device = device
        self.nonce = nonce
        self.expires = expires
        self.update = update
    }

    /// What travels over HTTP: the decision's canonical JSON text and its signature file's text.
    public struct Envelope: Codable, Sendable {
        public var decision: String
        public var signatures: String
    }

    /// The envelope of this decision, signed with a decision key.
    public func signed(with key: SecretKey) throws -> [UInt8] {
        SignedEnvelope.seal(self, as: "decision", key: key, purpose: .decision)
    }

    /// Verifies an envelope: signed by the keyring's decision keys, canonical, for this device and
    /// nonce, not expired, and, for an update, naming a valid image, version and hash.
    ///
    /// The nonce makes it fresh, so a decision that carries its `time` is judged by its own
    /// clock: its lifetime (`expires` − `time`) must not be over when it is received, whatever the
    /// device's clock says. Only a decision without `time` is judged by `now`, the device's clock.
    public static func verify(envelope bytes: [UInt8], keyring: Keyring, device: String, nonce: String,
                              now: Int64, source: String) throws -> Decision {
        let decision = try SignedEnvelope.open(bytes, as: "decision", Decision.self, keyring: keyring, purpose: .decision,
                                               maxBytes: 64 * 1024, source: source)
        guard decision.device == device, decision.nonce == nonce else {
            throw UpdError(.verification, "\(source): the decision is for another request (device or nonce differs)")
        }
        guard decision.expires > decision.time ?? now else {
            throw UpdError(.verification, "\(source): the decision expired at \(decision.expires)")
        }
        if decision.update {
            guard let image = decision.image, let version = decision.version, Manifest.problem(withName: image) == nil,
                  Manifest.problem(withName: version) == nil, decision.manifestHash.flatMap({ ContentHash(hex: $0) }) != nil else {
                throw UpdError(.corrupt, "\(source): an update decision without a valid image, version and manifest hash")
            }
            if let size = decision.manifestSize, size > ManifestParser.maxManifestBytes {
                throw UpdError(.corrupt, "\(source): manifest_size \(size) is larger than a manifest may be (\(ManifestParser.maxManifestBytes))")
            }
        }
        return decision
    }
}
