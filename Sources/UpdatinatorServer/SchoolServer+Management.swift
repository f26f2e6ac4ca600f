import Foundation
import Hummingbird
import NIOCore
import Updatinator
import UpdatinatorLua

/// The management API, behind the operator token (see `OperatorAccess`):
///
/// - `GET /v1/fleet`: counts by version and status, and every device;
/// - `GET /v1/fleet/devices?image=&version=&status=&school=&decision=&seen_within=&limit=`;
/// - `GET /v1/fleet/devices/DEVICE`: one device, its pin and its reports;
/// - `POST /v1/fleet/devices/DEVICE/pin` (`{"image": …, "version": …}`) and `…/release`;
/// - `POST /v1/fleet/devices/DEVICE/admit` and `…/reject`: a device's admission (`DeviceAdmission`), or a
///   school server's, when no device has that id;
/// - `GET /v1/rollouts`, `GET /v1/rollouts/IMAGE`: each image's rollout (see `rolloutView`);
/// - `POST /v1/rollouts/IMAGE/pause|resume|halt|advance` (`{"reason": …}` optional);
/// - `GET /metrics` (the fleet views are public only when the server was told so).
extension SchoolServer {
    func addManagementRoutes(to router: Router<ServerContext>) {
        let operators = settings.operators
        router.get("/v1/fleet") { request, _ in
            try operators.requireFleetReader(request)
            return try await Self.json(on: self.fileThreads) { try self.inventory.summary() }
        }
        router.get("/metrics") { request, _ in
            try operators.requireFleetReader(request)
            let text = try await self.fileThreads.run { try self.metricsText() }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("/v1/fleet/devices") { request, _ in
            try operators.requireOperator(request)
            let query = try await Self.managementInput { try DeviceQuery(parameters: request.uri.queryParameters.map { (String($0.key), String($0.value)) }) }
            let now = Int64(Date().timeIntervalSince1970)
            return try await Self.json(on: self.fileThreads) { ["devices": try self.inventory.devices(query, now: now)] }
        }
        router.get("/v1/fleet/devices/:device") { request, context in
            try operators.requireOperator(request)
            let id = try Self.pathParameter(context, "device")
            return try await Self.json(on: self.fileThreads) { try self.deviceView(id) }
        }
        router.post("/v1/fleet/devices/:device/:action") { request, context in
            try operators.requireOperator(request)
            let id = try Self.pathParameter(context, "device")
            let fields = try await Self.managementInput { try Self.jsonFields(try await self.body(of: request)) }
            let name = try context.parameters.require("action")
            if let state = Self.admissionActions[name] {
                let admission = try await self.setAdmission(id, state)
                if admission.kind == .school {
                    return try await Self.json(on: self.fileThreads) { ["schools": try self.inventory.schools().filter { $0["school"] as? String == id }] }
                }
            } else {
                let action = try await Self.managementInput { try self.deviceAction(name, device: id, fields: fields) }
                _ = try await self.perform(action)
            }
            return try await Self.json(on: self.fileThreads) { try self.deviceView(id) }
        }
        router.get("/v1/rollouts") { request, _ in
            try operators.requireOperator(request)
            return try await Self.json(on: self.policyThreads) { ["rollouts": try self.rolloutViews()] }
        }
        router.get("/v1/rollouts/:image") { request, context in
            try operators.requireOperator(request)
            let image = try Self.pathParameter(context, "image")
            return try await Self.json(on: self.policyThreads) { try self.rolloutView(image) }
        }
        router.post("/v1/rollouts/:image/:action") { request, context in
            try operators.requireOperator(request)
            let image = try Self.pathParameter(context, "image")
            let fields = try await Self.managementInput { try Self.jsonFields(try await self.body(of: request)) }
            let (name, reason) = (try context.parameters.require("action"), fields["reason"] as? String)
            let action = try await Self.managementInput { try await self.policyThreads.run { try self.rolloutAction(name, image: image, reason: reason) } }
            _ = try await self.perform(action)
            return try await Self.json(on: self.policyThreads) { try self.rolloutView(image) }
        }
    }

    /// The device routes' admission actions.
    static let admissionActions: [String: AdmissionState] = ["admit": .admitted, "reject": .rejected]

    /// Admits or rejects an enrolled device on the file threads; nothing to do is 409, a device
    /// that never enrolled 404.
    @discardableResult
    func setAdmission(_ device: String, _ state: AdmissionState) async throws -> DeviceAdmission {
        // A school server that enrolled here, when no device has its id, is admitted the same way.
        let admission = self.admission.enrolment(device) == nil && schoolAdmission.enrolment(device) != nil ? schoolAdmission : self.admission
        do {
            try await fileThreads.run { try admission.set(device, state) }
            return admission
        } catch let error as UpdError where error.code == .nothingToDo {
            throw HTTPError(.conflict, message: error.message)
        } catch let error as UpdError where error.code == .usage {
            throw HTTPError(.notFound, message: error.message)
        }
    }

    /// Carries out an operator's action on the file threads; nothing to do is 409, a refusal 400.
    func perform(_ action: FleetControls.Action) async throws -> FleetControls.Rollout? {
        let controls = self.controls
        do {
            return try await fileThreads.run { try controls.perform(action, now: Int64(Date().timeIntervalSince1970)) }
        } catch let error as UpdError where error.code == .nothingToDo {
            throw HTTPError(.conflict, message: error.message)
        } catch let error as UpdError where error.code == .usage {
            throw HTTPError(.badRequest, message: error.message)
        }
    }

    /// A path parameter as it was before the client percent-encoded it (Hummingbird leaves
    /// them encoded); 400 unless it is a device id or an image name.
    static func pathParameter(_ context: ServerContext, _ name: String) throws -> String {
        let raw = try context.parameters.require(name)
        guard let decoded = raw.removingPercentEncoding,
              name == "device" ? WireCoding.isIdentifier(decoded) : Manifest.problem(withName: decoded) == nil else {
            throw HTTPError(.badRequest, message: "\(name) '\(raw)' is not a valid \(name == "device" ? "device id" : "image name")")
        }
        return decoded
    }

    /// The action a rollout route names, for an image the repository holds; advancing names
    /// the version being rolled out (the policy's, else the newest). Blocks (it may call the policy).
    func rolloutAction(_ name: String, image: String, reason: String?) throws -> FleetControls.Action {
        guard index.images().contains(image) || controls.rollouts().contains(where: { $0.image == image }) else {
            throw UpdError(.usage, "the repository holds no image \(image)")
        }
        let reason = reason.map { String($0.prefix(500)) }
        switch name {
        case "pause": return .pause(image: image, reason: reason)
        case "resume": return .resume(image: image)
        case "halt": return .halt(image: image, reason: reason)
        case "advance":
            let policyVersion = (try? policy.rolloutStatus(image: image))??["version"]?.stringValue
            guard let version = policyVersion ?? index.latest(image: image, channel: nil) else {
                throw UpdError(.usage, "the repository holds no version of \(image) to roll out")
            }
            return .advance(image: image, version: version)
        default: throw UpdError(.usage, "unknown rollout action '\(name)' (pause, resume, halt, advance)")
        }
    }

    /// The action a device route names: a pin needs an image and version the repository holds.
    func deviceAction(_ name: String, device: String, fields: [String: Any]) throws -> FleetControls.Action {
        switch name {
        case "pin":
            guard let image = fields["image"] as? String, let version = fields["version"] as? String else {
                throw UpdError(.usage, "pin: the body must name an image and a version")
            }
            guard index.manifest(image: image, version: version) != nil else {
                throw UpdError(.usage, "pin: the repository holds no \(image) \(version)")
            }
            return .pin(device: device, image: image, version: version)
        case "release": return .release(device: device)
        default: throw UpdError(.usage, "unknown device action '\(name)' (pin, release, admit, reject)")
        }
    }

    /// One device, its pin and its reports; 404 for a device never seen nor pinned (a device
    /// may be pinned before its first check).
    func deviceView(_ id: String) throws -> [String: Any] {
        let pin = controls.pin(id)
        guard var device = try inventory.device(id) ?? pin.map({ _ in ["device": id, "history": [Any]()] }) else {
            throw HTTPError(.notFound, message: "no device \(id) in the inventory")
        }
        if let pin { device["pin"] = ["image": pin.image, "version": pin.version, "since": pin.since] as [String: Any] }
        return device
    }

    /// Every image's rollout: the repository's images and any operators touched.
    func rolloutViews() throws -> [[String: Any]] {
        let images = Set(index.images()).union(controls.rollouts().map(\.image))
        return try images.sorted().map { try rolloutView($0) }
    }

    /// An image's rollout: the version it moves the fleet to (the policy's, else the newest),
    /// what operators set (state, reason, stage), what the policy says of it (`policy`: its
    /// stage, share of devices, why it halted), the counts, and progress over time. Blocks (it
    /// may call the policy).
    func rolloutView(_ image: String) throws -> [String: Any] {
        let control = controls.rollout(image)
        var view: [String: Any] = ["image": image, "state": control.state.rawValue, "stage": control.stage]
        view["reason"] = control.reason
        view["changed"] = control.changed
        var policyView: [String: Any]?
        do {
            policyView = try policy.rolloutStatus(image: image).map(Self.jsonObject)
        } catch {
            logPolicyError("in rollout(\(image))", error)
            view["policy_error"] = "the policy's rollout(image) failed; the server's log says why"
        }
        view["policy"] = policyView
        guard let version = policyView?["version"] as? String ?? index.latest(image: image, channel: nil) else { return view }
        view["version"] = version
        view["counts"] = try inventory.rolloutCounts(image: image, version: version)
        view["progress"] = try inventory.progress(image: image, version: version).map { [$0.time, Int64($0.done), Int64($0.failed)] }
        return view
    }

    /// The metrics text: the counters, then the inventory's gauges.
    func metricsText() throws -> String {
        let gauges = try inventory.gauges()
        var lines = ["# HELP updatinator_devices Devices by the image and version they run and their last status.",
                     "# TYPE updatinator_devices gauge"]
        for row in gauges.devices {
            lines.append("updatinator_devices{image=\"\(Self.label(row.image))\",version=\"\(Self.label(row.version))\",status=\"\(Self.label(row.status))\"} \(row.count)")
        }
        lines += ["# HELP updatinator_reports_total Device reports by status, since the inventory began.",
                  "# TYPE updatinator_reports_total counter"]
        for (status, count) in gauges.reports.sorted(by: { $0.key < $1.key }) {
            lines.append("updatinator_reports_total{status=\"\(Self.label(status))\"} \(count)")
        }
        lines += ["# HELP updatinator_rollout_state Each touched rollout's state (1 for the state it is in).",
                  "# TYPE updatinator_rollout_state gauge"]
        for rollout in controls.rollouts() {
            for state in FleetControls.Rollout.State.allCases {
                lines.append("updatinator_rollout_state{image=\"\(Self.label(rollout.image))\",state=\"\(state.rawValue)\"} \(rollout.state == state ? 1 : 0)")
            }
        }
        if let upstream {
            lines += ["# HELP updatinator_mirror_cached_bytes Bytes of contents the mirror of upstream holds.",
                      "# TYPE updatinator_mirror_cached_bytes gauge",
                      "updatinator_mirror_cached_bytes \(upstream.mirror.cachedBytes)"]
        }
        if let precompute {
            let counts = precompute.counts
            lines += ["# HELP updatinator_batch_precomputes_total Moves whose batches were computed ahead of their devices, by outcome.",
                      "# TYPE updatinator_batch_precomputes_total counter",
                      "updatinator_batch_precomputes_total{outcome=\"done\"} \(counts.done)",
                      "updatinator_batch_precomputes_total{outcome=\"failed\"} \(counts.failed)",
                      "# HELP updatinator_batch_precompute_seconds_total Time spent computing moves ahead.",
                      "# TYPE updatinator_batch_precompute_seconds_total counter",
                      "updatinator_batch_precompute_seconds_total \(counts.seconds)"]
        }
        return metrics.text() + lines.joined(separator: "\n") + "\n"
    }

    /// A Prometheus label value, escaped.
    static func label(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Runs a step that parses an operator's input: its usage errors become 400.
    static func managementInput<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as UpdError where error.code == .usage || error.code == .corrupt {
            throw HTTPError(.badRequest, message: error.message)
        }
    }

    /// A request body's JSON object; an empty body is an empty object.
    static func jsonFields(_ body: [UInt8]) throws -> [String: Any] {
        if body.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            throw UpdError(.usage, "the request body is not a JSON object")
        }
        return object
    }

    /// A policy's table as JSON (strings, numbers, booleans, nested tables).
    static func jsonObject(_ fields: [String: LuaValue]) -> [String: Any] {
        fields.compactMapValues(jsonValue)
    }

    static func jsonValue(_ value: LuaValue) -> Any? {
        switch value {
        case .nil, .opaque: return nil
        case .boolean(let b): return b
        case .integer(let i): return i
        case .number(let d): return d
        case .string(let s): return s
        case .table(let fields, let items): return items.isEmpty ? jsonObject(fields) : items.compactMap(jsonValue)
        }
    }

    /// The JSON answer `body` makes on `threads` (where it may block).
    static func json(on threads: WorkerThreads, _ body: @escaping @Sendable () throws -> Any) async throws -> Response {
        json(try await threads.run { Array(try JSONSerialization.data(withJSONObject: try body(), options: [.sortedKeys, .prettyPrinted])) })
    }
}
