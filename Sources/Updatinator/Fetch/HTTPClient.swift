import CCurl
import Foundation

/// Small JSON requests to a school server (`POST /v1/check`, `/v1/report`), with libcurl.
public enum HTTPClient {
    /// The answer to a request: its status and body (at most `maxResponseBytes`).
    public struct Response: Sendable {
        public let status: Int
        public let body: [UInt8]
    }

    private final class Sink {
        var body = [UInt8]()
        let limit: Int
        var exceeded = false
        init(limit: Int) { self.limit = limit }
    }

    private static let write: CCurl_write_callback = { data, size, count, context in
        let sink = Unmanaged<Sink>.fromOpaque(context!).takeUnretainedValue()
        let n = size * count
        guard sink.body.count + n <= sink.limit else {
            sink.exceeded = true
            return 0
        }
        data!.withMemoryRebound(to: UInt8.self, capacity: n) { sink.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: n)) }
        return n
    }

    /// POSTs a JSON body to `url`; a transport failure is a `network` error, any HTTP status is
    /// returned.
    public static func postJSON(_ url: String, body: [UInt8], maxResponseBytes: Int = 64 * 1024,
                                timeoutSeconds: Int = 30) throws -> Response {
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw UpdError(.usage, "\(url): a server URL must be http:// or https://")
        }
        let headers = curl_slist_append(nil, "Content-Type: application/json")
        defer { curl_slist_free_all(headers) }
        return try perform(url, maxResponseBytes: maxResponseBytes, timeoutSeconds: timeoutSeconds, configure: { easy in
            _ = CCurl_easy_setopt_long(easy, CURLOPT_POSTFIELDSIZE, body.count)
            body.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { _ = CCurl_easy_setopt_ptr(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress)) }
            }
            _ = CCurl_easy_setopt_ptr(easy, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(headers))
        }).response
    }

    /// One request with libcurl's easy interface: `configure` adds to the URL, timeout and body
    /// sink; a transport failure or a body over `maxResponseBytes` is a `network` error. The
    /// answer, and its Content-Type.
    private static func perform(_ url: String, maxResponseBytes: Int, timeoutSeconds: Int,
                                configure: (UnsafeMutableRawPointer) -> Void) throws -> (response: Response, contentType: String) {
        guard let easy = curl_easy_init() else { throw UpdError(.network, "libcurl: cannot create a transfer") }
        defer { curl_easy_cleanup(easy) }
        precondition(CurlFetcher.curlReady, "libcurl failed to initialize")
        let sink = Sink(limit: maxResponseBytes)
        let context = Unmanaged.passRetained(sink)
        defer { context.release() }
        _ = CCurl_easy_setopt_str(easy, CURLOPT_URL, url)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_TIMEOUT, timeoutSeconds)
        _ = CCurl_easy_setopt_write(easy, write)
        _ = CCurl_easy_setopt_ptr(easy, CURLOPT_WRITEDATA, context.toOpaque())
        configure(easy)
        let result = curl_easy_perform(easy)
        if sink.exceeded { throw UpdError(.network, "\(url): the answer is larger than \(maxResponseBytes) bytes") }
        guard result == CURLE_OK else {
            throw UpdError(.network, "\(url): \(String(cString: curl_easy_strerror(result)))")
        }
        var status = 0
        _ = CCurl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        var type: UnsafeMutableRawPointer?
        _ = CCurl_easy_getinfo_ptr(easy, CURLINFO_CONTENT_TYPE, &type)
        let contentType = type.map { String(cString: $0.assumingMemoryBound(to: CChar.self)) } ?? ""
        return (Response(status: status, body: sink.body), contentType)
    }
}

extension HTTPClient {
    /// GETs byte ranges of `url` in one request (`Range: bytes=a-b,c-d,…`); each range's bytes,
    /// in order. Throws `.network` unless the server answers 206 with exactly those ranges (a
    /// server without Range support answers 200: the caller then fetches another way). Ranges
    /// must be in increasing order and not adjacent.
    public static func getRanges(_ url: String, _ ranges: [(offset: UInt64, bytes: UInt64)], rateLimit: UInt64? = nil,
                                 timeoutSeconds: Int = 600) throws -> [[UInt8]] {
        precondition(!ranges.isEmpty)
        let total = ranges.reduce(0) { $0 + Int($1.bytes) }
        let header = ranges.map { "\($0.offset)-\($0.offset + $0.bytes - 1)" }.joined(separator: ",")
        let (answer, contentType) = try perform(url, maxResponseBytes: total + ranges.count * 256 + 1024, timeoutSeconds: timeoutSeconds) { easy in
            _ = CCurl_easy_setopt_str(easy, CURLOPT_RANGE, header)
            if let rateLimit, rateLimit > 0 { _ = CCurl_easy_setopt_off(easy, CURLOPT_MAX_RECV_SPEED_LARGE, curl_off_t(rateLimit)) }
        }
        guard answer.status == 206 else { throw UpdError(.network, "\(url): answered \(answer.status) to a Range request, not 206") }
        if ranges.count == 1 {
            guard answer.body.count == total else { throw UpdError(.network, "\(url): a range of \(answer.body.count) bytes, not \(total)") }
            return [answer.body]
        }
        guard contentType.hasPrefix("multipart/byteranges"), let b = contentType.range(of: "boundary=") else {
            throw UpdError(.network, "\(url): answered several ranges as '\(contentType)', not multipart/byteranges")
        }
        let boundary = contentType[b.upperBound...].trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
        return try parseByteRanges(answer.body, boundary: boundary, ranges: ranges, source: url)
    }

    /// The parts of a multipart/byteranges body, which must be exactly `ranges`, in order.
    static func parseByteRanges(_ body: [UInt8], boundary: String, ranges: [(offset: UInt64, bytes: UInt64)], source: String) throws -> [[UInt8]] {
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
                throw UpdError(.network, "\(source): a multipart answer with fewer parts than ranges")
            }
            let headers = String(decoding: body[start..<end], as: UTF8.self).lowercased()
            let expected = "content-range: bytes \(range.offset)-\(range.offset + range.bytes - 1)/"
            guard headers.contains(expected) else { throw UpdError(.network, "\(source): a part is not the range asked for") }
            let data = end + blank.count
            guard data + Int(range.bytes) <= body.count else { throw UpdError(.network, "\(source): a part is truncated") }
            parts.append(Array(body[data..<data + Int(range.bytes)]))
            position = data + Int(range.bytes)
        }
        return parts
    }
}
