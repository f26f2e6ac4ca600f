/// The deltas a repository offers into one image version's contents: for each target content,
/// the bases it can be patched from and each delta's size. Published beside the manifest as
/// `images/<image>/<version>.deltas` with a detached signature (`.deltas.sig`), because a client
/// plans its downloads from it; every patched result is still checked against the manifest.
///
///     updatinator-deltas 2
///     for <image> <version>                        (the version the index is for)
///     <target hash> <base hash> <delta bytes>      (sorted, one line per delta)
///     pack <bytes>                                 (when the version's pack holds these deltas)
///
/// Format 1, written before indexes named their version, has no `for` line; it still parses,
/// so that `updatinator delta` can extend it, but clients do not use it (`downloadDeltaIndex`).
public struct DeltaIndex: Equatable, Sendable {
    public static let formatLine = "updatinator-deltas 2"
    static let unnamedFormatLine = "updatinator-deltas 1"
    public static let maxBytes = 64 << 20

    public struct Delta: Equatable, Hashable, Sendable, Comparable {
        public let base: ContentHash
        public let bytes: UInt64

        public static func < (a: Delta, b: Delta) -> Bool { a.bytes != b.bytes ? a.bytes < b.bytes : a.base < b.base }
    }

    public private(set) var deltas: [ContentHash: [Delta]] = [:]
    /// The size of the version's pack, written from this index (`PackIndex`).
    public var packBytes: UInt64?
    /// The image version the index is for, inside the signed text, so that a mirror cannot serve
    /// another version's signed index; nil in a format-1 index.
    public var image: String?
    public var version: String?

    public init(image: String? = nil, version: String? = nil) {
        self.image = image
        self.version = version
    }

    public var count: Int { deltas.values.reduce(0) { $0 + $1.count } }

    /// Adds a delta; the pack, written without it, no longer matches.
    public mutating func add(target: ContentHash, base: ContentHash, bytes: UInt64) {
        packBytes = nil
        var list = deltas[target, default: []].filter { $0.base != base }
        list.append(Delta(base: base, bytes: bytes))
        deltas[target] = list.sorted()
    }

    /// The smallest delta into `target` whose base is among `bases` (a delta against no base,
    /// `ContentHash.empty`, needs none).
    public func cheapest(into target: ContentHash, from bases: (ContentHash) -> Bool) -> Delta? {
        deltas[target]?.first { $0.base == .empty || bases($0.base) }
    }

    public static func path(image: String, version: String) -> String {
        Repository.versionPath(image: image, version: version, suffix: ".deltas")
    }

    public func encoded() -> [UInt8] {
        var text = Self.unnamedFormatLine + "\n"
        if let image, let version { text = Self.formatLine + "\nfor \(image) \(version)\n" }
        for target in deltas.keys.sorted() {
            for d in deltas[target]!.sorted(by: { $0.base < $1.base }) { text += "\(target.hex) \(d.base.hex) \(d.bytes)\n" }
        }
        if let packBytes { text += "pack \(packBytes)\n" }
        return Array(text.utf8)
    }

    public static func parse(_ bytes: [UInt8], source: String) throws -> DeltaIndex {
        guard bytes.count <= maxBytes else { throw UpdError(.corrupt, "\(source): larger than \(maxBytes) bytes") }
        guard bytes.last == UInt8(ascii: "\n") else { throw UpdError(.corrupt, "\(source): does not end with a newline") }
        var index = DeltaIndex()
        var previous: (ContentHash, ContentHash)?
        var pack: UInt64?
        var named = false
        for (number, line) in bytes.dropLast().split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let at = "\(source):\(number + 1)"
            if number == 0 {
                named = line.elementsEqual(formatLine.utf8)
                guard named || line.elementsEqual(unnamedFormatLine.utf8) else {
                    throw UpdError(.corrupt, "\(at): expected '\(formatLine)'")
                }
                continue
            }
            if number == 1 && named {
                let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
                guard fields.count == 3, fields[0] == "for", Manifest.problem(withName: fields[1]) == nil,
                      Manifest.problem(withName: fields[2]) == nil else {
                    throw UpdError(.corrupt, "\(at): expected 'for <image> <version>'")
                }
                (index.image, index.version) = (fields[1], fields[2])
                continue
            }
            guard pack == nil else { throw UpdError(.corrupt, "\(at): a line after the pack's") }
            if line.starts(with: "pack ".utf8) {
                guard let size = UInt64(String(decoding: line.dropFirst(5), as: UTF8.self)), size > 0 else {
                    throw UpdError(.corrupt, "\(at): expected 'pack <bytes>'")
                }
                pack = size
                continue
            }
            let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
            guard fields.count == 3, let target = ContentHash(hexBytes: fields[0]), let base = ContentHash(hexBytes: fields[1]),
                  fields[2].count <= 20, fields[2].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), fields[2].first != 0x30 || fields[2].count == 1,
                  let size = UInt64(String(decoding: fields[2], as: UTF8.self)), size > 0 else {
                throw UpdError(.corrupt, "\(at): expected '<target hash> <base hash> <bytes>'")
            }
            guard target != base else { throw UpdError(.corrupt, "\(at): a delta from a content to itself") }
            if let (t, b) = previous, !(t < target || (t == target && b < base)) {
                throw UpdError(.corrupt, "\(at): lines are not sorted, or repeat")
            }
            previous = (target, base)
            index.add(target: target, base: base, bytes: size)
        }
        guard !named || index.image != nil else { throw UpdError(.corrupt, "\(source): no 'for <image> <version>' line") }
        index.packBytes = pack
        return index
    }
}
