import Glibc

/// Compares a tree with a manifest as it walks the tree, so that its memory does not grow with
/// the image: it holds the directories still to visit, the files waiting to be hashed (at most
/// `batchFiles` of them, hashed on all cores), the names of inodes with several links, and a
/// flag for each manifest entry.
///
/// It finds what `TreeScanner` would describe differently from the manifest: an inode's first
/// name in path order is its file entry and its later names are hardlinks to that one.
struct TreeComparison {
    let root: String
    let fs: FileSystemPath
    let manifest: Manifest
    /// Files still as they were when verified by hash are not read again (`KnownContent`).
    let known: [ManifestPath: KnownContent]
    /// Paths left out with everything beneath them.
    let excluded: Set<ManifestPath>
    let workers: Int
    static let batchFiles = 4096

    private(set) var differences = [ManifestDiff.Change]()
    private(set) var unexpected = [ManifestEntry]()
    private var seen: [Bool]
    /// Regular files whose content is to be hashed, with what the tree says of them otherwise.
    private var toHash = [(entry: ManifestEntry, size: UInt64)]()
    /// The names of each inode with more than one link, and each name's entry as a file.
    private var multiplyLinked = [InodeKey: [(entry: ManifestEntry, hashed: Bool)]]()

    private struct InodeKey: Hashable {
        let device: UInt
        let inode: UInt
    }

    init(root: String, manifest: Manifest, known: [ManifestPath: KnownContent], excluded: Set<ManifestPath>, workers: Int) {
        self.root = root
        fs = FileSystemPath(root: root)
        self.manifest = manifest
        self.known = known
        self.excluded = excluded
        self.workers = workers
        seen = [Bool](repeating: false, count: manifest.entries.count)
    }

    /// Walks the tree; then `differences`, `unexpected` and `missing` say how it differs.
    mutating func run() throws {
        var pending = [ManifestPath.root]
        // (As given: a root named with a trailing slash is the directory a symlink there names.)
        try visit(.root, try Sys.lstat(root))
        while let directory = pending.popLast() {
            for name in try TreeScanner.listDirectory(fs, directory) {
                if directory.isRoot && name == ManifestPath.stateDirectoryName { continue }
                let path = directory.appending(name)
                if excluded.contains(path) { continue }
                if let problem = ManifestPath.problem(with: path.bytes) {
                    throw UpdError(.usage, "\(fs.display(path)): cannot be part of an image: \(problem)")
                }
                var st = stat()
                if fs.withCString(path, { Glibc.lstat($0, &st) }) != 0 { throw UpdError.system("lstat", fs.display(path)) }
                try visit(path, st)
                if st.st_mode & S_IFMT == S_IFDIR { pending.append(path) }
            }
        }
        try hashPending()
        try compareMultiplyLinked()
    }

    /// The manifest's entries the tree lacks.
    var missing: [ManifestEntry] {
        manifest.entries.indices.filter { !seen[$0] }.map { manifest.entries[$0] }
    }

    private mutating func visit(_ path: ManifestPath, _ st: stat) throws {
        // The manifest parser refuses (uid_t)-1, which chown reads as "leave unchanged".
        guard st.st_uid != uid_t.max, st.st_gid != gid_t.max else {
            throw UpdError(.usage, "\(fs.display(path)): an owner or group of 4294967295 cannot be part of an image")
        }
        let metadata = Metadata(mode: UInt32(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid,
                                mtime: Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: UInt32(st.st_mtim.tv_nsec)),
                                xattrs: try TreeScanner.readXattrs(fs, path))
        let kind: EntryKind
        switch st.st_mode & S_IFMT {
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symlink(target: try TreeScanner.readLink(fs, path))
        case S_IFCHR: kind = .characterDevice(major: TreeScanner.major(st.st_rdev), minor: TreeScanner.minor(st.st_rdev))
        case S_IFBLK: kind = .blockDevice(major: TreeScanner.major(st.st_rdev), minor: TreeScanner.minor(st.st_rdev))
        case S_IFIFO: kind = .fifo
        case S_IFREG:
            // (Its hash, when not known, is the batch's to find.)
            let knownHash = known[path].flatMap { $0.matches(st) ? $0.hash : nil }
            let entry = ManifestEntry(path: path, kind: .file(size: UInt64(st.st_size), hash: knownHash ?? .empty, blobSize: 0),
                                      metadata: metadata)
            if st.st_nlink > 1 {
                multiplyLinked[InodeKey(device: st.st_dev, inode: st.st_ino), default: []].append((entry, knownHash != nil))
            } else {
                try compareFile(entry, hashed: knownHash != nil)
            }
            return
        default:
            throw UpdError(.usage, "\(fs.display(path)): sockets and other special files cannot be part of an image")
        }
        compare(ManifestEntry(path: path, kind: kind, metadata: metadata))
    }

    /// Compares a file whose content is known, or hashes it first (in a batch with others).
    private mutating func compareFile(_ entry: ManifestEntry, hashed: Bool) throws {
        guard case .file(let size, _, _) = entry.kind, !hashed, size > 0 else { return compare(entry) }
        toHash.append((entry, size))
        if toHash.count >= Self.batchFiles { try hashPending() }
    }

    private mutating func hashPending() throws {
        guard !toHash.isEmpty else { return }
        let files = toHash
        toHash = []
        let hashes = UnsafeSendable(UnsafeMutableBufferPointer<ContentHash>.allocate(capacity: files.count))
        hashes.value.initialize(repeating: .empty)
        defer { hashes.value.deallocate() }
        // The largest first, so that no worker is left with a large file when the others are done.
        let order = files.indices.sorted { files[$0].size > files[$1].size }
        let fs = self.fs
        try Parallel.forEach(files.count, workers: workers, perWorker: { try BlobWorkspace(level: 1, libdeflate: false) }) { workspace, i in
            let (entry, size) = files[order[i]]
            hashes.value[order[i]] = try TreeScanner.hashFile(fs: fs, path: entry.path, expectedSize: size, batch: nil, workspace: workspace).hash
        }
        for (i, file) in files.enumerated() {
            compare(ManifestEntry(path: file.entry.path, kind: .file(size: file.size, hash: hashes.value[i], blobSize: 0),
                                  metadata: file.entry.metadata))
        }
    }

    /// The names of each inode with several links: the first in path order is a file, the
    /// others hardlinks to it, with its metadata.
    private mutating func compareMultiplyLinked() throws {
        let inodes = multiplyLinked.values.map { $0.sorted { $0.entry.path < $1.entry.path } }
        multiplyLinked = [:]
        for names in inodes {
            let file = names[0].entry
            try compareFile(file, hashed: names[0].hashed)
            for name in names.dropFirst() {
                compare(ManifestEntry(path: name.entry.path, kind: .hardlink(target: file.path), metadata: file.metadata))
            }
        }
        try hashPending()
    }

    private mutating func compare(_ actual: ManifestEntry) {
        guard let i = manifest.index(of: actual.path) else { return unexpected.append(actual) }
        seen[i] = true
        let expected = manifest.entries[i]
        let aspects = ManifestDiff.compare(expected, actual)
        if !aspects.isEmpty { differences.append(ManifestDiff.Change(old: expected, new: actual, aspects: aspects)) }
    }
}
