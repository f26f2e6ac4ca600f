/// The regular-file inodes of a manifest: each `f` entry with the `h` entries that share it.
struct InodeGroups {
    struct Group {
        /// The `f` entry's path, which names the group.
        let file: ManifestPath
        let hash: ContentHash
        let size: UInt64
        let metadata: Metadata
        /// Every path of the inode, the `f` path first.
        var paths: [ManifestPath]
    }

    private(set) var groups: [ManifestPath: Group] = [:]
    /// For every file and hardlink path, the `f` path of its inode.
    private(set) var inodeOf: [ManifestPath: ManifestPath] = [:]

    init(_ manifest: Manifest) {
        for e in manifest.entries {
            switch e.kind {
            case .file(let size, let hash, _):
                groups[e.path] = Group(file: e.path, hash: hash, size: size, metadata: e.metadata, paths: [e.path])
                inodeOf[e.path] = e.path
            case .hardlink(let target):
                groups[target]?.paths.append(e.path)
                inodeOf[e.path] = target
            default:
                break
            }
        }
    }

    /// The group of the inode at `path`, if `path` is a file or hardlink.
    func group(at path: ManifestPath) -> Group? {
        inodeOf[path].flatMap { groups[$0] }
    }
}
