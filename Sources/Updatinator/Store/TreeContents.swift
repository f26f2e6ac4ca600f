import Glibc

/// The contents of an installed tree, as blobs by hash: what a laptop serves its neighbours
/// (peer mode). Only contents that the tree's manifest lists are ever read, through no
/// symbolic link; each is compressed into a cache on first request, hashed again while it is
/// compressed (a file changed since the manifest is refused), and served from there. The
/// cache is not flushed to disk: whoever owns it empties it before use (see `PeerServer`).
public final class TreeContents: Sendable {
    public let root: String
    public let cache: BlobStore
    private let files: [ContentHash: (path: ManifestPath, size: UInt64, blobSize: UInt64)]

    public init(root: String, manifest: Manifest, cache: BlobStore) {
        self.root = root
        self.cache = cache
        var files = [ContentHash: (ManifestPath, UInt64, UInt64)]()
        for entry in manifest.entries {
            if case .file(let size, let hash, let blobSize) = entry.kind, files[hash] == nil { files[hash] = (entry.path, size, blobSize) }
        }
        self.files = files
    }

    /// How many distinct contents the tree offers.
    public var count: Int { files.count }

    /// The cached blob's path for a content of the manifest, made on first use; nil for any
    /// hash the manifest does not list.
    public func blob(for hash: ContentHash) throws -> String? {
        guard let file = files[hash] else { return nil }
        let path = cache.path(for: hash)
        if try Sys.lstatIfExists(path) != nil { return path }
        let tree = try RootedTree(root: root)
        let fd = try tree.inParent(of: file.path) { dir, name in
            tree.withName(name) { openat(dir, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
        }
        guard fd >= 0 else { throw UpdError.system("openat", tree.display(file.path)) }
        defer { Sys.close(fd) }
        let info = try Sys.fstat(fd, path: tree.display(file.path))
        guard info.st_mode & S_IFMT == S_IFREG, UInt64(info.st_size) == file.size else {
            throw UpdError(.corrupt, "\(tree.display(file.path)): no longer the file the installed manifest lists")
        }
        let batch = BlobBatch(store: cache)
        _ = try batch.store(from: fd, size: file.size, source: tree.display(file.path), hash: hash, workspace: BlobWorkspace(level: cache.compressionLevel))
        try batch.commit(durable: false)
        return path
    }
}
