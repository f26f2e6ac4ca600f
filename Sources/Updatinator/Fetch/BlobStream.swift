import Foundation

/// Blobs downloaded on a background thread just ahead of their use, and deleted after it.
///
/// Blobs are requested in the order they will be used and released in that order. At most
/// `window` compressed bytes are downloaded and not yet released at any moment (one blob is
/// always let through, however large), so an apply from a mirror needs only that much disk
/// beyond an apply from a local directory: `Planner.downloadWindow` models exactly this rule.
final class BlobStream: @unchecked Sendable {
    let store: BlobStore
    private let fetcher: CurlFetcher
    private let window: UInt64
    private let condition = NSCondition()
    private let sizes: [ContentHash: UInt64]
    private var reserved: UInt64 = 0
    private var admitted = Set<ContentHash>()
    private var arrived = Set<ContentHash>()
    private var ended = false
    private var cancelled = false
    private var failure: Error?
    private var report = FetchReport()

    /// Starts downloading `requests` (in order of use) into `directory`. What an earlier run
    /// left there is removed first (a power cut may have torn a complete blob, and blobs that
    /// are not next would take space the plan does not count), except the partial download of
    /// the first blob, which is resumed and verified.
    init(fetcher: CurlFetcher, requests: [BlobRequest], directory: String, window: UInt64) throws {
        self.fetcher = fetcher
        self.window = window
        store = BlobStore(directory: directory)
        try Sys.mkdirs(directory, mode: 0o700)
        try store.removeAll(keepingPartialOf: requests.first?.hash)
        sizes = Dictionary(requests.map { ($0.hash, $0.blobSize) }, uniquingKeysWith: { a, _ in a })
        let flow = CurlFetcher.Flow(admit: { [unowned self] in admit($0, size: $1) },
                                    arrived: { [unowned self] in markArrived($0) },
                                    cancelled: { [unowned self] in isCancelled })
        let thread = Thread { [self] in
            let result = Result { try fetcher.fetch(requests, into: store, flow: flow) }
            condition.withLock {
                switch result {
                case .success(let r): report = r
                case .failure(let e): failure = e
                }
                ended = true
                condition.broadcast()
            }
        }
        thread.name = "blob downloads"
        thread.start()
    }

    /// Whether this stream downloads the blob.
    func isExpected(_ hash: ContentHash) -> Bool { sizes[hash] != nil }

    /// The path of a downloaded, verified blob, waiting for it if need be; `whileWaiting` runs
    /// on this thread every fifth of a second of the wait (without the lock).
    func path(for hash: ContentHash, whileWaiting: () throws -> Void = {}) throws -> String {
        while true {
            let ready: Bool = try condition.withLock {
                if arrived.contains(hash) { return true }
                if let failure { throw failure }
                if ended { throw UpdError(.network, "blob \(hash.hex) was not downloaded") }
                _ = condition.wait(until: Date().addingTimeInterval(0.2))
                return arrived.contains(hash)
            }
            if ready { return store.path(for: hash) }
            try whileWaiting()
        }
    }

    /// Deletes a blob after its last use, making room for the next downloads.
    func release(_ hash: ContentHash) {
        Sys.unlink(store.path(for: hash))
        condition.withLock {
            arrived.remove(hash)
            if admitted.remove(hash) != nil, let size = sizes[hash] { reserved -= size }
        }
        fetcher.wakeUp()
    }

    /// Stops the downloads (if still running), waits for them, and returns what they did.
    @discardableResult
    func finish() -> FetchReport {
        condition.withLock { cancelled = true }
        fetcher.wakeUp()
        return condition.withLock {
            while !ended { condition.wait() }
            return report
        }
    }

    private func admit(_ hash: ContentHash, size: UInt64) -> Bool {
        condition.withLock {
            guard reserved == 0 || reserved + size <= window else { return false }
            admitted.insert(hash)
            reserved += size
            return true
        }
    }

    private func markArrived(_ hash: ContentHash) {
        condition.withLock {
            arrived.insert(hash)
            condition.broadcast()
        }
    }

    private var isCancelled: Bool { condition.withLock { cancelled } }
}
