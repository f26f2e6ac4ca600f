import CLinux
import Glibc

/// Walks a tree without following symlinks and describes it as a manifest, hashing every
/// distinct regular file on all cores and, when given a blob store, storing its content.
public struct TreeScanner {
    /// Counts reported while contents are hashed.
    public struct Progress: Sendable {
        public var filesDone: Int
        public var filesTotal: Int
        public var bytesDone: UInt64
        public var bytesTotal: UInt64
    }

    /// What a scan did.
    public struct Statistics: Sendable {
        public var entries = 0
        public var contents = 0
        public var blobsNew = 0
        public var blobsReused = 0
        /// Raw bytes of the distinct contents.
        public var rawBytes: UInt64 = 0
        /// Compressed bytes of the distinct contents' blobs.
        public var blobBytes: UInt64 = 0
    }

    public let root: String
    public var blobs: BlobStore?
    /// Whether blobs are written by libdeflate when the system has it (see `BlobWorkspace`).
    public var libdeflate = true
    public var workers = Parallel.defaultWorkers
    /// Paths left out of the scan with what is beneath them (a running system's own, `MachinePaths`).
    public var excluded: Set<ManifestPath> = []
    public var progress: (@Sendable (Progress) -> Void)?

    public init(root: String, blobs: BlobStore? = nil) {
        self.root = root
        self.blobs = blobs
    }

    private struct Item {
        let path: ManifestPath
        let st: stat
        let linkTarget: [UInt8]
        let xattrs: [ExtendedAttribute]
    }

    /// Scans the tree into a manifest named `image` `version`; the new blobs are committed (see
    /// `BlobBatch`) before it returns.
    public func scan(image: String, version: String, created: Int64? = nil) throws -> (Manifest, Statistics) {
        let (manifest, stats, batch) = try scanUncommitted(image: image, version: version, created: created)
        try batch?.commit()
        return (manifest, stats)
    }

    /// `scan`, leaving the blobs it wrote to the caller to commit: their names do not exist until then.
    func scanUncommitted(image: String, version: String, created: Int64?) throws -> (Manifest, Statistics, BlobBatch?) {
        let fs = FileSystemPath(root: root)
        var items = [Item]()
        try Self.walk(root: root, fs: fs, excluding: excluded) { items.append(Item(path: $0, st: $1, linkTarget: $2, xattrs: $3)) }
        items.sort { $0.path < $1.path }

        // The first name of an inode (in path order) is its file entry; later names are hardlinks.
        var firstName = [InodeKey: ManifestPath]()
        var fileIndices = [Int]()
        var hardlinkTargets = [Int: ManifestPath]()
        for (i, item) in items.enumerated() where item.st.st_mode & S_IFMT == S_IFREG {
            let key = InodeKey(item.st)
            if item.st.st_nlink > 1, let first = firstName[key] {
                hardlinkTargets[i] = first
            } else {
                if item.st.st_nlink > 1 { firstName[key] = item.path }
                fileIndices.append(i)
            }
        }

        let (results, batch) = try hashContents(items: items, fileIndices: fileIndices, fs: fs)
        var stats = Statistics(entries: items.count)
        var seen = Set<ContentHash>()
        var entries = [ManifestEntry]()
        entries.reserveCapacity(items.count)
        var resultIndex = 0
        for (i, item) in items.enumerated() {
            let (metadata, special) = try Self.describe(item.path, item.st, linkTarget: item.linkTarget, xattrs: item.xattrs, fs: fs)
            if let special {
                entries.append(ManifestEntry(path: item.path, kind: special, metadata: metadata))
            } else if let target = hardlinkTargets[i] {
                // (The target is an earlier entry: its inode's first name in path order.)
                let metadata = entries[Manifest.index(of: target, in: entries)!].metadata
                entries.append(ManifestEntry(path: item.path, kind: .hardlink(target: target), metadata: metadata))
            } else {
                let r = results[resultIndex]
                resultIndex += 1
                entries.append(ManifestEntry(path: item.path, kind: .file(size: UInt64(item.st.st_size), hash: r.hash, blobSize: r.blobSize),
                                             metadata: metadata))
                if seen.insert(r.hash).inserted {
                    stats.contents += 1
                    stats.rawBytes += UInt64(item.st.st_size)
                    stats.blobBytes += r.blobSize
                }
                if r.isNew { stats.blobsNew += 1 }
            }
        }
        stats.blobsReused = blobs == nil ? 0 : stats.contents - stats.blobsNew
        return (Manifest(image: image, version: version, created: created, entries: entries), stats, batch)
    }

    /// An inode, by its filesystem and number.
    struct InodeKey: Hashable {
        let device: UInt
        let inode: UInt

        init(_ st: stat) { (device, inode) = (st.st_dev, st.st_ino) }
    }

    struct ContentResult {
        var hash = ContentHash(bytes: [UInt8](repeating: 0, count: 32))!
        var blobSize: UInt64 = 0
        var isNew = false
    }

    static func major(_ dev: UInt) -> UInt32 { UInt32(truncatingIfNeeded: ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff)) }
    static func minor(_ dev: UInt) -> UInt32 { UInt32(truncatingIfNeeded: (dev & 0xff) | ((dev >> 12) & ~0xff)) }

    /// Calls `visit` with every entry of the directory `root` (the root first), depth first,
    /// never following symlinks, without the state directory and the `excluded` paths and what
    /// is beneath them: its path, status, symlink target (empty for others) and extended attributes.
    static func walk(root: String, fs: FileSystemPath, excluding excluded: Set<ManifestPath> = [],
                     _ visit: (ManifestPath, stat, [UInt8], [ExtendedAttribute]) throws -> Void) throws {
        // (As given: a root named with a trailing slash is the directory a symlink there names.)
        guard let rootStat = try Sys.lstatIfExists(root), rootStat.st_mode & S_IFMT == S_IFDIR else {
            throw UpdError(.usage, "\(root) is not a directory")
        }
        try visit(.root, rootStat, [], try readXattrs(fs, .root))
        var pending = [ManifestPath.root]
        while let directory = pending.popLast() {
            for name in try listDirectory(fs, directory) {
                if directory.isRoot && name == ManifestPath.stateDirectoryName { continue }
                let path = directory.appending(name)
                if excluded.contains(path) { continue }
                if let problem = ManifestPath.problem(with: path.bytes) {
                    throw UpdError(.usage, "\(fs.display(path)): cannot be part of an image: \(problem)")
                }
                var st = stat()
                if fs.withCString(path, { Glibc.lstat($0, &st) }) != 0 { throw UpdError.system("lstat", fs.display(path)) }
                try visit(path, st, st.st_mode & S_IFMT == S_IFLNK ? try readLink(fs, path) : [], try readXattrs(fs, path))
                if st.st_mode & S_IFMT == S_IFDIR { pending.append(path) }
            }
        }
    }

    /// The metadata of the entry at `path`, and its kind unless it is a regular file (whose
    /// content, or first name, its caller finds). Refuses what cannot be part of an image.
    static func describe(_ path: ManifestPath, _ st: stat, linkTarget: [UInt8], xattrs: [ExtendedAttribute],
                         fs: FileSystemPath) throws -> (metadata: Metadata, kind: EntryKind?) {
        // The manifest parser refuses (uid_t)-1, which chown reads as "leave unchanged".
        guard st.st_uid != uid_t.max, st.st_gid != gid_t.max else {
            throw UpdError(.usage, "\(fs.display(path)): an owner or group of 4294967295 cannot be part of an image")
        }
        let metadata = Metadata(mode: UInt32(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid,
                                mtime: Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: UInt32(st.st_mtim.tv_nsec)),
                                xattrs: xattrs)
        switch st.st_mode & S_IFMT {
        case S_IFDIR: return (metadata, .directory)
        case S_IFLNK: return (metadata, .symlink(target: linkTarget))
        case S_IFCHR: return (metadata, .characterDevice(major: major(st.st_rdev), minor: minor(st.st_rdev)))
        case S_IFBLK: return (metadata, .blockDevice(major: major(st.st_rdev), minor: minor(st.st_rdev)))
        case S_IFIFO: return (metadata, .fifo)
        case S_IFREG: return (metadata, nil)
        default: throw UpdError(.usage, "\(fs.display(path)): sockets and other special files cannot be part of an image")
        }
    }

    private static func listDirectory(_ fs: FileSystemPath, _ path: ManifestPath) throws -> [[UInt8]] {
        guard let dir = fs.withCString(path, { opendir($0) }) else { throw UpdError.system("opendir", fs.display(path)) }
        defer { closedir(dir) }
        var names = [[UInt8]]()
        while true {
            errno = 0
            guard let e = readdir(dir) else {
                if errno != 0 { throw UpdError.system("readdir", fs.display(path)) }
                break
            }
            let name = withUnsafeBytes(of: e.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
            if name == [46] || name == [46, 46] { continue }
            names.append(name)
        }
        return names
    }

    private static func readLink(_ fs: FileSystemPath, _ path: ManifestPath) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = fs.withCString(path) { p in
            buffer.withUnsafeMutableBufferPointer { readlink(p, UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count) }
        }
        guard n >= 0 else { throw UpdError.system("readlink", fs.display(path)) }
        return Array(buffer[0..<n])
    }

    /// Reads every extended attribute of an entry, sorted by name.
    private static func readXattrs(_ fs: FileSystemPath, _ path: ManifestPath) throws -> [ExtendedAttribute] {
        try fs.withCString(path) { p -> [ExtendedAttribute] in
            var result = [ExtendedAttribute]()
            for nameBytes in try XattrNames.read(call: "llistxattr", display: fs.display(path), { llistxattr(p, $0, $1) }) {
                var cName = nameBytes + [0]
                let value: [UInt8] = try cName.withUnsafeMutableBufferPointer { nb in
                    let np = UnsafeRawPointer(nb.baseAddress!).assumingMemoryBound(to: CChar.self)
                    let length = lgetxattr(p, np, nil, 0)
                    guard length >= 0 else { throw UpdError.system("lgetxattr", fs.display(path)) }
                    var value = [UInt8](repeating: 0, count: length)
                    let n = value.withUnsafeMutableBytes { lgetxattr(p, np, $0.baseAddress, length) }
                    guard n >= 0 else { throw UpdError.system("lgetxattr", fs.display(path)) }
                    return Array(value[0..<n])
                }
                result.append(ExtendedAttribute(name: nameBytes, value: value))
            }
            return result.sorted { $0.name.lexicographicallyPrecedes($1.name) }
        }
    }

    /// Hashes (and stores, in the batch returned, not yet committed) the content of each listed
    /// file, on all workers.
    private func hashContents(items: [Item], fileIndices: [Int], fs: FileSystemPath) throws -> ([ContentResult], BlobBatch?) {
        let results = UnsafeMutableBufferPointer<ContentResult>.allocate(capacity: fileIndices.count)
        results.initialize(repeating: ContentResult())
        defer {
            _ = results.deinitialize()
            results.deallocate()
        }
        let sendableResults = UnsafeSendable(results)
        let total = fileIndices.reduce(UInt64(0)) { $0 + UInt64(items[$1].st.st_size) }
        let done = Locked<(files: Int, bytes: UInt64)>((0, 0))
        let batch = blobs.map { BlobBatch(store: $0) }
        let (level, libdeflate) = (blobs?.compressionLevel ?? RepoConfig.defaultCompressionLevel, self.libdeflate)
        let progress = self.progress
        let paths = fileIndices.map { items[$0].path }
        let sizes = fileIndices.map { UInt64(items[$0].st.st_size) }
        // The largest first, so that no worker is left with a large file when the others are done.
        let order = sizes.indices.sorted { sizes[$0] > sizes[$1] }
        try Parallel.forEach(fileIndices.count, workers: workers, perWorker: { try BlobWorkspace(level: level, libdeflate: libdeflate) }) { workspace, i in
            let n = order[i]
            let r = try Self.hashFile(fs: fs, path: paths[n], expectedSize: sizes[n], batch: batch, workspace: workspace)
            sendableResults.value[n] = r
            let snapshot = done.withLock { d -> (Int, UInt64) in
                d.files += 1
                d.bytes += sizes[n]
                return (d.files, d.bytes)
            }
            progress?(Progress(filesDone: snapshot.0, filesTotal: paths.count, bytesDone: snapshot.1, bytesTotal: total))
        }
        return (Array(results), batch)
    }

    private static func changedSize(_ display: String) -> UpdError {
        UpdError(.io, "\(display): file changed size while it was being read")
    }

    static func hashFile(fs: FileSystemPath, path: ManifestPath, expectedSize: UInt64, batch: BlobBatch?,
                                 workspace: BlobWorkspace) throws -> ContentResult {
        let display = fs.display(path)
        var fd = fs.withCString(path) { Glibc.open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | CLinux_O_NOATIME) }
        if fd < 0 && errno == EPERM { fd = fs.withCString(path) { Glibc.open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) } }
        guard fd >= 0 else { throw UpdError.system("open", display) }
        defer { Sys.close(fd) }
        if let batch, expectedSize <= UInt64(workspace.wholeLimit) {
            // Read once into memory: hashed, then compressed from the same bytes.
            guard let content = try workspace.readWhole(fd, size: Int(expectedSize), display: display) else {
                throw Self.changedSize(display)
            }
            var result = ContentResult(hash: Blake2b.hash(content))
            (result.blobSize, result.isNew) = try batch.store(hashed: content, hash: result.hash, workspace: workspace)
            return result
        }
        let hasher = Blake2b()
        var size: UInt64 = 0
        let buffer = workspace.buffer
        while true {
            let n = try Sys.read(fd, buffer.baseAddress!, buffer.count, path: display)
            if n == 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            size += UInt64(n)
        }
        guard size == expectedSize else { throw Self.changedSize(display) }
        var result = ContentResult(hash: hasher.finalize())
        if let batch {
            guard lseek(fd, 0, SEEK_SET) == 0 else { throw UpdError.system("lseek", display) }
            (result.blobSize, result.isNew) = try batch.store(from: fd, size: size, source: display, hash: result.hash, workspace: workspace)
        }
        return result
    }
}

/// A content that was verified by its hash as it was written, and the identity of the file
/// written: while the file keeps its inode, size and change time, nothing has changed its bytes
/// (a write, truncation or new link moves the change time, which no call can set back). The
/// change time comes from the kernel's coarse clock, so a write within the same tick as the
/// recorded status goes unseen: a window no wider than the one any check has between reading a
/// file and reporting on the tree.
struct KnownContent: Sendable {
    let hash: ContentHash
    private let identity: Identity

    private struct Identity: Equatable {
        let device: UInt, inode: UInt, size: Int, changed: Int, changedNanoseconds: Int

        init(_ st: stat) {
            (device, inode, size) = (st.st_dev, st.st_ino, st.st_size)
            (changed, changedNanoseconds) = (st.st_ctim.tv_sec, st.st_ctim.tv_nsec)
        }
    }

    init(hash: ContentHash, of st: stat) {
        self.hash = hash
        identity = Identity(st)
    }

    func matches(_ st: stat) -> Bool { Identity(st) == identity }
}

/// Carries a value across a concurrency boundary where the caller guarantees disjoint access.
struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
