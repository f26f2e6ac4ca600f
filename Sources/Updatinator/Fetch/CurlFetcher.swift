import CCurl
import Foundation
import Glibc

/// Downloads files and blobs from an ordered list of mirrors with libcurl's multi interface.
///
/// Several transfers run at once on kept-alive connections. Each download goes to a partial
/// file beside its destination and is resumed with a Range request after an interruption. A
/// mirror that fails a blob, sends a corrupt one, or sends more than the blob's declared size is
/// left for the next mirror and demoted for later blobs. Errors that may pass (5xx, dropped
/// connections) are retried with exponential back-off and jitter. One rate limit, which can be
/// changed while a fetch runs, is shared by all transfers.
///
/// A fetch runs on the calling thread; `setRateLimit` and `wakeUp` may be called from any other.
public final class CurlFetcher: @unchecked Sendable {
    public let options: FetchOptions
    /// Called on the fetching thread as bytes arrive (at most a few times a second).
    public var progress: ((FetchProgress) -> Void)?

    private let rateLimit: Locked<UInt64?>
    private let cancelled = Locked(false)
    /// The running fetch's multi handle (its address, 0 for none), for `wakeUp`.
    private let runningMulti = Locked<UInt>(0)
    private var demotions: [Int]
    private var tokens: Double = 0
    private var lastRefill = Date()
    private var lastProgress = Date.distantPast

    public init(options: FetchOptions) throws {
        try options.validate()
        precondition(Self.curlReady, "libcurl failed to initialize")
        self.options = options
        rateLimit = Locked(options.rateLimit)
        demotions = Array(repeating: 0, count: options.mirrors.count)
    }

    static let curlReady: Bool = curl_global_init(3) == CURLE_OK  // CURL_GLOBAL_ALL

    /// Changes the overall rate limit, also while a fetch runs (from any thread).
    public func setRateLimit(_ bytesPerSecond: UInt64?) {
        rateLimit.withLock { $0 = bytesPerSecond }
    }

    /// Makes a running fetch stop soon with an error (from any thread).
    public func cancel() {
        cancelled.withLock { $0 = true }
        wakeUp()
    }

    /// Interrupts a running fetch's wait for network events, so that it looks at `Flow` again.
    public func wakeUp() {
        runningMulti.withLock { address in
            if let multi = UnsafeMutableRawPointer(bitPattern: address) { curl_multi_wakeup(multi) }
        }
    }

    /// Downloads every requested blob the store lacks into it, each verified before it gets its name.
    @discardableResult
    public func fetch(_ requests: [BlobRequest], into store: BlobStore) throws -> FetchReport {
        try fetch(requests, into: store, flow: nil)
    }

    /// How a consumer paces a fetch that it reads while it runs (see `BlobStream`).
    struct Flow: Sendable {
        /// Asked once per blob, in request order, before its download starts: may a blob of this
        /// compressed size start now? A refusal holds back that blob and every later one.
        let admit: @Sendable (ContentHash, UInt64) -> Bool
        /// A blob is complete and verified in the store.
        let arrived: @Sendable (ContentHash) -> Void
        /// Whether to give up.
        let cancelled: @Sendable () -> Bool
    }

    /// Downloads the requested blobs the store lacks, in the order given.
    func fetch(_ requests: [BlobRequest], into store: BlobStore, flow: Flow?) throws -> FetchReport {
        var targets = [Target]()
        var seen = Set<ContentHash>()
        for r in requests where seen.insert(r.hash).inserted {
            let final = store.path(for: r)
            let prefix = String(r.hash.hex.prefix(2))
            let name = String(final.split(separator: "/").last!)
            // The prefix directory is opened without following a symlink (`CACHE/ab -> /etc`).
            let directory = try store.openDirectory(prefix: prefix, create: true)
            if let st = try Sys.status(in: directory, name, display: final), st.st_mode & S_IFMT == S_IFREG {
                flow?.arrived(r.hash)
                continue
            }
            let partial = "\(Sys.parentDirectory(of: final))/.partial-\(name)"
            let place = Place(destination: final, name: name, partialName: ".partial-\(name)") {
                try store.openDirectory(prefix: prefix, create: true)
            }
            if let delta = r.delta {
                // A delta can be checked only when it is patched against its base; one that fails
                // there is replaced by the content's blob (see `BlobStream.write`). Its size is
                // exact, so a partial download of that size is complete.
                targets.append(Target(label: "delta \(name)", path: ContentDelta.path(base: delta.base, target: r.hash), hash: r.hash,
                                      destination: final, partial: partial, place: place, maxBytes: delta.bytes, verify: { _ in }))
            } else {
                targets.append(Target(label: "blob \(name)", path: "blobs/\(name.prefix(2))/\(name)", hash: r.hash, destination: final,
                                      partial: partial, place: place, maxBytes: r.blobSize,
                                      verify: { file in try BlobStore.read(blobAt: file, hash: r.hash, size: r.size) { _ in } }))
            }
        }
        return try run(targets, flow: flow)
    }

    /// Downloads one file of the repository (a manifest, a signature) to `destination`.
    @discardableResult
    public func fetchFile(_ path: String, to destination: String, maxBytes: UInt64) throws -> FetchReport {
        let name = String(destination.split(separator: "/").last ?? "")
        // The caller names the directory; only the files in it are opened without following.
        let place = Place(destination: destination, name: name, partialName: name + ".partial") {
            try Sys.openDirectory(Sys.parentDirectory(of: destination))
        }
        return try run([Target(label: path, path: path, hash: nil, destination: destination, partial: destination + ".partial",
                               place: place, maxBytes: maxBytes, verify: nil)], flow: nil)
    }

    /// A download's directory and the names of its file and partial file in it. Every write goes
    /// through a descriptor of that directory and never follows a symlink at its names.
    struct Place {
        let destination: String
        let name: String
        let partialName: String
        /// Opens the directory, refusing (`unsafe`) a symlink on the way where the caller did not name it.
        let openDirectory: () throws -> FileDescriptor
    }

    struct Target {
        let label: String
        /// The path below a mirror's root.
        let path: String
        /// The blob's hash, for a blob.
        let hash: ContentHash?
        let destination: String
        let partial: String
        let place: Place
        /// The most a mirror may send: more is cut off.
        let maxBytes: UInt64
        /// Checks a complete download; throwing means the mirror sent a corrupt file.
        let verify: ((String) throws -> Void)?

        /// Verifies the complete partial download and gives it its name (a corrupt one throws
        /// `.corrupt` and is removed).
        func promote() throws {
            do {
                try verify?(partial)
            } catch let e as UpdError where e.code == .corrupt {
                removePartial()
                throw e
            }
            try Sys.rename(in: place.openDirectory(), place.partialName, place.name, display: destination)
        }

        /// Removes the partial download, if its directory can still be opened safely.
        func removePartial() {
            if let directory = try? place.openDirectory() { Sys.unlink(in: directory, place.partialName) }
        }

        /// Opens the partial download for appending (creating it); anything but a regular file
        /// there (a symlink, a FIFO) is refused (`unsafe`).
        func openPartial() throws -> FileDescriptor {
            try Sys.openRegularFile(in: place.openDirectory(), place.partialName, flags: O_WRONLY | O_CREAT | O_APPEND, mode: 0o644,
                                    display: partial)
        }
    }

    /// One target's progress through the mirrors.
    final class Job {
        let target: Target
        var order: [Int]
        var position = 0
        var attempts = 0
        /// Whether the consumer has let it start (it keeps its place when retried).
        var admitted = false
        var notBefore = Date.distantPast
        var problems = [String]()

        init(target: Target, order: [Int]) {
            self.target = target
            self.order = order
        }

        var mirror: Int { order[position] }
    }

    /// A running transfer; the write callback's context.
    final class Transfer {
        let job: Job
        let easy: UnsafeMutableRawPointer
        /// The partial download.
        let file: FileDescriptor
        /// The file a `file://` mirror's transfer reads, opened by `openLocalFile`.
        let source: FileDescriptor?
        var received: UInt64
        let resumedFrom: UInt64
        var checkedResponse = false
        var exceeded = false
        var paused = false
        var writeFailed: Int32 = 0
        unowned let fetcher: CurlFetcher

        init(job: Job, easy: UnsafeMutableRawPointer, file: FileDescriptor, source: FileDescriptor?, received: UInt64, fetcher: CurlFetcher) {
            self.job = job
            self.easy = easy
            self.file = file
            self.source = source
            self.received = received
            resumedFrom = received
            self.fetcher = fetcher
        }

        /// Closes the partial download and the local source, once the transfer is over.
        func close() {
            file.close()
            source?.close()
        }
    }

    private static let write: CCurl_write_callback = { data, size, count, context in
        let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
        return transfer.fetcher.receive(transfer, data!, size * count)
    }

    /// The write callback's work: checks the response once, applies the rate limit and the byte
    /// cap, and appends to the partial file. Returning less than `count` aborts the transfer.
    private func receive(_ t: Transfer, _ data: UnsafeMutablePointer<CChar>, _ count: Int) -> Int {
        if !t.checkedResponse {
            t.checkedResponse = true
            var code = 0
            _ = CCurl_easy_getinfo_long(t.easy, CURLINFO_RESPONSE_CODE, &code)
            // A server that ignores the Range request sends the whole blob again.
            if t.resumedFrom > 0 && code == 200 {
                guard ftruncate(t.file.rawValue, 0) == 0, lseek(t.file.rawValue, 0, SEEK_SET) == 0 else { t.writeFailed = errno; return 0 }
                t.received = 0
            }
        }
        if rateLimit.withLock({ $0 }) != nil {
            if tokens <= 0 {
                t.paused = true
                return Int(CCurl_WRITEFUNC_PAUSE)
            }
            tokens -= Double(count)
        }
        guard t.received + UInt64(count) <= t.job.target.maxBytes else {
            t.exceeded = true
            return 0
        }
        do {
            try Sys.writeAll(t.file.rawValue, UnsafeRawBufferPointer(start: data, count: count), path: t.job.target.partial)
        } catch {
            t.writeFailed = errno
            return 0
        }
        t.received += UInt64(count)
        bytesReceived += UInt64(count)
        return count
    }

    private var bytesReceived: UInt64 = 0

    /// Mirrors in order, the least demoted first (the given order breaks ties).
    private func mirrorOrder() -> [Int] {
        Array(0..<options.mirrors.count).sorted { (demotions[$0], $0) < (demotions[$1], $1) }
    }

    private func run(_ targets: [Target], flow: Flow?) throws -> FetchReport {
        let began = Date()
        var report = FetchReport()
        bytesReceived = 0
        guard !targets.isEmpty else { return report }
        guard let multi = curl_multi_init() else { throw UpdError(.network, "libcurl: cannot create a multi handle") }
        runningMulti.withLock { $0 = UInt(bitPattern: multi) }
        var pending = targets.map { Job(target: $0, order: mirrorOrder()) }
        var active = [UnsafeMutableRawPointer: Transfer]()
        var failure: UpdError?
        let totalBytes = targets.reduce(0) { $0 + $1.maxBytes }
        defer {
            for (easy, t) in active {
                curl_multi_remove_handle(multi, easy)
                curl_easy_cleanup(easy)
                t.close()
                Unmanaged.passUnretained(t).release()
            }
            runningMulti.withLock { $0 = 0 }
            curl_multi_cleanup(multi)
        }

        /// Acts on what became of a job: counted, queued again, or the fetch's failure.
        func settle(_ outcome: Outcome, _ job: Job) {
            switch outcome {
            case .done:
                report.blobs += 1
                if let hash = job.target.hash { flow?.arrived(hash) }
            case .retry:
                report.retries += 1
                pending.append(job)
            case .nextMirror:
                report.failovers += 1
                pending.append(job)
            case .failed(let error):
                failure = error
            }
        }

        while failure == nil && (!pending.isEmpty || !active.isEmpty) {
            if flow?.cancelled() == true || cancelled.withLock({ $0 }) {
                throw UpdError(.network, "the download was cancelled")
            }
            let now = Date()
            while active.count < options.concurrency, let index = nextJob(&pending, now: now, flow: flow) {
                let job = pending.remove(at: index)
                if try completedEarlier(job.target) {
                    report.blobs += 1
                    if let hash = job.target.hash { flow?.arrived(hash) }
                    continue
                }
                switch try start(job, multi: multi) {
                case .started(let t): active[t.easy] = t
                case .settled(let outcome): settle(outcome, job)
                }
            }
            var running: Int32 = 0
            curl_multi_perform(multi, &running)
            var queued: Int32 = 0
            var finishedAny = false
            while let message = curl_multi_info_read(multi, &queued) {
                guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle, let t = active[easy] else { continue }
                let result = message.pointee.data.result
                finishedAny = true
                active[easy] = nil
                curl_multi_remove_handle(multi, easy)
                t.close()
                defer {
                    curl_easy_cleanup(easy)
                    Unmanaged.passUnretained(t).release()
                }
                settle(finish(t, result: result), t.job)
            }
            let resumed = refillAndResume(active.values)
            showProgress(start: began, total: totalBytes, blobs: report.blobs, totalBlobs: targets.count)
            // Start the next transfers at once; and libcurl watches a resumed transfer's socket
            // again only from its next perform.
            if finishedAny || resumed { continue }
            var waitMs: Int32 = 100
            if let limit = rateLimit.withLock({ $0 }), limit > 0, tokens <= 0, active.values.contains(where: \.paused) {
                // Until the bucket has tokens again.
                waitMs = Int32(max(1, min(100, (-tokens / Double(max(limit, 1))) * 1000 + 1)))
            }
            if active.isEmpty, let next = pending.filter(\.admitted).map(\.notBefore).min() {
                waitMs = Int32(max(1, min(1000, next.timeIntervalSinceNow * 1000)))
            }
            curl_multi_poll(multi, nil, 0, waitMs, nil)
        }
        if let failure { throw failure }
        report.bytes = bytesReceived
        report.seconds = Date().timeIntervalSince(began)
        return report
    }

    /// The pending job to start next: a retry that is due, or else the first job not yet
    /// started, if the consumer admits it.
    private func nextJob(_ pending: inout [Job], now: Date, flow: Flow?) -> Int? {
        if let index = pending.firstIndex(where: { $0.admitted && $0.notBefore <= now }) { return index }
        guard let index = pending.firstIndex(where: { !$0.admitted }),
              flow.map({ $0.admit(pending[index].target.hash!, pending[index].target.maxBytes) }) ?? true else { return nil }
        pending[index].admitted = true
        return index
    }

    /// Whether an earlier run left the whole file as a partial download that verifies; it is
    /// then renamed into place. One that does not verify is removed.
    private func completedEarlier(_ target: Target) throws -> Bool {
        guard target.verify != nil,
              let st = try Sys.status(in: target.place.openDirectory(), target.place.partialName, display: target.partial) else { return false }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw UpdError(.unsafe, "\(target.partial): not a regular file (\(Sys.kind(st.st_mode))); refusing to resume it",
                           path: target.partial)
        }
        guard UInt64(st.st_size) >= target.maxBytes else { return false }
        do {
            try target.promote()
            return true
        } catch let e as UpdError where e.code == .corrupt {
            return false
        }
    }

    enum Start {
        case started(Transfer)
        /// Decided without a transfer: a `file://` mirror lacks the file.
        case settled(Outcome)
    }

    private func start(_ job: Job, multi: UnsafeMutableRawPointer) throws -> Start {
        let target = job.target
        let mirror = options.mirrors[job.mirror]
        var url = "\(mirror)/\(target.path)"
        var source: FileDescriptor?
        if mirror.hasPrefix("file://") {
            do {
                source = try Self.openLocalFile(mirror: mirror, path: target.path)
            } catch let e as UpdError where e.errno == ENOENT || e.errno == ENOTDIR {
                return .settled(nextMirror(job, demote: false, "\(mirror): not found"))
            } catch let e as UpdError where e.code != .unsafe {
                return .settled(nextMirror(job, demote: true, "\(mirror): \(e.message)"))
            }
            // libcurl opens what it is given with a blocking open: give it the file already
            // checked, through its descriptor, so nothing can be swapped in meanwhile.
            url = "file:///proc/self/fd/\(source!.rawValue)"
        }
        let file = try target.openPartial()
        let existing = UInt64(try Sys.fstat(file.rawValue, path: target.partial).st_size)
        let have = existing <= target.maxBytes ? existing : 0
        if existing > target.maxBytes { _ = ftruncate(file.rawValue, 0) }
        guard let easy = curl_easy_init() else { throw UpdError(.network, "libcurl: cannot create a transfer") }
        let t = Transfer(job: job, easy: easy, file: file, source: source, received: have, fetcher: self)
        _ = CCurl_easy_setopt_str(easy, CURLOPT_URL, url)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_FAILONERROR, 1)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT, options.connectTimeoutSeconds)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_LOW_SPEED_LIMIT, options.lowSpeedLimit)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_LOW_SPEED_TIME, options.lowSpeedSeconds)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1)
        // A mirror may redirect (to https, to another host), but only to http or https.
        _ = CCurl_easy_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 1)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_MAXREDIRS, 5)
        _ = CCurl_easy_setopt_str(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https")
        _ = CCurl_easy_setopt_off(easy, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(target.maxBytes))
        if have > 0 { _ = CCurl_easy_setopt_off(easy, CURLOPT_RESUME_FROM_LARGE, curl_off_t(have)) }
        _ = CCurl_easy_setopt_write(easy, Self.write)
        _ = CCurl_easy_setopt_ptr(easy, CURLOPT_WRITEDATA, Unmanaged.passRetained(t).toOpaque())
        curl_multi_add_handle(multi, easy)
        return .started(t)
    }

    /// Opens the file at `path` below a `file://` mirror's directory: a regular file, reached
    /// without following a symlink below that directory (a USB stick is not trusted).
    static func openLocalFile(mirror: String, path: String) throws -> FileDescriptor {
        let raw = String(mirror.dropFirst("file://".count))
        let root = raw.removingPercentEncoding ?? raw
        guard root.hasPrefix("/") else { throw UpdError(.usage, "mirror \(mirror): a file:// URL needs an absolute path") }
        return try FileDescriptor.openRegularFile(beneath: root, components: path.split(separator: "/").map(String.init))
    }

    enum Outcome {
        case done, retry, nextMirror
        case failed(UpdError)
    }

    /// Decides what a finished transfer means for its job.
    private func finish(_ t: Transfer, result: CURLcode) -> Outcome {
        let job = t.job, target = job.target
        let mirror = options.mirrors[job.mirror]
        var code = 0
        _ = CCurl_easy_getinfo_long(t.easy, CURLINFO_RESPONSE_CODE, &code)
        if t.writeFailed != 0 {
            return .failed(UpdError.system("write", target.partial, errno: t.writeFailed))
        }
        if result == CURLE_OK {
            do {
                try target.promote()
                return .done
            } catch let e as UpdError where e.code == .corrupt {
                // What an earlier run left may be what was torn, not what the mirror sent.
                if t.resumedFrom > 0 { return retry(job, "\(mirror): the resumed download did not verify") }
                return nextMirror(job, demote: true, "\(mirror): corrupt (\(e.message))")
            } catch {
                return .failed(error as? UpdError ?? UpdError(.io, "\(target.destination): \(error)"))
            }
        }
        let message = String(cString: curl_easy_strerror(result))
        switch result {
        case CURLE_WRITE_ERROR where t.exceeded, CURLE_FILESIZE_EXCEEDED:
            target.removePartial()
            if t.resumedFrom > 0 { return retry(job, "\(mirror): the resumed download overran; starting again") }
            return nextMirror(job, demote: true, "\(mirror): sent more than the \(target.maxBytes) bytes declared")
        case CURLE_RANGE_ERROR where t.resumedFrom > 0:
            // The server ignored the Range request: start this blob again from its first byte.
            target.removePartial()
            return retry(job, "\(mirror): ignored a Range request")
        case CURLE_OPERATION_TIMEDOUT where !Self.connected(t.easy):
            return nextMirror(job, demote: true, "\(mirror): could not connect within \(options.connectTimeoutSeconds) s (connect timeout)")
        case CURLE_OPERATION_TIMEDOUT:
            // Connected, then stalled or trickling (before the answer or during it): another
            // mirror goes on from what arrived.
            return nextMirror(job, demote: true, "\(mirror): slower than \(options.lowSpeedLimit) bytes/s for \(options.lowSpeedSeconds) s")
        case CURLE_HTTP_RETURNED_ERROR where code == 416:
            target.removePartial()
            return retry(job, "\(mirror): HTTP 416")
        case CURLE_HTTP_RETURNED_ERROR where code >= 500 || code == 429 || code == 408:
            return retry(job, "\(mirror): HTTP \(code)")
        case CURLE_HTTP_RETURNED_ERROR:
            return nextMirror(job, demote: false, "\(mirror): HTTP \(code)")
        case CURLE_FILE_COULDNT_READ_FILE, CURLE_REMOTE_FILE_NOT_FOUND:
            return nextMirror(job, demote: false, "\(mirror): not found")
        case CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_SEND_ERROR, CURLE_COULDNT_CONNECT,
             CURLE_COULDNT_RESOLVE_HOST:
            return retry(job, "\(mirror): \(message)")
        default:
            return nextMirror(job, demote: true, "\(mirror): \(message)")
        }
    }

    /// Whether the transfer's connection was ever made (libcurl's connect time is 0 until then).
    private static func connected(_ easy: UnsafeMutableRawPointer) -> Bool {
        var microseconds: curl_off_t = 0
        return CCurl_easy_getinfo_off(easy, CURLINFO_CONNECT_TIME_T, &microseconds) == CURLE_OK && microseconds > 0
    }

    private func retry(_ job: Job, _ problem: String) -> Outcome {
        job.attempts += 1
        guard job.attempts < options.attemptsPerMirror else { return nextMirror(job, demote: true, problem) }
        let delay = min(8, options.retryDelay * pow(2, Double(job.attempts - 1))) * Double.random(in: 0.5...1.5)
        job.notBefore = Date().addingTimeInterval(delay)
        return .retry
    }

    private func nextMirror(_ job: Job, demote: Bool, _ problem: String) -> Outcome {
        if demote { demotions[job.mirror] += 1 }
        job.problems.append(problem)
        job.position += 1
        job.attempts = 0
        job.notBefore = .distantPast
        guard job.position < job.order.count else {
            job.target.removePartial()
            return .failed(UpdError(.network, "\(job.target.label): no mirror could provide it (\(job.problems.joined(separator: "; ")))"))
        }
        return .nextMirror
    }

    /// Refills the rate limiter's bucket and resumes transfers it paused; whether it resumed any.
    private func refillAndResume(_ transfers: Dictionary<UnsafeMutableRawPointer, Transfer>.Values) -> Bool {
        let now = Date()
        let elapsed = now.timeIntervalSince(lastRefill)
        lastRefill = now
        let limit = rateLimit.withLock { $0 }
        if let limit {
            // A bucket of a quarter second's worth keeps bursts short, and is deep enough that a
            // loop slowed by a busy machine does not lose its share.
            tokens = min(Double(limit) / 4, tokens + Double(limit) * elapsed)
        } else {
            tokens = 0
        }
        guard limit == nil || tokens > 0 else { return false }
        var resumed = false
        for t in transfers where t.paused {
            t.paused = false
            curl_easy_pause(t.easy, CCurl_PAUSE_CONT)
            resumed = true
        }
        return resumed
    }

    private func showProgress(start: Date, total: UInt64, blobs: Int, totalBlobs: Int) {
        guard let progress, Date().timeIntervalSince(lastProgress) >= 0.2 || blobs == totalBlobs else { return }
        lastProgress = Date()
        let elapsed = max(0.001, Date().timeIntervalSince(start))
        let rate = Double(bytesReceived) / elapsed
        let left = total > bytesReceived ? Double(total - bytesReceived) / max(rate, 1) : 0
        progress(FetchProgress(bytes: bytesReceived, totalBytes: total, blobs: blobs, totalBlobs: totalBlobs,
                               rate: rate, secondsLeft: rate > 0 ? left : nil))
    }
}
