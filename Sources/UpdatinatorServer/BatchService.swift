import Foundation
import Glibc
import Logging
import Updatinator

/// Batch answers for the school server: a device names the contents its plan downloads, in
/// order, each with the base it has (`POST /v1/batch`), and downloads them as one resumable
/// file (`GET /v1/batch/KEY`, see `ContentBatch`).
///
/// A batch is computed once and kept in a cache directory, named by the hash of its request,
/// because a school's laptops mostly make the same moves: it is a static delta computed lazily
/// for exactly the moves that happen. Identical requests that arrive while it is computed wait
/// for that one computation (a device that asks for a stream reads it as it is written), and
/// `BatchPrecompute` computes the batches of a coming move before its first device asks. At
/// most `workers` batches are computed at once and `queueLimit` more wait; beyond that a
/// request is refused (503), so a flood cannot exhaust the server.
/// The cache is trimmed to `maxCacheBytes`, the least recently used first.
public final class BatchService: Sendable {
    public struct Settings: Sendable {
        public var cacheDirectory: String
        public var maxCacheBytes: UInt64 = 4 << 30
        public var workers = 1
        public var queueLimit = 8
        public var level: Int32 = ContentBatch.defaultLevel
        public var maxItems = 500_000
        /// Whether the server computes ahead the batches of the moves its devices are about to
        /// make (`BatchPrecompute`), and at which hours (any hour when nil).
        public var precompute = true
        public var precomputeHours: TimeWindow?
        /// How often the inventory is looked at for moves to compute ahead, in seconds.
        public var precomputeInterval: Double = 60
        public static let maxRequestBytes = 64 << 20

        public init(cacheDirectory: String) {
            self.cacheDirectory = cacheDirectory
        }
    }

    let settings: Settings
    let repository: Repository
    let work: BatchWork
    /// Where a request's contents are looked up and the cache is read: a request may name a
    /// million contents, each a `stat`.
    let fileThreads: WorkerThreads

    /// `logger` hears of every computation that fails (a device that asked for a stream, or
    /// none, may be the only one to have waited for it).
    public init(settings: Settings, repository: Repository, fileThreads: WorkerThreads, logger: Logger) throws {
        self.settings = settings
        self.repository = repository
        self.fileThreads = fileThreads
        work = BatchWork(workers: settings.workers, queueLimit: settings.queueLimit) { key, error in
            logger.error("batch \(key): \(error); its devices download its contents one by one")
        }
        try FileManager.default.createDirectory(atPath: settings.cacheDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        // Batches a stopped server was computing: begun again when asked for.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: settings.cacheDirectory)) ?? [] where name.hasSuffix(".part") {
            unlink("\(settings.cacheDirectory)/\(name)")
        }
    }

    func path(forKey key: String) -> String { "\(settings.cacheDirectory)/\(key).batch" }

    /// The batch's key and size, computing it when the cache lacks it; for a request that asks
    /// for a stream, the computation is started (or joined) and no size is returned: its download
    /// follows it (`streamComputing`). Throws `BatchWork.Busy` when the work queue is full, and
    /// `UpdError(.usage)` naming a content the repository lacks.
    func prepare(_ request: BatchRequest) async throws -> (key: String, bytes: UInt64?, computed: Bool) {
        let repository = self.repository
        let (key, cached): (String, UInt64?) = try await fileThreads.run {
            for hash in Set((request.after + request.items).flatMap { [$0.hash] + ($0.base.map { [$0] } ?? []) })
            where try repository.blobs.blobSize(of: hash) == nil {
                throw UpdError(.usage, "content \(hash.hex) is not in the repository")
            }
            let key = request.key
            return (key, Self.cachedSize(self.path(forKey: key)))
        }
        if let cached { return (key, cached, false) }
        let path = path(forKey: key)
        let compute = computation(request, path: path, workers: max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, settings.workers)))
        if request.stream {
            return (key, nil, try await work.start(key, compute))
        }
        let (bytes, computed) = try await work.result(for: key, compute: compute)
        return (key, bytes, computed)
    }

    /// Computes the batch of `request` unless it is cached or being computed, on the thread
    /// for batches computed ahead: one core, at a lower CPU priority (nice 10).
    func computeAhead(_ request: BatchRequest) async throws {
        let key = request.key
        let compute = computation(request, path: path(forKey: key), workers: 1)
        _ = try await work.result(for: key, ahead: true) {
            // (Linux keeps a nice value per thread; 0 names the calling one.)
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
            return try compute()
        }
    }

    /// The computation of `request`'s batch into `path` on `workers` threads: its size, and
    /// whether it computed it (not when a computation that left the queue meanwhile did).
    private func computation(_ request: BatchRequest, path: String, workers: Int) -> @Sendable () throws -> (UInt64, Bool) {
        let (repository, level) = (repository, settings.level)
        return {
            if let size = Self.cachedSize(path) { return (size, false) }
            let bytes = try ContentBatch.encode(request.items, after: request.after, to: path, level: level, workers: workers) { hash, size in
                try repository.blobs.readAll(hash, size: size)
            }
            self.trimCache(keeping: path)
            return (bytes, true)
        }
    }

    /// Whether the batch `key` is being computed.
    func isComputing(_ key: String) async -> Bool { await work.isComputing(key) }

    /// The size of a cached batch, marking it used; nil when it is not cached.
    static func cachedSize(_ path: String) -> UInt64? {
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
        utime(path, nil)
        return UInt64(st.st_size)
    }

    /// Removes the least recently used batches until the cache fits its bound.
    func trimCache(keeping kept: String) {
        let directory = settings.cacheDirectory
        var files = [(path: String, bytes: UInt64, used: Int)]()
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasSuffix(".batch") {
            var st = stat()
            guard lstat("\(directory)/\(name)", &st) == 0 else { continue }
            files.append(("\(directory)/\(name)", UInt64(st.st_size), st.st_mtim.tv_sec))
        }
        var total = files.reduce(0) { $0 + $1.bytes }
        for file in files.sorted(by: { $0.used < $1.used }) where total > settings.maxCacheBytes && file.path != kept {
            unlink(file.path)
            total -= file.bytes
        }
    }
}

/// Computations of batches: one per key at a time, at most `workers` running (each on a
/// thread of its own: they take seconds to minutes) and `queueLimit` waiting, and those
/// computed ahead of their devices one at a time on a thread of their own.
actor BatchWork {
    struct Busy: Error {}

    private let threads: WorkerThreads
    private let aheadThread = WorkerThreads(name: "batch ahead", count: 1)
    private let limit: Int
    private var inFlight = [String: Task<(UInt64, Bool), Error>]()
    /// The keys in flight that are computed ahead (they do not count against `limit`).
    private var ahead = Set<String>()

    private let failed: @Sendable (String, Error) -> Void

    init(workers: Int, queueLimit: Int, failed: @escaping @Sendable (String, Error) -> Void) {
        threads = WorkerThreads(name: "batch", count: workers)
        limit = max(1, workers) + max(0, queueLimit)
        self.failed = failed
    }

    /// The result of the computation in flight for `key` (as not computed by this request), or
    /// of a new one: its size, and whether it was computed (false when `compute` found it cached).
    func result(for key: String, ahead: Bool = false, compute: @escaping @Sendable () throws -> (UInt64, Bool)) async throws -> (UInt64, Bool) {
        if let task = inFlight[key] { return (try await task.value.0, false) }
        let task = try begin(key, ahead: ahead, compute)
        return try await task.value
    }

    /// Starts the computation of `key` unless it is in flight, without waiting for it; whether
    /// this call started it.
    func start(_ key: String, _ compute: @escaping @Sendable () throws -> (UInt64, Bool)) throws -> Bool {
        guard inFlight[key] == nil else { return false }
        _ = try begin(key, compute)
        return true
    }

    func isComputing(_ key: String) -> Bool { inFlight[key] != nil }

    /// The task computing `key`, in flight until it ends (one computed ahead does not count
    /// against the limit: there is one at a time).
    private func begin(_ key: String, ahead: Bool = false, _ compute: @escaping @Sendable () throws -> (UInt64, Bool)) throws -> Task<(UInt64, Bool), Error> {
        guard ahead || inFlight.count - self.ahead.count < limit else { throw Busy() }
        let task = Task { [threads, aheadThread] in try await (ahead ? aheadThread : threads).run(compute) }
        inFlight[key] = task
        if ahead { self.ahead.insert(key) }
        Task {
            do { _ = try await task.value } catch { self.failed(key, error) }
            self.finished(key)
        }
        return task
    }

    private func finished(_ key: String) {
        inFlight[key] = nil
        ahead.remove(key)
    }
}
