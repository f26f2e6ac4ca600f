import ArgumentParser
import Foundation
import Updatinator
import UpdatinatorLua
import Hummingbird
import UpdatinatorServer

struct ServeCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Runs the school server, or with --peer a laptop's peer server.",
        discussion: """
            The school server serves the repository at the URL root (with ETag, Range and \
            caching headers), answers POST /v1/check with a decision from the Lua policy's \
            decide(device), signed with the decision key, records POST /v1/report in the fleet \
            inventory (SQLite), and gives operators who present the token of \
            --operator-token-file the inventory (GET /v1/fleet), counters (GET /metrics), the \
            management API (/v1/fleet/devices, /v1/rollouts: pause, resume, halt, advance, pin, \
            release, admit, reject) and the dashboard (/dashboard). Every check, report and \
            batch request must be signed by the device's key; a device's first signed request \
            enrols its key, and --admission says whether it is admitted then (auto), when it \
            proves it knows the enrolment token (token), or once an operator admits it \
            (operator, the default); until then it gets no decision and no batch. The policy \
            runs in worker processes, each call within --policy-time-limit; a policy error or limit answers "no update" \
            (policy-error) and is logged and counted. \
            With --peer, a laptop serves GET /blobs/<hh>/<hash> for the contents of the image \
            it runs, read from its tree (--root, through its installed manifest) or from the \
            current deployment of its sysroot (--sysroot), so that neighbours can use it as a \
            mirror. \
            With --upstream, the school server mirrors the tier above: a file of the \
            repository it lacks is fetched from upstream when first asked for (once, however \
            many laptops ask), verified against --keyring or by its hash, and kept within \
            --upstream-cache-bytes; the versions of --follow channels are fetched ahead. \
            Prints the URL it listens on, then runs until SIGTERM or SIGINT.
            """)

    @Flag(help: "Serve the blobs of an installed tree (--root) or of a sysroot's current deployment (--sysroot) to neighbours.")
    var peer = false

    @Option(help: "The repository directory to serve.")
    var repo = DefaultPaths.repository

    @Option(help: "The server policy script (Lua), which defines decide(device).")
    var policy = DefaultPaths.serverPolicy

    @Option(help: "The secret key that signs decisions (never a build key).")
    var decisionKey = DefaultPaths.decisionKey

    @Option(help: "Where to listen, HOST:PORT (port 0 picks a free one).")
    var listen = "0.0.0.0:8080"

    @Option(help: "The fleet inventory: a SQLite file (default: REPO/fleet.sqlite), or a postgres://USER@HOST:PORT/DATABASE URL that several server processes share.")
    var db: String?

    @Option(help: "A JSON file of settings that upd.config lays over the policy's defaults.")
    var config: String?

    @Option(help: "Lua instructions a policy may run per request (0 for no limit).")
    var instructionLimit = 10_000_000

    @Option(help: "Bytes of memory each policy state may use (0 for no limit).")
    var memoryLimit = 64 << 20

    @Option(help: "Seconds a policy call may take, inside Lua's C functions too; a call past it answers no update (policy-error) and its worker process is replaced.")
    var policyTimeLimit = 1.0

    @Option(help: "Policy worker processes, each with the policy loaded: the policy calls that may run at once (default: 4, or twice the cores when more).")
    var policyWorkers: Int?

    @Option(help: "Where computed batches are kept; default: REPO/.batch-cache.")
    var batchCache: String?

    @Option(help: "The most bytes of batches kept; the least recently used go first.")
    var batchCacheBytes: UInt64 = 4 << 30

    @Option(help: "Batches computed at once; more wait in a queue.")
    var batchWorkers = 1

    @Option(help: "Batch requests that may wait for a computation; more are refused (503).")
    var batchQueue = 8

    @Option(help: "The zstd level of batches, 1 to 22.")
    var batchLevel: Int32 = ContentBatch.defaultLevel

    @Option(help: "The hours (HH:MM-HH:MM, local time) at which the server computes ahead the batches of the moves its devices are about to make (from the versions they run to those the channels and the newest name); default: any hour.")
    var batchPrecomputeHours: String?

    @Option(help: "Seconds between two looks at the inventory for moves to compute ahead.")
    var batchPrecomputeInterval = 60.0

    @Flag(help: "Compute no batch ahead: each is computed when its first device asks.")
    var noBatchPrecompute = false

    @Option(help: "A file holding the operator token (16 to 256 printable characters, readable by its owner only), which opens the management API and the dashboard; without it they are off.")
    var operatorTokenFile: String?

    @Option(help: "How a device is admitted at its first signed request: operator (it waits until fleet admit), token (it proves it knows the token of --enrolment-token-file) or auto (every device, for a lab).")
    var admission = "operator"

    @Option(help: "With --admission token: the file holding the enrolment token that devices' images carry (readable by its owner only).")
    var enrolmentTokenFile: String?

    @Flag(help: "Answer GET /v1/fleet and GET /metrics without the operator token.")
    var publicFleet = false

    @Flag(help: "Answer no batch requests (devices then download contents one by one).")
    var noBatches = false

    @Option(help: "A PEM certificate chain to serve HTTPS with (with --tls-key); without it the server speaks plain HTTP.")
    var tlsCert: String?

    @Option(help: "The PEM private key of --tls-cert, readable by its owner only.")
    var tlsKey: String?

    @Option(help: "How long a national rollout this server signs for a school counts (POST /v1/rollout): how long a school cut off from it goes on by the last one (90s, 12h, 7d).")
    var rolloutLifetime = "7d"

    @OptionGroup var upstream: UpstreamOptions

    @Option(help: "With --peer: the installed tree whose contents are served.")
    var root: String?

    @Option(help: "With --peer: the sysroot whose current deployment's contents are served (staged deployments).")
    var sysroot: String?

    @Option(help: "With --peer: where compressed blobs are kept once made, emptied at start; default ROOT/.updatinator/peer-cache or SYSROOT/peer-cache.")
    var cache: String?

    func execute() throws {
        let (host, port) = try Self.address(listen)
        let tls = try serverTLS()
        if peer {
            let source: PeerServer.Source
            switch (root, sysroot) {
            case (let root?, nil): source = .tree(root)
            case (nil, let sysroot?): source = .sysroot(sysroot)
            default: throw UpdError(.usage, "serve --peer needs either --root (a tree upgraded in place) or --sysroot (staged deployments)")
            }
            let server = try PeerServer(source, cache: cache)
            try Self.run(listen) { try await HTTPService.run(server.router(), host: host, port: port, name: "peer", tls: tls, onListening: $0) }
            return
        }
        guard policyTimeLimit > 0, policyTimeLimit <= 3600 else { throw UpdError(.usage, "--policy-time-limit must be more than 0 and at most 3600 seconds") }
        // The policy runs in worker processes of this very executable (`policy-worker`).
        var policySettings = PolicyPool.Settings(script: policy, configFile: config, workerCommand: ["/proc/self/exe", "policy-worker"])
        policySettings.timeLimit = policyTimeLimit
        if let policyWorkers {
            guard (1...256).contains(policyWorkers) else { throw UpdError(.usage, "--policy-workers must be 1 to 256") }
            policySettings.workers = policyWorkers
        }
        policySettings.instructionLimit = instructionLimit > 0 ? instructionLimit : nil
        policySettings.memoryLimit = memoryLimit > 0 ? memoryLimit : nil
        var settings = SchoolServer.Settings(repository: repo, policy: policySettings,
                                             decisionKey: try KeyFile.readSecret(decisionKey), database: db)
        guard (1...22).contains(batchLevel), batchWorkers >= 1 else { throw UpdError(.usage, "--batch-level must be 1 to 22 and --batch-workers at least 1") }
        if noBatches {
            settings.batches = nil
        } else {
            if let batchCache { settings.batches?.cacheDirectory = batchCache }
            settings.batches?.maxCacheBytes = batchCacheBytes
            settings.batches?.workers = batchWorkers
            settings.batches?.queueLimit = max(0, batchQueue)
            settings.batches?.level = batchLevel
            settings.batches?.precompute = !noBatchPrecompute
            if let batchPrecomputeHours {
                guard let hours = TimeWindow(parsing: batchPrecomputeHours) else {
                    throw UpdError(.usage, "--batch-precompute-hours '\(batchPrecomputeHours)' is not HH:MM-HH:MM")
                }
                settings.batches?.precomputeHours = hours
            }
            guard batchPrecomputeInterval > 0 else { throw UpdError(.usage, "--batch-precompute-interval must be more than 0 seconds") }
            settings.batches?.precomputeInterval = batchPrecomputeInterval
        }
        settings.operators = try OperatorAccess(token: try operatorTokenFile.map { try Self.readToken($0) }, publicFleet: publicFleet)
        settings.admission = try admissionRule()
        settings.upstream = try upstream.settings()
        settings.rolloutLifetime = try ChannelMetadata.parseDuration(rolloutLifetime)
        let server = try SchoolServer(settings: settings)
        try Self.run(listen) { try await server.run(host: host, port: port, tls: tls, onListening: $0) }
    }

    /// The certificate and key of --tls-cert and --tls-key (both or neither); nil for plain HTTP.
    func serverTLS() throws -> ServerTLS? {
        switch (tlsCert, tlsKey) {
        case (nil, nil): return nil
        case (let cert?, let key?): return try ServerTLS(certificateFile: cert, keyFile: key)
        default: throw UpdError(.usage, "--tls-cert and --tls-key go together")
        }
    }

    /// The rule `--admission` names, with its token.
    func admissionRule() throws -> AdmissionRule {
        switch (admission, enrolmentTokenFile) {
        case ("operator", nil): return .byOperator
        case ("auto", nil): return .automatic
        case ("token", let file?): return .byToken(Array(try Self.readToken(file, what: "enrolment token").utf8))
        case ("token", nil): throw UpdError(.usage, "--admission token needs --enrolment-token-file")
        case ("operator", _), ("auto", _): throw UpdError(.usage, "--enrolment-token-file is for --admission token only")
        default: throw UpdError(.usage, "--admission \(admission): operator, token or auto expected")
        }
    }

    /// A token in a file that only its owner may read, without its final newline.
    static func readToken(_ path: String, what: String = "operator token") throws -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { throw UpdError.system("stat", path) }
        guard info.st_mode & 0o077 == 0 else {
            throw UpdError(.permission, "\(path): the \(what) file may be read by others; chmod 600 it")
        }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return String(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static func address(_ text: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port),
              colon != text.startIndex else {
            throw UpdError(.usage, "--listen \(text): HOST:PORT expected")
        }
        return (String(text[..<colon]), port)
    }

    /// Runs a server until it is stopped, from this synchronous command; it prints the URL.
    static func run(_ listen: String, _ serve: @escaping @Sendable (@escaping @Sendable (String) -> Void) async throws -> Void) throws {
        let done = DispatchSemaphore(value: 0)
        let failure = Locked<String?>(nil)
        Task {
            do {
                try await serve { url in Console.print("updatinator serve: listening on \(url)") }
            } catch let error as UpdError {
                failure.withLock { $0 = error.message }
            } catch {
                failure.withLock { $0 = "cannot serve on \(listen): \(error)" }
            }
            done.signal()
        }
        done.wait()
        if let message = failure.withLock({ $0 }) { throw UpdError(.io, message) }
    }
}
