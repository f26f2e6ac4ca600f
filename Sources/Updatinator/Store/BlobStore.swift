import Glibc
import Synchronization

/// A content-addressed store of zlib-compressed blobs: `DIR/<hh>/<hash>`, named by the hash of the raw content.
///
/// Blobs are written atomically (temporary file, fsync, rename) and verified whenever read.
public final class BlobStore: Sendable {
    public let directory: String
    public let compressionLevel: Int32
    private let claims = Mutex<Set<ContentHash>>([])
    private static let chunkSize = 1 << 20

    public init(directory: String, compressionLevel: Int32 = RepoConfig.defaultCompressionLevel) {
        self.directory = directory
        self.compressionLevel = compressionLevel
    }

    public func path(for hash: ContentHash) -> String {
        let hex = hash.hex
        return "\(directory)/\(hex.prefix(2))/\(hex)"
    }

    /// The compressed size of a stored blob, or nil when the store lacks it.
    public func blobSize(of hash: ContentHash) throws -> UInt64? {
        guard let st = try Sys.lstatIfExists(path(for: hash)) else { return nil }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw UpdError(.corrupt, "\(path(for: hash)): not a regular file")
        }
        return UInt64(st.st_size)
    }

    /// Stores the content read from `fd` (from its current offset to the end) under `hash`,
    /// unless the store has it already. Returns the blob's compressed size and whether it was new.
    ///
    /// The content is hashed again while it is compressed, so a file that changed since it was
    /// hashed is refused rather than stored under the wrong name.
    public func store(from fd: Int32, source: String, hash: ContentHash) throws -> (blobSize: UInt64, isNew: Bool) {
        try store(hash: hash, source: source) { buffer in
            try Sys.read(fd, buffer.baseAddress!, buffer.count, path: source)
        }
    }

    /// Stores bytes held in memory.
    public func store(bytes: [UInt8]) throws -> (hash: ContentHash, blobSize: UInt64, isNew: Bool) {
        let hash = Blake2b.hash(bytes)
        var offset = 0
        let result = try store(hash: hash, source: "content \(hash.hex)") { buffer in
            let n = min(buffer.count, bytes.count - offset)
            bytes.withUnsafeBytes { source in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<(offset + n)]))
            }
            offset += n
            return n
        }
        return (hash, result.blobSize, result.isNew)
    }

    /// Compresses what `readChunk` yields (0 at the end) into the blob for `hash`.
    private func store(hash: ContentHash, source: String,
                       readChunk: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> (blobSize: UInt64, isNew: Bool) {
        if let size = try blobSize(of: hash) { return (size, false) }
        let claimed = claims.withLock { $0.insert(hash).inserted }
        guard claimed else {
            // Another thread is writing the same content: the blob exists once it finishes.
            while claims.withLock({ $0.contains(hash) }) { usleep(1000) }
            guard let size = try blobSize(of: hash) else {
                throw UpdError(.io, "\(path(for: hash)): a concurrent write of this blob failed")
            }
            return (size, false)
        }
        defer { _ = claims.withLock { $0.remove(hash) } }

        let final = path(for: hash)
        let directory = Sys.parentDirectory(of: final)
        try Sys.mkdirs(directory)
        let temporary = "\(directory)/.tmp.\(hash.hex.prefix(16)).\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        let out = try Sys.open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        do {
            let hasher = Blake2b()
            let deflater = try ZlibDeflater(level: compressionLevel)
            var written: UInt64 = 0
            let sink: (UnsafeRawBufferPointer) throws -> Void = { chunk in
                try Sys.writeAll(out, chunk, path: temporary)
                written += UInt64(chunk.count)
            }
            var buffer = [UInt8](repeating: 0, count: Self.chunkSize)
            try buffer.withUnsafeMutableBytes { buf in
                while true {
                    let n = try readChunk(buf)
                    let chunk = UnsafeRawBufferPointer(rebasing: buf[0..<n])
                    hasher.update(chunk)
                    try deflater.compress(chunk, finish: n == 0, sink: sink)
                    if n == 0 { break }
                }
            }
            guard hasher.finalize() == hash else {
                throw UpdError(.corrupt, "\(source): content changed while it was being stored")
            }
            try Sys.fsync(out, path: temporary)
            Sys.close(out)
            try Sys.rename(temporary, final)
            return (written, true)
        } catch {
            Sys.close(out)
            Sys.unlink(temporary)
            throw error
        }
    }

    /// Inflates a blob, verifying its hash and size, and passes the raw content to `sink` in chunks.
    /// Stops at once when the blob inflates past `size` (a decompression bomb).
    public func read(_ hash: ContentHash, size: UInt64, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let blobPath = path(for: hash)
        let fd = try Sys.open(blobPath, O_RDONLY | O_NOFOLLOW)
        defer { Sys.close(fd) }
        let hasher = Blake2b()
        let inflater = try ZlibInflater(expectedSize: size, source: blobPath)
        var buffer = [UInt8](repeating: 0, count: Self.chunkSize)
        try buffer.withUnsafeMutableBytes { buf in
            while true {
                let n = try Sys.read(fd, buf.baseAddress!, buf.count, path: blobPath)
                if n == 0 { break }
                try inflater.inflate(UnsafeRawBufferPointer(rebasing: buf[0..<n])) { chunk in
                    hasher.update(chunk)
                    try sink(chunk)
                }
            }
        }
        try inflater.finish()
        let actual = hasher.finalize()
        guard actual == hash else {
            throw UpdError(.corrupt, "\(blobPath): content hash is \(actual.hex), not the blob's name")
        }
    }

    /// Reads a whole blob into memory, verified.
    public func readAll(_ hash: ContentHash, size: UInt64) throws -> [UInt8] {
        var result = [UInt8]()
        result.reserveCapacity(Int(min(size, 1 << 26)))
        try read(hash, size: size) { result.append(contentsOf: $0) }
        return result
    }

    /// Checks that a blob exists, inflates to `size` bytes and matches its name.
    public func verify(_ hash: ContentHash, size: UInt64) throws {
        try read(hash, size: size) { _ in }
    }

    /// Makes the names of all stored blobs durable (one fsync per fan-out directory).
    public func syncDirectories() throws {
        guard let dir = opendir(directory) else { return }
        defer { closedir(dir) }
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name.count == 2 { try Sys.fsyncDirectory("\(directory)/\(name)") }
        }
        try Sys.fsyncDirectory(directory)
    }
}
