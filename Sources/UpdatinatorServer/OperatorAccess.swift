import Foundation
import Hummingbird
import Updatinator

/// Who may see and steer the fleet: whoever presents the operator token given at start, as
/// `Authorization: Bearer TOKEN` (the management API, `/v1/fleet`, `/metrics`) or as the
/// dashboard's cookie, which only the dashboard's own routes accept and which the browser sends
/// only to this site (SameSite=Strict). Without a token nobody may: the management API and the
/// dashboard are off, and the fleet views are refused unless the server was told they are public.
public struct OperatorAccess: Sendable {
    /// The token's hash: what requests are compared against (in constant time, by hash).
    private let tokenHash: ContentHash?
    /// `/v1/fleet` and `/metrics` answer without a token.
    public let publicFleet: Bool

    static let cookieName = "updatinator_operator"

    /// A token is 16 to 256 printable ASCII characters without spaces, quotes, commas,
    /// semicolons or backslashes (it travels in a header and a cookie).
    public init(token: String?, publicFleet: Bool = false) throws {
        if let token {
            let allowed = token.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f && !"\",;\\".utf8.contains($0) }
            guard (16...256).contains(token.utf8.count), allowed else {
                throw UpdError(.usage, "the operator token must be 16 to 256 printable characters without spaces, quotes, commas, semicolons or backslashes")
            }
        }
        tokenHash = token.map { Blake2b.hash(Array($0.utf8)) }
        self.publicFleet = publicFleet
    }

    public var enabled: Bool { tokenHash != nil }

    func accepts(_ presented: Substring?) -> Bool {
        guard let tokenHash, let presented else { return false }
        return Blake2b.hash(Array(presented.utf8)) == tokenHash
    }

    /// Refuses a request to the management API without the bearer token: 403 when the server has
    /// no token (the API is off), 401 when the request has none or another.
    func requireOperator(_ request: Request) throws {
        guard enabled else {
            throw HTTPError(.forbidden, message: "the management API is off: start the server with an operator token (--operator-token-file)")
        }
        let header = request.headers[.authorization]
        let presented = header.flatMap { $0.hasPrefix("Bearer ") ? $0.dropFirst("Bearer ".count) : nil }
        guard accepts(presented) else {
            throw HTTPError(.unauthorized, headers: [.wwwAuthenticate: "Bearer"], message: "the operator token is missing or wrong")
        }
    }

    /// Refuses a read of `/v1/fleet` or `/metrics` without the token, unless they are public.
    func requireFleetReader(_ request: Request) throws {
        if !publicFleet { try requireOperator(request) }
    }

    /// Whether a dashboard request carries the token's cookie.
    func dashboardSession(_ request: Request) -> Bool {
        accepts(request.cookies[Self.cookieName].map { Substring($0.value) })
    }

    /// The cookie that opens the dashboard, for this path and below.
    static func sessionCookie(_ token: String) -> String {
        "\(cookieName)=\(token); Path=/dashboard; HttpOnly; SameSite=Strict"
    }
}
