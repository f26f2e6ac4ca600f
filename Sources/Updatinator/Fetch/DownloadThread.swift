import Foundation

/// Runs a stream's downloads on a background thread, and is what the applying thread waits on.
///
/// The lock and condition guard the stream's own state as well (`withLock`, `broadcast`): the
/// downloading side changes it and broadcasts, the applying side waits for what it needs. The
/// thread's end, its failure, the report of what was downloaded and the request to stop are
/// kept here once for `BlobStream` and `BatchStream`.
final class DownloadThread: @unchecked Sendable {
    private let condition = NSCondition()
    private let fetcher: CurlFetcher
    // Under the lock.
    private var ended = false
    private var stopping = false
    private var failure: Error?
    private var report = FetchReport()

    init(fetcher: CurlFetcher) {
        self.fetcher = fetcher
    }

    /// Starts `body` on a thread named `name`; its error, if any, is what waiters then throw.
    func start(_ name: String, _ body: @escaping @Sendable () throws -> Void) {
        let thread = Thread { [self] in
            let result = Result { try body() }
            condition.withLock {
                if case .failure(let error) = result { failure = error }
                ended = true
                condition.broadcast()
            }
        }
        thread.name = name
        thread.start()
    }

    /// Runs `body` holding the lock.
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        try condition.withLock(body)
    }

    /// Wakes every waiter; called holding the lock, after a change they may wait for.
    func broadcast() { condition.broadcast() }

    /// Waits, holding the lock, until `ready` holds or `finish` was called; whether to go on.
    /// For the downloading side (waiting for room in a window).
    func waitOnDownloadingSide(until ready: () -> Bool) -> Bool {
        while !ready() && !stopping { condition.wait() }
        return !stopping
    }

    /// Adds what a fetch did to the report (from either thread).
    func add(_ other: FetchReport) {
        condition.withLock { report.add(other) }
    }

    /// Whether `finish` was called.
    var isStopping: Bool { condition.withLock { stopping } }

    /// The pacing that makes the thread's fetches stop when `finish` is called.
    var flow: CurlFetcher.Flow { CurlFetcher.Flow(cancelled: { [unowned self] in isStopping }) }

    /// Waits until `ready` holds (it is checked holding the lock, after every broadcast).
    /// `whileWaiting` runs on this thread, without the lock, every fifth of a second of the
    /// wait (an apply's progress and cancellation). Throws the downloads' failure, or `missing`
    /// once they ended without what is awaited.
    func wait(until ready: () -> Bool, missing: @autoclosure () -> UpdError, whileWaiting: () throws -> Void) throws {
        while true {
            let deadline = Date().addingTimeInterval(0.2)
            let done: Bool = try condition.withLock {
                while true {
                    if ready() { return true }
                    if let failure { throw failure }
                    if ended { throw missing() }
                    if !condition.wait(until: deadline) { return false }
                }
            }
            if done { return }
            try whileWaiting()
        }
    }

    /// Stops the downloads (if still running), waits for the thread to end, and returns what
    /// they did. It may be called again.
    @discardableResult
    func finish() -> FetchReport {
        condition.withLock {
            stopping = true
            condition.broadcast()
        }
        fetcher.wakeUp()
        return condition.withLock {
            while !ended { condition.wait() }
            return report
        }
    }
}

extension FetchReport {
    mutating func add(_ other: FetchReport) {
        blobs += other.blobs
        bytes += other.bytes
        retries += other.retries
        failovers += other.failovers
        seconds += other.seconds
    }
}
