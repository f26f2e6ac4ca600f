import Foundation
import Glibc

/// What an apply reads downloaded contents from: a `BlobStream` (one request per blob or
/// delta) or a `BatchStream` (a school server's batches).
protocol ContentDownloads: AnyObject {
    func isExpected(_ hash: ContentHash) -> Bool
    func write(_ hash: ContentHash, into fd: Int32, display: String, base: (ContentHash) throws -> [UInt8]?,
               whileWaiting: () throws -> Void) throws
    func release(_ hash: ContentHash)
    @discardableResult func finish() -> FetchReport
    /// Contents that came as their full blob instead of as planned, and why.
    var fallbacks: [String] { get }
    /// The batch a school server is preparing now; else, once, the last one it began to
    /// prepare since the previous call (so that a short wait is seen too); else nil.
    func takeBatchWait() -> BatchWait?
}

extension ContentDownloads {
    func takeBatchWait() -> BatchWait? { nil }
}

/// Contents downloaded in groups, on a background thread just ahead of their use: from a
/// school server in batches (`ContentBatch`), each compressed against the bases the plan keeps,
/// or from a static mirror's pack (`PackIndex`) with multi-range requests.
///
/// The requests (in order of use) are cut into groups of at most half the window (by the
/// plan's download bytes, which a batch may not exceed: `groups`); each group is one
/// `POST /v1/batch` and one download of the answer (read as it arrives when the server streams
/// it as it computes it), or a few multi-range GETs of the pack. A group is
/// downloaded only when the groups not yet released and it fit in the window (or nothing is
/// held), and deleted once its last content is released. A group the server refuses (an old
/// server, a policy that turns batches off, a busy server, a batch not smaller than the
/// contents' own downloads), or a pack no mirror serves by ranges, is downloaded blob by
/// blob instead; a content that fails its hash is downloaded again on its own. Every request —
/// the batch POST and download, the pack's range GETs, blobs one by one and those downloaded
/// again — goes through the operation's fetcher, with its retries, failover, demotions, rate
/// limit and byte caps.
final class BatchStream: ContentDownloads, @unchecked Sendable {
    enum Source {
        /// A school server's URL: batches, each request naming bases for the server to use.
        case server(String)
        /// The version's pack (at `path` in the repository) and its verified index; `mirror` is an
        /// http(s) mirror that has it. The range GETs go to every http(s) mirror, in the
        /// fetcher's order.
        case pack(mirror: String, path: String, index: PackIndex)
    }

    private struct Group {
        let requests: [BlobRequest]
        let limit: UInt64
        /// The downloaded batch, or nil when the group came as one file per content.
        var batch: String?
        /// Whether the server streams the batch as it computes it (it is read as it grows), and
        /// whether it is still downloading; whether its download broke or it could not be read
        /// (its remaining contents then come on their own, and the next batch is not compressed
        /// after it).
        var streamed = false
        var streaming = false
        var broken = false
        /// What was downloaded for each content, when it came as one file per content.
        var stored: [BlobRequest] = []
        var released = 0
    }

    private let source: Source
    private var packUsable = true
    private let signer: RequestSigner?
    private let mirrors: CurlFetcher
    private let store: BlobStore
    private let window: UInt64
    private let baseSizes: [ContentHash: UInt64]
    private var groupOf = [ContentHash: (group: Int, item: Int)]()
    private let downloads: DownloadThread
    // Under `downloads`' lock.
    private var groups: [Group]
    private var arrived = 0
    private var held: UInt64 = 0
    private var reader: (group: Int, reader: ContentBatchReader)?
    /// Whether batch requests ask for a stream (not once a server has refused the field).
    private var streams = true
    /// The most recent contents of the last batch released: the next batch's history.
    private var history: (group: Int, contents: [ContentBatchReader.Content])?
    /// The batch the server is preparing, and the last one begun that `takeBatchWait` did not return yet.
    private var preparing: BatchWait?
    private var unseen: BatchWait?
    private let problems = Locked([String]())

    /// Starts downloading; `baseSizes` gives the size of every base the requests name.
    init(source: Source, signer: RequestSigner?, mirrors: CurlFetcher, requests: [BlobRequest], baseSizes: [ContentHash: UInt64],
         directory: String, window: UInt64) throws {
        self.source = source
        self.signer = signer
        self.mirrors = mirrors
        downloads = DownloadThread(fetcher: mirrors)
        self.window = window
        self.baseSizes = baseSizes
        store = BlobStore(directory: directory)
        try? FileManager.default.removeItem(atPath: directory)
        try Sys.mkdirs(directory, mode: 0o700)
        groups = Self.groups(requests.map(\.downloadBytes), window: window).map { range in
            Group(requests: Array(requests[range]), limit: requests[range].reduce(0) { $0 + $1.downloadBytes })
        }
        for (g, group) in groups.enumerated() {
            for (i, r) in group.requests.enumerated() { groupOf[r.hash] = (g, i) }
        }
        let count = groups.count
        downloads.start("batch downloads") { [self] in
            for g in 0..<count { try download(g) }
        }
    }

    /// The groups of requests of `downloadBytes`: consecutive runs of at most half the window
    /// (a larger request is a group of its own). A school server forecasts a device's batches
    /// with it (`ContentBatch.forecast`).
    static func groups(_ downloadBytes: [UInt64], window: UInt64) -> [Range<Int>] {
        var result = [Range<Int>]()
        var start = 0, bytes: UInt64 = 0
        for (i, size) in downloadBytes.enumerated() {
            if i > start && bytes + size > window / 2 {
                result.append(start..<i)
                (start, bytes) = (i, 0)
            }
            bytes += size
        }
        if start < downloadBytes.count { result.append(start..<downloadBytes.count) }
        return result
    }

    func isExpected(_ hash: ContentHash) -> Bool { groupOf[hash] != nil }

    var fallbacks: [String] { problems.withLock { $0 } }

    /// Downloads group `g` once the window allows it.
    private func download(_ g: Int) throws {
        // (`groups` is shared with the applying thread: read and written under the lock.)
        let (requests, limit) = downloads.withLock { (groups[g].requests, groups[g].limit) }
        try downloads.withLock {
            guard downloads.waitOnDownloadingSide(until: { held == 0 || held + limit <= window }) else {
                throw UpdError(.network, "the download was cancelled")
            }
            held += limit
        }
        var path: String?
        var stored = [BlobRequest]()
        let after = downloads.withLock { contentsBefore(g) }
        switch source {
        case .server(let server):
            do {
                path = try downloadBatch(g, requests, after: after, limit: limit, from: server, into: "\(store.directory)/batch-\(g)")
            } catch let e as UpdError where (e.code == .network || e.code == .corrupt) && !downloads.isStopping {
                problems.withLock { $0.append("batch \(g + 1) of \(groups.count) (\(requests.count) contents): \(e.message); downloaded one by one") }
                // A base named for the server is no delta: the mirrors have the blobs.
                stored = requests.map(\.withoutDelta)
                downloads.add(try mirrors.fetch(stored, into: store, flow: downloads.flow))
            }
        case .pack(_, let pack, let index):
            stored = requests
            try downloadPieces(requests, of: pack, index: index)
        }
        downloads.withLock {
            groups[g].batch = path
            groups[g].stored = stored
            arrived = g + 1
            downloads.broadcast()
        }
    }

    /// How long a server may take to compute a batch: to answer its request, or to send the
    /// whole of one it streams.
    static let computeSeconds = 900

    /// The most ranges in one request, and the most bytes (the memory the answer takes).
    static let rangesPerRequest = 200
    static let bytesPerRequest: UInt64 = 8 << 20

    /// Downloads the requests' blobs and deltas from the pack at `pack`, adjacent pieces as one
    /// range and many ranges per request, into the store; what the pack lacks, or all of it
    /// once no mirror has served a range request, comes one by one from the mirrors.
    private func downloadPieces(_ requests: [BlobRequest], of pack: String, index: PackIndex) throws {
        var pieces = [(request: BlobRequest, entry: PackIndex.Entry)]()
        var single = [BlobRequest]()
        for r in requests {
            if packUsable, let entry = index.entry(for: r) { pieces.append((r, entry)) } else { single.append(r) }
        }
        pieces.sort { $0.entry.offset < $1.entry.offset }
        // Runs of adjacent pieces, each one range.
        var ranges = [(offset: UInt64, bytes: UInt64, pieces: ArraySlice<(request: BlobRequest, entry: PackIndex.Entry)>)]()
        var start = 0
        for i in pieces.indices {
            let last = i + 1 == pieces.count
            if last || pieces[i + 1].entry.offset != pieces[i].entry.offset + pieces[i].entry.bytes
                || pieces[i + 1].entry.offset + pieces[i + 1].entry.bytes - pieces[start].entry.offset > Self.bytesPerRequest {
                let first = pieces[start].entry
                ranges.append((first.offset, pieces[i].entry.offset + pieces[i].entry.bytes - first.offset, pieces[start...i]))
                start = i + 1
            }
        }
        var next = 0
        while next < ranges.count && packUsable {
            var end = next, bytes: UInt64 = 0
            while end < ranges.count && end - next < Self.rangesPerRequest && (end == next || bytes + ranges[end].bytes <= Self.bytesPerRequest) {
                bytes += ranges[end].bytes
                end += 1
            }
            let asked = ranges[next..<end]
            do {
                let (parts, r) = try mirrors.getRanges(pack, asked.map { CurlFetcher.ByteRange(offset: $0.offset, bytes: $0.bytes) },
                                                       flow: downloads.flow)
                for (range, part) in zip(asked, parts) {
                    for piece in range.pieces {
                        let from = Int(piece.entry.offset - range.offset)
                        // (Downloads are removed when an apply restarts: no need to flush them.)
                        try store.writeDownload(part[from..<from + Int(piece.entry.bytes)], for: piece.request)
                    }
                }
                // (The bytes of the pieces, as a download one by one counts them: not the
                // multipart answer's headers.)
                var counted = FetchReport(blobs: asked.reduce(0) { $0 + $1.pieces.count }, bytes: bytes)
                (counted.retries, counted.failovers, counted.seconds) = (r.retries, r.failovers, r.seconds)
                downloads.add(counted)
            } catch let e as UpdError where e.code == .network && !downloads.isStopping {
                problems.withLock { $0.append("\(e.message); downloading one by one") }
                packUsable = false
                for range in ranges[next...] { single += range.pieces.map(\.request) }
            }
            next = end
        }
        if !single.isEmpty { downloads.add(try mirrors.fetch(single, into: store, flow: downloads.flow)) }
    }

    /// The history of group `g`'s batch: the most recent contents of the batches just before
    /// it (the client decodes them, in order, before this one), back to a group that came
    /// otherwise. Called under the lock.
    private func contentsBefore(_ g: Int) -> [ContentBatch.Item] {
        var first = g
        while first > 0 && groups[first - 1].batch != nil && !groups[first - 1].broken { first -= 1 }
        return ContentBatch.history(before: groups[first..<g].flatMap(\.requests).map(batchItem)[...])
    }

    /// Asks the server for the batch of `requests` (group `g`), compressed after the contents
    /// `after`, and downloads it to `destination`. When the server streams it as it computes it,
    /// the group is readable from the start of the download (`streaming`), and a download that
    /// fails then leaves the rest of its contents to come on their own.
    private func downloadBatch(_ g: Int, _ requests: [BlobRequest], after: [ContentBatch.Item], limit: UInt64, from server: String,
                               into destination: String) throws -> String {
        // The server answers only batch requests its admitted devices signed.
        guard let signer else { throw UpdError(.network, "\(server)/v1/batch: no device key to sign a batch request with") }
        var request = BatchRequest(items: requests.map(batchItem), after: after, limit: limit, device: signer.sender)
        func post() throws -> CurlFetcher.Response {
            request.stream = streams
            return try signer.post("v1/batch", to: server, body: try WireCoding.encode(request), via: mirrors, maxResponseBytes: 64 * 1024,
                                   deadlineSeconds: Self.computeSeconds, flow: downloads.flow)
        }
        let wait = BatchWait(items: requests.count, bytes: limit)
        downloads.withLock { (preparing, unseen) = (wait, wait) }
        var answer: CurlFetcher.Response
        do {
            defer { downloads.withLock { preparing = nil } }
            answer = try post()
            if answer.status == 400 && streams {
                // A server older than streamed batches: asked as it understands.
                streams = false
                answer = try post()
            }
        }
        guard answer.status == 200 else {
            let message = String(decoding: answer.body.prefix(300), as: UTF8.self)
            throw UpdError(.network, "\(server)/v1/batch answered \(answer.status): \(message)")
        }
        guard let batch = try? WireCoding.decode(BatchAnswer.self, from: answer.body), batch.bytes.map({ $0 <= limit }) ?? request.stream else {
            throw UpdError(.corrupt, "\(server)/v1/batch: an answer without a valid path and size")
        }
        // Without a size, the batch is sent as it is computed: readable from the start.
        let streamed = batch.bytes == nil
        if streamed {
            downloads.withLock {
                (groups[g].batch, groups[g].streamed, groups[g].streaming, arrived) = (destination, true, true, g + 1)
                downloads.broadcast()
            }
        }
        defer {
            if streamed {
                downloads.withLock {
                    groups[g].streaming = false
                    if groups[g].released == groups[g].requests.count { removeBatch(destination) }
                    downloads.broadcast()
                }
            }
        }
        do {
            var r = try mirrors.fetchFile(String(batch.path.dropFirst()), to: destination, maxBytes: batch.bytes ?? limit, from: [server],
                                          flow: downloads.flow, patienceSeconds: streamed ? Self.computeSeconds : nil)
            r.blobs += requests.count - 1
            downloads.add(r)
        } catch let e as UpdError where streamed && !downloads.isStopping {
            problems.withLock { $0.append("batch \(g + 1) of \(groups.count) (\(requests.count) contents): \(e.message); the contents it did not bring downloaded on their own") }
            // (Before the next batch is asked for: it is not compressed after this one.)
            downloads.withLock { groups[g].broken = true }
        }
        return destination
    }

    /// The file of a streamed batch, once its download has begun: the partial download (the
    /// same file once renamed whole).
    private func openStreamed(_ g: Int, _ path: String, whileWaiting: () throws -> Void) throws -> FileDescriptor {
        var file: FileDescriptor?
        try downloads.wait(until: {
            file = [CurlFetcher.partialPath(path), path].lazy.compactMap { try? Sys.openRegularFile($0) }.first
            return file != nil || !groups[g].streaming
        }, missing: UpdError(.network, "\(path): the download ended before it began"), whileWaiting: whileWaiting)
        guard let file else { throw UpdError(.corrupt, "\(path): the download ended before it began") }
        return file
    }

    /// Waits until the streamed batch of group `g` in `file` holds more than `have` bytes (true),
    /// or its download has ended without them (false).
    private func waitForBytes(_ g: Int, in file: FileDescriptor, beyond have: UInt64, whileWaiting: () throws -> Void) throws -> Bool {
        var more = false
        try downloads.wait(until: {
            var st = stat()
            more = fstat(file.rawValue, &st) == 0 && UInt64(st.st_size) > have
            return more || !groups[g].streaming
        }, missing: UpdError(.network, "the download of batch \(g + 1) ended"), whileWaiting: whileWaiting)
        return more
    }

    /// Removes a group's batch, whole or partly downloaded.
    private func removeBatch(_ path: String) {
        Sys.unlink(path)
        Sys.unlink(CurlFetcher.partialPath(path))
    }

    private func batchItem(_ r: BlobRequest) -> ContentBatch.Item { ContentBatch.Item(r, baseSizes: baseSizes) }

    func write(_ hash: ContentHash, into fd: Int32, display: String, base: (ContentHash) throws -> [UInt8]?,
               whileWaiting: () throws -> Void) throws {
        let (g, item) = groupOf[hash]!
        try downloads.wait(until: { arrived > g }, missing: UpdError(.network, "content \(hash.hex) was not downloaded"),
                           whileWaiting: whileWaiting)
        let (requests, batch, stored, streamed, broken) = downloads.withLock {
            (groups[g].requests, groups[g].batch, groups[g].stored, groups[g].streamed, groups[g].broken)
        }
        let request = requests[item]
        if broken {
            return downloads.add(try BlobStream.writeWholeBlob(request, into: fd, display: display, store: store, fetcher: mirrors))
        }
        guard let batch else {
            return try BlobStream.writeDownloaded(stored[item], at: store.path(for: stored[item]), into: fd, display: display, base: base,
                                                  store: store, fetcher: mirrors, problems: problems)
        }
        var readIntact = false
        do {
            if reader?.group != g {
                // What the batch's request named as `after` follows from the groups before it, all downloaded by now.
                let after = downloads.withLock { contentsBefore(g) }
                let file = try streamed ? openStreamed(g, batch, whileWaiting: whileWaiting) : nil
                reader = (g, try ContentBatchReader(path: batch, file: file, items: requests.map(batchItem), after: try decoded(after, before: g)))
            }
            let file = reader!.reader.file
            let bytes = try reader!.reader.content(at: item, base: base) { have in
                try self.waitForBytes(g, in: file, beyond: have, whileWaiting: whileWaiting)
            }
            readIntact = true
            guard Blake2b.hash(bytes) == hash else { throw UpdError(.corrupt, "\(batch): item \(item + 1) does not match its hash") }
            try bytes.withUnsafeBytes { try Sys.writeAll(fd, $0, path: display) }
        } catch let e as UpdError where e.code == .corrupt {
            problems.withLock { $0.append("\(display): \(e.message); downloaded on its own") }
            // (A streamed batch that could not be read may have ended inside a chunk: the rest
            // of it comes on its own too.)
            if streamed && !readIntact { downloads.withLock { groups[g].broken = true } }
            downloads.add(try BlobStream.writeWholeBlob(request, into: fd, display: display, store: store, fetcher: mirrors))
        }
    }

    /// The bytes of `after`, from the batch decoded before group `g`.
    private func decoded(_ after: [ContentBatch.Item], before g: Int) throws -> [ContentBatchReader.Content] {
        guard !after.isEmpty else { return [] }
        let previous = reader?.group == g - 1 ? reader!.reader.recent : downloads.withLock { history?.group == g - 1 ? history!.contents : [] }
        let bytes = Dictionary(previous.map { ($0.hash, $0.bytes) }, uniquingKeysWith: { first, _ in first })
        return try after.map { item in
            guard let content = bytes[item.hash] else {
                throw UpdError(.corrupt, "the contents batch \(g + 1) was compressed after were not all decoded")
            }
            return (item.hash, content)
        }
    }

    func release(_ hash: ContentHash) {
        guard let (g, _) = groupOf[hash] else { return }
        downloads.withLock {
            groups[g].released += 1
            guard groups[g].released == groups[g].requests.count else { return }
            // (A batch still streaming is removed when its download ends.)
            if let batch = groups[g].batch, !groups[g].streaming { removeBatch(batch) }
            for r in groups[g].stored { store.remove(r) }
            if let current = reader, current.group == g {
                history = (g, current.reader.recent)
                reader = nil
            }
            held -= groups[g].limit
            downloads.broadcast()
        }
    }

    func takeBatchWait() -> BatchWait? {
        downloads.withLock {
            defer { unseen = nil }
            return preparing ?? unseen
        }
    }

    @discardableResult
    func finish() -> FetchReport { downloads.finish() }
}
