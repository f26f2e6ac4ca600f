import CLinux
import Glibc

/// Per-thread scratch state for writing blobs: a read buffer, a reusable zlib stream, and, when
/// the system has libdeflate, its compressor and a buffer for a whole content.
public final class BlobWorkspace {
    let buffer: UnsafeMutableRawBufferPointer
    let deflater: ZlibDeflater
    let level: Int32
    let whole: LibDeflate.Compressor?
    /// The largest content libdeflate compresses in one call; larger ones stream through zlib.
    let wholeLimit: Int
    var content = [UInt8]()

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

    deinit { buffer.deallocate() }
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

    /// Stores the content read from `fd` (from its current offset to the end) under `hash`,
    /// unless the store or this batch has it already. Returns the blob's compressed size and
    /// whether this call wrote it.
    ///
    /// The content is hashed again while it is compressed, so a file that changed since it was
    /// hashed is refused rather than stored under the wrong name.
    public func store(from fd: Int32, source: String, hash: ContentHash,
                      workspace: BlobWorkspace) throws -> (blobSize: UInt64, isNew: Bool) {
        try store(hash: hash, source: source, workspace: workspace) { buffer in
            try Sys.read(fd, buffer.baseAddress!, buffer.count, path: source)
        }
    }

    /// Stores bytes held in memory.
    public func store(bytes: [UInt8], workspace: BlobWorkspace) throws -> (hash: ContentHash, blobSize: UInt64, isNew: Bool) {
        let hash = Blake2b.hash(bytes)
        var offset = 0
        let result = try store(hash: hash, source: "content \(hash.hex)", workspace: workspace) { buffer in
            let n = min(buffer.count, bytes.count - offset)
            bytes.withUnsafeBytes { source in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<(offset + n)]))
            }
            offset += n
            return n
        }
        return (hash, result.blobSize, result.isNew)
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

    /// Stores a content held in memory whose hash the caller computed from these very bytes:
    /// compressed in one call, with nothing read or hashed again.
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

    private func store(hash: ContentHash, source: String, workspace: BlobWorkspace,
                       readChunk: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> (blobSize: UInt64, isNew: Bool) {
        try write(hash) { sink in
            let hasher = Blake2b()
            let deflater = workspace.deflater
            try deflater.reset()
            // With libdeflate, a content that ends within its limit is compressed in one call; a
            // larger one goes on through zlib from what was read.
            var streaming = workspace.whole == nil
            workspace.content.removeAll(keepingCapacity: true)
            while true {
                let n = try readChunk(workspace.buffer)
                let chunk = UnsafeRawBufferPointer(rebasing: workspace.buffer[0..<n])
                hasher.update(chunk)
                if !streaming {
                    workspace.content.append(contentsOf: chunk)
                    if n == 0 {
                        try workspace.content.withUnsafeBytes { try workspace.whole!.compress($0, sink: sink) }
                        break
                    }
                    guard workspace.content.count > workspace.wholeLimit else { continue }
                    streaming = true
                    try workspace.content.withUnsafeBytes { try deflater.compress($0, finish: false, sink: sink) }
                    workspace.content.removeAll()
                    continue
                }
                try deflater.compress(chunk, finish: n == 0, sink: sink)
                if n == 0 { break }
            }
            guard hasher.finalize() == hash else {
                throw UpdError(.corrupt, "\(source): content changed while it was being stored")
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
