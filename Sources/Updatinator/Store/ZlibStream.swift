import CZlib

/// Compresses a stream of bytes into a zlib stream.
final class ZlibDeflater {
    private var stream = z_stream()
    private var output = [UInt8](repeating: 0, count: 1 << 16)

    init(level: Int32) throws {
        let status = CZlib_deflateInit(&stream, level)
        guard status == Z_OK else { throw UpdError(.io, "zlib deflateInit failed with status \(status)") }
    }

    deinit { deflateEnd(&stream) }

    /// Starts a new stream with the same settings, keeping zlib's allocated state.
    func reset() throws {
        let status = deflateReset(&stream)
        guard status == Z_OK else { throw UpdError(.io, "zlib deflateReset failed with status \(status)") }
    }

    /// Feeds input; `sink` receives compressed bytes. Call with `finish` once, last.
    func compress(_ input: UnsafeRawBufferPointer, finish: Bool, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = UInt32(input.count)
        let flush = finish ? Z_FINISH : Z_NO_FLUSH
        while true {
            let (status, produced) = output.withUnsafeMutableBytes { out -> (Int32, Int) in
                stream.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = UInt32(out.count)
                let status = deflate(&stream, flush)
                return (status, out.count - Int(stream.avail_out))
            }
            guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
                throw UpdError(.io, "zlib deflate failed with status \(status)")
            }
            if produced > 0 { try output.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<produced])) } }
            if finish ? status == Z_STREAM_END : (stream.avail_in == 0 && produced < output.count) { break }
        }
    }
}

/// Inflates a zlib stream whose raw size is known, refusing more output than declared.
final class ZlibInflater {
    private var stream = z_stream()
    private var output = [UInt8](repeating: 0, count: 1 << 16)
    private let expectedSize: UInt64
    private let source: String
    private(set) var produced: UInt64 = 0
    private(set) var finished = false

    init(expectedSize: UInt64, source: String) throws {
        self.expectedSize = expectedSize
        self.source = source
        let status = CZlib_inflateInit(&stream)
        guard status == Z_OK else { throw UpdError(.io, "zlib inflateInit failed with status \(status)") }
    }

    deinit { inflateEnd(&stream) }

    /// Feeds compressed bytes; `sink` receives raw bytes. Stops with an error as soon as the
    /// output would exceed the declared size, or when data follows the end of the stream.
    func inflate(_ input: UnsafeRawBufferPointer, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = UInt32(input.count)
        while stream.avail_in > 0 {
            if finished { throw UpdError(.corrupt, "\(source): data after the end of the zlib stream") }
            // Never ask zlib for more than the declared size plus one byte.
            let room = Int(min(UInt64(output.count), expectedSize - produced + 1))
            let (status, count) = output.withUnsafeMutableBytes { out -> (Int32, Int) in
                stream.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = UInt32(room)
                let status = CZlib.inflate(&stream, Z_NO_FLUSH)
                return (status, room - Int(stream.avail_out))
            }
            switch status {
            case Z_OK, Z_BUF_ERROR: break
            case Z_STREAM_END: finished = true
            default: throw UpdError(.corrupt, "\(source): invalid zlib data (status \(status))")
            }
            produced += UInt64(count)
            if produced > expectedSize {
                throw UpdError(.corrupt, "\(source): inflates to more than its declared \(expectedSize) bytes")
            }
            if count > 0 { try output.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<count])) } }
            if status == Z_BUF_ERROR && count == 0 { break }
        }
    }

    /// Checks that the stream ended with exactly the declared size.
    func finish() throws {
        guard finished else { throw UpdError(.corrupt, "\(source): truncated zlib stream") }
        guard produced == expectedSize else {
            throw UpdError(.corrupt, "\(source): inflates to \(produced) bytes, not the declared \(expectedSize)")
        }
    }
}
