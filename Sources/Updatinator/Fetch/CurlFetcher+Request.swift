import Foundation
import Glibc

extension CurlFetcher {
    /// One HTTP (or `file://`) request as the transport runs it: where it goes, the most a server
    /// may send, and what becomes of the answer.
    struct Request {
        /// What errors name it by: "blob ab12…", a repository path, "POST URL".
        let label: String
        /// The path below a base URL.
        let path: String
        /// The base URLs it may go to, in the caller's order; nil for the fetcher's mirrors.
        let bases: [String]?
        /// The most a server may send: more is cut off.
        let maxBytes: UInt64
        let method: Method
        /// The blob's hash, for a blob (what `Flow` admits and announces).
        var hash: ContentHash? = nil
        /// For a download the server sends as it computes it (a streamed batch), which may pause
        /// for as long as a chunk takes: no low-speed limit, and the whole download must be done
        /// within this many seconds instead.
        var patienceSeconds: Int? = nil

        enum Method {
            /// A GET into a partial file, resumed after an interruption, verified, and renamed.
            case download(FileDownload)
            /// A GET of byte ranges (increasing, not adjacent), answered 206 with exactly those.
            case ranges([ByteRange])
            /// An HTTP request (a POST of a JSON body, a GET without one) with extra header lines,
            /// whose answer (any HTTP status) must come within the deadline.
            case call(verb: String, body: [UInt8]?, headers: [String], deadlineSeconds: Int)
        }

        /// The answer is kept in memory (ranges, a POST).
        var answersInMemory: Bool {
            if case .download = method { return false }
            return true
        }
    }

    /// A part of a file: `bytes` bytes from `offset`.
    struct ByteRange: Equatable {
        let offset: UInt64
        let bytes: UInt64
    }

    /// What a request that succeeded gave.
    enum Answer {
        /// A download verified and renamed into place.
        case stored
        /// Each range's bytes, in order.
        case parts([[UInt8]])
        case response(Response)
    }

    /// The answer to a POST: its status and body.
    public struct Response: Sendable {
        public let status: Int
        public let body: [UInt8]
    }

    /// A download's file: its partial file, how it is checked, and the directory it is written in.
    struct FileDownload {
        let destination: String
        let partial: String
        let place: Place
        /// Checks a complete download; throwing means the mirror sent a corrupt file. Nil for a
        /// file that cannot be checked on its own (a delta, a manifest checked by its caller).
        let verify: ((String) throws -> Void)?
        /// Checks the bytes of a partial download before it is resumed from its end; throwing
        /// `.corrupt` means they cannot be the start of the file, which is then downloaded from
        /// its first byte. Nil when a start cannot be checked on its own (a delta).
        var verifyPrefix: ((String) throws -> Void)? = nil
        /// Whether a file already at the destination is the download, done (a blob: content
        /// addressed, and verified where it is read); otherwise it is downloaded again.
        var keepsStored = false

        /// Whether the destination holds a regular file that counts as the download.
        func isStored() throws -> Bool {
            guard keepsStored, let st = try Sys.status(in: place.openDirectory(), place.name, display: destination) else { return false }
            return st.st_mode & S_IFMT == S_IFREG
        }

        /// Verifies the complete partial download and gives it its name (a corrupt one throws
        /// `.corrupt` and is removed).
        func promote() throws {
            do {
                try verify?(partial)
            } catch let e as UpdError where e.code == .corrupt {
                removePartial()
                throw e
            }
            try Sys.rename(in: place.openDirectory(), place.partialName, place.name, display: destination)
        }

        /// Removes the partial download, if its directory can still be opened safely.
        func removePartial() {
            if let directory = try? place.openDirectory() { Sys.unlink(in: directory, place.partialName) }
        }

        /// Opens the partial download for appending (creating it); anything but a regular file
        /// there (a symlink, a FIFO) is refused (`unsafe`).
        func openPartial() throws -> FileDescriptor {
            try Sys.openRegularFile(in: place.openDirectory(), place.partialName, flags: O_WRONLY | O_CREAT | O_APPEND, mode: 0o644,
                                    display: partial)
        }
    }

    /// A download's directory and the names of its file and partial file in it. Every write goes
    /// through a descriptor of that directory and never follows a symlink at its names.
    struct Place {
        let destination: String
        let name: String
        let partialName: String
        /// Opens the directory, refusing (`unsafe`) a symlink on the way where the caller did not name it.
        let openDirectory: () throws -> FileDescriptor
    }
}

extension CurlFetcher {
    /// POSTs a JSON body to `path` below `server` (an http or https URL) and returns the answer,
    /// whatever its HTTP status. A refused or dropped connection is retried with back-off; one
    /// that never succeeds, an answer over `maxResponseBytes`, or none within `deadlineSeconds`
    /// is a `network` error.
    public func postJSON(_ path: String, to server: String, body: [UInt8], maxResponseBytes: Int = 64 * 1024,
                         deadlineSeconds: Int = 30) throws -> Response {
        try postJSON(path, to: server, body: body, maxResponseBytes: maxResponseBytes, deadlineSeconds: deadlineSeconds, flow: nil)
    }

    func postJSON(_ path: String, to server: String, body: [UInt8], maxResponseBytes: Int = 64 * 1024, deadlineSeconds: Int,
                  flow: Flow?) throws -> Response {
        try call("POST", path, to: server, body: body, headers: [], maxResponseBytes: maxResponseBytes, deadlineSeconds: deadlineSeconds, flow: flow)
    }

    /// Sends an HTTP request (`verb`, with a JSON body or none, and extra header lines) to `path`
    /// below `server` and returns the answer, whatever its HTTP status; retried and bounded as
    /// `postJSON` is.
    public func call(_ verb: String, _ path: String, to server: String, body: [UInt8]?, headers: [String],
                     maxResponseBytes: Int = 64 * 1024, deadlineSeconds: Int = 30) throws -> Response {
        try call(verb, path, to: server, body: body, headers: headers, maxResponseBytes: maxResponseBytes, deadlineSeconds: deadlineSeconds, flow: nil)
    }

    func call(_ verb: String, _ path: String, to server: String, body: [UInt8]?, headers: [String],
              maxResponseBytes: Int, deadlineSeconds: Int, flow: Flow?) throws -> Response {
        guard server.hasPrefix("http://") || server.hasPrefix("https://") else {
            throw UpdError(.usage, "\(server): a server URL must be http:// or https://")
        }
        let base = server.hasSuffix("/") ? String(server.dropLast()) : server
        let relative = path.hasPrefix("/") ? String(path.dropFirst()) : path
        let request = Request(label: "\(verb) \(base)/\(relative)", path: relative, bases: [base], maxBytes: UInt64(maxResponseBytes),
                              method: .call(verb: verb, body: body, headers: headers, deadlineSeconds: deadlineSeconds))
        // An answer of a few bytes is no download to show.
        var quiet = flow ?? Flow()
        quiet.showsProgress = false
        guard case .response(let response) = try run([request], flow: quiet).answers[0] else { preconditionFailure() }
        return response
    }

    /// GETs byte ranges of the repository file at `path` in one request (`Range: bytes=a-b,c-d,…`)
    /// from the http(s) mirrors, in the fetcher's order; each range's bytes, in order, and what
    /// the request did. A mirror that answers anything but exactly those ranges (one without
    /// Range support answers 200) is passed over; when none does, it is a `network` error and the
    /// caller fetches another way. Ranges must be in increasing order and not adjacent.
    func getRanges(_ path: String, _ ranges: [ByteRange], flow: Flow?) throws -> (parts: [[UInt8]], report: FetchReport) {
        precondition(!ranges.isEmpty)
        let bases = options.mirrors.filter { $0.hasPrefix("http://") || $0.hasPrefix("https://") }
        guard !bases.isEmpty else { throw UpdError(.network, "\(path): no http(s) mirror to request byte ranges from") }
        let total = ranges.reduce(0) { $0 + $1.bytes }
        // The multipart answer's part headers and boundaries come on top of the ranges.
        let request = Request(label: "ranges of \(path)", path: path, bases: bases, maxBytes: total + UInt64(ranges.count) * 256 + 1024,
                              method: .ranges(ranges))
        let (report, answers) = try run([request], flow: flow)
        guard case .parts(let parts) = answers[0] else { preconditionFailure() }
        return (parts, report)
    }

    /// The parts of a 206 answer to a Range request, which must be exactly `ranges`, in order: a
    /// single range's body, or several as multipart/byteranges.
    static func parts(of body: [UInt8], contentType: String, ranges: [ByteRange]) throws -> [[UInt8]] {
        let total = ranges.reduce(0) { $0 + Int($1.bytes) }
        if ranges.count == 1 {
            guard body.count == total else { throw UpdError(.network, "a range of \(body.count) bytes, not \(total)") }
            return [body]
        }
        guard contentType.hasPrefix("multipart/byteranges"), let b = contentType.range(of: "boundary=") else {
            throw UpdError(.network, "answered several ranges as '\(contentType)', not multipart/byteranges")
        }
        let boundary = contentType[b.upperBound...].trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
        return try parseByteRanges(body, boundary: boundary, ranges: ranges)
    }

    /// The parts of a multipart/byteranges body, which must be exactly `ranges`, in order.
    static func parseByteRanges(_ body: [UInt8], boundary: String, ranges: [ByteRange]) throws -> [[UInt8]] {
        let delimiter = Array("--\(boundary)".utf8), blank = Array("\r\n\r\n".utf8)
        func find(_ needle: [UInt8], from start: Int) -> Int? {
            guard needle.count <= body.count else { return nil }
            var i = start
            while i + needle.count <= body.count {
                if body[i] == needle[0] && body[i..<i + needle.count].elementsEqual(needle) { return i }
                i += 1
            }
            return nil
        }
        var parts = [[UInt8]]()
        var position = 0
        for range in ranges {
            guard let start = find(delimiter, from: position), let end = find(blank, from: start) else {
                throw UpdError(.network, "a multipart answer with fewer parts than ranges")
            }
            let headers = String(decoding: body[start..<end], as: UTF8.self).lowercased()
            let expected = "content-range: bytes \(range.offset)-\(range.offset + range.bytes - 1)/"
            guard headers.contains(expected) else { throw UpdError(.network, "a part is not the range asked for") }
            let data = end + blank.count
            guard data + Int(range.bytes) <= body.count else { throw UpdError(.network, "a part is truncated") }
            parts.append(Array(body[data..<data + Int(range.bytes)]))
            position = data + Int(range.bytes)
        }
        return parts
    }
}
