/// An absolute path inside an image, as raw bytes (`/` is the image's root directory).
///
/// Paths are compared and sorted by their bytes, which is the manifest's entry order.
public struct ManifestPath: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let maxLength = 4095
    public static let maxComponentLength = 255
    public static let root = ManifestPath(unchecked: [UInt8(ascii: "/")])
    /// The state directory at a tree's root, never part of an image.
    public static let stateDirectoryName = Array(".updatinator".utf8)
    /// Names `.updatinator-*.tmp`, which apply uses for files it is writing.
    static let temporaryPrefix = Array(".updatinator-".utf8)
    static let temporarySuffix = Array(".tmp".utf8)

    public let bytes: [UInt8]

    init(unchecked bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Validates an absolute path: non-empty components, no `.` or `..`, no NUL, no trailing slash.
    public init(bytes: [UInt8]) throws {
        if let problem = Self.problem(with: bytes) {
            throw UpdError(.corrupt, "invalid path \(ByteEscaping.escape(bytes)): \(problem)")
        }
        self.bytes = bytes
    }

    public init(_ string: String) throws {
        try self.init(bytes: Array(string.utf8))
    }

    static func problem(with bytes: [UInt8]) -> String? {
        guard bytes.first == UInt8(ascii: "/") else { return "not absolute" }
        if bytes.count == 1 { return nil }
        if bytes.count > maxLength { return "longer than \(maxLength) bytes" }
        if bytes.contains(0) { return "contains a NUL byte" }
        if bytes.last == UInt8(ascii: "/") { return "ends with a slash" }
        var components = bytes.dropFirst().split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        for c in components {
            if c.isEmpty { return "has an empty component" }
            if c.count > maxComponentLength { return "has a component longer than \(maxComponentLength) bytes" }
            if c.elementsEqual([UInt8(ascii: ".")]) || c.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                return "has a '.' or '..' component"
            }
            if isTemporaryName(c) {
                return "uses a name reserved for apply's temporary files (.updatinator-*.tmp)"
            }
        }
        if components.removeFirst().elementsEqual(stateDirectoryName) {
            return "is inside the state directory /.updatinator"
        }
        return nil
    }

    /// Whether a name is one apply writes a file under before renaming it into place.
    static func isTemporaryName<Name: Collection<UInt8>>(_ name: Name) -> Bool {
        name.starts(with: temporaryPrefix) && name.reversed().starts(with: temporarySuffix.reversed())
    }

    public var isRoot: Bool { bytes.count == 1 }

    /// The parent directory; the root is its own parent.
    public var parent: ManifestPath {
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")), slash > 0 else { return .root }
        return ManifestPath(unchecked: Array(bytes[..<slash]))
    }

    /// The last component.
    public var name: [UInt8] {
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return bytes }
        return Array(bytes[(slash + 1)...])
    }

    public func appending(_ component: [UInt8]) -> ManifestPath {
        ManifestPath(unchecked: isRoot ? bytes + component : bytes + [UInt8(ascii: "/")] + component)
    }

    /// The path in escaped form, as it appears in a manifest.
    public var description: String { ByteEscaping.escape(bytes) }

    public static func < (a: ManifestPath, b: ManifestPath) -> Bool {
        a.bytes.bytesPrecede(b.bytes)
    }

    public func hash(into hasher: inout Hasher) { bytes.hashBytes(into: &hasher) }
}
