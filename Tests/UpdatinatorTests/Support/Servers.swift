import Foundation
@testable import Updatinator

/// `updatinator serve` on a free loopback port, stopped when released. A school server is
/// given an operator token (`operatorToken`), which `metric` and `operatorGet` present, and
/// admits every device (`--admission auto`) unless the test names another rule.
final class ServeProcess {
    let url: String
    let process: Subprocess
    let operatorToken: String?
    private let secrets = TemporaryDirectory("operator")

    init(_ arguments: [String], operatorToken withToken: Bool = true) throws {
        var arguments = arguments
        if !withToken || arguments.contains("--peer") {
            operatorToken = nil
        } else {
            let token = "operator-" + UUID().uuidString
            try Sys.writeFileAtomically(secrets.sub("token"), Array(token.utf8), mode: 0o600)
            arguments += ["--operator-token-file", secrets.sub("token")]
            operatorToken = token
        }
        if !arguments.contains("--peer") && !arguments.contains("--admission") { arguments += ["--admission", "auto"] }
        process = try Subprocess([CLI.binary, "serve", "--listen", "127.0.0.1:0"] + arguments)
        guard process.waitForOutput("listening on ", seconds: 60) else {
            process.stop()
            throw UpdError(.io, "serve did not start: \(process.stderr)")
        }
        url = String(process.stdout.split(separator: " ").last!).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    deinit { process.stop() }

    /// A counter from /metrics: the sum of the lines of `name` whose labels contain every one given.
    func metric(_ name: String, _ labels: [String] = []) throws -> Int {
        try operatorGet("/metrics").body.split(separator: "\n")
            .filter { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") }
            .filter { line in labels.allSatisfy { line.contains($0) } }
            .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
            .reduce(0) { $0 + Int($1) }
    }

    /// GETs a path with the operator token, if the server has one.
    func operatorGet(_ path: String, _ arguments: [String] = []) throws -> Curl.Response {
        try Curl.get(url + path, (operatorToken.map { ["-H", "Authorization: Bearer \($0)"] } ?? []) + arguments)
    }

    /// POSTs JSON with the project's libcurl client, signed as the device the fields name (its
    /// `TestDevices` key), as that device's updatinator would.
    func post(_ path: String, _ fields: [String: Any]) throws -> CurlFetcher.Response {
        let body = Array(try JSONSerialization.data(withJSONObject: fields))
        guard let device = fields["device"] as? String, WireCoding.isIdentifier(device) else { return try postUnsigned(path, body) }
        return try post(path, body, as: device)
    }

    /// POSTs bytes (JSON or not) signed as `device`.
    func post(_ path: String, _ body: [UInt8], as device: String) throws -> CurlFetcher.Response {
        try TestDevices.signer(device).post(path, to: url, body: body, via: CurlFetcher(options: FetchOptions(mirrors: [url])))
    }

    /// POSTs bytes with the header lines given (a forged or replayed request), as any host can.
    func postUnsigned(_ path: String, _ body: [UInt8], headers: [String] = []) throws -> CurlFetcher.Response {
        try CurlFetcher(options: FetchOptions(mirrors: [url])).call("POST", path, to: url, body: body, headers: headers)
    }
}

/// The `curl` command, for requests as any HTTP client makes them.
enum Curl {
    struct Response {
        let status: Int
        let headers: String
        let body: String
    }

    /// Runs curl with `arguments` (options before the URL); the status, headers and body.
    static func get(_ url: String, _ arguments: [String] = []) throws -> Response {
        let tmp = TemporaryDirectory("curl")
        let out = try Shell.run(["curl", "-s", "-o", tmp.sub("body"), "-D", tmp.sub("headers"), "-w", "%{http_code}"] + arguments + [url])
        return Response(status: Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0,
                        headers: (try? String(contentsOfFile: tmp.sub("headers"), encoding: .utf8)) ?? "",
                        body: (try? String(contentsOfFile: tmp.sub("body"), encoding: .isoLatin1)) ?? "")
    }
}

extension Curl.Response {
    /// A header's value (case-insensitive name), or nil.
    func header(_ name: String) -> String? {
        headers.split(separator: "\r\n").first { $0.lowercased().hasPrefix(name.lowercased() + ":") }
            .map { String($0.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces) }
    }
}
