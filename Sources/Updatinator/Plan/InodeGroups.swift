/// The regular-file inodes of a manifest: each `f` entry with the `h` entries that share it.
///
/// It holds positions in the manifest's entries, not copies of them: a word for each file,
/// and a list for each file that has other names. A group is made when asked for.
struct InodeGroups {
    struct Group {
        /// The `f` entry's path, which names the group.
        let file: ManifestPath
        let hash: ContentHash
        let size: UInt64
        let metadata: Metadata
        /// The inode's other names, its `h` entries (none, and no allocation, for most files).
        let otherNames: [ManifestPath]
        /// Every path of the inode, the `f` path first.
        var paths: [ManifestPath] { [file] + otherNames }
    }

    let manifest: Manifest
    /// The positions of the `f` entries, in path order.
    private var files = [Int]()
    /// The positions of the `h` entries, by the position of the `f` entry they name.
    private var hardlinks = [Int: [Int]]()

    init(_ manifest: Manifest) {
        self.manifest = manifest
        for (i, e) in manifest.entries.enumerated() {
            switch e.kind {
            case .file:
                files.append(i)
            case .hardlink(let target):
                // (The parser guarantees an earlier `f` entry.)
                if let t = manifest.index(of: target) { hardlinks[t, default: []].append(i) }
            default:
                break
            }
        }
    }

    /// Every group, in the path order of their `f` entries.
    var all: LazyMapSequence<[Int], Group> { files.lazy.map(group(atFile:)) }

    /// The group whose `f` entry is at `path`.
    func group(file path: ManifestPath) -> Group? {
        guard let i = manifest.index(of: path), case .file = manifest.entries[i].kind else { return nil }
        return group(atFile: i)
    }

    /// The `f` path of the inode that the file or hardlink at `path` names.
    func inode(of path: ManifestPath) -> ManifestPath? {
        guard let i = manifest.index(of: path) else { return nil }
        switch manifest.entries[i].kind {
        case .file: return path
        case .hardlink(let target): return target
        default: return nil
        }
    }

    /// The group of the inode at `path`, if `path` is a file or hardlink.
    func group(at path: ManifestPath) -> Group? {
        inode(of: path).flatMap(group(file:))
    }

    private func group(atFile i: Int) -> Group {
        let e = manifest.entries[i]
        guard case .file(let size, let hash, _) = e.kind else { preconditionFailure("entry \(i) is not a file") }
        let others = hardlinks[i].map { $0.map { manifest.entries[$0].path } } ?? []
        return Group(file: e.path, hash: hash, size: size, metadata: e.metadata, otherNames: others)
    }
}
