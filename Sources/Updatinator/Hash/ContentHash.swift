/// A BLAKE2b-256 digest of raw content: the name of a blob and the identity of a file's content.
public struct ContentHash: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let algorithm = "blake2b-256"
    public static let byteCount = 32

    /// The digest as four big-endian words, held in the value itself: a manifest holds one
    /// for each file, and the words compare in the bytes' order.
    private let words: (UInt64, UInt64, UInt64, UInt64)

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        words = bytes.withUnsafeBytes { b in
            func word(_ i: Int) -> UInt64 { UInt64(bigEndian: b.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) }
            return (word(0), word(1), word(2), word(3))
        }
    }

    /// Parses 64 lowercase hexadecimal digits.
    public init?(hex: String) {
        self.init(hexBytes: hex.utf8)
    }

    init?<C: Collection>(hexBytes: C) where C.Element == UInt8 {
        guard let b = Hex.decode(hexBytes, count: Self.byteCount) else { return nil }
        self.init(bytes: b)
    }

    public var bytes: [UInt8] { withBytes { Array($0) } }

    public var hex: String { withBytes { Hex.encode($0) } }

    /// Calls `body` with the digest's bytes, in order, without making an array of them.
    private func withBytes<T>(_ body: (UnsafeRawBufferPointer) -> T) -> T {
        withUnsafeBytes(of: (words.0.bigEndian, words.1.bigEndian, words.2.bigEndian, words.3.bigEndian), body)
    }

    /// The hash of no bytes: as a delta's base, a content compressed on its own (zstd, which
    /// beats a zlib blob), which every client has.
    public static let empty = Blake2b.hash([])
    public var description: String { hex }

    public static func == (a: ContentHash, b: ContentHash) -> Bool { a.words == b.words }

    public static func < (a: ContentHash, b: ContentHash) -> Bool { a.words < b.words }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
        hasher.combine(words.2)
        hasher.combine(words.3)
    }
}
