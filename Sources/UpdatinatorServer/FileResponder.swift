import Foundation
import Hummingbird
import NIOCore
import Updatinator

/// Serves files of a directory the way resumable downloads and HTTP caches need: a strong
/// ETag (size and modification time), `Last-Modified`, `Cache-Control` (immutable for content-
/// addressed files), `If-None-Match`, and single `Range` requests honouring `If-Range`.
/// Only paths whose every component is a valid name (no `..`, no hidden files, no slashes or
/// NULs after decoding) are opened, one component at a time from the root without following a
/// symbolic link at any of them (a repository copied with `rsync -a` keeps an upstream's
/// symlinks), and only regular files; anything refused is answered 404. The file work runs on
/// `threads`, so that a slow disk holds no thread that serves other requests.
struct FileResponder: Sendable {
    let root: String
    let metrics: ServerMetrics
    let threads: WorkerThreads

    /// A file's path below the root from URL path components, or nil when any is unsafe.
    static func relativePath(_ components: [String]) -> String? {
        guard !components.isEmpty, components.allSatisfy({ Manifest.problem(withName: $0) == nil }) else { return nil }
        return components.joined(separator: "/")
    }

    /// What the response needs of a file: its identity, size and modification time.
    struct FileInfo: Sendable, Equatable {
        let device: UInt64
        let inode: UInt64
        let size: Int
        let seconds: Int64
        let nanoseconds: Int

        init(_ st: stat) {
            (device, inode, size) = (UInt64(st.st_dev), UInt64(st.st_ino), Int(st.st_size))
            (seconds, nanoseconds) = (Int64(st.st_mtim.tv_sec), Int(st.st_mtim.tv_nsec))
        }
    }

    /// Opens the regular file `components` below `root` (no symlink, FIFO or device anywhere on
    /// the way) for `body`; anything refused is a 404.
    static func withFile<T>(root: String, _ components: [String], _ body: (Int32, FileInfo) throws -> T) throws -> T {
        let file: Updatinator.FileDescriptor
        do {
            file = try Updatinator.FileDescriptor.openRegularFile(beneath: root, components: components)
        } catch {
            throw HTTPError(.notFound)
        }
        var st = stat()
        guard fstat(file.rawValue, &st) == 0 else { throw HTTPError(.notFound) }
        return try body(file.rawValue, FileInfo(st))
    }

    func respond(to request: Request, path relative: String, immutable: Bool) async throws -> Response {
        let (root, components, threads) = (self.root, relative.split(separator: "/").map(String.init), self.threads)
        let info = try await threads.run { try Self.withFile(root: root, components) { $1 } }
        let size = info.size
        let modified = info.seconds
        let etag = "\"\(String(size, radix: 16))-\(String(modified, radix: 16))-\(String(info.nanoseconds, radix: 16))\""
        var headers: HTTPFields = [
            .eTag: etag,
            .lastModified: Self.httpDate(modified),
            .acceptRanges: "bytes",
            .cacheControl: immutable ? "public, max-age=31536000, immutable" : "no-cache",
            .contentType: relative.hasSuffix(".json") ? "application/json" : "application/octet-stream",
        ]
        if let match = request.headers[.ifNoneMatch], match == "*" || match.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == etag }) {
            return Response(status: .notModified, headers: headers)
        }
        var range = 0..<size
        var status = HTTPResponse.Status.ok
        if let header = request.headers[.range], request.headers[.ifRange].map({ $0 == etag }) ?? true {
            switch Self.parseRange(header, size: size) {
            case .whole: break
            case .unsatisfiable:
                headers[.contentRange] = "bytes */\(size)"
                return Response(status: .rangeNotSatisfiable, headers: headers)
            case .part(let part):
                range = part
                status = .partialContent
                headers[.contentRange] = "bytes \(part.lowerBound)-\(part.upperBound - 1)/\(size)"
            }
        }
        headers[.contentLength] = String(range.count)
        if request.method == .head { return Response(status: status, headers: headers) }
        let (metrics, part) = (self.metrics, range)
        /// Reads `count` bytes at `offset` of the file that was stat'ed, opened again the same
        /// way (refusing one replaced meanwhile), on a worker thread.
        @Sendable func read(_ offset: Int, _ count: Int) async throws -> ByteBuffer {
            let buffer = try await threads.run {
                try Self.withFile(root: root, components) { fd, now in
                    guard now == info else { throw HTTPError(.conflict) }
                    var buffer = ByteBufferAllocator().buffer(capacity: count)
                    _ = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw -> Int in
                        let n = pread(fd, raw.baseAddress, count, off_t(offset))
                        guard n == count else { throw HTTPError(.internalServerError) }
                        return n
                    }
                    return buffer
                }
            }
            metrics.served(bytes: count)
            return buffer
        }
        let chunk = 256 * 1024
        // Most blobs are small: read at once, sent in one piece.
        if part.count <= chunk {
            let buffer = try await read(part.lowerBound, part.count)
            return Response(status: status, headers: headers, body: .init(byteBuffer: buffer))
        }
        let body = ResponseBody(contentLength: part.count) { writer in
            var offset = part.lowerBound
            while offset < part.upperBound {
                let count = min(chunk, part.upperBound - offset)
                try await writer.write(try await read(offset, count))
                offset += count
            }
            try await writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }

    enum RangeRequest: Equatable {
        case whole
        case part(Range<Int>)
        case unsatisfiable
    }

    /// One `bytes=` range (`a-b`, `a-`, `-n`). Several ranges, or a malformed header, get the
    /// whole file, as RFC 9110 allows.
    static func parseRange(_ header: String, size: Int) -> RangeRequest {
        guard header.hasPrefix("bytes="), !header.contains(",") else { return .whole }
        let spec = header.dropFirst(6).trimmingCharacters(in: .whitespaces)
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .whole }
        if parts[0].isEmpty {
            guard let suffix = Int(parts[1]), suffix >= 0 else { return .whole }
            guard suffix > 0, size > 0 else { return .unsatisfiable }
            return .part(max(0, size - suffix)..<size)
        }
        guard let first = Int(parts[0]), first >= 0 else { return .whole }
        let last = parts[1].isEmpty ? Int.max : Int(parts[1])
        guard let last, last >= first else { return .whole }
        guard first < size else { return .unsatisfiable }
        return .part(first..<(min(last, size - 1) + 1))
    }

    static func httpDate(_ seconds: Int64) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
