import Glibc

/// Joins a tree's root directory with a manifest path into a path for system calls.
struct FileSystemPath {
    let root: [UInt8]

    init(root: String) {
        var bytes = Array(root.utf8)
        while bytes.count > 1 && bytes.last == UInt8(ascii: "/") { bytes.removeLast() }
        self.root = bytes
    }

    func bytes(for path: ManifestPath) -> [UInt8] {
        path.isRoot ? root : root + path.bytes
    }

    /// Calls `body` with a NUL-terminated C string of the full path.
    func withCString<T>(_ path: ManifestPath, _ body: (UnsafePointer<CChar>) throws -> T) rethrows -> T {
        try RootedTree.withName(bytes(for: path), body)
    }

    /// The full path for messages.
    func display(_ path: ManifestPath) -> String {
        String(decoding: bytes(for: path), as: UTF8.self)
    }
}
