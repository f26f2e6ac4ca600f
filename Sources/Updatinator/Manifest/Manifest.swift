/// The complete description of one image: a header and entries sorted by path bytes.
public struct Manifest: Hashable, Sendable {
    public static let formatTag = "updatinator-manifest"
    public static let formatVersion = 1

    public var image: String
    public var version: String
    /// Seconds since the epoch, present only when the build gave one (SOURCE_DATE_EPOCH).
    public var created: Int64?
    public var entries: [ManifestEntry]

    public init(image: String, version: String, created: Int64? = nil, entries: [ManifestEntry]) {
        self.image = image
        self.version = version
        self.created = created
        self.entries = entries
    }

    /// Checks an image name or version: 1–128 of `A-Z a-z 0-9 . _ + ~ -`, not starting with `.`.
    public static func problem(withName name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.utf8.count > 128 { return "is longer than 128 characters" }
        if name.hasPrefix(".") { return "starts with '.'" }
        for c in name.utf8 {
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"),
                 UInt8(ascii: "+"), UInt8(ascii: "~"), UInt8(ascii: "-"):
                continue
            default:
                return "contains '\(Character(Unicode.Scalar(c)))'; only letters, digits and . _ + ~ - are allowed"
            }
        }
        return nil
    }

    /// Refuses an unusable image name, version or channel name with a usage error.
    public static func checkName(_ name: String, what: String) throws {
        if let problem = problem(withName: name) { throw UpdError(.usage, "\(what) '\(name)' \(problem)") }
    }

    /// The entry at a path, by binary search.
    public func entry(at path: ManifestPath) -> ManifestEntry? {
        index(of: path).map { entries[$0] }
    }

    /// The position of the entry at a path (entries are in path order), or nil.
    public func index(of path: ManifestPath) -> Int? {
        Self.index(of: path, in: entries)
    }

    /// The position of the entry at a path in entries sorted by path, or nil.
    static func index(of path: ManifestPath, in entries: [ManifestEntry]) -> Int? {
        var low = 0, high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].path < path { low = mid + 1 } else { high = mid }
        }
        return low < entries.count && entries[low].path == path ? low : nil
    }

    /// Each distinct content of the image with its raw and compressed sizes.
    public var contents: [ContentHash: (size: UInt64, blobSize: UInt64)] {
        var result = [ContentHash: (size: UInt64, blobSize: UInt64)]()
        for e in entries {
            if case .file(let size, let hash, let blobSize) = e.kind { result[hash] = (size, blobSize) }
        }
        return result
    }
}
