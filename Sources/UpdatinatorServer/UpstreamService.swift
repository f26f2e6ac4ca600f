import Foundation
import Hummingbird
import Logging
import Updatinator

/// The school server's link to the tier above (`serve --upstream`): its repository is a
/// `RepositoryMirror` of the upstream one. A file a laptop asks for that the school lacks is
/// fetched then; concurrent requests for one file wait for one fetch (`FetchFlights`), so every
/// content crosses the upstream link at most once. In the background it checks the national
/// rollout (with a national keyring) and the followed channels every `interval`, fetching the
/// contents of the versions those name inside the prefetch window at the prefetch rate, so the
/// first laptop finds them there; and it forwards the inventory's outbox upstream.
///
/// While upstream cannot be reached the school serves, decides and records from what it holds;
/// a file it lacks then gets 503 with `Retry-After`.
public final class UpstreamService: Sendable {
    public struct Settings: Sendable {
        public var mirror: RepositoryMirror.Settings
        /// The channels whose versions are fetched ahead of the first laptop.
        public var channels: [String] = []
        /// How often the national rollout and the channels are checked.
        public var interval: TimeInterval = 60
        /// When contents may be fetched ahead (nil: at any time).
        public var prefetchWindow: TimeWindow?
        /// The prefetch's rate limit in bytes per second (nil: none).
        public var prefetchRate: UInt64?
        /// Contents per prefetch step: a laptop that asks for one of them waits for that step.
        public var prefetchStep = 64
        /// The school's own identity, which signs what it sends upstream (its reports, its requests for its rollout).
        public var signer: RequestSigner
        /// How often the outbox is sent upstream while it holds reports.
        public var forwardInterval: TimeInterval = 10
        /// Reports per forwarded batch.
        public var forwardBatch = 500
        /// The upstream server's decision keyring: with it, the school follows the national
        /// rollout signed with those keys (`NationalRollout`); without it, it decides alone.
        public var nationalKeyring: Keyring?

        public init(mirror: RepositoryMirror.Settings, signer: RequestSigner) {
            self.mirror = mirror
            self.signer = signer
        }
    }

    public let settings: Settings
    public let mirror: RepositoryMirror
    let flights = FetchFlights()
    /// Where fetches from upstream wait for the network.
    let threads = WorkerThreads(name: "upstream", count: 4)
    /// Where the school's signed requests wait (its rollout, its reports): a slow fetch never
    /// holds up a national halt.
    let calls = WorkerThreads(name: "upstream calls", count: 2)
    let prefetcher: CurlFetcher
    /// For the requests the school signs.
    let caller: CurlFetcher
    let metrics: ServerMetrics
    let logger: Logger
    /// Told when following a channel may have stored a manifest (the repository index rescans).
    let manifestsChanged: @Sendable () -> Void
    /// The last national rollout verified, kept on disk beside the mirror (a hidden name, never served).
    let rollout: Locked<NationalRollout?>
    let rolloutFile: NationalRolloutFile

    /// Opens the mirror at `root`; a mirror without `repo.json` fetches it now, so the first start
    /// needs upstream.
    public init(root: String, settings: Settings, metrics: ServerMetrics, logger: Logger,
                manifestsChanged: @escaping @Sendable () -> Void = {}) throws {
        self.settings = settings
        self.manifestsChanged = manifestsChanged
        self.metrics = metrics
        self.logger = logger
        mirror = try RepositoryMirror(root: root, settings: settings.mirror)
        var prefetching = settings.mirror.fetchOptions
        prefetching.rateLimit = settings.prefetchRate
        prefetcher = try CurlFetcher(options: prefetching)
        caller = try CurlFetcher(options: settings.mirror.fetchOptions)
        rolloutFile = NationalRolloutFile(path: "\(root)/.national-rollout")
        rollout = Locked(settings.nationalKeyring.flatMap { [rolloutFile] in rolloutFile.load(keyring: $0, school: settings.signer.sender) })
        if mirror.needsFetch(.config) {
            do {
                try record(mirror.fetch([.config]), kind: "document")
            } catch let error as UpdError where FileManager.default.fileExists(atPath: root + "/repo.json") {
                logger.warning("upstream: \(error.message); serving the copy held")
            }
        }
    }

    /// Makes `file` present, fetching it from upstream when it is missing (or a channel due for
    /// a check). Throws the HTTP answer when it cannot: 404 when upstream lacks it or no verified
    /// document names it, 503 while upstream cannot be reached, 502 when what it sent is refused.
    /// A channel upstream cannot give keeps being served from the copy held.
    func ensure(_ file: RepositoryFile) async throws {
        guard mirror.needsFetch(file) else { return }
        do {
            try await fetch([file], via: nil)
        } catch let error as HTTPError where file.isMutable && FileManager.default.fileExists(atPath: "\(mirror.root)/\(file.path)") {
            logger.warning("upstream: \(error.body ?? "\(error.status)"); serving the copy of \(file.path) held")
        }
    }

    /// Makes the contents present that a verified manifest names and the school lacks (a batch's).
    func ensureContents(_ hashes: some Sequence<ContentHash>) async throws {
        let missing = mirror.missingContents(hashes)
        guard !missing.isEmpty else { return }
        try await fetch(missing.map { .blob($0) }, via: nil)
    }

    /// `ensure` from a thread that may block (a policy thread, deciding).
    func ensureBlocking(_ file: RepositoryFile) throws {
        let done = DispatchSemaphore(value: 0)
        let outcome = Locked<Error?>(nil)
        Task {
            do { try await ensure(file) } catch { outcome.withLock { $0 = error } }
            done.signal()
        }
        done.wait()
        if let error = outcome.withLock({ $0 }) { throw error }
    }

    /// Fetches the files, each once however many ask at the same time.
    private func fetch(_ files: [RepositoryFile], via fetcher: CurlFetcher?) async throws {
        let (mirror, threads) = (self.mirror, self.threads)
        do {
            try await flights.fetch(files) { claimed in
                // Another request may have fetched one of them just before this claim.
                let needed = claimed.filter { mirror.needsFetch($0) }
                guard !needed.isEmpty else { return }
                let fetched = try await threads.run { try mirror.fetch(needed, via: fetcher) }
                self.record(fetched, kind: needed.allSatisfy(\.isContent) ? "content" : "document")
            }
        } catch let error as UpdError {
            if error.code != .usage { metrics.upstreamFailure() }
            switch error.code {
            case .network where !mirror.isReachable:
                throw HTTPError(.serviceUnavailable, headers: [.retryAfter: String(Int(settings.mirror.retryAfter))], message: error.message)
            case .network, .usage:
                throw HTTPError(.notFound, message: error.message)
            default:
                logger.error("upstream: \(error.message)")
                throw HTTPError(.badGateway, message: error.message)
            }
        }
    }

    private func record(_ fetched: RepositoryMirror.Fetched, kind: String) {
        metrics.upstream(files: fetched.files, bytes: fetched.bytes, kind: kind)
    }

    /// Checks the national rollout and the followed channels every `interval` until cancelled,
    /// each on its own schedule, so that fetching a new version ahead never delays a national
    /// halt: fetching each channel's manifest, and its contents inside the prefetch window.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
            if settings.nationalKeyring != nil {
                group.addTask {
                    await repeatEvery(self.settings.interval) {
                        do {
                            try await self.calls.run { try self.refreshRollout() }
                        } catch {
                            self.logger.warning("upstream: national rollout: \(error); keeping the one held")
                        }
                    }
                }
            }
            group.addTask {
                await repeatEvery(self.settings.interval) {
                    for channel in self.settings.channels {
                        do {
                            try await self.follow(channel)
                        } catch {
                            self.logger.warning("upstream: channel \(channel): \((error as? HTTPError)?.body ?? "\(error)")")
                        }
                    }
                }
            }
        }
    }

    /// One check of a followed channel.
    func follow(_ channel: String) async throws {
        let file = RepositoryFile.channel(channel)
        try await ensure(file)
        let bytes = try FileDescriptor.readRegularFile(beneath: mirror.root, components: ["channels", "\(channel).json"], limit: 64 * 1024)
        let metadata = try ChannelMetadata.parse(bytes, source: file.path)
        mirror.markInUse(image: metadata.image, version: metadata.version)
        try await ensure(.manifest(image: metadata.image, version: metadata.version))
        manifestsChanged()
        guard settings.prefetchWindow?.contains(Date()) ?? true,
              let contents = mirror.contents(image: metadata.image, version: metadata.version) else { return }
        let missing = mirror.missingContents(contents)
        var start = 0
        while start < missing.count, !Task.isCancelled {
            let step = missing[start..<min(missing.count, start + settings.prefetchStep)]
            try await fetch(step.map { .blob($0) }, via: prefetcher)
            start += step.count
        }
    }
}

extension UpstreamService {
    /// Sends the outbox's reports upstream every `forwardInterval` until cancelled, at once again
    /// while a full batch went; a failure is logged when it begins and when it ends.
    func forwardReports(from inventory: FleetInventory) async {
        var failing = false
        while !Task.isCancelled {
            do {
                let sent = try await calls.run { try self.forwardOnce(from: inventory) }
                if failing { logger.notice("upstream: reports are forwarded again") }
                failing = false
                if sent == settings.forwardBatch { continue }
            } catch {
                if !failing { logger.warning("upstream: reports not forwarded, kept in the outbox: \(error)") }
                failing = true
            }
            try? await Task.sleep(for: .seconds(settings.forwardInterval))
        }
    }

    /// Sends the oldest reports of the outbox in one signed request, and removes them once
    /// upstream answered that it recorded them; how many. Blocks.
    func forwardOnce(from inventory: FleetInventory) throws -> Int {
        let entries = try inventory.outbox(limit: settings.forwardBatch)
        guard let last = entries.last else { return 0 }
        let body = try WireCoding.encode(ForwardedReports(epoch: try inventory.outboxEpoch(), reports: entries))
        let server = settings.mirror.upstream
        let response = try settings.signer.post("v1/reports", to: server, body: body, via: caller)
        if let refusal = DeviceRefusal(response) { throw refusal.error(server + "/v1/reports") }
        guard response.status == 200,
              let answer = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
              (answer["through"] as? NSNumber)?.int64Value == last.seq else {
            throw UpdError(.network, "\(server)/v1/reports answered \(response.status): \(String(decoding: response.body.prefix(200), as: UTF8.self))")
        }
        try inventory.removeFromOutbox(through: last.seq)
        metrics.forwarded(entries.count)
        return entries.count
    }
}

extension UpstreamService {
    /// Why the national rollout does not let `device` move to `image` `version`, or nil when it
    /// does (or the school follows none). Until the first one arrives, nothing is allowed.
    func nationalRefusal(device: String, image: String, version: String) -> (NoUpdateReason, String)? {
        guard settings.nationalKeyring != nil else { return nil }
        guard let held = rollout.withLock({ $0 }) else {
            return (.held, "this school has no national rollout yet; no moves until it reaches its upstream")
        }
        return held.refusal(device: device, image: image, version: version, now: Int64(Date().timeIntervalSince1970))
    }

    /// Asks upstream for this school's rollout, signed, and keeps it once verified (not older
    /// than the one held). Upstream setting none (404) drops the one held. Blocks.
    func refreshRollout() throws {
        guard let keyring = settings.nationalKeyring else { return }
        let server = settings.mirror.upstream
        let response = try settings.signer.post("v1/rollout", to: server, body: Array("{}".utf8), via: caller, maxResponseBytes: 1 << 20)
        if let refusal = DeviceRefusal(response) { throw refusal.error(server + "/v1/rollout") }
        if response.status == 404 {
            rollout.withLock { $0 = nil }
            rolloutFile.remove()
            return
        }
        guard response.status == 200 else {
            throw UpdError(.network, "\(server)/v1/rollout answered \(response.status): \(String(decoding: response.body.prefix(200), as: UTF8.self))")
        }
        let held = rollout.withLock { $0?.time } ?? 0
        let fresh = try NationalRollout.verify(envelope: response.body, keyring: keyring, school: settings.signer.sender,
                                               notBefore: held, source: server + "/v1/rollout")
        try rolloutFile.save(response.body)
        rollout.withLock { $0 = fresh }
    }
}

/// Fetches in flight, by file: a request for a file already being fetched waits for that fetch.
actor FetchFlights {
    private var running = [RepositoryFile: Task<Void, Error>]()

    /// Runs `work` for the files no fetch in flight claims, and waits for that and the others.
    func fetch(_ files: [RepositoryFile], _ work: @escaping @Sendable ([RepositoryFile]) async throws -> Void) async throws {
        var waits = Array(Set(files.compactMap { running[$0] }))
        let unclaimed = files.filter { running[$0] == nil }
        if !unclaimed.isEmpty {
            let task = Task { try await work(unclaimed) }
            for file in unclaimed { running[file] = task }
            waits.append(task)
            Task {
                _ = await task.result
                self.finished(unclaimed)
            }
        }
        for task in waits { try await task.value }
    }

    private func finished(_ files: [RepositoryFile]) {
        for file in files { running[file] = nil }
    }

}
