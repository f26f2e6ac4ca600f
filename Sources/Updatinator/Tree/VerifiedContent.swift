import Glibc

/// Reading a file that should hold a known content: a regular file of the size, whose bytes
/// hash to the hash. Never reads more than the size and one byte.
enum VerifiedContent {
    /// Streams the file's bytes to `sink`; whether it was that content (when false, `sink` may
    /// have received part of it).
    static func read(_ fd: Int32, size: UInt64, hash: ContentHash, display: String,
                     sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        let st = try Sys.fstat(fd, path: display)
        guard st.st_mode & S_IFMT == S_IFREG, UInt64(st.st_size) == size else { return false }
        let hasher = Blake2b()
        var total: UInt64 = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        try buffer.withUnsafeMutableBytes { buf in
            while total <= size {
                let n = try Sys.read(fd, buf.baseAddress!, min(buf.count, Int(size - total) + 1), path: display)
                if n == 0 { break }
                let chunk = UnsafeRawBufferPointer(rebasing: buf[0..<n])
                hasher.update(chunk)
                try sink(chunk)
                total += UInt64(n)
            }
        }
        return total == size && hasher.finalize() == hash
    }

    /// Refuses (`.corrupt`) an empty content whose hash is not the hash of no bytes: there is
    /// nothing to verify while writing it, so its hash is checked here.
    static func requireEmpty(_ hash: ContentHash, display: String) throws {
        guard hash == ContentHash.empty else {
            throw UpdError(.corrupt, "\(display): the manifest gives an empty file the hash \(hash.hex), which is not the hash of no bytes",
                           path: display)
        }
    }
}
