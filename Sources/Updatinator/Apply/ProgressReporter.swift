import Foundation

/// Where an apply or a deployment stands.
public struct ApplyProgress: Sendable {
    public var stepsDone = 0
    public var totalSteps = 0
    /// The downloads' progress, when the operation downloads.
    public var download: FetchProgress?
    /// The batch a school server is preparing, while the operation waits for it.
    public var waitingForBatch: BatchWait?
}

/// A batch of contents that a school server prepares on request: how many, and the most bytes
/// it may take (the plan's download bytes for those contents).
public struct BatchWait: Sendable, Equatable {
    public var items: Int
    public var bytes: UInt64
}

/// Tells an operation's observer where it stands, on the thread that writes the tree: at most
/// five times a second, at once when a wait for a batch begins or ends, and at the end; with
/// the latest progress of the downloads, whichever thread they run on.
final class ProgressReporter {
    private let observer: ((ApplyProgress) throws -> Void)?
    private var progress = ApplyProgress()
    private var last = Date.distantPast
    private let latestDownload = Locked<FetchProgress?>(nil)
    /// The stream whose waits for batches are reported.
    var downloads: ContentDownloads?

    init(_ observer: ((ApplyProgress) throws -> Void)?) {
        self.observer = observer
    }

    /// Keeps the fetcher's progress, which it reports on its own thread, for the next report;
    /// until it reports, nothing of `requests` is downloaded.
    func watch(_ fetcher: CurlFetcher, downloading requests: [BlobRequest]) {
        latestDownload.withLock {
            $0 = FetchProgress(bytes: 0, totalBytes: requests.reduce(0) { $0 + $1.downloadBytes }, blobs: 0, totalBlobs: requests.count,
                               rate: 0, secondsLeft: nil)
        }
        let previous = fetcher.progress
        fetcher.progress = { [weak self] p in
            self?.latestDownload.withLock { $0 = p }
            previous?(p)
        }
    }

    /// Reports `done` of `total` steps; throws what the observer throws (a cancellation).
    func report(_ done: Int, of total: Int, final: Bool = false) throws {
        guard let observer else { return }
        (progress.stepsDone, progress.totalSteps) = (done, total)
        // A batch prepared in less than a fifth of a second is still reported once.
        let wait = downloads?.takeBatchWait()
        guard final || wait != progress.waitingForBatch || Date().timeIntervalSince(last) >= 0.2 else { return }
        last = Date()
        progress.waitingForBatch = wait
        progress.download = latestDownload.withLock { $0 }
        try observer(progress)
    }
}
