import Foundation

/// A signed pointer from a channel to one image version: `channels/NAME.json` and its `.sig`.
///
/// The serial grows by one with each publication and the metadata expires, so a client that
/// remembers the highest serial it accepted refuses replayed (older) and stale metadata.
public struct ChannelMetadata: Codable, Equatable, Sendable {
    public var channel: String
    public var image: String
    public var version: String
    /// BLAKE2b-256 of the manifest's exact bytes, in hex.
    public var manifestHash: String
    /// The manifest's size in bytes, which caps its download; nil in metadata published before
    /// it was written (the download is then capped at `ManifestParser.maxManifestBytes`).
    public var manifestSize: UInt64?
    public var serial: UInt64
    /// Seconds since the epoch after which the metadata must not be used.
    public var expires: Int64
    /// Seconds since the epoch when it was published: a time a client may trust its clock to be
    /// past once the metadata verifies (`FreshnessState`). Absent in files published before it.
    public var published: Int64?

    enum CodingKeys: String, CodingKey {
        case channel, image, version, serial, expires, published
        case manifestHash = "manifest_hash", manifestSize = "manifest_size"
    }

    public init(channel: String, image: String, version: String, manifestHash: ContentHash, manifestSize: UInt64? = nil, serial: UInt64,
                expires: Int64, published: Int64? = nil) {
        self.channel = channel
        self.image = image
        self.version = version
        self.manifestHash = manifestHash.hex
        self.manifestSize = manifestSize
        self.serial = serial
        self.expires = expires
        self.published = published
    }

    /// The canonical JSON text (sorted keys), which is what gets signed.
    public func encoded() -> [UInt8] {
        CanonicalJSON.encode(self)
    }

    /// The largest serial: every JSON reader holds it exactly, and so does a Lua integer.
    public static let maxSerial: UInt64 = 1 << 53

    /// The longest `publish --expires`: how long a mirror that freezes a channel can keep a
    /// device on its last publication, so the build key must sign again within it.
    public static let maxValidity: Int64 = 366 * 86400

    /// Parses channel metadata without checking its signature or freshness.
    public static func parse(_ bytes: [UInt8], source: String) throws -> ChannelMetadata {
        guard bytes.count <= 64 * 1024 else { throw UpdError(.corrupt, "\(source): larger than 64 KiB") }
        try CanonicalJSON.requireCanonical(bytes, pretty: true, source: source)
        let metadata: ChannelMetadata
        do {
            metadata = try JSONDecoder().decode(ChannelMetadata.self, from: Data(bytes))
        } catch {
            throw UpdError(.corrupt, "\(source): not valid channel metadata (\(JSONErrors.describe(error)))")
        }
        for (field, value) in [("channel", metadata.channel), ("image", metadata.image), ("version", metadata.version)] {
            if let problem = Manifest.problem(withName: value) {
                throw UpdError(.corrupt, "\(source): \(field) \(problem)")
            }
        }
        guard ContentHash(hex: metadata.manifestHash) != nil else {
            throw UpdError(.corrupt, "\(source): manifest_hash is not 64 lowercase hex digits")
        }
        if let size = metadata.manifestSize, size > ManifestParser.maxManifestBytes {
            throw UpdError(.corrupt, "\(source): manifest_size \(size) is larger than a manifest may be (\(ManifestParser.maxManifestBytes))")
        }
        guard (1...maxSerial).contains(metadata.serial) else {
            throw UpdError(.corrupt, "\(source): serial \(metadata.serial) is not from 1 to 2^53")
        }
        return metadata
    }

    /// Verifies signature, name and freshness: refuses metadata of another channel than
    /// `channel` (a mirror serving `testing.json` as `stable.json`), expired at `now`, or whose
    /// serial is lower than `minimumSerial`, the highest one this client accepted before.
    /// Returns the metadata and the trusted keys that signed it.
    public static func verify(_ bytes: [UInt8], signatures: SignatureFile, keyring: Keyring, channel: String, source: String,
                              now: Int64, minimumSerial: UInt64 = 0) throws -> (metadata: ChannelMetadata, signers: [String]) {
        let signers = try keyring.verify(bytes, signatures: signatures, purpose: .channel, source: source)
        let metadata = try parse(bytes, source: source)
        guard metadata.channel == channel else {
            throw UpdError(.verification, "\(source): the metadata is for channel '\(metadata.channel)', not '\(channel)'")
        }
        try metadata.checkFreshness(source: source, now: now, minimumSerial: minimumSerial)
        return (metadata, signers)
    }

    /// The serial a client accepted before, signed by `signers`, as the floor for the next one:
    /// it counts only while one of those keys is still trusted (or none was recorded), so that a
    /// serial signed far ahead with a key since revoked cannot lock the client out.
    public static func replayFloor(serial: UInt64, signers: [String], keyring: Keyring) -> UInt64 {
        signers.isEmpty || signers.contains { keyring.trusted[$0] != nil } ? serial : 0
    }

    /// Refuses metadata expired at `now`, or older than the serial this client accepted before.
    public func checkFreshness(source: String, now: Int64, minimumSerial: UInt64 = 0) throws {
        guard serial >= minimumSerial else {
            throw UpdError(.verification,
                           "\(source): serial \(serial) is older than the accepted serial \(minimumSerial) (replayed metadata)")
        }
        guard now < expires else {
            throw UpdError(.verification, "\(source): expired at \(Self.formatTime(expires))")
        }
    }

    /// Writes the next publication of a channel: serial one above the current file's, signed.
    public static func publish(repository: Repository, channel: String, image: String, version: String,
                               validFor seconds: Int64, key: SecretKey, now: Int64) throws -> ChannelMetadata {
        try Manifest.checkName(channel, what: "channel name")
        guard seconds <= maxValidity else {
            throw UpdError(.usage, "channel metadata may expire at most 366d after it is published, not \(seconds) seconds")
        }
        let manifestPath = repository.manifestPath(image: image, version: version)
        guard (try Sys.lstatIfExists(manifestPath)) != nil else {
            throw UpdError(.usage, "\(manifestPath) does not exist: generate the image first")
        }
        let manifest = try Sys.readFile(manifestPath, limit: ManifestParser.maxManifestBytes)
        let path = repository.channelPath(channel)
        var serial: UInt64 = 1
        if (try Sys.lstatIfExists(path)) != nil {
            serial = try parse(Sys.readFile(path, limit: 64 * 1024), source: path).serial + 1
        }
        let metadata = ChannelMetadata(channel: channel, image: image, version: version, manifestHash: Blake2b.hash(manifest),
                                       manifestSize: UInt64(manifest.count), serial: serial, expires: now + seconds, published: now)
        let bytes = metadata.encoded()
        var signatures = SignatureFile()
        signatures.sign(bytes, with: key, purpose: .channel)
        try Sys.mkdirs(Sys.parentDirectory(of: path))
        // The signature goes first: a reader never sees new metadata beside an old signature
        // that verifies, because an old signature does not match the new bytes.
        try Sys.writeFileAtomically(path + ".sig", signatures.encoded())
        try Sys.writeFileAtomically(path, bytes)
        return metadata
    }

    static func formatTime(_ seconds: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    /// Parses a duration such as `90s`, `30m`, `12h`, `7d` or `2w` into seconds.
    public static func parseDuration(_ text: String) throws -> Int64 {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800]
        guard let unit = text.last, let factor = units[unit], let value = Int64(text.dropLast()), value > 0,
              value <= Int64.max / factor / 2 else {
            throw UpdError(.usage, "invalid duration '\(text)': expected a positive number and a unit s, m, h, d or w (e.g. 30d)")
        }
        return value * factor
    }
}
