import Foundation
import Hummingbird
import Logging
import NIOCore
import Updatinator
import UpdatinatorLua

/// The school server: the repository as static files, signed decisions from the Lua policy
/// (`POST /v1/check`), device reports into the fleet inventory (`POST /v1/report`), the
/// inventory for operators (`GET /v1/fleet`) and counters (`GET /metrics`).
public final class SchoolServer: Sendable {
    public struct Settings: Sendable {
        public var repository: String
        public var policy: PolicyPool.Settings
        public var decisionKey: SecretKey
        public var database: String
        /// How long a decision may be acted on.
        public var decisionLifetime: Int64 = 900
        /// Peers listed in a decision when the policy names none.
        public var peerLimit = 4
        public var maxRequestBytes = 64 * 1024
        /// Batch answers (`POST /v1/batch`); nil turns them off.
        public var batches: BatchService.Settings?
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
    public let index: RepositoryIndex
    public let metrics = ServerMetrics()
    let policy: PolicyPool
    let batches: BatchService?

    public init(settings: Settings) throws {
        self.settings = settings
        inventory = try FleetInventory(path: settings.database)
        index = RepositoryIndex(root: settings.repository)
        let (index, inventory) = (self.index, self.inventory)
        policy = try PolicyPool(settings: settings.policy, logger: settings.logger) { SchoolServerView(index: index, inventory: inventory) }
        batches = try settings.batches.map { try BatchService(settings: $0, repository: Repository(opening: settings.repository)) }
    }

    /// Serves until SIGTERM or SIGINT, writing queued checks to the inventory five times a
    /// second and once more at the end.
    public func run(host: String, port: Int, onListening: @escaping @Sendable (String) -> Void) async throws {
        let (inventory, logger) = (self.inventory, settings.logger)
        let writer = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(200))
                do { try inventory.writeChecks() } catch {
                    logger.error("\((error as? UpdError)?.message ?? "\(error)")")
                }
            }
        }
        defer { writer.cancel() }
        try await HTTPService.run(router(), host: host, port: port, name: "school", onListening: onListening)
        try inventory.writeChecks()
    }

    /// The routes.
    public func router() -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        router.add(middleware: CountingMiddleware(metrics: metrics))
        let files = FileResponder(root: settings.repository, metrics: metrics)
        router.files("/repo.json") { request, _ in try await files.respond(to: request, path: "repo.json", immutable: false) }
        router.files("/channels/:name") { request, context in
            guard let path = FileResponder.relativePath(["channels", try context.parameters.require("name")]) else { throw HTTPError(.notFound) }
            return try await files.respond(to: request, path: path, immutable: false)
        }
        router.files("/images/:image/:name") { request, context in
            let name = try context.parameters.require("name")
            guard let path = FileResponder.relativePath(["images", try context.parameters.require("image"), name]) else { throw HTTPError(.notFound) }
            return try await files.respond(to: request, path: path, immutable: name.hasSuffix(".manifest"))
        }
        for kind in ["blobs", "deltas"] {
            router.files("/\(kind)/:prefix/:name") { request, context in
                guard let path = FileResponder.relativePath([kind, try context.parameters.require("prefix"), try context.parameters.require("name")]) else {
                    throw HTTPError(.notFound)
                }
                return try await files.respond(to: request, path: path, immutable: true)
            }
        }
        router.post("/v1/check") { request, context in try await self.check(request, context) }
        router.post("/v1/report") { request, context in try await self.report(request, context) }
        if let batches {
            router.post("/v1/batch") { request, context in try await self.batch(request, context, batches) }
            let cached = FileResponder(root: batches.settings.cacheDirectory, metrics: metrics)
            router.files("/v1/batch/:key") { request, context in
                let key = try context.parameters.require("key")
                guard key.count == 64, ContentHash(hex: key) != nil else { throw HTTPError(.notFound) }
                return try await cached.respond(to: request, path: key + ".batch", immutable: true)
            }
        }
        router.get("/v1/fleet") { _, _ in
            let data = try JSONSerialization.data(withJSONObject: try self.inventory.summary(), options: [.sortedKeys, .prettyPrinted])
            return Self.json(Array(data))
        }
        router.metrics(metrics)
        return router
    }

    func body(of request: Request) async throws -> [UInt8] {
        var buffer = try await request.body.collect(upTo: settings.maxRequestBytes)
        return buffer.readBytes(length: buffer.readableBytes) ?? []
    }

    func check(_ request: Request, _ context: ServerContext) async throws -> Response {
        let device: DeviceRequest
        do {
            device = try DeviceRequest.parse(try await body(of: request), address: context.clientAddress)
        } catch let error as UpdError {
            throw HTTPError(.badRequest, message: "check: \(error.message)")
        }
        let now = Int64(Date().timeIntervalSince1970)
        try inventory.recordCheck(device, address: context.clientAddress, now: now)
        var decision = Decision(device: device.device, nonce: device.nonce, expires: now + settings.decisionLifetime, update: false)
        do {
            let answer = try timedDecision(device.fields)
            if let answer, answer.image != device.image || answer.version != device.version {
                guard let manifest = index.manifest(image: answer.image, version: answer.version) else {
                    throw UpdError(.corrupt, "decide named \(answer.image) \(answer.version), which the repository does not hold")
                }
                decision.update = true
                decision.image = answer.image
                decision.version = answer.version
                decision.manifestPath = manifest.path
                decision.manifestHash = manifest.hash.hex
                decision.peers = try answer.peers ?? inventory.peers(image: answer.image, version: answer.version,
                                                                      near: context.clientAddress, prefix: 24,
                                                                      limit: settings.peerLimit, now: now, asking: device.device)
                decision.rateLimit = answer.rateLimit
                decision.notBefore = answer.notBefore
                decision.window = answer.window
            }
            metrics.decision(decision.update ? "update" : "none")
        } catch {
            // A broken policy answers "no update": the device keeps what it runs.
            metrics.decision("error")
            logPolicyError("for device \(device.device)", error)
            decision = Decision(device: device.device, nonce: device.nonce, expires: now + settings.decisionLifetime, update: false)
        }
        return Self.json(try decision.signed(with: settings.decisionKey))
    }

    func report(_ request: Request, _ context: ServerContext) async throws -> Response {
        let report: DeviceReport
        do {
            report = try DeviceReport.parse(try await body(of: request))
        } catch let error as UpdError {
            throw HTTPError(.badRequest, message: "report: \(error.message)")
        }
        try inventory.recordReport(report, address: context.clientAddress, now: Int64(Date().timeIntervalSince1970))
        return Response(status: .noContent)
    }

    /// `POST /v1/batch`: the batch's path and size once it is computed or found in the cache.
    func batch(_ request: Request, _ context: ServerContext, _ service: BatchService) async throws -> Response {
        var buffer = try await request.body.collect(upTo: BatchService.Settings.maxRequestBytes)
        let parsed: BatchService.Request
        do {
            parsed = try BatchService.parse(buffer.readBytes(length: buffer.readableBytes) ?? [], maxItems: service.settings.maxItems)
        } catch let error as UpdError {
            metrics.batch("invalid")
            throw HTTPError(.badRequest, message: "batch: \(error.message)")
        }
        let allowed: Bool
        do {
            allowed = try policy.allows("allow_batch", ["device": parsed.device.map { .string($0) } ?? .nil,
                                                        "items": .integer(Int64(parsed.items.count)), "bytes": .integer(Int64(parsed.bytes)),
                                                        "address": .string(context.clientAddress ?? "")])
        } catch {
            logPolicyError("in allow_batch", error)
            allowed = false
        }
        guard allowed else {
            metrics.batch("refused")
            throw HTTPError(.forbidden, message: "batch: the server's policy allows no batch now; download the contents one by one")
        }
        let started = DispatchTime.now()
        let result: (key: String, bytes: UInt64, computed: Bool)
        do {
            result = try await service.prepare(parsed)
        } catch is BatchWork.Busy {
            metrics.batch("busy")
            throw HTTPError(.serviceUnavailable, headers: [.retryAfter: "30"], message: "batch: the server is computing other batches; try again later")
        } catch let error as UpdError {
            metrics.batch("invalid")
            throw HTTPError(.notFound, message: "batch: \(error.message)")
        }
        metrics.batch(result.computed ? "computed" : "cached",
                      seconds: result.computed ? Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9 : 0)
        if let limit = parsed.limit, result.bytes > limit {
            throw HTTPError(.conflict, message: "batch: \(result.bytes) bytes, more than the limit of \(limit); download the contents one by one")
        }
        let body = try JSONSerialization.data(withJSONObject: ["path": "/v1/batch/\(result.key)", "bytes": result.bytes], options: [.sortedKeys])
        return Self.json(Array(body))
    }

    /// One log line for a policy call that failed (the server goes on).
    func logPolicyError(_ context: String, _ error: Error) {
        let message = (error as? LuaError)?.message ?? (error as? UpdError)?.message ?? "\(error)"
        settings.logger.error("policy error \(context): \(message)")
    }

    static func json(_ bytes: [UInt8]) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// The policy's decision, its time and outcome counted.
    func timedDecision(_ device: [String: LuaValue]) throws -> PolicyPool.Answer? {
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

    init(index: RepositoryIndex, inventory: FleetInventory) {
        self.index = index
        self.inventory = inventory
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
    public static func run(_ router: Router<ServerContext>, host: String, port: Int, name: String,
                           onListening: @escaping @Sendable (String) -> Void) async throws {
        // The server reports what matters itself, on stderr; the framework's per-request logger
        // metadata would cost a tenth of a small file's time.
        let logger = Logger(label: "updatinator.\(name)", factory: { _ in SwiftLogNoOpLogHandler() })
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "updatinator"),
            onServerRunning: { channel in onListening("http://\(host):\(channel.localAddress?.port ?? port)") },
            logger: logger)
        try await app.runService()
    }
}
