import Foundation
import Glibc
import Hummingbird
import NIOCore
import Updatinator

extension BatchService {
    /// `GET /v1/batch/KEY` of a batch being computed: its frames as the computation writes them
    /// (`ContentBatch.partialPath`), until it is whole; nil when it is not being computed. Its
    /// size is not known yet, so a Range request gets the whole batch (its bytes are the same
    /// each time). A computation that fails ends the response early: the client sees a
    /// truncated download.
    func streamComputing(_ key: String, request: Request, metrics: ServerMetrics) async throws -> Response? {
        guard await isComputing(key) else { return nil }
        let path = path(forKey: key), threads = fileThreads
        // The partial file appears when the computation starts (it may wait in the queue).
        var opened: GrowingFile?
        while opened == nil {
            opened = try await threads.run { GrowingFile(opening: [ContentBatch.partialPath(path), path]) }
            if opened == nil {
                guard await isComputing(key) else { throw HTTPError(.notFound) }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        let headers: HTTPFields = [.contentType: "application/octet-stream", .cacheControl: "no-store"]
        if request.method == .head { return Response(status: .ok, headers: headers) }
        let file = opened!
        let body = ResponseBody { writer in
            var ended = false
            while true {
                let buffer = try await threads.run { try file.next() }
                if buffer.readableBytes > 0 {
                    metrics.served(bytes: buffer.readableBytes)
                    try await writer.write(buffer)
                    continue
                }
                // All that was written is sent: once the computation has ended (and one more
                // read found nothing), the batch is whole when it is this file, renamed.
                if ended {
                    guard try await threads.run({ file.isWhole(at: path) }) else {
                        throw HTTPError(.internalServerError, message: "the batch's computation failed")
                    }
                    break
                }
                if await self.isComputing(key) {
                    try await Task.sleep(for: .milliseconds(50))
                } else {
                    ended = true
                }
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }
}

/// A file read from its start as another thread appends to it, one piece at a time (used from
/// one task at a time).
private final class GrowingFile: @unchecked Sendable {
    private let fd: Int32
    private var offset = 0

    /// The first of `paths` that opens, or nil.
    init?(opening paths: [String]) {
        guard let fd = paths.lazy.map({ Glibc.open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }).first(where: { $0 >= 0 }) else { return nil }
        self.fd = fd
    }

    deinit { close(fd) }

    /// The next bytes written, up to 256 KiB; none when it has nothing more yet.
    func next() throws -> ByteBuffer {
        let chunk = 256 * 1024
        var buffer = ByteBufferAllocator().buffer(capacity: chunk)
        _ = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: chunk) { raw -> Int in
            let n = pread(fd, raw.baseAddress, chunk, off_t(offset))
            guard n >= 0 else { throw HTTPError(.internalServerError) }
            return n
        }
        offset += buffer.readableBytes
        return buffer
    }

    /// Whether this file is now the one at `path`, read to its end.
    func isWhole(at path: String) -> Bool {
        var mine = stat(), named = stat()
        return fstat(fd, &mine) == 0 && lstat(path, &named) == 0 && mine.st_ino == named.st_ino && mine.st_dev == named.st_dev
            && Int(named.st_size) == offset
    }
}
