/// A BLAKE2b-256 digest of raw content: the name of a blob and the identity of a file's content.
public struct ContentHash: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let algorithm = "blake2b-256"
    public static let byteCount = 32

    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        self.bytes = bytes
    }

    /// Parses 64 lowercase hexadecimal digits.
    public init?(hex: String) {
        guard let b = Hex.decode(hex.utf8, count: Self.byteCount) else { return nil }
        bytes = b
    }

    init?<C: Collection>(hexBytes: C) where C.Element == UInt8 {
        guard let b = Hex.decode(hexBytes, count: Self.byteCount) else { return nil }
        bytes = b
    }

    public var hex: String { Hex.encode(bytes) }

    /// The hash of no bytes: as a delta's base, a content compressed on its own (zstd, which
    /// beats a zlib blob), which every client has.
    public static let empty = Blake2b.hash([])
    public var description: String { hex }

    public static func < (a: ContentHash, b: ContentHash) -> Bool {
        a.bytes.bytesPrecede(b.bytes)
    }

    public func hash(into hasher: inout Hasher) { bytes.hashBytes(into: &hasher) }
}
