import Foundation

/// An operator's side of a school server's management API: requests that carry the operator
/// token, answered with JSON. The server's refusals become errors with the stable codes: a
/// wrong or missing token `verification`, an API that is off `permission`, an unknown device or
/// image or a malformed request `usage`, an action with nothing to do `nothing_to_do`.
public struct FleetClient: Sendable {
    public let server: String
    private let token: String
    /// The CA file the server's certificate must chain to (https); nil for the system's store.
    public let caFile: String?

    public init(server: String, token: String, caFile: String? = nil) {
        self.server = server.hasSuffix("/") ? String(server.dropLast()) : server
        self.token = token
        self.caFile = caFile
    }

    /// GETs a path of the API with a query; the JSON answer's bytes.
    public func get(_ path: String, query: [(String, String)] = []) throws -> [UInt8] {
        let encoded = query.map { "\(Self.encode($0.0))=\(Self.encode($0.1))" }.joined(separator: "&")
        return try send("GET", path + (encoded.isEmpty ? "" : "?" + encoded), body: nil)
    }

    /// POSTs a JSON object to a path of the API; the JSON answer's bytes.
    public func post(_ path: String, _ fields: [String: String]) throws -> [UInt8] {
        try send("POST", path, body: Array(try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])))
    }

    /// A path component, percent-encoded (device ids may hold any printable character).
    public static func encode(_ component: String) -> String {
        component.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? component
    }

    private func send(_ verb: String, _ path: String, body: [UInt8]?) throws -> [UInt8] {
        let url = server + path
        var options = FetchOptions(mirrors: [server])
        options.caFile = caFile
        // An action is sent once: retried after a dropped answer, it could act twice.
        if verb != "GET" { options.attemptsPerMirror = 1 }
        let response = try CurlFetcher(options: options)
            .call(verb, path, to: server, body: body, headers: ["Authorization: Bearer \(token)"], maxResponseBytes: 256 << 20)
        let message = Self.errorMessage(response.body) ?? "HTTP \(response.status)"
        switch response.status {
        case 200..<300: return response.body
        case 401: throw UpdError(.verification, "\(url): the server refused the operator token (\(message))")
        case 403: throw UpdError(.permission, "\(url): \(message)")
        case 400, 404: throw UpdError(.usage, "\(url): \(message)")
        case 409: throw UpdError(.nothingToDo, "\(url): \(message)")
        default: throw UpdError(.network, "\(url): \(message)")
        }
    }

    /// The message of the server's JSON error (`{"error": {"message": …}}`).
    static func errorMessage(_ body: [UInt8]) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              let error = object["error"] as? [String: Any] else { return nil }
        return error["message"] as? String
    }
}
