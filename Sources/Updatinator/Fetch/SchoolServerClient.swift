import Foundation

/// A device's side of the school server's protocol: `POST /v1/check`, answered with a signed
/// decision that must verify for this device and a fresh nonce, and `POST /v1/report`. Each
/// request is signed with the device's key (`RequestSigner`), for the id the signer names.
///
/// Each request goes through a `CurlFetcher` for the server: a refused or dropped connection is
/// retried with back-off, an answer over 64 KiB is cut off, and one must come within 30 s. A
/// server that has not admitted the device answers so, and the request fails `not_admitted`.
public struct SchoolServerClient: Sendable {
    public let server: String
    public let signer: RequestSigner
    /// The CA file the server's certificate must chain to (https); nil for the system's store.
    public let caFile: String?

    public init(server: String, signer: RequestSigner, caFile: String? = nil) {
        self.server = server
        self.signer = signer
        self.caFile = caFile
    }

    func endpoint(_ name: String) -> String {
        (server.hasSuffix("/") ? String(server.dropLast()) : server) + "/v1/" + name
    }

    /// POSTs `body`, signed, to the endpoint `name`; the answer, or the server's refusal of the device as an error.
    private func post(_ name: String, body: [UInt8]) throws -> CurlFetcher.Response {
        var options = FetchOptions(mirrors: [server])
        options.caFile = caFile
        let response = try signer.post("v1/" + name, to: server, body: body, via: CurlFetcher(options: options))
        if let refusal = DeviceRefusal(response) { throw refusal.error(endpoint(name)) }
        return response
    }

    /// 128 random bits in hex: what makes each decision good for one request only.
    public static func newNonce() -> String {
        (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    /// Asks what to run. `body` is the request's JSON object, which must carry `device` (the
    /// signer's) and `nonce`; the answer is verified against the decision keyring before it is returned.
    public func check(body: [UInt8], device: String, nonce: String, keyring: Keyring, now: Int64) throws -> Decision {
        let url = endpoint("check")
        let response = try post("check", body: body)
        guard response.status == 200 else { throw UpdError(.network, "\(url): HTTP \(response.status)") }
        return try Decision.verify(envelope: response.body, keyring: keyring, device: device, nonce: nonce, now: now, source: url)
    }

    /// Asks what to run for `request` (its device and nonce are what the decision must name).
    public func check(_ request: CheckRequest, keyring: Keyring, now: Int64) throws -> Decision {
        try check(body: try WireCoding.encode(request), device: request.device, nonce: request.nonce, keyring: keyring, now: now)
    }

    /// Sends a report.
    public func report(_ report: DeviceReport) throws {
        try self.report(body: try WireCoding.encode(report))
    }

    /// Sends a report (a JSON object with `device` and `status`).
    public func report(body: [UInt8]) throws {
        let url = endpoint("report")
        let response = try post("report", body: body)
        guard (200..<300).contains(response.status) else { throw UpdError(.network, "\(url): HTTP \(response.status)") }
    }
}
