import CCurl
import Foundation
import Glibc

/// Makes every HTTP request of an operation with libcurl's multi interface: blobs and files from
/// an ordered list of mirrors, byte ranges of a pack, and JSON POSTs to a school server.
///
/// Several transfers run at once on kept-alive connections. Each file download goes to a partial
/// file beside its destination and is resumed with a Range request after an interruption. A
/// mirror that fails a request, sends a corrupt file, or sends more than the request allows is
/// left for the next mirror and demoted for later requests (of this fetch and the next). Errors
/// that may pass (5xx, dropped or refused connections) are retried with exponential back-off and
/// jitter. One rate limit, which can be changed while a fetch runs, is shared by all transfers.
///
/// A fetch runs on the calling thread; several threads may fetch at once (a stream's downloads
/// and a fallback on the applying thread), sharing the demotions and the rate limit.
/// `setRateLimit`, `cancel` and `wakeUp` may be called from any thread.
public final class CurlFetcher: @unchecked Sendable {
    public let options: FetchOptions
    /// Called on the fetching thread as bytes arrive (at most a few times a second).
    public var progress: ((FetchProgress) -> Void)?

    private let cancelled = Locked(false)
    /// The running fetches' multi handles (their addresses), for `wakeUp`.
    private let runningMultis = Locked(Set<UInt>())
    /// Failures counted against each base URL: the least demoted is tried first.
    private let demotions = Locked([String: Int]())
    /// Base URLs left for stalling or missing a deadline: tried after every other one for the
    /// rest of this fetcher's life, by every request still queued as well.
    private let slow = Locked(Set<String>())
    /// The rate limiter, shared by every running fetch.
    private let bucket: Locked<TokenBucket>

    public init(options: FetchOptions) throws {
        try options.validate()
        precondition(Self.curlReady, "libcurl failed to initialize")
        self.options = options
        bucket = Locked(TokenBucket(limit: options.rateLimit, now: Date()))
    }

    static let curlReady: Bool = curl_global_init(3) == CURLE_OK  // CURL_GLOBAL_ALL

    /// Changes the overall rate limit, also while a fetch runs (from any thread).
    public func setRateLimit(_ bytesPerSecond: UInt64?) {
        bucket.withLock { $0.limit = bytesPerSecond }
    }

    /// Makes a running fetch stop soon with an error (from any thread).
    public func cancel() {
        cancelled.withLock { $0 = true }
        wakeUp()
    }

    /// Interrupts running fetches' waits for network events, so that they look at `Flow` again.
    public func wakeUp() {
        runningMultis.withLock { multis in
            for address in multis {
                if let multi = UnsafeMutableRawPointer(bitPattern: address) { curl_multi_wakeup(multi) }
            }
        }
    }

    /// Downloads every requested blob the store lacks into it, each verified before it gets its name.
    @discardableResult
    public func fetch(_ requests: [BlobRequest], into store: BlobStore) throws -> FetchReport {
        try fetch(requests, into: store, flow: nil)
    }

    /// How a caller paces and stops a fetch that it reads while it runs (see `BlobStream`).
    struct Flow: Sendable {
        /// Asked once per blob, in request order, before its download starts: may a blob of this
        /// compressed size start now? A refusal holds back that blob and every later one.
        var admit: (@Sendable (ContentHash, UInt64) -> Bool)? = nil
        /// A blob is complete and verified in the store.
        var arrived: (@Sendable (ContentHash) -> Void)? = nil
        /// Whether to give up.
        var cancelled: @Sendable () -> Bool = { false }
        /// Whether `progress` is called: a fetch on another thread than the stream's (a
        /// fallback on the applying thread) stays quiet, so progress comes from one thread.
        var showsProgress = true
    }

    /// Downloads the requested blobs the store lacks, in the order given.
    func fetch(_ requests: [BlobRequest], into store: BlobStore, flow: Flow?) throws -> FetchReport {
        var list = [Request]()
        var seen = Set<ContentHash>()
        for r in requests where seen.insert(r.hash).inserted {
            let final = store.path(for: r)
            let prefix = String(r.hash.hex.prefix(2))
            let name = String(final.split(separator: "/").last!)
            // The prefix directory is opened without following a symlink (`CACHE/ab -> /etc`).
            _ = try store.openDirectory(prefix: prefix, create: true)
            let partial = "\(Sys.parentDirectory(of: final))/.partial-\(name)"
            let place = Place(destination: final, name: name, partialName: ".partial-\(name)") {
                try store.openDirectory(prefix: prefix, create: true)
            }
            if let delta = r.delta {
                // A delta can be checked only when it is patched against its base; one that fails
                // there is replaced by the content's blob (see `BlobStream.write`). Its size is
                // exact, so a partial download of that size is complete.
                list.append(Request(label: "delta \(name)", path: ContentDelta.path(base: delta.base, target: r.hash), bases: nil,
                                    maxBytes: delta.bytes,
                                    method: .download(FileDownload(destination: final, partial: partial, place: place, verify: { _ in },
                                                                   keepsStored: true)),
                                    hash: r.hash))
            } else {
                let verify = { (file: String) in try BlobStore.read(blobAt: file, hash: r.hash, size: r.size) { _ in } }
                let verifyPrefix = { (file: String) in try BlobStore.checkPrefix(blobAt: file, size: r.size) }
                list.append(Request(label: "blob \(name)", path: "blobs/\(name.prefix(2))/\(name)", bases: nil, maxBytes: r.blobSize,
                                    method: .download(FileDownload(destination: final, partial: partial, place: place, verify: verify,
                                                                   verifyPrefix: verifyPrefix, keepsStored: true)),
                                    hash: r.hash))
            }
        }
        return try run(list, flow: flow).report
    }

    /// Downloads one file of the repository (a manifest, a signature) to `destination`.
    @discardableResult
    public func fetchFile(_ path: String, to destination: String, maxBytes: UInt64) throws -> FetchReport {
        try fetchFile(path, to: destination, maxBytes: maxBytes, from: nil, flow: nil)
    }

    /// Where `fetchFile` writes the file for `destination` while it downloads it (appended to
    /// as the bytes arrive, renamed to `destination` once whole).
    static func partialPath(_ destination: String) -> String { destination + ".partial" }

    /// `fetchFile` from the given base URLs (nil for the mirrors), paced by `flow`.
    @discardableResult
    func fetchFile(_ path: String, to destination: String, maxBytes: UInt64, from bases: [String]?, flow: Flow?,
                   patienceSeconds: Int? = nil) throws -> FetchReport {
        let name = String(destination.split(separator: "/").last ?? "")
        // The caller names the directory; only the files in it are opened without following.
        let partial = Self.partialPath(destination)
        let place = Place(destination: destination, name: name, partialName: Sys.fileName(of: partial)) {
            try Sys.openDirectory(Sys.parentDirectory(of: destination))
        }
        let download = FileDownload(destination: destination, partial: partial, place: place, verify: nil)
        var request = Request(label: path, path: path, bases: bases, maxBytes: maxBytes, method: .download(download))
        request.patienceSeconds = patienceSeconds
        return try run([request], flow: flow).report
    }

    /// One request's progress through its base URLs. Its base is chosen when it starts and
    /// again when it fails over, so that a base demoted meanwhile (by any request) goes last.
    final class Job {
        let request: Request
        let index: Int
        /// The base being tried; nil until the job starts.
        var chosen: String?
        /// The bases it tried and left.
        var left = [String]()
        var attempts = 0
        /// Whether the consumer has let it start (it keeps its place when retried).
        var admitted = false
        var notBefore = Date.distantPast
        var problems = [(mirror: String, problem: String)]()

        init(request: Request, index: Int) {
            self.request = request
            self.index = index
        }

        var mirror: String { chosen! }

        /// Whether nothing was downloaded for it yet (what a partial file holds is an earlier run's).
        var isFirstTry: Bool { left.isEmpty && attempts == 0 }
    }

    /// What one fetch has received, for its progress and report.
    final class RunState {
        let began = Date()
        var bytesReceived: UInt64 = 0
        /// Bytes an earlier run left (complete and partial downloads), and its complete downloads.
        var present: UInt64 = 0
        var blobsPresent = 0
        var lastProgress = Date.distantPast
    }

    /// A running transfer; the write callback's context.
    final class Transfer {
        let job: Job
        let easy: UnsafeMutableRawPointer
        /// The partial download, for a file download.
        let file: FileDescriptor?
        /// The file a `file://` mirror's transfer reads, opened by `openLocalFile`.
        let source: FileDescriptor?
        /// The answer, when it is kept in memory.
        var body = [UInt8]()
        /// A POST's headers, freed with the transfer.
        var headers: UnsafeMutablePointer<curl_slist>?
        var received: UInt64
        let resumedFrom: UInt64
        var checkedResponse = false
        var exceeded = false
        /// Why the answer was refused at its first byte (a Range request answered 200).
        var refused: String?
        /// The seconds this transfer may take in all (`FetchOptions.deadline`), and those it may
        /// stay below the low-speed limit.
        var deadlineSeconds = 0.0
        var stallSeconds = 0
        var paused = false
        /// A transfer from a file:// mirror, which libcurl cannot pause.
        let isLocal: Bool
        var writeFailed: Int32 = 0
        /// libcurl's own words on a failure (its error buffer), such as why a certificate did not verify.
        let errorText = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE))
        let run: RunState
        unowned let fetcher: CurlFetcher

        init(job: Job, easy: UnsafeMutableRawPointer, file: FileDescriptor?, source: FileDescriptor?, received: UInt64, run: RunState,
             fetcher: CurlFetcher) {
            self.job = job
            isLocal = job.mirror.lowercased().hasPrefix("file:")
            self.easy = easy
            self.file = file
            self.source = source
            self.received = received
            resumedFrom = received
            self.run = run
            self.fetcher = fetcher
            errorText[0] = 0
        }

        deinit {
            curl_slist_free_all(headers)
            errorText.deallocate()
        }

        /// Closes the partial download and the local source, once the transfer is over.
        func close() {
            file?.close()
            source?.close()
        }
    }

    private static let write: CCurl_write_callback = { data, size, count, context in
        let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
        return transfer.fetcher.receive(transfer, data!, size * count)
    }

    /// The write callback's work: checks the response once, applies the rate limit and the byte
    /// cap, and appends to the partial file or the answer. Returning less than `count` aborts
    /// the transfer.
    private func receive(_ t: Transfer, _ data: UnsafeMutablePointer<CChar>, _ count: Int) -> Int {
        if !t.checkedResponse {
            t.checkedResponse = true
            var code = 0
            _ = CCurl_easy_getinfo_long(t.easy, CURLINFO_RESPONSE_CODE, &code)
            switch t.job.request.method {
            case .download:
                // A server that ignores the Range request sends the whole blob again.
                if t.resumedFrom > 0 && code == 200 {
                    guard let file = t.file, ftruncate(file.rawValue, 0) == 0, lseek(file.rawValue, 0, SEEK_SET) == 0 else {
                        t.writeFailed = errno
                        return 0
                    }
                    t.received = 0
                }
            case .ranges where code != 206:
                t.refused = "answered \(code) to a Range request, not 206"
                return 0
            case .ranges, .call:
                break
            }
        }
        // libcurl cannot pause a file:// transfer (it reads the file in one go, and a pause fails
        // it: "Failed writing received data to disk/application"); a local mirror uses no network
        // to share, so the rate limit, which is the network's, leaves it alone.
        guard t.isLocal || bucket.withLock({ $0.take(count) }) else {
            t.paused = true
            return Int(CCurl_WRITEFUNC_PAUSE)
        }
        guard t.received + UInt64(count) <= t.job.request.maxBytes else {
            t.exceeded = true
            return 0
        }
        if let file = t.file {
            do {
                if case .download(let d) = t.job.request.method {
                    try Sys.writeAll(file.rawValue, UnsafeRawBufferPointer(start: data, count: count), path: d.partial)
                }
            } catch {
                t.writeFailed = errno
                return 0
            }
        } else {
            data.withMemoryRebound(to: UInt8.self, capacity: count) { t.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: count)) }
        }
        t.received += UInt64(count)
        t.run.bytesReceived += UInt64(count)
        return count
    }

    /// `bases` (the mirrors when nil), the least demoted first (the given order breaks ties);
    /// the slow ones last.
    func order(_ bases: [String]?) -> [String] {
        let list = bases ?? options.mirrors
        let counts = demotions.withLock { d in list.map { d[$0, default: 0] } }
        let isSlow = slow.withLock { s in list.map { s.contains($0) ? 1 : 0 } }
        return list.indices.sorted { (isSlow[$0], counts[$0], $0) < (isSlow[$1], counts[$1], $1) }.map { list[$0] }
    }

    /// Counts a failure against a base URL, which then comes after the others in `order`.
    func demote(_ base: String) {
        demotions.withLock { $0[base, default: 0] += 1 }
    }

    /// The failures counted against a base URL.
    func demotions(of base: String) -> Int {
        demotions.withLock { $0[base, default: 0] }
    }

    /// The base a job tries next: the first in today's order that it has not left.
    private func nextBase(_ job: Job) -> String? {
        order(job.request.bases).first { !job.left.contains($0) }
    }

    /// Runs the requests, several at once, each through its bases until one serves it; what
    /// the fetch did and each request's answer. The first request that no base serves stops
    /// the fetch with its error.
    func run(_ requests: [Request], flow: Flow?) throws -> (report: FetchReport, answers: [Answer?]) {
        var report = FetchReport()
        var answers = [Answer?](repeating: nil, count: requests.count)
        guard !requests.isEmpty else { return (report, answers) }
        let state = RunState()
        guard let multi = curl_multi_init() else { throw UpdError(.network, "libcurl: cannot create a multi handle") }
        runningMultis.withLock { _ = $0.insert(UInt(bitPattern: multi)) }
        var pending = requests.enumerated().map { Job(request: $1, index: $0) }
        var active = [UnsafeMutableRawPointer: Transfer]()
        var failure: UpdError?
        let totalBytes = requests.reduce(0) { $0 + $1.maxBytes }
        defer {
            for (easy, t) in active {
                curl_multi_remove_handle(multi, easy)
                curl_easy_cleanup(easy)
                t.close()
                Unmanaged.passUnretained(t).release()
            }
            runningMultis.withLock { _ = $0.remove(UInt(bitPattern: multi)) }
            curl_multi_cleanup(multi)
        }

        /// Acts on what became of a job: counted, queued again, or the fetch's failure.
        func settle(_ outcome: Outcome, _ job: Job) {
            switch outcome {
            case .done(let answer):
                report.blobs += 1
                answers[job.index] = answer
                if let hash = job.request.hash { flow?.arrived?(hash) }
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
                switch try completedEarlier(job.request) {
                case .stored:
                    // Downloaded before this fetch: done, but not downloaded by it.
                    state.present += job.request.maxBytes
                    state.blobsPresent += 1
                    if let hash = job.request.hash { flow?.arrived?(hash) }
                    continue
                case .promoted:
                    if job.isFirstTry { state.present += job.request.maxBytes }  // left by an earlier run
                    settle(.done(.stored), job)
                    continue
                case .no:
                    break
                }
                switch try start(job, multi: multi, state: state) {
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
            if flow?.showsProgress ?? true {
                showProgress(state, total: totalBytes, blobs: state.blobsPresent + report.blobs, totalBlobs: requests.count)
            }
            // Start the next transfers at once; and libcurl watches a resumed transfer's socket
            // again only from its next perform.
            if finishedAny || resumed { continue }
            var waitMs: Int32 = 100
            if let seconds = bucket.withLock({ $0.secondsUntilTokens }), active.values.contains(where: \.paused) {
                waitMs = Int32(max(1, min(100, seconds * 1000 + 1)))
            }
            if active.isEmpty, let next = pending.filter(\.admitted).map(\.notBefore).min() {
                waitMs = Int32(max(1, min(1000, next.timeIntervalSinceNow * 1000)))
            }
            curl_multi_poll(multi, nil, 0, waitMs, nil)
        }
        if let failure { throw failure }
        report.bytes = state.bytesReceived
        report.seconds = Date().timeIntervalSince(state.began)
        return (report, answers)
    }

    /// The pending job to start next: a retry that is due, or else the first job not yet
    /// started, if the consumer admits it.
    private func nextJob(_ pending: inout [Job], now: Date, flow: Flow?) -> Int? {
        if let index = pending.firstIndex(where: { $0.admitted && $0.notBefore <= now }) { return index }
        guard let index = pending.firstIndex(where: { !$0.admitted }) else { return nil }
        let request = pending[index].request
        if let admit = flow?.admit, let hash = request.hash, !admit(hash, request.maxBytes) { return nil }
        pending[index].admitted = true
        return index
    }

    /// What an earlier run left of a download.
    enum Earlier {
        case no
        /// The file is at its destination.
        case stored
        /// The whole file was a partial download that verified, and is now renamed into place.
        case promoted
    }

    /// Whether an earlier run (or fetch) left the download done: its file at the destination,
    /// or the whole file as a partial download that verifies, which is then renamed into place.
    /// One that does not verify is removed.
    private func completedEarlier(_ request: Request) throws -> Earlier {
        guard case .download(let download) = request.method else { return .no }
        if try download.isStored() { return .stored }
        guard download.verify != nil,
              let st = try Sys.status(in: download.place.openDirectory(), download.place.partialName, display: download.partial) else {
            return .no
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw UpdError(.unsafe, "\(download.partial): not a regular file (\(Sys.kind(st.st_mode))); refusing to resume it",
                           path: download.partial)
        }
        guard UInt64(st.st_size) >= request.maxBytes else { return .no }
        do {
            try download.promote()
            return .promoted
        } catch let e as UpdError where e.code == .corrupt {
            return .no
        }
    }

    enum Start {
        case started(Transfer)
        /// Decided without a transfer: a `file://` mirror lacks the file.
        case settled(Outcome)
    }

    private func start(_ job: Job, multi: UnsafeMutableRawPointer, state: RunState) throws -> Start {
        let request = job.request
        if job.chosen == nil { job.chosen = nextBase(job) }
        let mirror = job.mirror
        var url = "\(mirror)/\(request.path)"
        var source: FileDescriptor?
        if mirror.hasPrefix("file://") {
            do {
                source = try Self.openLocalFile(mirror: mirror, path: request.path)
            } catch let e as UpdError where e.errno == ENOENT || e.errno == ENOTDIR {
                return .settled(nextMirror(job, demote: false, "not found"))
            } catch let e as UpdError where e.code != .unsafe {
                return .settled(nextMirror(job, demote: true, e.message))
            }
            // libcurl opens what it is given with a blocking open: give it the file already
            // checked, through its descriptor, so nothing can be swapped in meanwhile.
            url = "file:///proc/self/fd/\(source!.rawValue)"
        }
        var file: FileDescriptor?
        var have: UInt64 = 0
        if case .download(let download) = request.method {
            let partial = try download.openPartial()
            let existing = UInt64(try Sys.fstat(partial.rawValue, path: download.partial).st_size)
            // A download the server sends as it computes it has no length to resume within: it
            // starts again from its first byte, in the same file (its reader keeps it open).
            have = existing <= request.maxBytes && request.patienceSeconds == nil ? existing : 0
            if have > 0, let verifyPrefix = download.verifyPrefix {
                do {
                    try verifyPrefix(download.partial)
                } catch let e as UpdError where e.code == .corrupt {
                    have = 0  // damaged where it was kept: it starts again from its first byte
                }
            }
            if existing > have { _ = ftruncate(partial.rawValue, 0) }
            if job.isFirstTry { state.present += have }  // left by an earlier run
            file = partial
        }
        guard let easy = curl_easy_init() else { throw UpdError(.network, "libcurl: cannot create a transfer") }
        let t = Transfer(job: job, easy: easy, file: file, source: source, received: have, run: state, fetcher: self)
        _ = CCurl_easy_setopt_str(easy, CURLOPT_URL, url)
        do {
            try Self.requireVerifiedTLS(t, caFile: options.caFile)
        } catch {
            curl_easy_cleanup(easy)
            t.close()
            throw error
        }
        _ = CCurl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        // A peer (a device nearby) is given a much shorter time to connect and to stall.
        let isPeer = options.peers.contains(mirror)
        t.stallSeconds = isPeer ? options.peerStallSeconds : options.lowSpeedSeconds
        _ = CCurl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT, isPeer ? options.peerStallSeconds : options.connectTimeoutSeconds)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1)
        _ = CCurl_easy_setopt_off(easy, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(request.maxBytes))
        switch request.method {
        case .download, .ranges:
            _ = CCurl_easy_setopt_long(easy, CURLOPT_FAILONERROR, 1)
            if let patience = request.patienceSeconds {
                t.deadlineSeconds = Double(patience)
            } else {
                _ = CCurl_easy_setopt_long(easy, CURLOPT_LOW_SPEED_LIMIT, options.lowSpeedLimit)
                _ = CCurl_easy_setopt_long(easy, CURLOPT_LOW_SPEED_TIME, t.stallSeconds)
                // What is left of the content must come within its deadline.
                t.deadlineSeconds = options.deadline(bytes: request.maxBytes - min(have, request.maxBytes),
                                                     rateLimit: bucket.withLock { $0.limit })
            }
            _ = CCurl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, Int(min(t.deadlineSeconds * 1000, Double(Int.max / 2))))
            // A mirror may redirect (to https, to another host), but only to http or https.
            _ = CCurl_easy_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 1)
            _ = CCurl_easy_setopt_long(easy, CURLOPT_MAXREDIRS, 5)
            _ = CCurl_easy_setopt_str(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https")
        case .call:
            break
        }
        switch request.method {
        case .download:
            if have > 0 { _ = CCurl_easy_setopt_off(easy, CURLOPT_RESUME_FROM_LARGE, curl_off_t(have)) }
        case .ranges(let ranges):
            _ = CCurl_easy_setopt_str(easy, CURLOPT_RANGE, ranges.map { "\($0.offset)-\($0.offset + $0.bytes - 1)" }.joined(separator: ","))
        case .call(let verb, let body, let headers, let deadline):
            // No low-speed limit: a server may think (compute a batch) before it answers; the
            // deadline bounds the whole request instead.
            _ = CCurl_easy_setopt_long(easy, CURLOPT_TIMEOUT, deadline)
            for header in (body == nil ? [] : ["Content-Type: application/json"]) + headers {
                t.headers = curl_slist_append(t.headers, header)
            }
            _ = CCurl_easy_setopt_ptr(easy, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(t.headers))
            if let body {
                _ = CCurl_easy_setopt_long(easy, CURLOPT_POSTFIELDSIZE, body.count)
                body.withUnsafeBufferPointer { buffer in
                    buffer.withMemoryRebound(to: CChar.self) {
                        _ = CCurl_easy_setopt_ptr(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress))
                    }
                }
            }
            if verb == "HEAD" {
                _ = CCurl_easy_setopt_long(easy, CURLOPT_NOBODY, 1)
            } else if verb != (body == nil ? "GET" : "POST") {
                _ = CCurl_easy_setopt_str(easy, CURLOPT_CUSTOMREQUEST, verb)
            }
        }
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
        case done(Answer)
        case retry, nextMirror
        case failed(UpdError)
    }

    /// Decides what a finished transfer means for its job: the one completion path of every request.
    private func finish(_ t: Transfer, result: CURLcode) -> Outcome {
        let job = t.job, request = job.request
        var code = 0
        _ = CCurl_easy_getinfo_long(t.easy, CURLINFO_RESPONSE_CODE, &code)
        let download: FileDownload? = if case .download(let d) = request.method { d } else { nil }
        if t.writeFailed != 0 {
            return .failed(UpdError.system("write", download?.partial ?? request.label, errno: t.writeFailed))
        }
        if result == CURLE_OK {
            switch request.method {
            case .download(let download):
                do {
                    try download.promote()
                    return .done(.stored)
                } catch let e as UpdError where e.code == .corrupt {
                    // What an earlier run left may be what was torn, not what the mirror sent.
                    if t.resumedFrom > 0 { return retry(job, "the resumed download did not verify") }
                    return nextMirror(job, demote: true, "corrupt (\(e.message))")
                } catch {
                    return .failed(error as? UpdError ?? UpdError(.io, "\(download.destination): \(error)"))
                }
            case .ranges(let ranges):
                var type: UnsafeMutableRawPointer?
                _ = CCurl_easy_getinfo_ptr(t.easy, CURLINFO_CONTENT_TYPE, &type)
                let contentType = type.map { String(cString: $0.assumingMemoryBound(to: CChar.self)) } ?? ""
                do {
                    return .done(.parts(try Self.parts(of: t.body, contentType: contentType, ranges: ranges)))
                } catch let e as UpdError {
                    return nextMirror(job, demote: true, e.message)
                } catch {
                    return nextMirror(job, demote: true, "\(error)")
                }
            case .call:
                return .done(.response(Response(status: code, body: t.body)))
            }
        }
        let message = String(cString: curl_easy_strerror(result))
        switch result {
        case CURLE_WRITE_ERROR where t.refused != nil:
            // A mirror without Range support serves files well: it is not demoted.
            return nextMirror(job, demote: false, t.refused!)
        case CURLE_WRITE_ERROR where t.exceeded, CURLE_FILESIZE_EXCEEDED:
            guard let download else { return nextMirror(job, demote: true, "sent more than the \(request.maxBytes) bytes allowed") }
            download.removePartial()
            if t.resumedFrom > 0 { return retry(job, "the resumed download overran; starting again") }
            return nextMirror(job, demote: true, "sent more than the \(request.maxBytes) bytes declared")
        case CURLE_RANGE_ERROR where t.resumedFrom > 0:
            // The server ignored the Range request: start this blob again from its first byte.
            download?.removePartial()
            return retry(job, "ignored a Range request")
        case CURLE_OPERATION_TIMEDOUT where !Self.connected(t.easy):
            if case .call = request.method {
                return nextMirror(job, demote: true, "could not connect within \(options.connectTimeoutSeconds) s (connect timeout)")
            }
            slow.withLock { _ = $0.insert(job.mirror) }
            let seconds = options.peers.contains(job.mirror) ? options.peerStallSeconds : options.connectTimeoutSeconds
            return nextMirror(job, demote: true, "could not connect within \(seconds) s (connect timeout)")
        case CURLE_OPERATION_TIMEDOUT:
            if case .call(_, _, _, let deadline) = request.method { return nextMirror(job, demote: true, "no answer within \(deadline) s") }
            // Connected, then stalled, trickled or ran out of time (before the answer or during
            // it): another mirror goes on from what arrived, and this one goes last for the rest
            // of the fetch.
            slow.withLock { _ = $0.insert(job.mirror) }
            var microseconds: curl_off_t = 0
            _ = CCurl_easy_getinfo_off(t.easy, CURLINFO_TOTAL_TIME_T, &microseconds)
            if Double(microseconds) / 1e6 >= t.deadlineSeconds * 0.99 {
                return nextMirror(job, demote: true, String(format: "not done within its deadline of %.0f s", t.deadlineSeconds))
            }
            return nextMirror(job, demote: true, "slower than \(options.lowSpeedLimit) bytes/s for \(t.stallSeconds) s")
        case CURLE_HTTP_RETURNED_ERROR where code == 416:
            guard let download else { return nextMirror(job, demote: false, "HTTP 416") }
            download.removePartial()
            return retry(job, "HTTP 416")
        case CURLE_HTTP_RETURNED_ERROR where code >= 500 || code == 429 || code == 408:
            return retry(job, "HTTP \(code)")
        case CURLE_HTTP_RETURNED_ERROR:
            return nextMirror(job, demote: false, "HTTP \(code)")
        case _ where Self.isTLSFailure(result):
            // Another mirror may have a certificate that verifies.
            return nextMirror(job, demote: true, "TLS: \(Self.reason(t, result))")
        case CURLE_FILE_COULDNT_READ_FILE, CURLE_REMOTE_FILE_NOT_FOUND:
            return nextMirror(job, demote: false, "not found")
        case CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_SEND_ERROR, CURLE_COULDNT_CONNECT,
             CURLE_COULDNT_RESOLVE_HOST:
            return retry(job, message)
        default:
            return nextMirror(job, demote: true, message)
        }
    }

    /// Whether the transfer's connection was ever made (libcurl's connect time is 0 until then).
    private static func connected(_ easy: UnsafeMutableRawPointer) -> Bool {
        var microseconds: curl_off_t = 0
        return CCurl_easy_getinfo_off(easy, CURLINFO_CONNECT_TIME_T, &microseconds) == CURLE_OK && microseconds > 0
    }

    /// The retry policy of every request: the same base again after a back-off, a few times.
    private func retry(_ job: Job, _ problem: String) -> Outcome {
        job.attempts += 1
        guard job.attempts < options.attemptsPerMirror else { return nextMirror(job, demote: true, problem) }
        let delay = min(8, options.retryDelay * pow(2, Double(job.attempts - 1))) * Double.random(in: 0.5...1.5)
        job.notBefore = Date().addingTimeInterval(delay)
        return .retry
    }

    private func nextMirror(_ job: Job, demote: Bool, _ problem: String) -> Outcome {
        if demote { self.demote(job.mirror) }
        job.problems.append((job.mirror, problem))
        job.left.append(job.mirror)
        job.chosen = nil
        job.attempts = 0
        job.notBefore = .distantPast
        guard nextBase(job) != nil else {
            let request = job.request
            if case .download(let download) = request.method { download.removePartial() }
            if case .call = request.method {
                // The label names the one server.
                return .failed(UpdError(.network, "\(request.label): \(job.problems.map(\.problem).joined(separator: "; "))"))
            }
            let problems = job.problems.map { "\($0.mirror): \($0.problem)" }.joined(separator: "; ")
            return .failed(UpdError(.network, "\(request.label): no mirror could provide it (\(problems))"))
        }
        return .nextMirror
    }

    /// Refills the rate limiter's bucket and resumes transfers it paused; whether it resumed any.
    private func refillAndResume(_ transfers: Dictionary<UnsafeMutableRawPointer, Transfer>.Values) -> Bool {
        guard bucket.withLock({ $0.refill(at: Date()) }) else { return false }
        var resumed = false
        for t in transfers where t.paused {
            t.paused = false
            curl_easy_pause(t.easy, CCurl_PAUSE_CONT)
            resumed = true
        }
        return resumed
    }

    private func showProgress(_ state: RunState, total: UInt64, blobs: Int, totalBlobs: Int) {
        guard let progress, Date().timeIntervalSince(state.lastProgress) >= 0.2 || blobs == totalBlobs else { return }
        state.lastProgress = Date()
        // What an earlier run left counts as done; the rate is this fetch's own.
        let bytes = state.present + state.bytesReceived
        let elapsed = max(0.001, Date().timeIntervalSince(state.began))
        let rate = Double(state.bytesReceived) / elapsed
        let left = total > bytes ? Double(total - bytes) / max(rate, 1) : 0
        progress(FetchProgress(bytes: bytes, totalBytes: total, blobs: blobs, totalBlobs: totalBlobs,
                               rate: rate, secondsLeft: rate > 0 ? left : nil))
    }
}
