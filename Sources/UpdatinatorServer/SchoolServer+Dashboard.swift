import Foundation
import Hummingbird
import NIOCore
import Updatinator

/// The dashboard (`/dashboard`): the management API as pages a browser shows, for operators
/// who signed in with the operator token (kept in a cookie only this site's dashboard gets).
/// Each action is a form POSTed to `/dashboard/…`, answered with a redirect to the page; a POST
/// from another site's page (its Origin is not this host) is refused.
extension SchoolServer {
    func addDashboardRoutes(to router: Router<ServerContext>) {
        let operators = settings.operators
        router.get("/dashboard") { request, _ in
            guard operators.enabled else { throw HTTPError(.forbidden, message: "the dashboard is off: start the server with an operator token (--operator-token-file)") }
            guard operators.dashboardSession(request) else { return Self.html(DashboardPage.login(error: nil)) }
            return Self.html(try await self.policyThreads.run { DashboardPage.main(try self.dashboardContent()) })
        }
        router.post("/dashboard/login") { request, _ in
            try Self.requireSameOrigin(request)
            let form = Self.formFields(try await self.body(of: request))
            guard let token = form["token"], operators.accepts(Substring(token)) else {
                return Self.html(DashboardPage.login(error: "That is not the operator token."), status: .unauthorized)
            }
            return Response(status: .seeOther, headers: [.location: "/dashboard", .setCookie: OperatorAccess.sessionCookie(token)])
        }
        router.post("/dashboard/rollouts/:image/:action") { request, context in
            try self.requireDashboardSession(request)
            let form = Self.formFields(try await self.body(of: request))
            let reason = form["reason"].flatMap { $0.isEmpty ? nil : $0 }
            let (name, image) = (try context.parameters.require("action"), try Self.pathParameter(context, "image"))
            let action = try await Self.managementInput { try await self.policyThreads.run { try self.rolloutAction(name, image: image, reason: reason) } }
            _ = try await self.perform(action)
            return Response(status: .seeOther, headers: [.location: "/dashboard"])
        }
        router.post("/dashboard/devices/:device/:action") { request, context in
            try self.requireDashboardSession(request)
            let form = Self.formFields(try await self.body(of: request))
            let (name, device) = (try context.parameters.require("action"), try Self.pathParameter(context, "device"))
            if let state = Self.admissionActions[name] {
                try await self.setAdmission(device, state)
            } else {
                let action = try await Self.managementInput { try self.deviceAction(name, device: device, fields: form) }
                _ = try await self.perform(action)
            }
            return Response(status: .seeOther, headers: [.location: "/dashboard"])
        }
        router.post("/dashboard/pin") { request, _ in
            try self.requireDashboardSession(request)
            let form = Self.formFields(try await self.body(of: request))
            guard let device = form["device"], !device.isEmpty else { throw HTTPError(.badRequest, message: "pin: name a device") }
            let action = try await Self.managementInput { try self.deviceAction("pin", device: device, fields: form) }
            _ = try await self.perform(action)
            return Response(status: .seeOther, headers: [.location: "/dashboard"])
        }
    }

    /// What the page shows. Blocks (it calls the policy and SQLite).
    func dashboardContent() throws -> DashboardPage.Content {
        var waiting = DeviceQuery()
        waiting.admission = AdmissionState.pending.rawValue
        let now = Int64(Date().timeIntervalSince1970)
        return DashboardPage.Content(summary: try inventory.summary(), rollouts: try rolloutViews(), failing: try inventory.failing(),
                              pending: try inventory.devices(waiting, now: now),
                              pins: controls.pins().sorted { $0.key < $1.key }.map { ($0.key, $0.value.image, $0.value.version, $0.value.since) },
                              log: try controls.log(limit: 20), now: now)
    }

    func requireDashboardSession(_ request: Request) throws {
        try Self.requireSameOrigin(request)
        guard settings.operators.dashboardSession(request) else {
            throw HTTPError(.unauthorized, message: "sign in at /dashboard with the operator token first")
        }
    }

    /// Refuses a POST whose Origin names another host than the one it was sent to.
    static func requireSameOrigin(_ request: Request) throws {
        guard let origin = request.headers[.origin] else { return }
        let host = request.head.authority ?? ""
        guard let url = URLComponents(string: origin), let originHost = url.host,
              originHost + (url.port.map { ":\($0)" } ?? "") == host else {
            throw HTTPError(.forbidden, message: "a dashboard form may only be sent from the dashboard itself")
        }
    }

    /// The fields of an `application/x-www-form-urlencoded` body.
    static func formFields(_ body: [UInt8]) -> [String: String] {
        var fields = [String: String]()
        for pair in String(decoding: body, as: UTF8.self).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) -> String? { text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding }
            guard let name = decode(parts[0]), let value = decode(parts.count > 1 ? parts[1] : "") else { continue }
            fields[name] = value
        }
        return fields
    }

    static func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                 body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
