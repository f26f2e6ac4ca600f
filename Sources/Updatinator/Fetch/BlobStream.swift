import Foundation
import Glibc

/// Blobs downloaded on a background thread just ahead of their use, and deleted after it.
///
/// Blobs are requested in the order they will be used and released in that order. At most
/// `window` compressed bytes are downloaded and not yet released at any moment (one blob is
/// always let through, however large), so an apply from a mirror needs only that much disk
/// beyond an apply from a local directory: `Planner.downloadWindow` models exactly this rule.
final class BlobStream: ContentDownloads, @unchecked Sendable {
    let store: BlobStore
    private let fetcher: CurlFetcher
    private let window: UInt64
    private let requests: [ContentHash: BlobRequest]
    private let downloads: DownloadThread
    // Under `downloads`' lock.
    private var reserved: UInt64 = 0
    private var admitted = Set<ContentHash>()
    private var arrived = Set<ContentHash>()

    /// Starts downloading `requests` (in order of use) into `directory`. What an earlier run
    /// downloaded there for these requests is kept: a complete download counts against the
    /// window in its turn and is verified when it is used (a power cut may have torn it; one
    /// that fails is downloaded again), and a partial one is resumed from its end once its
    /// bytes so far check out. Anything else there is removed.
    init(fetcher: CurlFetcher, requests: [BlobRequest], directory: String, window: UInt64) throws {
        self.fetcher = fetcher
        self.window = window
        store = BlobStore(directory: directory)
        try Sys.mkdirs(directory, mode: 0o700)
        // What an interrupted run left is kept only for the leading requests that fit in the
        // window, so that it never holds more on disk than the plan allowed.
        try store.removeAll(except: Self.leading(requests, within: window))
        self.requests = Dictionary(requests.map { ($0.hash, $0) }, uniquingKeysWith: { a, _ in a })
        downloads = DownloadThread(fetcher: fetcher)
        var flow = downloads.flow
        flow.admit = { [unowned self] in admit($0, size: $1) }
        flow.arrived = { [unowned self] in markArrived($0) }
        downloads.start("blob downloads") { [self, flow] in
            downloads.add(try fetcher.fetch(requests, into: store, flow: flow))
        }
    }

    /// The first requests whose downloads add up to at most `window` bytes.
    static func leading(_ requests: [BlobRequest], within window: UInt64) -> [BlobRequest] {
        var total: UInt64 = 0
        return Array(requests.prefix { request in
            total += request.downloadBytes
            return total <= window
        })
    }

    /// Whether this stream downloads the blob.
    func isExpected(_ hash: ContentHash) -> Bool { requests[hash] != nil }

    /// Writes a downloaded content into `fd`: inflated from its blob, or patched from its delta
    /// against the base that `base` reads (verified; nil when it is not at hand). A delta that
    /// cannot be used — no base, or a result that does not match the hash — is replaced by the
    /// content's full blob, downloaded there and then. `whileWaiting` runs on this thread every
    /// fifth of a second while a download is awaited.
    func write(_ hash: ContentHash, into fd: Int32, display: String, base: (ContentHash) throws -> [UInt8]?,
               whileWaiting: () throws -> Void = {}) throws {
        try downloads.wait(until: { arrived.contains(hash) }, missing: UpdError(.network, "blob \(hash.hex) was not downloaded"),
                           whileWaiting: whileWaiting)
        let request = requests[hash]!
        try Self.writeDownloaded(request, at: store.path(for: request), into: fd, display: display, base: base, store: store,
                                 fetcher: fetcher, problems: problems)
    }

    /// Writes a content from its download at `path`: inflated from its blob, or patched from its
    /// delta against the base `base` reads. A delta or a blob that fails is replaced by the content's blob,
    /// downloaded into `store` there and then, and the reason added to `problems`.
    static func writeDownloaded(_ request: BlobRequest, at path: String, into fd: Int32, display: String,
                                base: (ContentHash) throws -> [UInt8]?, store: BlobStore, fetcher: CurlFetcher,
                                problems: Locked<[String]>) throws {
        let write = { (chunk: UnsafeRawBufferPointer) in try Sys.writeAll(fd, chunk, path: display) }
        do {
            guard let delta = request.delta else {
                return try BlobStore.read(blobAt: path, hash: request.hash, size: request.size, sink: write)
            }
            guard let baseBytes = try delta.base == .empty ? [] : base(delta.base) else {
                throw UpdError(.corrupt, "\(display): the base \(delta.base.hex) of its delta is not intact")
            }
            try ContentDelta.decode(deltaAt: path, base: baseBytes, target: request.hash, size: request.size, sink: write)
        } catch let e as UpdError where e.code == .corrupt {
            // A delta that fails, or a blob from a pack (whose pieces are checked only here).
            problems.withLock { $0.append(e.message) }
            store.remove(request)
            try writeWholeBlob(request, into: fd, display: display, store: store, fetcher: fetcher)
        }
    }

    /// Writes a content from its blob, downloaded there and then (from the start of `fd`, which
    /// a failed attempt may have written to) by the operation's fetcher, so that the mirrors it
    /// has demoted are tried last; what the download did.
    @discardableResult
    static func writeWholeBlob(_ request: BlobRequest, into fd: Int32, display: String, store: BlobStore,
                               fetcher: CurlFetcher) throws -> FetchReport {
        guard ftruncate(fd, 0) == 0, lseek(fd, 0, SEEK_SET) == 0 else { throw UpdError.system("ftruncate", display) }
        let whole = request.withoutDelta
        let report = try fetcher.fetch([whole], into: store, flow: CurlFetcher.Flow(showsProgress: false))
        defer { store.remove(whole) }
        try BlobStore.read(blobAt: store.path(for: whole), hash: request.hash, size: request.size) { try Sys.writeAll(fd, $0, path: display) }
        return report
    }

    /// Why deltas were replaced by their full blobs.
    private let problems = Locked([String]())
    var fallbacks: [String] { problems.withLock { $0 } }

    /// Deletes a blob after its last use, making room for the next downloads.
    func release(_ hash: ContentHash) {
        store.remove(requests[hash]!)
        downloads.withLock {
            arrived.remove(hash)
            if admitted.remove(hash) != nil, let r = requests[hash] { reserved -= r.downloadBytes }
        }
        fetcher.wakeUp()
    }

    /// Stops the downloads (if still running), waits for them, and returns what they did.
    @discardableResult
    func finish() -> FetchReport { downloads.finish() }

    private func admit(_ hash: ContentHash, size: UInt64) -> Bool {
        downloads.withLock {
            guard reserved == 0 || reserved + size <= window else { return false }
            admitted.insert(hash)
            reserved += size
            return true
        }
    }

    private func markArrived(_ hash: ContentHash) {
        downloads.withLock {
            arrived.insert(hash)
            downloads.broadcast()
        }
    }
}
