import Foundation
import Hummingbird
import Logging
import NIOCore
import Updatinator
import UpdatinatorLua

/// The school server: the repository as static files, signed decisions from the Lua policy
/// (`POST /v1/check`), device reports into the fleet inventory (`POST /v1/report`), and for
/// operators, behind their token: the inventory (`GET /v1/fleet`), counters (`GET /metrics`),
/// the management API (`/v1/fleet/devices`, `/v1/rollouts`) and the dashboard (`/dashboard`).
///
/// The handlers only parse requests and write answers: the policy runs on `policyThreads`, and
/// SQLite and the files on `fileThreads` (see `WorkerThreads`), so that a slow policy or disk
/// holds no thread that serves other requests.
public final class SchoolServer: Sendable {
    public struct Settings: Sendable {
        public var repository: String
        public var policy: PolicyPool.Settings
        public var decisionKey: SecretKey
        public var database: String
        /// How long a decision may be acted on.
        public var decisionLifetime: Int64 = 900
        /// How long a national rollout this server signs for a school counts (`POST /v1/rollout`):
        /// how long a school cut off from it goes on by the last one.
        public var rolloutLifetime: Int64 = 7 * 86400
        /// Peers listed in a decision when the policy names none.
        public var peerLimit = 4
        public var maxRequestBytes = 64 * 1024
        /// Batch answers (`POST /v1/batch`); nil turns them off.
        public var batches: BatchService.Settings?
        /// Who may see and steer the fleet (nobody, by default).
        public var operators = try! OperatorAccess(token: nil)
        /// How a device that signs its first request is admitted (by an operator, by default).
        public var admission = AdmissionRule.byOperator
        /// The tier above, whose repository this server mirrors (`serve --upstream`); nil when the
        /// repository is copied onto it.
        public var upstream: UpstreamService.Settings?
        /// Where the server reports what goes wrong while it serves (a policy error, a failed
        /// inventory write); the front end chooses the handler.
        public var logger = Logger(label: "updatinator.serve")

        public init(repository: String, policy: PolicyPool.Settings, decisionKey: SecretKey, database: String? = nil) {
            self.repository = repository
            self.policy = policy
            self.decisionKey = decisionKey
            self.database = database ?? repository + "/fleet.sqlite"
            batches = BatchService.Settings(cacheDirectory: repository + "/.batch-cache")
        }
    }

    public let settings: Settings
    public let inventory: FleetInventory
    public let controls: FleetControls
    public let index: RepositoryIndex
    public let metrics: ServerMetrics
    /// The repository's upstream, when the server mirrors one.
    public let upstream: UpstreamService?
    /// Which devices may ask and report: their keys and admission.
    public let admission: DeviceAdmission
    /// Which school servers may forward their reports here (`POST /v1/reports`), by the same rule.
    public let schoolAdmission: DeviceAdmission
    let policy: PolicyPool
    let batches: BatchService?
    /// Computes the frames of coming moves before their devices ask; nil when batches or it are off.
    let precompute: BatchPrecompute?
    /// Where policy calls wait for their worker process (each up to the policy's time limit),
    /// answering what it asks of the repository index and the inventory.
    let policyThreads: WorkerThreads
    /// Where file reads, SQLite and a batch request's checks run.
    let fileThreads: WorkerThreads

    public init(settings: Settings) throws {
        self.settings = settings
        let metrics = ServerMetrics()
        self.metrics = metrics
        // The mirror first: a new one fetches repo.json, which the batch service opens.
        let index = RepositoryIndex(root: settings.repository)
        self.index = index
        upstream = try settings.upstream.map {
            try UpstreamService(root: settings.repository, settings: $0, metrics: metrics, logger: settings.logger) { index.invalidate() }
        }
        inventory = try FleetInventory(path: settings.database, keepsOutbox: settings.upstream != nil)
        controls = try FleetControls(path: settings.database)
        admission = try DeviceAdmission(rule: settings.admission, inventory: inventory)
        schoolAdmission = try DeviceAdmission(rule: settings.admission, inventory: inventory, kind: .school)
        let (inventory, controls) = (self.inventory, self.controls)
        policy = try PolicyPool(settings: settings.policy, logger: settings.logger) {
            SchoolServerView(index: index, inventory: inventory, controls: controls)
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        // A thread per policy worker: a call waiting for its worker holds its thread.
        policyThreads = WorkerThreads(name: "policy", count: settings.policy.workers)
        fileThreads = WorkerThreads(name: "files", count: max(4, 2 * cores))
        let fileThreads = self.fileThreads
        batches = try settings.batches.map {
            try BatchService(settings: $0, repository: Repository(opening: settings.repository), fileThreads: fileThreads, logger: settings.logger)
        }
        let upstream = self.upstream
        precompute = batches.flatMap { service in
            service.settings.precompute ? BatchPrecompute(service: service, index: index, upstream: upstream, logger: settings.logger) : nil
        }
    }

    /// Serves until SIGTERM or SIGINT, writing queued checks to the inventory five times a
    /// second and once more at the end.
    public func run(host: String, port: Int, tls: ServerTLS? = nil, onListening: @escaping @Sendable (String) -> Void) async throws {
        let (inventory, logger, threads) = (self.inventory, settings.logger, fileThreads)
        let writer = Task {
            await repeatEvery(0.2) {
                do { try await threads.run { try inventory.writeChecks() } } catch {
                    logger.error("\(error)")
                }
            }
        }
        defer { writer.cancel() }
        let following = upstream.map { upstream in Task { await upstream.run() } }
        defer { following?.cancel() }
        let forwarding = upstream.map { upstream in Task { await upstream.forwardReports(from: inventory) } }
        defer { forwarding?.cancel() }
        // Other server processes sharing the inventory enrol, admit and act: read it again every second.
        let (controls, admissions) = (self.controls, [admission, schoolAdmission])
        let rereading = !inventory.isShared ? nil : Task {
            await repeatEvery(1) {
                do {
                    try await threads.run {
                        try controls.reload()
                        for admission in admissions { try admission.reload() }
                    }
                } catch {
                    logger.error("\(error)")
                }
            }
        }
        defer { rereading?.cancel() }
        let precomputing = precompute.map { precompute in
            Task {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await precompute.run() }
                    group.addTask {
                        await repeatEvery(precompute.interval) {
                            do { try await threads.run { try precompute.sweep(inventory) } } catch {
                                logger.error("\(error)")
                            }
                        }
                    }
                }
            }
        }
        defer { precomputing?.cancel() }
        defer { policy.stop() }
        try await HTTPService.run(router(), host: host, port: port, name: "school", tls: tls, onListening: onListening)
        try inventory.writeChecks()
    }

    /// The routes.
    public func router() -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        router.add(middleware: CountingMiddleware(metrics: metrics, logger: settings.logger))
        let files = FileResponder(root: settings.repository, metrics: metrics, threads: fileThreads)
        router.files("/repo.json") { request, _ in try await self.repositoryFile(request, ["repo.json"], files) }
        router.files("/channels/:name") { request, context in
            try await self.repositoryFile(request, ["channels", try context.parameters.require("name")], files)
        }
        router.files("/images/:image/:name") { request, context in
            try await self.repositoryFile(request, ["images", try context.parameters.require("image"), try context.parameters.require("name")], files)
        }
        for kind in ["blobs", "deltas"] {
            router.files("/\(kind)/:prefix/:name") { request, context in
                try await self.repositoryFile(request, [kind, try context.parameters.require("prefix"), try context.parameters.require("name")], files)
            }
        }
        router.post("/v1/check") { request, context in try await self.check(request, context) }
        router.post("/v1/report") { request, context in try await self.report(request, context) }
        router.post("/v1/reports") { request, context in try await self.forwardedReports(request, context) }
        router.post("/v1/rollout") { request, context in try await self.schoolRollout(request, context) }
        if let batches {
            router.post("/v1/batch") { request, context in try await self.batch(request, context, batches) }
            let cached = FileResponder(root: batches.settings.cacheDirectory, metrics: metrics, threads: fileThreads)
            router.files("/v1/batch/:key") { request, context in
                let key = try context.parameters.require("key")
                guard key.count == 64, ContentHash(hex: key) != nil else { throw HTTPError(.notFound) }
                if let streamed = try await batches.streamComputing(key, request: request, metrics: self.metrics) { return streamed }
                return try await cached.respond(to: request, path: key + ".batch", immutable: true)
            }
        }
        addManagementRoutes(to: router)
        addDashboardRoutes(to: router)
        return router
    }

    /// A file of the repository; with an upstream, one the school lacks is fetched first, and a
    /// channel is checked again when it is due. Contents and manifests are immutable to caches.
    func repositoryFile(_ request: Request, _ components: [String], _ files: FileResponder) async throws -> Response {
        guard let path = FileResponder.relativePath(components) else { throw HTTPError(.notFound) }
        let name = components.last!
        let immutable = components[0] == "blobs" || components[0] == "deltas" || name.hasSuffix(".manifest")
        guard let upstream, let file = RepositoryFile(path: components) else {
            return try await files.respond(to: request, path: path, immutable: immutable)
        }
        if file.isMutable { try await upstream.ensure(file) }
        do {
            let response = try await files.respond(to: request, path: path, immutable: immutable)
            upstream.mirror.used(file)
            return response
        } catch let error as HTTPError where error.status == .notFound && !file.isMutable {
            try await upstream.ensure(file)
            upstream.mirror.used(file)
            return try await files.respond(to: request, path: path, immutable: immutable)
        }
    }

    func body(of request: Request) async throws -> [UInt8] {
        var buffer = try await request.body.collect(upTo: settings.maxRequestBytes)
        return buffer.readBytes(length: buffer.readableBytes) ?? []
    }

    /// The admitted device that signed `request` (see `DeviceAdmission.authenticate`); its
    /// refusal is counted in `/metrics` by why.
    func authenticatedDevice(_ request: Request, bodyHash: ContentHash, _ context: ServerContext,
                             by admission: DeviceAdmission? = nil) async throws -> String {
        do {
            return try await (admission ?? self.admission).authenticate(request, bodyHash: bodyHash, address: context.clientAddress,
                                                                        now: Int64(Date().timeIntervalSince1970), threads: fileThreads)
        } catch let refusal as ServerRefusal {
            metrics.refusal(refusal.state ?? refusal.code)
            throw refusal
        }
    }

    /// Refuses a body that names another device than the one that signed it.
    func requireSameDevice(_ named: String?, _ signer: String, _ what: String) throws {
        guard named == nil || named == signer else {
            metrics.refusal(DeviceRefusal.signature)
            throw ServerRefusal(.forbidden, DeviceRefusal.signature, "\(what): the body names device \(named!), but device \(signer) signed it")
        }
    }

    /// `POST /v1/check`: the signed decision for the device.
    func check(_ request: Request, _ context: ServerContext) async throws -> Response {
        let bytes = try await body(of: request)
        let device = try await authenticatedDevice(request, bodyHash: Blake2b.hash(bytes), context)
        let check: CheckRequest
        do {
            check = try WireCoding.decode(CheckRequest.self, from: bytes)
        } catch let error as UpdError {
            throw HTTPError(.badRequest, message: "check: \(error.message)")
        }
        try requireSameDevice(check.device, device, "check")
        let address = context.clientAddress
        return Self.json(try await policyThreads.run { try self.decide(check, address: address).signed(with: self.settings.decisionKey) })
    }

    /// The decision for a check, recorded in the inventory: what operators and the policy chose,
    /// with the manifest and peers it needs, or no update and why. Blocks.
    func decide(_ check: CheckRequest, address: String?) throws -> Decision {
        let now = Int64(Date().timeIntervalSince1970)
        var decision = Decision(device: check.device, nonce: check.nonce, expires: now + settings.decisionLifetime, update: false)
        decision.time = now
        var outcome = self.outcome(check, address: address)
        if case .update(let answer) = outcome {
            do {
                guard let manifest = heldManifest(image: answer.image, version: answer.version, from: check) else {
                    throw UpdError(.corrupt, "decide named \(answer.image) \(answer.version), which the repository does not hold")
                }
                decision.update = true
                decision.image = answer.image
                decision.version = answer.version
                decision.manifestPath = manifest.path
                decision.manifestHash = manifest.hash.hex
                decision.manifestSize = manifest.size
                decision.peers = try answer.peers ?? inventory.peers(image: answer.image, version: answer.version, near: address, prefix: 24,
                                                                      limit: settings.peerLimit, now: now, asking: check.device)
                decision.rateLimit = answer.rateLimit
                decision.notBefore = answer.notBefore
                decision.window = answer.window
            } catch {
                logPolicyError("for device \(check.device)", error)
                outcome = .noUpdate(.policyError, nil)
            }
        }
        if case .noUpdate(let reason, let message) = outcome {
            decision.reason = reason.rawValue
            decision.message = message
        }
        let recorded = decision.update ? "update" : decision.reason!
        metrics.decision(recorded)
        try inventory.recordCheck(check, address: address, decision: recorded, now: now)
        return decision
    }

    /// The manifest of the version a device is to move to, from the repository; with an
    /// upstream, fetched when the school lacks it, pinned in the cache while devices move to it,
    /// and the device's own version's manifest fetched too, so that its batch finds its bases.
    /// Blocks.
    func heldManifest(image: String, version: String, from check: CheckRequest) -> (path: String, hash: ContentHash, size: UInt64)? {
        guard let upstream else { return index.manifest(image: image, version: version) }
        upstream.mirror.markInUse(image: image, version: version)
        let current = check.image.flatMap { image in check.version.map { (image, $0) } }
        for (image, version) in [(image, version)] + (current.map { [$0] } ?? []) where !upstream.mirror.hasManifest(image: image, version: version) {
            do {
                try upstream.ensureBlocking(.manifest(image: image, version: version))
                index.invalidate()
            } catch {
                settings.logger.warning("upstream: manifest of \(image) \(version): \((error as? HTTPError)?.body ?? "\(error)")")
            }
        }
        return index.manifest(image: image, version: version)
    }

    /// What the device is to run (`localOutcome`), within what the national rollout allows this
    /// school when it follows one: a school narrows the national decision, never widens it. Blocks.
    func outcome(_ check: CheckRequest, address: String?) -> PolicyPool.Outcome {
        let local = localOutcome(check, address: address)
        guard case .update(let answer) = local,
              let (reason, message) = upstream?.nationalRefusal(device: check.device, image: answer.image, version: answer.version) else { return local }
        return .noUpdate(reason, message)
    }

    /// What the device is to run by this server alone: the version an operator pinned it to; else the policy's
    /// answer, held where it is while operators have paused or halted the rollout of the image
    /// it would move to; no update when the policy fails (the device keeps what it runs). Blocks.
    func localOutcome(_ check: CheckRequest, address: String?) -> PolicyPool.Outcome {
        if let pin = controls.pin(check.device) {
            if pin.image == check.image && pin.version == check.version {
                return .noUpdate(.pinned, "pinned to \(pin.image) \(pin.version) by an operator")
            }
            return .update(PolicyPool.Answer(image: pin.image, version: pin.version))
        }
        let outcome: PolicyPool.Outcome
        do {
            outcome = try timedDecision(check.policyTable(address: address))
        } catch {
            logPolicyError("for device \(check.device)", error)
            return .noUpdate(.policyError, "the server's policy failed; its log says why")
        }
        guard case .update(let answer) = outcome else { return outcome }
        if answer.image == check.image && answer.version == check.version { return .noUpdate(.upToDate, nil) }
        let rollout = controls.rollout(answer.image)
        switch rollout.state {
        case .active: return outcome
        case .paused: return .noUpdate(.paused, rollout.reason ?? "an operator paused the rollout of \(answer.image)")
        case .halted: return .noUpdate(.halted, rollout.reason ?? "an operator halted the rollout of \(answer.image)")
        }
    }

    /// `POST /v1/report`: the report, in the inventory, when the admitted device it names signed it.
    func report(_ request: Request, _ context: ServerContext) async throws -> Response {
        let bytes = try await body(of: request)
        let device = try await authenticatedDevice(request, bodyHash: Blake2b.hash(bytes), context)
        let report: DeviceReport
        do {
            report = try WireCoding.decode(DeviceReport.self, from: bytes)
        } catch let error as UpdError {
            throw HTTPError(.badRequest, message: "report: \(error.message)")
        }
        try requireSameDevice(report.device, device, "report")
        let (inventory, address) = (self.inventory, context.clientAddress)
        try await fileThreads.run { try inventory.recordReport(report, address: address, now: Int64(Date().timeIntervalSince1970)) }
        return Response(status: .noContent)
    }

    /// `POST /v1/reports`: a school server's forwarded reports (`ForwardedReports`), signed by
    /// the admitted school; answers how many were new and the last number recorded, after they
    /// are written.
    func forwardedReports(_ request: Request, _ context: ServerContext) async throws -> Response {
        var buffer = try await request.body.collect(upTo: ForwardedReports.maxRequestBytes)
        let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
        let school = try await authenticatedDevice(request, bodyHash: try await fileThreads.run { Blake2b.hash(bytes) }, context,
                                                   by: schoolAdmission)
        let batch: ForwardedReports
        do {
            batch = try await fileThreads.run { try WireCoding.decode(ForwardedReports.self, from: bytes) }
        } catch let error as UpdError {
            throw HTTPError(.badRequest, message: "reports: \(error.message)")
        }
        let inventory = self.inventory
        let recorded = try await fileThreads.run { try inventory.recordForwarded(batch, school: school, now: Int64(Date().timeIntervalSince1970)) }
        return Self.json(Array(#"{"recorded":\#(recorded),"through":\#(batch.reports.last!.seq)}"#.utf8))
    }

    /// `POST /v1/rollout`: what the school that signed the request may let its devices run: the
    /// policy's `school_rollout(school)`, with this server's operators' pauses and halts laid
    /// over it, signed with the decision key (`NationalRollout`). 404 when the policy sets none.
    func schoolRollout(_ request: Request, _ context: ServerContext) async throws -> Response {
        let bytes = try await body(of: request)
        let school = try await authenticatedDevice(request, bodyHash: Blake2b.hash(bytes), context, by: schoolAdmission)
        let argument: [String: LuaValue] = ["school": .string(school), "address": .string(context.clientAddress ?? "")]
        let rules: [String: NationalRollout.Rule]?
        do {
            rules = try await policyThreads.run { try self.policy.schoolRollout(argument) }
        } catch {
            logPolicyError("in school_rollout for school \(school)", error)
            throw HTTPError(.internalServerError, message: "rollout: the server's policy failed; its log says why")
        }
        guard var images = rules else { throw HTTPError(.notFound, message: "rollout: this server's policy sets no national rollout") }
        for (image, rule) in images {
            let operators = controls.rollout(image)
            guard operators.state != .active else { continue }
            images[image]!.state = operators.state.rawValue
            images[image]!.reason = operators.reason ?? rule.reason
        }
        let now = Int64(Date().timeIntervalSince1970)
        let rollout = NationalRollout(school: school, time: now, expires: now + settings.rolloutLifetime, images: images)
        return Self.json(rollout.signed(with: settings.decisionKey))
    }

    /// `POST /v1/batch`: the batch's path and size once it is computed or found in the cache; for
    /// a request that asks for a stream, its path at once while it is computed.
    func batch(_ request: Request, _ context: ServerContext, _ service: BatchService) async throws -> Response {
        var buffer = try await request.body.collect(upTo: BatchService.Settings.maxRequestBytes)
        let body = buffer.readBytes(length: buffer.readableBytes) ?? []
        // Hashing up to 64 MiB for the signature is a worker thread's job.
        let device = try await authenticatedDevice(request, bodyHash: try await fileThreads.run { Blake2b.hash(body) }, context)
        var parsed: BatchRequest
        do {
            // Up to 64 MiB of JSON: decoded on a worker thread.
            let limit = service.settings.maxItems
            parsed = try await fileThreads.run {
                try WireCoding.decode(BatchRequest.self, from: body, userInfo: [BatchRequest.maxItemsKey: limit])
            }
        } catch let error as UpdError {
            metrics.batch("invalid")
            throw HTTPError(.badRequest, message: "batch: \(error.message)")
        }
        try requireSameDevice(parsed.device, device, "batch")
        parsed.device = device
        let argument: [String: LuaValue] = ["device": parsed.device.map { .string($0) } ?? .nil,
                                            "items": .integer(Int64(parsed.items.count)), "bytes": .integer(Int64(parsed.bytes)),
                                            "address": .string(context.clientAddress ?? "")]
        let allowed = try await policyThreads.run {
            do {
                return try self.policy.allows("allow_batch", argument)
            } catch {
                self.logPolicyError("in allow_batch", error)
                return false
            }
        }
        guard allowed else {
            metrics.batch("refused")
            throw HTTPError(.forbidden, message: "batch: the server's policy allows no batch now; download the contents one by one")
        }
        let started = DispatchTime.now()
        let result: (key: String, bytes: UInt64?, computed: Bool)
        do {
            try await upstream?.ensureContents(Set((parsed.after + parsed.items).flatMap { [$0.hash] + ($0.base.map { [$0] } ?? []) }))
            result = try await service.prepare(parsed)
        } catch is BatchWork.Busy {
            metrics.batch("busy")
            throw HTTPError(.serviceUnavailable, headers: [.retryAfter: "30"], message: "batch: the server is computing other batches; try again later")
        } catch let error as UpdError {
            metrics.batch("invalid")
            throw HTTPError(.notFound, message: "batch: \(error.message)")
        }
        metrics.batch(result.computed ? "computed" : "cached", seconds: Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9)
        if let limit = parsed.limit, let bytes = result.bytes, bytes > limit {
            throw HTTPError(.conflict, message: "batch: \(bytes) bytes, more than the limit of \(limit); download the contents one by one")
        }
        return Self.json(try WireCoding.encode(BatchAnswer(path: "/v1/batch/\(result.key)", bytes: result.bytes)))
    }

    /// One log line for a policy call that failed (the server goes on).
    func logPolicyError(_ context: String, _ error: Error) {
        let message = (error as? LuaError)?.message ?? "\(error)"
        settings.logger.error("policy error \(context): \(message)")
    }

    static func json(_ bytes: [UInt8]) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// The policy's decision, its time and outcome counted. Blocks.
    func timedDecision(_ device: [String: LuaValue]) throws -> PolicyPool.Outcome {
        let started = DispatchTime.now()
        var failed = true
        defer { metrics.policyCall(seconds: Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9, failed: failed) }
        let answer = try policy.decide(device)
        failed = false
        return answer
    }
}

/// The policy's view of this server.
final class SchoolServerView: SchoolView {
    let index: RepositoryIndex
    let inventory: FleetInventory
    let controls: FleetControls

    init(index: RepositoryIndex, inventory: FleetInventory, controls: FleetControls) {
        self.index = index
        self.inventory = inventory
        self.controls = controls
    }

    func rollout(image: String) throws -> RolloutControl {
        let rollout = controls.rollout(image)
        return RolloutControl(state: rollout.state.rawValue, reason: rollout.reason, stage: rollout.stage, stageVersion: rollout.stageVersion)
    }

    func images() throws -> [String] { index.images() }
    func versions(of image: String) throws -> [String] { index.versions(of: image) }
    func latest(image: String, channel: String?) throws -> String? { index.latest(image: image, channel: channel) }
    func count(_ filter: [String: String]) throws -> Int { try inventory.count(filter) }
    func peers(image: String, version: String, near: String?, prefix: Int, limit: Int) throws -> [String] {
        try inventory.peers(image: image, version: version, near: near, prefix: prefix, limit: limit,
                            now: Int64(Date().timeIntervalSince1970))
    }
}

/// Runs a router on an address until SIGTERM or SIGINT, calling `onListening` with the URL
/// once the socket is bound (a port of 0 picks a free one).
public enum HTTPService {
    public static func run(_ router: Router<ServerContext>, host: String, port: Int, name: String, tls: ServerTLS? = nil,
                           onListening: @escaping @Sendable (String) -> Void) async throws {
        // The server reports what matters itself, on stderr; the framework's per-request logger
        // metadata would cost a tenth of a small file's time.
        let logger = Logger(label: "updatinator.\(name)", factory: { _ in SwiftLogNoOpLogHandler() })
        let app = Application(
            router: router,
            server: try tls?.server() ?? .http1(),
            configuration: .init(address: .hostname(host, port: port), serverName: "updatinator"),
            onServerRunning: { channel in onListening("\(tls == nil ? "http" : "https")://\(host):\(channel.localAddress?.port ?? port)") },
            logger: logger)
        try await app.runService()
    }
}
