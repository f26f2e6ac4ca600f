import CZstd
import Glibc

/// A content-pair delta: one content encoded against another with zstd's prefix mode (what
/// `zstd --patch-from` does), so that it is reusable by every image move with that transition.
///
/// The file is a fixed header, then one zstd frame:
///
///     "UPDDELTA" (8 bytes) | format 1 (1 byte) | base hash (32) | target hash (32) | target size (8, little-endian)
///
/// Nothing in a delta is trusted: the header must name the pair that was asked for, the output
/// may not exceed the declared size, and the result is accepted only if it hashes to the target.
public enum ContentDelta {
    public static let magic = Array("UPDDELTA".utf8)
    public static let format: UInt8 = 1
    public static let headerBytes = 8 + 1 + 32 + 32 + 8
    /// The largest window (base plus target) a delta may need: 1 GiB, a bound on decoder memory.
    public static let maxWindowLog: Int32 = 30
    public static let defaultLevel: Int32 = 19

    public struct Header: Equatable, Sendable {
        public let base: ContentHash
        public let target: ContentHash
        public let targetSize: UInt64

        public var encoded: [UInt8] {
            var bytes = ContentDelta.magic + [ContentDelta.format] + base.bytes + target.bytes
            withUnsafeBytes(of: targetSize.littleEndian) { bytes += $0 }
            return bytes
        }

        public static func parse(_ bytes: some Collection<UInt8>, source: String) throws -> Header {
            let b = Array(bytes.prefix(ContentDelta.headerBytes))
            guard b.count == ContentDelta.headerBytes, Array(b[0..<8]) == ContentDelta.magic else {
                throw UpdError(.corrupt, "\(source): not a content delta")
            }
            guard b[8] == ContentDelta.format else {
                throw UpdError(.corrupt, "\(source): content delta format \(b[8]) is not supported")
            }
            let size = b[73..<81].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            return Header(base: ContentHash(bytes: Array(b[9..<41]))!, target: ContentHash(bytes: Array(b[41..<73]))!,
                          targetSize: size)
        }
    }

    /// The relative path of a delta in a repository: `deltas/<hh>/<base>-<target>`.
    public static func path(base: ContentHash, target: ContentHash) -> String {
        "deltas/\(target.hex.prefix(2))/\(base.hex)-\(target.hex)"
    }

    /// The window log a pair needs: the target may refer back to any byte of the base.
    static func windowLog(baseSize: Int, targetSize: Int) throws -> Int32 {
        let span = max(baseSize + targetSize, 1024)
        let log = Int32(64 - UInt64(span - 1).leadingZeroBitCount)
        guard log <= maxWindowLog else {
            throw UpdError(.usage, "a delta over \(span) bytes of base and target exceeds the \(1 << maxWindowLog)-byte window")
        }
        return max(log, 10)
    }

    /// Encodes `target` against `base`: the header, then one zstd frame.
    public static func encode(base: [UInt8], target: [UInt8], level: Int32 = defaultLevel) throws -> [UInt8] {
        let header = Header(base: Blake2b.hash(base), target: Blake2b.hash(target), targetSize: UInt64(target.count))
        return header.encoded + (try compress(target, prefix: base, level: level))
    }

    /// One zstd frame of `input`, compressed with `prefix` as its prefix (zstd's prefix mode, which
    /// a decoder must be given too): a window that covers both, and long-distance matching above
    /// 4 MiB, since the match finders index only part of a large prefix (as `zstd --patch-from`).
    static func compress(_ input: [UInt8], prefix: [UInt8], level: Int32) throws -> [UInt8] {
        guard let cctx = ZSTD_createCCtx() else { throw UpdError(.io, "zstd: cannot create a compression context") }
        defer { ZSTD_freeCCtx(cctx) }
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level), "set the level")
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, try windowLog(baseSize: prefix.count, targetSize: input.count)), "set the window")
        if prefix.count + input.count > 1 << 22 {
            try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_enableLongDistanceMatching, 1), "enable long matching")
        }
        var output = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count))
        let written = try prefix.withUnsafeBytes { p in
            if !prefix.isEmpty { try check(ZSTD_CCtx_refPrefix(cctx, p.baseAddress, p.count), "use the prefix") }
            return try input.withUnsafeBytes { i in
                try output.withUnsafeMutableBytes { o in
                    try check(ZSTD_compress2(cctx, o.baseAddress, o.count, i.baseAddress, i.count), "compress")
                }
            }
        }
        return Array(output[0..<written])
    }

    /// Decodes a delta read in chunks from `next` (which returns an empty chunk at the end)
    /// against `base`, streaming the result to `sink`. Throws `.corrupt` unless the header names
    /// `base` and `target` and the output is exactly the target (its size, then its hash).
    public static func decode(base: [UInt8], target: ContentHash, size: UInt64, source: String,
                              next: () throws -> [UInt8], sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        var pending = [UInt8]()
        while pending.count < headerBytes {
            let chunk = try next()
            if chunk.isEmpty { break }
            pending += chunk
        }
        let header = try Header.parse(pending, source: source)
        guard header.base == Blake2b.hash(base), header.target == target, header.targetSize == size else {
            throw UpdError(.corrupt, "\(source): the delta is for another pair of contents")
        }
        guard let dctx = ZSTD_createDCtx() else { throw UpdError(.io, "zstd: cannot create a decompression context") }
        defer { ZSTD_freeDCtx(dctx) }
        // No larger window than the pair needs, which is what the encoder used: a frame asking
        // for more memory is refused.
        try check(ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, try windowLog(baseSize: base.count, targetSize: Int(size))),
                  "set the window limit")
        let hasher = Blake2b()
        var produced: UInt64 = 0
        var frameDone = false
        var output = [UInt8](repeating: 0, count: ZSTD_DStreamOutSize())
        try base.withUnsafeBytes { b in
            try check(ZSTD_DCtx_refPrefix(dctx, b.baseAddress, b.count), "use the base")
            var input = Array(pending[headerBytes...])
            while !frameDone {
                if input.isEmpty {
                    input = try next()
                    guard !input.isEmpty else { throw UpdError(.corrupt, "\(source): the delta is truncated") }
                }
                let leftover = try input.withUnsafeBytes { i -> Bool in
                    var inBuffer = ZSTD_inBuffer(src: i.baseAddress, size: i.count, pos: 0)
                    var full = false
                    repeat {
                        let (status, count) = try output.withUnsafeMutableBytes { o -> (Int, Int) in
                            var outBuffer = ZSTD_outBuffer(dst: o.baseAddress, size: o.count, pos: 0)
                            let status = ZSTD_decompressStream(dctx, &outBuffer, &inBuffer)
                            if ZSTD_isError(status) != 0 {
                                throw UpdError(.corrupt, "\(source): the delta does not decode (\(String(cString: ZSTD_getErrorName(status))))")
                            }
                            return (status, outBuffer.pos)
                        }
                        produced += UInt64(count)
                        guard produced <= size else { throw UpdError(.corrupt, "\(source): the delta decodes to more than \(size) bytes") }
                        if count > 0 {
                            try output.withUnsafeBytes { o in
                                let chunk = UnsafeRawBufferPointer(rebasing: o[0..<count])
                                hasher.update(chunk)
                                try sink(chunk)
                            }
                        }
                        frameDone = status == 0
                        full = count == output.count
                    } while !frameDone && (inBuffer.pos < inBuffer.size || full)
                    return inBuffer.pos < inBuffer.size
                }
                if frameDone && leftover { throw UpdError(.corrupt, "\(source): bytes follow the delta's frame") }
                input = []
            }
        }
        if try !next().isEmpty { throw UpdError(.corrupt, "\(source): bytes follow the delta's frame") }
        guard produced == size else { throw UpdError(.corrupt, "\(source): the delta is truncated") }
        guard hasher.finalize() == target else { throw UpdError(.corrupt, "\(source): the patched content does not match its hash") }
    }

    /// Decodes the delta file at `path` (see the streaming `decode`).
    public static func decode(deltaAt path: String, base: [UInt8], target: ContentHash, size: UInt64,
                              sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let fd = try Sys.open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
        defer { Sys.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        try decode(base: base, target: target, size: size, source: path, next: {
            let n = try buffer.withUnsafeMutableBytes { try Sys.read(fd, $0.baseAddress!, $0.count, path: path) }
            return Array(buffer[0..<n])
        }, sink: sink)
    }

    /// Decodes a whole delta held in memory (see the streaming `decode`).
    public static func decode(_ delta: [UInt8], base: [UInt8], target: ContentHash, size: UInt64, source: String) throws -> [UInt8] {
        var result = [UInt8]()
        result.reserveCapacity(Int(min(size, 1 << 30)))
        var given = false
        try decode(base: base, target: target, size: size, source: source,
                   next: { defer { given = true }; return given ? [] : delta },
                   sink: { result += $0 })
        return result
    }

    /// The status of a zstd call, which must not be an error.
    @discardableResult
    static func check(_ status: Int, _ what: String) throws -> Int {
        if ZSTD_isError(status) != 0 {
            throw UpdError(.io, "zstd: cannot \(what): \(String(cString: ZSTD_getErrorName(status)))")
        }
        return status
    }
}
