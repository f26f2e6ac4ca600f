import Foundation

/// A device's request for a batch (`POST /v1/batch`): the contents its plan downloads, in
/// order, each with the base it keeps; the contents it decoded just before, which the batch is
/// compressed after; the most bytes the batch may have to be worth it; and the device.
///
/// Decoding refuses, naming the field: no `items`, or more than `maxItems`; an item whose
/// `hash` or `base` is not a content hash, whose `size` or `base_size` is not 1 to 2^30, with a
/// `base` but no `base_size` or the reverse; an `after` of more than `maxItems` contents or
/// naming more than the history's bytes (64 MiB), or whose contents name a base; a `limit` that
/// is not a byte count; a malformed `device`; null anywhere; and any other field.
public struct BatchRequest: Codable, Equatable, Sendable {
    public var items: [ContentBatch.Item]
    public var after: [ContentBatch.Item] = []
    public var limit: UInt64?
    public var device: String?
    /// Whether the client reads the batch while the server computes it: the answer then comes at
    /// once, and the download sends each chunk as it is compressed.
    public var stream = false

    /// The most contents a request may name; a decoder's `userInfo[maxItemsKey]` may lower it.
    public static let maxItems = 500_000
    public static let maxItemsKey = CodingUserInfoKey(rawValue: "updatinator.batch.maxItems")!

    public init(items: [ContentBatch.Item], after: [ContentBatch.Item] = [], limit: UInt64? = nil, device: String? = nil) {
        self.items = items
        self.after = after
        self.limit = limit
        self.device = device
    }

    /// The bytes of the contents the batch holds, one by one.
    public var bytes: UInt64 { items.reduce(0) { $0 + $1.size } }

    /// The batch's name: BLAKE2b-256 of what determines its bytes (not `limit` or `device`).
    public var key: String {
        var text = "updatinator-batch 2\n"
        for i in after { text += "after \(i.hash.hex) \(i.size)\n" }
        for i in items { text += "\(i.hash.hex) \(i.size) \(i.base?.hex ?? "-") \(i.baseSize)\n" }
        return Blake2b.hash(Array(text.utf8)).hex
    }

    public init(from decoder: Decoder) throws {
        let object = try WireObject(decoder, nullIsAbsent: false)
        try object.refuseUnknown(["items", "after", "limit", "device", "stream"])
        let maxItems = min(Self.maxItems, decoder.userInfo[Self.maxItemsKey] as? Int ?? Self.maxItems)
        items = try object.required("items", [ContentBatch.Item].self, "a list of 1 to \(maxItems) contents expected") {
            (1...maxItems).contains($0.count)
        }
        let history = ContentBatch.Limits.standard.history
        after = try object.optional("after", [ContentBatch.Item].self, "a list of at most \(maxItems) contents expected") {
            $0.count <= maxItems
        } ?? []
        if let i = after.firstIndex(where: { $0.base != nil }) { throw UpdError(.corrupt, "after[\(i)].base: unknown field") }
        guard after.reduce(0, { $0 + $1.size }) <= history else {
            throw UpdError(.corrupt, "after: contents of at most \(history) bytes in all expected")
        }
        limit = try object.optional("limit", UInt64.self, "a byte count expected")
        device = try object.optional("device", String.self, WireCoding.identifierExpected, where: WireCoding.isIdentifier)
        stream = try object.optional("stream", Bool.self, "true or false expected") ?? false
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: WireKey.self)
        try c.encode(items, "items")
        if !after.isEmpty { try c.encode(after, "after") }
        try c.encode(limit, "limit")
        try c.encode(device, "device")
        if stream { try c.encode(stream, "stream") }
    }
}

/// The server's answer to a batch request: where to download the batch, and its size; no size
/// when the request asked for a stream and the batch is being computed (its download then
/// sends each chunk as it is ready).
public struct BatchAnswer: Codable, Equatable, Sendable {
    /// The batch's path on the server, `/v1/batch/KEY`.
    public var path: String
    public var bytes: UInt64?

    public init(path: String, bytes: UInt64?) {
        self.path = path
        self.bytes = bytes
    }

    public init(from decoder: Decoder) throws {
        let object = try WireObject(decoder)
        path = try object.required("path", String.self, "a path /v1/batch/KEY expected") { $0.hasPrefix("/v1/batch/") && !$0.contains("..") }
        bytes = try object.optional("bytes", UInt64.self, "a byte count expected") { $0 > 0 }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: WireKey.self)
        try c.encode(path, "path")
        if let bytes { try c.encode(bytes, "bytes") }
    }
}

extension ContentBatch.Item: Codable {
    /// The largest content a batch names.
    static let maxSize: UInt64 = 1 << 30

    public init(from decoder: Decoder) throws {
        let object = try WireObject(decoder, nullIsAbsent: false)
        try object.refuseUnknown(["hash", "size", "base", "base_size"])
        let hashExpected = "a content hash expected", sizeExpected = "a size from 1 to 2^30 expected"
        let isSize: (UInt64) -> Bool = { $0 >= 1 && $0 <= Self.maxSize }
        let hash = try object.required("hash", String.self, hashExpected) { ContentHash(hex: $0) != nil }
        let size = try object.required("size", UInt64.self, sizeExpected) { isSize($0) }
        let base = try object.optional("base", String.self, hashExpected) { ContentHash(hex: $0) != nil }
        let baseSize = try object.optional("base_size", UInt64.self, sizeExpected) { isSize($0) }
        guard (base == nil) == (baseSize == nil) else {
            throw UpdError(.corrupt, "\(object.name(base == nil ? "base_size" : "base")): \(base == nil ? "without base" : "without base_size")")
        }
        self.init(hash: ContentHash(hex: hash)!, size: size, base: base.flatMap { ContentHash(hex: $0) }, baseSize: baseSize ?? 0)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: WireKey.self)
        try c.encode(hash.hex, "hash")
        try c.encode(size, "size")
        if let base {
            try c.encode(base.hex, "base")
            try c.encode(baseSize, "base_size")
        }
    }
}
