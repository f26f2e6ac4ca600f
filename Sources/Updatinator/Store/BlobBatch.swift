import CLinux
import Glibc

/// Per-thread scratch state for writing blobs: a read buffer, a reusable zlib stream, and, when
/// the system has libdeflate, its compressor; and room for a whole content.
public final class BlobWorkspace {
    let buffer: UnsafeMutableRawBufferPointer
    let deflater: ZlibDeflater
    let level: Int32
    let whole: LibDeflate.Compressor?
    /// The largest content read whole into memory (and there compressed in one call by
    /// libdeflate); larger ones are read and compressed by zlib in chunks.
    let wholeLimit: Int
    private var content = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    /// With `libdeflate` false, every blob is written by zlib (what runs without the library).
    public init(level: Int32, libdeflate: Bool = true, wholeLimit: Int = 64 << 20) throws {
        self.level = level
        self.wholeLimit = wholeLimit
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: BlobStore.chunkSize, alignment: 64)
        deflater = try ZlibDeflater(level: level)
        whole = libdeflate ? LibDeflate.shared.flatMap { LibDeflate.Compressor(library: $0, level: Self.libdeflateLevel(zlib: level)) } : nil
    }

    /// The libdeflate level that stands for a repository's zlib level: one lower from 6 up.
    /// libdeflate's 5 makes the blobs of a Debian bookworm tree smaller than zlib's 6 does
    /// (49.9 against 50.4 MB) in 82 % of the time its own 6 takes (which makes 49.7 MB).
    static func libdeflateLevel(zlib level: Int32) -> Int32 { level >= 6 ? level - 1 : level }

    deinit {
        buffer.deallocate()
        content.deallocate()
    }

    /// Reads the `size` bytes from `fd`'s offset to its end (at most `wholeLimit`) into memory
    /// that stays valid until the next call; nil when the file holds another amount.
    func readWhole(_ fd: Int32, size: Int, display: String) throws -> UnsafeRawBufferPointer? {
        precondition(size <= wholeLimit, "a content larger than the workspace's limit")
        if content.count <= size {
            content.deallocate()
            content = UnsafeMutableRawBufferPointer.allocate(byteCount: size + 1, alignment: 64)
        }
        var got = 0
        while got <= size {
            let n = try Sys.read(fd, content.baseAddress! + got, size + 1 - got, path: display)
            if n == 0 { break }
            got += n
        }
        return got == size ? UnsafeRawBufferPointer(rebasing: content[0..<size]) : nil
    }
}

/// Writes many blobs into a store with one flush to disk.
///
/// Each blob is compressed into a temporary file beside its final name. `commit` flushes the
/// filesystem (syncfs) and only then renames every temporary file to its name, and flushes
/// again: a blob's name never exists before its complete content is on disk. One flush per
/// batch instead of one fsync per blob makes a repository of thousands of small files cheap.
/// (Starting each blob's writeback as it is written costs more CPU than the flush saves: the
/// caller can do other work while `commit` waits for the disk.)
/// Temporary files of a batch that is never committed are removed when it is released.
public final class BlobBatch: Sendable {
    public let store: BlobStore

    private enum State {
        case writing
        case written(temporary: String, size: UInt64)
    }

    private let states = Locked<[ContentHash: State]>([:])
    private let directories = Locked<[String: FileDescriptor]>([:])

    public init(store: BlobStore) {
        self.store = store
    }

    deinit {
        states.withLock { states in
            for case .written(let temporary, _) in states.values { Sys.unlink(temporary) }
        }
    }

    /// Stores the `size` bytes read from `fd` (from its current offset to the end) under `hash`,
    /// unless the store or this batch has it already. Returns the blob's compressed size and
    /// whether this call wrote it.
    ///
    /// The content is hashed again as it is read, so a file that changed since it was hashed is
    /// refused rather than stored under the wrong name.
    public func store(from fd: Int32, size: UInt64, source: String, hash: ContentHash,
                      workspace: BlobWorkspace) throws -> (blobSize: UInt64, isNew: Bool) {
        if let size = try store.blobSize(of: hash) { return (size, false) }
        if size <= UInt64(workspace.wholeLimit) {
            guard let content = try workspace.readWhole(fd, size: Int(size), display: source),
                  Blake2b.hash(content) == hash else { throw Self.changed(source) }
            return try store(hashed: content, hash: hash, workspace: workspace)
        }
        return try write(hash) { sink in
            let hasher = Blake2b()
            let deflater = workspace.deflater
            try deflater.reset()
            var total: UInt64 = 0
            while true {
                let n = try Sys.read(fd, workspace.buffer.baseAddress!, workspace.buffer.count, path: source)
                let chunk = UnsafeRawBufferPointer(rebasing: workspace.buffer[0..<n])
                hasher.update(chunk)
                total += UInt64(n)
                try deflater.compress(chunk, finish: n == 0, sink: sink)
                if n == 0 { break }
            }
            guard total == size, hasher.finalize() == hash else { throw Self.changed(source) }
        }
    }

    private static func changed(_ source: String) -> UpdError {
        UpdError(.corrupt, "\(source): content changed while it was being stored")
    }

    /// Stores bytes held in memory.
    public func store(bytes: [UInt8], workspace: BlobWorkspace) throws -> (hash: ContentHash, blobSize: UInt64, isNew: Bool) {
        let hash = Blake2b.hash(bytes)
        let result = try bytes.withUnsafeBytes { try store(hashed: $0, hash: hash, workspace: workspace) }
        return (hash, result.blobSize, result.isNew)
    }

    /// Stores a content held in memory whose hash the caller computed from these very bytes:
    /// compressed in one call (by libdeflate within the workspace's limit), nothing read or
    /// hashed again.
    public func store(hashed content: UnsafeRawBufferPointer, hash: ContentHash,
                      workspace: BlobWorkspace) throws -> (blobSize: UInt64, isNew: Bool) {
        try write(hash) { sink in
            if let whole = workspace.whole, content.count <= workspace.wholeLimit {
                try whole.compress(content, sink: sink)
            } else {
                try workspace.deflater.reset()
                try workspace.deflater.compress(content, finish: true, sink: sink)
            }
        }
    }

    /// Makes every blob of the batch durable, then gives each its name. Without `durable`, a
    /// cache that is emptied after a crash skips the flushes.
    public func commit(durable: Bool = true) throws {
        let pending = states.withLock { states -> [(ContentHash, String)] in
            let written = states.compactMap { hash, state -> (ContentHash, String)? in
                if case .written(let temporary, _) = state { return (hash, temporary) }
                return nil
            }
            states.removeAll()
            return written
        }
        guard !pending.isEmpty else { return }
        do {
            if durable { try syncFilesystem() }
            for (hash, temporary) in pending {
                // Through the prefix directory's descriptor: a symlink swapped in for it is not followed.
                let directory = try directory(prefix: String(hash.hex.prefix(2)))
                try Sys.rename(in: directory, String(temporary.split(separator: "/").last!), hash.hex, display: store.path(for: hash))
            }
            if durable { try syncFilesystem() }
        } catch {
            for (_, temporary) in pending { Sys.unlink(temporary) }
            throw error
        }
    }

    private func syncFilesystem() throws {
        let fd = try Sys.open(store.directory, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(fd) }
        if CLinux_syncfs(fd) != 0 { throw UpdError.system("syncfs", store.directory) }
    }

    /// The size of a blob written by this batch, waiting while another thread writes it.
    /// Returns nil when the batch does not have it (and claims it for the caller).
    private func claimOrWait(_ hash: ContentHash) throws -> UInt64? {
        while true {
            let state = states.withLock { states -> State? in
                if let s = states[hash] { return s }
                states[hash] = .writing
                return nil
            }
            switch state {
            case nil: return nil
            case .written(_, let size): return size
            case .writing: usleep(500)
            }
        }
    }

    /// The open directory of a hash prefix, opened (or made) once per batch.
    private func directory(prefix: String) throws -> FileDescriptor {
        if let open = directories.withLock({ $0[prefix] }) { return open }
        let opened = try store.openDirectory(prefix: prefix, create: true)
        return directories.withLock { directories in
            if let raced = directories[prefix] { return raced }
            directories[prefix] = opened
            return opened
        }
    }

    /// Writes the blob of `hash` unless the store or this batch has it: `compress` gives the
    /// compressed bytes to its sink, which writes them to a temporary file beside the blob's name.
    private func write(_ hash: ContentHash,
                       compress: (_ sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> (blobSize: UInt64, isNew: Bool) {
        if let size = try store.blobSize(of: hash) { return (size, false) }
        if let size = try claimOrWait(hash) { return (size, false) }
        let prefixName = String(hash.hex.prefix(2))
        let name = ".tmp.\(hash.hex.prefix(16)).\(Self.processID).\(UInt32.random(in: 0...UInt32.max))"
        let final = store.path(for: hash)
        let temporary = "\(Sys.parentDirectory(of: final))/\(name)"
        var file: FileDescriptor?
        do {
            let out = try Sys.openRegularFile(in: try directory(prefix: prefixName), name, flags: O_WRONLY | O_CREAT | O_EXCL,
                                              mode: 0o644, display: final)
            file = out
            var written: UInt64 = 0
            try compress { chunk in
                try Sys.writeAll(out.rawValue, chunk, path: final)
                written += UInt64(chunk.count)
            }
            out.close()
            states.withLock { $0[hash] = .written(temporary: temporary, size: written) }
            return (written, true)
        } catch {
            file?.close()
            Sys.unlink(temporary)
            _ = states.withLock { $0.removeValue(forKey: hash) }
            throw error
        }
    }

    private static let processID = getpid()
}
