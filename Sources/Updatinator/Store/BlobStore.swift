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

    /// Contents up to this size are inflated whole, by libdeflate when the system has it; larger
    /// ones stream through zlib, so that memory stays bounded.
    static let wholeLimit: UInt64 = 16 << 20

    /// Inflates and verifies the blob file at `blobPath`, which should hold `hash`.
    static func read(blobAt blobPath: String, hash: ContentHash, size: UInt64,
                     sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard try readIfPresent(blobAt: blobPath, hash: hash, size: size, sink: sink) else {
            throw UpdError.system("open", blobPath, errno: ENOENT)
        }
    }

    /// `read(blobAt:)`, or false when there is no file at `blobPath`.
    static func readIfPresent(blobAt blobPath: String, hash: ContentHash, size: UInt64,
                              sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        guard let (file, blobSize) = try openBlob(blobPath, size: size) else { return false }
        if let library = LibDeflate.shared, size <= wholeLimit {
            try inflateWhole(file, blobSize: blobSize, library, blobPath, hash: hash, size: size).withUnsafeBytes { try sink($0) }
        } else {
            try inflateStreaming(file, blobSize: blobSize, blobPath, hash: hash, size: size, sink: sink)
        }
        return true
    }

    /// The verified content of the blob file at `blobPath`, whole; nil when there is no file there.
    static func contentIfPresent(blobAt blobPath: String, hash: ContentHash, size: UInt64) throws -> [UInt8]? {
        guard let (file, blobSize) = try openBlob(blobPath, size: size) else { return nil }
        if let library = LibDeflate.shared, size <= wholeLimit {
            return try inflateWhole(file, blobSize: blobSize, library, blobPath, hash: hash, size: size)
        }
        var content = [UInt8]()
        content.reserveCapacity(Int(size))
        try inflateStreaming(file, blobSize: blobSize, blobPath, hash: hash, size: size) { content += $0 }
        return content
    }

    /// The blob file at `blobPath` and its size, refused when larger than a content of `size`
    /// bytes can compress to; nil when there is none.
    private static func openBlob(_ blobPath: String, size: UInt64) throws -> (FileDescriptor, Int)? {
        let file: FileDescriptor
        do {
            file = try Sys.openRegularFile(blobPath)
        } catch let e as UpdError where e.errno == ENOENT || e.errno == ENOTDIR {
            return nil
        }
        let st = try Sys.fstat(file.rawValue, path: blobPath)
        // zlib never expands data beyond this; a larger blob is padding or garbage.
        let bound = size + size / 1024 + 64
        guard UInt64(st.st_size) <= bound else {
            throw UpdError(.corrupt, "\(blobPath): larger than the \(bound) bytes its content can compress to", path: blobPath)
        }
        return (file, Int(st.st_size))
    }

    private static func inflateWhole(_ file: FileDescriptor, blobSize: Int, _ library: LibDeflate, _ blobPath: String,
                                     hash: ContentHash, size: UInt64) throws -> [UInt8] {
        let blob = try [UInt8](unsafeUninitializedCapacity: blobSize) { buffer, count in
            while count < buffer.count {
                let n = try Sys.read(file.rawValue, buffer.baseAddress! + count, buffer.count - count, path: blobPath)
                if n == 0 { break }
                count += n
            }
        }
        let content = try [UInt8](unsafeUninitializedCapacity: Int(size)) { buffer, count in
            try blob.withUnsafeBytes { try library.inflate($0, into: UnsafeMutableRawBufferPointer(buffer), source: blobPath) }
            count = Int(size)
        }
        let hasher = Blake2b()
        hasher.update(content)
        try requireHash(hasher, hash, blobPath)
        return content
    }

    private static func inflateStreaming(_ file: FileDescriptor, blobSize: Int, _ blobPath: String, hash: ContentHash, size: UInt64,
                                         sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let hasher = Blake2b()
        let inflater = try ZlibInflater(expectedSize: size, source: blobPath)
        // (Sized to the blob: zeroing a whole chunk for each small blob costs more than reading it.)
        var buffer = [UInt8](repeating: 0, count: min(Self.chunkSize, blobSize + 1))
        try buffer.withUnsafeMutableBytes { buf in
            while true {
                let n = try Sys.read(file.rawValue, buf.baseAddress!, buf.count, path: blobPath)
                if n == 0 { break }
                try inflater.inflate(UnsafeRawBufferPointer(rebasing: buf[0..<n])) { chunk in
                    hasher.update(chunk)
                    try sink(chunk)
                }
            }
        }
        try inflater.finish()
        try requireHash(hasher, hash, blobPath)
    }

    private static func requireHash(_ hasher: Blake2b, _ hash: ContentHash, _ blobPath: String) throws {
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
