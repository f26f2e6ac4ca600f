import CZstd

/// Compressed copies of a repository's text documents (`FILE.zst` beside a manifest or a delta
/// index): a client downloads the copy when a mirror has it, decompresses it, and checks the
/// signature over the decompressed bytes, exactly as for the plain file. A Debian manifest of
/// 700 KB takes 200 KB this way. The plain file stays, for clients and tools that ignore copies.
public enum CompressedCopy {
    public static let suffix = ".zst"

    /// Writes `bytes` to `path` and its compressed copy (`compressed(bytes)` unless given) to
    /// `path.zst`, each atomically (the copy first).
    public static func write(_ path: String, _ bytes: [UInt8], compressed copy: [UInt8]? = nil) throws {
        try Sys.writeFileAtomically(path + suffix, copy ?? compressed(bytes))
        try Sys.writeFileAtomically(path, bytes)
    }

    /// The copy's bytes.
    public static func compressed(_ bytes: [UInt8]) throws -> [UInt8] {
        try ContentDelta.compress(bytes, prefix: [], level: 19)
    }

    /// The decompressed bytes of a copy; `.corrupt` when it does not decode or would exceed `limit`.
    public static func decompress(_ bytes: [UInt8], limit: Int, source: String) throws -> [UInt8] {
        guard let dctx = ZSTD_createDCtx() else { throw UpdError(.io, "zstd: cannot create a decompression context") }
        defer { ZSTD_freeDCtx(dctx) }
        var result = [UInt8]()
        var output = [UInt8](repeating: 0, count: ZSTD_DStreamOutSize())
        try bytes.withUnsafeBytes { input in
            var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
            var status = 1
            while status != 0 {
                let (s, count) = try output.withUnsafeMutableBytes { o -> (Int, Int) in
                    var outBuffer = ZSTD_outBuffer(dst: o.baseAddress, size: o.count, pos: 0)
                    let s = ZSTD_decompressStream(dctx, &outBuffer, &inBuffer)
                    if ZSTD_isError(s) != 0 { throw UpdError(.corrupt, "\(source): does not decode (\(String(cString: ZSTD_getErrorName(s))))") }
                    return (s, outBuffer.pos)
                }
                status = s
                result += output[0..<count]
                guard result.count <= limit else { throw UpdError(.corrupt, "\(source): decompresses to more than \(limit) bytes") }
                if status != 0 && inBuffer.pos == inBuffer.size && count == 0 { throw UpdError(.corrupt, "\(source): truncated") }
            }
            guard inBuffer.pos == inBuffer.size else { throw UpdError(.corrupt, "\(source): bytes follow the compressed frame") }
        }
        return result
    }
}

extension CompressedCopy {
    /// The most bytes a copy of a document of `bytes` bytes can take (zstd's bound): what a
    /// mirror may send for it.
    public static func maxBytes(decompressingTo bytes: UInt64) -> UInt64 {
        UInt64(ZSTD_compressBound(Int(bytes)))
    }
}
