import Foundation

extension RequestSigner {
    /// POSTs `body` to `path` below `server`, signed. When the server refuses the request's time
    /// (the sender's clock is off), its answer carries the server's time: the request is signed
    /// again at that time and sent once more. The server's time is not signed, so a forged one
    /// costs a retry and nothing else. A refusal as a replay (the transport resent a request
    /// whose answer was lost) is answered the same way, with a fresh nonce. The answer, whatever its status.
    public func post(_ path: String, to server: String, body: [UInt8], via fetcher: CurlFetcher, maxResponseBytes: Int = 64 * 1024,
                     deadlineSeconds: Int = 30) throws -> CurlFetcher.Response {
        try post(path, to: server, body: body, via: fetcher, maxResponseBytes: maxResponseBytes, deadlineSeconds: deadlineSeconds, flow: nil)
    }

    func post(_ path: String, to server: String, body: [UInt8], via fetcher: CurlFetcher, maxResponseBytes: Int,
              deadlineSeconds: Int, flow: CurlFetcher.Flow?) throws -> CurlFetcher.Response {
        let signedPath = Self.requestPath(path, below: server)
        func send(at time: Int64) throws -> CurlFetcher.Response {
            try fetcher.call("POST", path, to: server, body: body, headers: headers(method: "POST", path: signedPath, body: body, time: time),
                             maxResponseBytes: maxResponseBytes, deadlineSeconds: deadlineSeconds, flow: flow)
        }
        let local = Int64(Date().timeIntervalSince1970)
        let response = try send(at: local)
        switch DeviceRefusal(response) {
        case let refusal? where refusal.code == DeviceRefusal.clock && refusal.serverTime != nil:
            return try send(at: Int64(Date().timeIntervalSince1970) + (refusal.serverTime! - local))
        case let refusal? where refusal.code == DeviceRefusal.replay:
            // The transport retried a request whose answer was lost: the server has its nonce.
            return try send(at: Int64(Date().timeIntervalSince1970))
        default:
            return response
        }
    }

    /// The path the server sees: the server URL's own path, then `path`.
    static func requestPath(_ path: String, below server: String) -> String {
        let base = URL(string: server)?.path ?? ""
        let trimmed = base.hasSuffix("/") ? String(base.dropLast()) : base
        return trimmed + "/" + (path.hasPrefix("/") ? String(path.dropFirst()) : path)
    }
}

/// A school server's refusal of a device's request (HTTP 401 or 403 with a JSON error that
/// names why): `clock` (the request's time is outside the server's window; `server_time` says
/// the server's), `replay` (a nonce the server saw), `signature` (no valid signature, another
/// key for this id, a body naming another device),
/// `not_admitted` (`state`: pending, rejected or unknown).
public struct DeviceRefusal: Sendable {
    public static let clock = "clock"
    public static let signature = "signature"
    public static let replay = "replay"
    public static let notAdmitted = "not_admitted"

    public let code: String
    public let message: String
    public let state: String?
    public let serverTime: Int64?

    /// The refusal an answer carries; nil for any other answer.
    public init?(_ response: CurlFetcher.Response) {
        guard response.status == 401 || response.status == 403,
              let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
              let error = object["error"] as? [String: Any], let code = error["code"] as? String else { return nil }
        self.code = code
        message = error["message"] as? String ?? "HTTP \(response.status)"
        state = error["state"] as? String
        serverTime = (error["server_time"] as? NSNumber)?.int64Value
    }

    /// The error a device's command fails with: `not_admitted` (exit 17) when the server has not
    /// admitted it, else `verification`.
    public func error(_ url: String) -> UpdError {
        UpdError(code == Self.notAdmitted ? .notAdmitted : .verification, "\(url): \(message)", path: url)
    }
}
