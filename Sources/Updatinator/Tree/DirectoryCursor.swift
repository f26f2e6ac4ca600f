import Glibc

/// Open directories of a tree along the path last asked for, for walking a manifest in its
/// sorted order: asking for a directory reuses the open ancestors and opens only the rest,
/// each with `RootedTree.openChildDirectory` (no symlink followed, no other mount entered),
/// instead of resolving every path from the root.
final class DirectoryCursor {
    let tree: RootedTree
    private var open: [(path: ManifestPath, fd: Int32)] = []

    init(_ tree: RootedTree) {
        self.tree = tree
    }

    deinit { for (_, fd) in open { Sys.close(fd) } }

    /// A descriptor of the directory (owned by the cursor, valid until the next call), or nil
    /// when a component does not exist.
    func directory(_ path: ManifestPath) throws -> Int32? {
        while let top = open.last, !Self.isAncestor(top.path, of: path) {
            Sys.close(top.fd)
            open.removeLast()
        }
        if open.isEmpty {
            let fd = dup(tree.rootFD)
            guard fd >= 0 else { throw UpdError.system("dup", tree.root) }
            open.append((.root, fd))
        }
        while open.last!.path != path {
            let top = open.last!
            let rest = path.bytes[(top.path.isRoot ? 1 : top.path.bytes.count + 1)...]
            let component = Array(rest.prefix { $0 != UInt8(ascii: "/") })
            let next = top.path.appending(component)
            guard let fd = try tree.openChildDirectory(top.fd, component, display: tree.display(next)) else { return nil }
            open.append((next, fd))
        }
        return open.last!.fd
    }

    /// The parent directory of `path` (which must exist), and the last component.
    func parent(of path: ManifestPath) throws -> (fd: Int32, name: [UInt8]) {
        guard let fd = try directory(path.parent) else { throw UpdError.system("openat", tree.display(path.parent), errno: ENOENT) }
        return (fd, path.name)
    }

    static func isAncestor(_ a: ManifestPath, of b: ManifestPath) -> Bool {
        a.isRoot || a.bytes == b.bytes || (b.bytes.count > a.bytes.count && b.bytes[a.bytes.count] == UInt8(ascii: "/")
            && b.bytes.starts(with: a.bytes))
    }
}
