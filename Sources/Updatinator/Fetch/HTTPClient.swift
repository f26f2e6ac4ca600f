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
        guard let easy = curl_easy_init() else { throw UpdError(.network, "libcurl: cannot create a transfer") }
        defer { curl_easy_cleanup(easy) }
        precondition(CurlFetcher.curlReady, "libcurl failed to initialize")
        let headers = curl_slist_append(nil, "Content-Type: application/json")
        defer { curl_slist_free_all(headers) }
        let sink = Sink(limit: maxResponseBytes)
        let context = Unmanaged.passRetained(sink)
        defer { context.release() }
        _ = CCurl_easy_setopt_str(easy, CURLOPT_URL, url)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_TIMEOUT, timeoutSeconds)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_POSTFIELDSIZE, body.count)
        body.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { _ = CCurl_easy_setopt_ptr(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress)) }
        }
        _ = CCurl_easy_setopt_ptr(easy, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(headers))
        _ = CCurl_easy_setopt_write(easy, write)
        _ = CCurl_easy_setopt_ptr(easy, CURLOPT_WRITEDATA, context.toOpaque())
        let result = curl_easy_perform(easy)
        if sink.exceeded { throw UpdError(.network, "\(url): the answer is larger than \(maxResponseBytes) bytes") }
        guard result == CURLE_OK else {
            throw UpdError(.network, "\(url): \(String(cString: curl_easy_strerror(result)))")
        }
        var status = 0
        _ = CCurl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        return Response(status: status, body: sink.body)
    }
}
