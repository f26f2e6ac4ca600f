import Foundation
import Glibc

/// A content-addressed store of zlib-compressed blobs: `DIR/<hh>/<hash>`, named by the hash of the raw content.
///
/// Blobs are written atomically (temporary file, flushed to disk, then renamed: see `BlobBatch`)
/// and verified whenever read.
public final class BlobStore: Sendable {
    public let directory: String
    public let compressionLevel: Int32
    static let chunkSize = 1 << 20

    public init(directory: String, compressionLevel: Int32 = RepoConfig.defaultCompressionLevel) {
        self.directory = directory
        self.compressionLevel = compressionLevel
    }

    public func path(for hash: ContentHash) -> String {
        let hex = hash.hex
        return "\(directory)/\(hex.prefix(2))/\(hex)"
    }

    /// Where a download lands: the blob, or the delta it is patched from.
    public func path(for request: BlobRequest) -> String {
        guard let delta = request.delta else { return path(for: request.hash) }
        return "\(directory)/\(request.hash.hex.prefix(2))/\(delta.base.hex)-\(request.hash.hex)"
    }

    /// The compressed size of a stored blob, or nil when the store lacks it.
    public func blobSize(of hash: ContentHash) throws -> UInt64? {
        guard let st = try Sys.lstatIfExists(path(for: hash)) else { return nil }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw UpdError(.corrupt, "\(path(for: hash)): not a regular file")
        }
        return UInt64(st.st_size)
    }

    /// Opens the directory `DIR/<prefix>` that blobs of that hash prefix live in, creating it
    /// (and the store's directory) with `create`. The store's directory is the caller's to name;
    /// a symlink or anything but a directory at the prefix is refused (`unsafe`), so that no
    /// write in a shared cache (`CACHE/ab -> /etc`) lands elsewhere.
    func openDirectory(prefix: String, create: Bool) throws -> FileDescriptor {
        if create { try Sys.mkdirs(directory) }
        return try Sys.openDirectory(beneath: Sys.openDirectory(directory), [prefix], create: create ? 0o755 : nil,
                                     display: "\(directory)/\(prefix)")
    }

    /// Writes a downloaded blob or delta that needs no flush (the downloads of an apply, removed
    /// when it starts again), never through a symlink.
    func writeDownload(_ bytes: ArraySlice<UInt8>, for request: BlobRequest) throws {
        let final = path(for: request)
        let name = String(final.split(separator: "/").last!)
        let file = try Sys.openRegularFile(in: openDirectory(prefix: String(request.hash.hex.prefix(2)), create: true), name,
                                           flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600, display: final)
        try bytes.withUnsafeBytes { try Sys.writeAll(file.rawValue, $0, path: final) }
    }

    /// Deletes a downloaded blob or delta, never through a symlink; nothing there is not an error.
    func remove(_ request: BlobRequest) {
        let name = String(path(for: request).split(separator: "/").last!)
        if let directory = try? openDirectory(prefix: String(request.hash.hex.prefix(2)), create: false) {
            Sys.unlink(in: directory, name)
        }
    }

    /// Deletes every blob, delta and partial download except the downloads of `keep`, complete or
    /// partial (each is verified when it is used or completed).
    func removeAll(except keep: [BlobRequest]) throws {
        let files = FileManager.default
        let kept = Set(keep.flatMap { request in
            let name = String(path(for: request).split(separator: "/").last!)
            return ["\(request.hash.hex.prefix(2))/\(name)", "\(request.hash.hex.prefix(2))/.partial-\(name)"]
        })
        for prefix in (try? files.contentsOfDirectory(atPath: directory)) ?? [] {
            let subdirectory = try openDirectory(prefix: prefix, create: false)
            for name in (try? files.contentsOfDirectory(atPath: "\(directory)/\(prefix)")) ?? [] where !kept.contains("\(prefix)/\(name)") {
                Sys.unlink(in: subdirectory, name)
            }
        }
    }

    /// Stores bytes held in memory, durably, unless the store has them already.
    public func store(bytes: [UInt8]) throws -> (hash: ContentHash, blobSize: UInt64, isNew: Bool) {
        let batch = BlobBatch(store: self)
        let result = try batch.store(bytes: bytes, workspace: BlobWorkspace(level: compressionLevel))
        try batch.commit()
        return result
    }

    /// Inflates a blob, verifying its hash and size, and passes the raw content to `sink` in chunks.
    /// Stops at once when the blob inflates past `size` (a decompression bomb).
    public func read(_ hash: ContentHash, size: UInt64, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try Self.read(blobAt: path(for: hash), hash: hash, size: size, sink: sink)
    }

    /// Inflates and verifies the blob file at `blobPath`, which should hold `hash`.
    static func read(blobAt blobPath: String, hash: ContentHash, size: UInt64,
                     sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let file = try Sys.openRegularFile(blobPath)
        let fd = file.rawValue
        let st = try Sys.fstat(fd, path: blobPath)
        // zlib never expands data beyond this; a larger blob is padding or garbage.
        let bound = size + size / 1024 + 64
        guard UInt64(st.st_size) <= bound else {
            throw UpdError(.corrupt, "\(blobPath): larger than the \(bound) bytes its content can compress to", path: blobPath)
        }
        let hasher = Blake2b()
        let inflater = try ZlibInflater(expectedSize: size, source: blobPath)
        // (Sized to the blob: zeroing a whole chunk for each small blob costs more than reading it.)
        var buffer = [UInt8](repeating: 0, count: Int(min(UInt64(Self.chunkSize), UInt64(st.st_size) + 1)))
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

    /// Checks that the file at `path` can be the start of a blob of a content of `size` bytes:
    /// a zlib stream that inflates without error, to no more than `size`, and does not end yet.
    /// Its hash is checked only once the blob is whole; this catches most damage to a partial
    /// download before the rest of it is fetched.
    static func checkPrefix(blobAt path: String, size: UInt64) throws {
        let file = try Sys.openRegularFile(path)
        let inflater = try ZlibInflater(expectedSize: size, source: path)
        var buffer = [UInt8](repeating: 0, count: Self.chunkSize)
        try buffer.withUnsafeMutableBytes { buf in
            while true {
                let n = try Sys.read(file.rawValue, buf.baseAddress!, buf.count, path: path)
                if n == 0 { break }
                try inflater.inflate(UnsafeRawBufferPointer(rebasing: buf[0..<n])) { _ in }
            }
        }
        if inflater.finished { throw UpdError(.corrupt, "\(path): its zlib stream ends before the blob does", path: path) }
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
}
