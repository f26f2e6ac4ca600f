import Foundation

/// A device's check (`POST /v1/check`): who it is, a fresh nonce, what it runs, and whatever
/// else its client policy sends, all of which the server policy sees as its `device` table.
///
/// Decoding refuses, naming the field: a missing or malformed `device` (1–128 printable
/// characters) or `nonce` (16–128 lowercase hex digits), an `image` or `version` that is not a
/// valid name, a malformed `channel` or `agent_version`, a `peer` that is not an http(s) URL, a
/// `free_bytes` that is not a byte count, and an extra field nested more than 16 levels or
/// holding a null. Other fields are kept in `extra` (null counts as absent).
public struct CheckRequest: Codable, Equatable, Sendable {
    public var device: String
    public var nonce: String
    public var image: String?
    public var version: String?
    public var channel: String?
    /// The device's peer server, which serves the image it runs to its neighbours.
    public var peer: String?
    /// Free bytes on the filesystem that an update would fill.
    public var freeBytes: UInt64?
    /// The version of the updatinator that sends the check (`UpdatinatorVersion.current`).
    public var agentVersion: String?
    /// The fields the protocol does not name, for the server policy.
    public var extra: [String: JSONValue] = [:]

    /// The fields the protocol names.
    public static let fieldNames: Set<String> = ["device", "nonce", "image", "version", "channel", "peer", "free_bytes", "agent_version"]
    /// How deep an extra field may nest (the request object itself being the first level).
    static let maxDepth = 16

    public init(device: String, nonce: String, image: String? = nil, version: String? = nil, channel: String? = nil,
                peer: String? = nil, freeBytes: UInt64? = nil, agentVersion: String? = nil, extra: [String: JSONValue] = [:]) {
        self.device = device
        self.nonce = nonce
        self.image = image
        self.version = version
        self.channel = channel
        self.peer = peer
        self.freeBytes = freeBytes
        self.agentVersion = agentVersion
        self.extra = extra.filter { !Self.fieldNames.contains($0.key) }
    }

    /// Every field as one JSON object: what the request's body holds.
    public var fields: [String: JSONValue] {
        var fields = extra
        fields["device"] = .string(device)
        fields["nonce"] = .string(nonce)
        fields["image"] = image.map { .string($0) }
        fields["version"] = version.map { .string($0) }
        fields["channel"] = channel.map { .string($0) }
        fields["peer"] = peer.map { .string($0) }
        fields["free_bytes"] = freeBytes.map { .integer(Int64(clamping: $0)) }
        fields["agent_version"] = agentVersion.map { .string($0) }
        return fields
    }

    public init(from decoder: Decoder) throws {
        let object = try WireObject(decoder)
        device = try object.required("device", String.self, WireCoding.identifierExpected, where: WireCoding.isIdentifier)
        nonce = try object.required("nonce", String.self, "16 to 128 lowercase hex digits expected") { nonce in
            (16...128).contains(nonce.utf8.count) && nonce.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
        }
        image = try object.imageName("image")
        version = try object.imageName("version")
        channel = try object.optional("channel", String.self, WireCoding.identifierExpected, where: WireCoding.isIdentifier)
        peer = try object.optional("peer", String.self, "an http(s) URL expected", where: WireCoding.isPeerURL)
        freeBytes = try object.optional("free_bytes", UInt64.self, "a byte count expected")
        agentVersion = try object.optional("agent_version", String.self, WireCoding.identifierExpected, where: WireCoding.isIdentifier)
        for field in object.unknownFields(Self.fieldNames) {
            let expected = "a JSON value without null inside, at most \(Self.maxDepth) levels deep, expected"
            extra[field] = try object.optional(field, JSONValue.self, expected) { $0.depth < Self.maxDepth }
        }
    }

    public func encode(to encoder: Encoder) throws {
        try fields.encode(to: encoder)
    }
}
