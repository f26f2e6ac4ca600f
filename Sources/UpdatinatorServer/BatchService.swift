import Foundation
import Glibc
import Updatinator

/// Batch answers for the school server: a device names the contents its plan downloads, in
/// order, each with the base it has (`POST /v1/batch`), and downloads them as one resumable
/// file (`GET /v1/batch/KEY`, see `ContentBatch`).
///
/// A batch is computed once and kept in a cache directory, named by the hash of its request,
/// because a school's laptops mostly make the same moves: it is a static delta computed lazily
/// for exactly the moves that happen. Identical requests that arrive while it is computed wait
/// for that one computation. At most `workers` batches are computed at once and `queueLimit`
/// more wait; beyond that a request is refused (503), so a flood cannot exhaust the server.
/// The cache is trimmed to `maxCacheBytes`, the least recently used first.
public final class BatchService: Sendable {
    public struct Settings: Sendable {
        public var cacheDirectory: String
        public var maxCacheBytes: UInt64 = 4 << 30
        public var workers = 1
        public var queueLimit = 8
        public var level: Int32 = ContentBatch.defaultLevel
        public var maxItems = 500_000
        public static let maxRequestBytes = 64 << 20

        public init(cacheDirectory: String) {
            self.cacheDirectory = cacheDirectory
        }
    }

    /// A parsed request: its items, the contents the device decoded just before them, and the
    /// most bytes the batch may have to be worth it.
    struct Request {
        let items: [ContentBatch.Item]
        var after: [ContentBatch.Item] = []
        let limit: UInt64?
        let device: String?
        var key: String {
            var text = "updatinator-batch 2\n"
            for i in after { text += "after \(i.hash.hex) \(i.size)\n" }
            for i in items { text += "\(i.hash.hex) \(i.size) \(i.base?.hex ?? "-") \(i.baseSize)\n" }
            return Blake2b.hash(Array(text.utf8)).hex
        }
        var bytes: UInt64 { items.reduce(0) { $0 + $1.size } }
    }

    let settings: Settings
    let repository: Repository
    let work: BatchWork

    public init(settings: Settings, repository: Repository) throws {
        self.settings = settings
        self.repository = repository
        work = BatchWork(workers: settings.workers, queueLimit: settings.queueLimit)
        try FileManager.default.createDirectory(atPath: settings.cacheDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
    }

    func path(forKey key: String) -> String { "\(settings.cacheDirectory)/\(key).batch" }

    static func parse(_ body: [UInt8], maxItems: Int) throws -> Request {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)), let fields = object as? [String: Any],
              let list = fields["items"] as? [[String: Any]] else {
            throw UpdError(.corrupt, "expected a JSON object with an array 'items'")
        }
        guard !list.isEmpty, list.count <= maxItems else { throw UpdError(.corrupt, "'items' must hold 1 to \(maxItems) items") }
        func hash(_ value: Any?, _ at: Int, _ name: String) throws -> ContentHash {
            guard let text = value as? String, let h = ContentHash(hex: text) else { throw UpdError(.corrupt, "item \(at): '\(name)' is not a content hash") }
            return h
        }
        func size(_ value: Any?, _ at: Int, _ name: String) throws -> UInt64 {
            guard let n = value as? Int, n > 0, n <= 1 << 30 else { throw UpdError(.corrupt, "item \(at): '\(name)' is not a size from 1 to 2^30") }
            return UInt64(n)
        }
        var items = [ContentBatch.Item]()
        for (at, item) in list.enumerated() {
            let h = try hash(item["hash"], at, "hash"), s = try size(item["size"], at, "size")
            if item["base"] != nil {
                items.append(ContentBatch.Item(hash: h, size: s, base: try hash(item["base"], at, "base"), baseSize: try size(item["base_size"], at, "base_size")))
            } else {
                items.append(ContentBatch.Item(hash: h, size: s))
            }
        }
        var after = [ContentBatch.Item]()
        if let value = fields["after"] {
            guard let list = value as? [[String: Any]], list.count <= maxItems else { throw UpdError(.corrupt, "'after' is not an array of contents") }
            for (at, item) in list.enumerated() {
                after.append(ContentBatch.Item(hash: try hash(item["hash"], at, "hash"), size: try size(item["size"], at, "size")))
            }
            guard after.reduce(0, { $0 + $1.size }) <= ContentBatch.Limits.standard.history else {
                throw UpdError(.corrupt, "'after' names more than \(ContentBatch.Limits.standard.history) bytes")
            }
        }
        let limit = fields["limit"].map { $0 as? Int }
        if let limit, (limit ?? -1) < 0 { throw UpdError(.corrupt, "'limit' is not a byte count") }
        let device = fields["device"] as? String
        return Request(items: items, after: after, limit: limit.flatMap { $0 }.map(UInt64.init), device: device)
    }

    /// The batch's key and size, computing it when the cache lacks it. Throws `BatchWork.Busy`
    /// when the work queue is full, and `UpdError(.usage)` naming a content the repository lacks.
    func prepare(_ request: Request) async throws -> (key: String, bytes: UInt64, computed: Bool) {
        let key = request.key
        let path = path(forKey: key)
        for hash in Set((request.after + request.items).flatMap { [$0.hash] + ($0.base.map { [$0] } ?? []) }) where try repository.blobs.blobSize(of: hash) == nil {
            throw UpdError(.usage, "content \(hash.hex) is not in the repository")
        }
        let (repository, level, workers) = (self.repository, settings.level, max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, settings.workers)))
        let (bytes, computed) = try await work.result(for: key, cached: { Self.cachedSize(path) }) {
            try ContentBatch.encode(request.items, after: request.after, to: path, level: level, workers: workers) { hash, size in
                try repository.blobs.readAll(hash, size: size)
            }
        }
        if computed { trimCache(keeping: path) }
        return (key, bytes, computed)
    }

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

/// Computations of batches: one per key at a time, at most `workers` running and `queueLimit`
/// waiting, each on a thread of its own (they take seconds to minutes).
actor BatchWork {
    struct Busy: Error {}

    private let workers: Int
    private let queueLimit: Int
    private var inFlight = [String: Task<UInt64, Error>]()
    private var running = 0
    private var waiting = [CheckedContinuation<Void, Never>]()

    init(workers: Int, queueLimit: Int) {
        self.workers = workers
        self.queueLimit = queueLimit
    }

    /// The cached result, the result of the computation in flight for `key`, or a new one.
    func result(for key: String, cached: () -> UInt64?, compute: @escaping @Sendable () throws -> UInt64) async throws -> (UInt64, Bool) {
        if let task = inFlight[key] { return (try await task.value, false) }
        if let size = cached() { return (size, false) }
        guard inFlight.count < workers + queueLimit else { throw Busy() }
        let task = Task {
            await acquire()
            defer { Task { await self.release() } }
            return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<UInt64, Error>) in
                let thread = Thread { continuation.resume(with: Result { try compute() }) }
                thread.name = "batch"
                thread.start()
            }
        }
        inFlight[key] = task
        defer { inFlight[key] = nil }
        return (try await task.value, true)
    }

    private func acquire() async {
        if running < workers {
            running += 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    /// Hands the slot to the next waiting computation, or frees it.
    private func release() {
        if waiting.isEmpty { running -= 1 } else { waiting.removeFirst().resume() }
    }
}
