import Foundation
import Synchronization
import Testing
@testable import Updatinator

/// The school server's batches: one request for many contents, compressed together and against
/// the bases the laptop keeps, computed once and cached.
@Suite struct BatchTests {
    let school: SchoolServerTests
    var samples: SampleImages { school.samples }

    init() throws { school = try SchoolServerTests() }

    func upgrade(_ laptop: String, _ server: SchoolServerTests.School, device: String) throws -> CLI.Result {
        try CLI.run(["upgrade", "--root", laptop, "--server", server.server.url, "--keyring", samples.keyring,
                     "--decision-keyring", server.decisionKeyring], environment: ["UPDATINATOR_DEVICE_ID": device])
    }

    func fsck(_ root: String) throws -> Int32 {
        try CLI.run(["fsck", "--tree", root, "--manifest", samples.manifest("olpc-ext3", "2")]).status
    }

    /// Upgrades a new laptop `name` at version 1 through `server`, which holds a damaged file:
    /// the contents no batch brought intact come on their own, and the tree is the new image.
    func expectContentsOnTheirOwn(_ name: String, _ server: SchoolServerTests.School) throws {
        let laptop = try school.installedTree(name, version: "1")
        let r = try upgrade(laptop, server, device: name)
        #expect(r.status == 0, "\(r.stderr)")
        // A batch that fails as it is read names the content; one whose download fails before
        // (a streamed batch whose computation the server gave up on) names the batch.
        #expect(r.stderr.contains("downloaded on its own") || r.stderr.contains("downloaded on their own"), "\(r.stderr)")
        #expect(try fsck(laptop) == 0)
        #expect(try server.server.metric("updatinator_requests_total", ["blobs", "200"]) >= 1)
    }

    /// The batch request a laptop at olpc-ext3 1 makes for `image` 2, with every matched base.
    func requestBody(prefix count: Int? = nil, image: String = "olpc-ext3") throws -> [String: Any] {
        let old = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "1"))
        let new = try ManifestParser.parse(contentsOf: samples.manifest(image, "2"))
        let matches = DeltaBases.match(from: old, to: new), oldContents = old.contents
        var items = [[String: Any]]()
        for (hash, sizes) in new.contents.sorted(by: { $0.key < $1.key }) where sizes.size > 0 && oldContents[hash] == nil {
            var item: [String: Any] = ["hash": hash.hex, "size": sizes.size]
            if let m = matches[hash] { item["base"] = m.base.hex; item["base_size"] = m.baseSize }
            items.append(item)
        }
        return ["device": "batch-laptop", "items": Array(items.prefix(count ?? items.count))]
    }

    /// POSTs each body to SERVER/v1/batch, all at once; the statuses.
    static func postAtOnce(_ server: String, _ bodies: [[String: Any]]) throws -> [Int] {
        let encoded = try bodies.map { Array(try JSONSerialization.data(withJSONObject: $0)) }
        let statuses = Locked([Int]())
        let group = DispatchGroup()
        for body in encoded {
            group.enter()
            Thread {
                let status = (try? TestDevices.signer("batch-laptop").post("v1/batch", to: server, body: body,
                                                                           via: CurlFetcher(options: FetchOptions(mirrors: [server])),
                                                                           deadlineSeconds: 600).status) ?? 0
                statuses.withLock { $0.append(status) }
                group.leave()
            }.start()
        }
        group.wait()
        return statuses.withLock { $0 }
    }

    @Test func anUpgradeComesInOneBatchComputedOnceForTheWholeSchool() throws {
        let server = try SchoolServerTests.School(school, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"],
                                                  extra: ["--no-batch-precompute"])
        let first = try school.installedTree("first", version: "1"), second = try school.installedTree("second", version: "1")
        for (laptop, device) in [(first, "first"), (second, "second")] {
            let r = try upgrade(laptop, server, device: device)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!r.stderr.contains("warning"), "\(r.stderr)")
            #expect(try fsck(laptop) == 0)
        }
        // Two batch requests and two downloads of one batch, computed once; no blob one by one.
        #expect(try server.server.metric("updatinator_batches_total", ["computed"]) == 1)
        #expect(try server.server.metric("updatinator_batches_total", ["cached"]) == 1)
        #expect(try server.server.metric("updatinator_requests_total", ["/v1/batch", "200"]) == 4)
        #expect(try server.server.metric("updatinator_requests_total", ["blobs"]) == 0)
        // The batch is smaller than the blobs it replaces.
        let blobs = try CLI.run(["plan", "--root", first, "--from", samples.manifest("olpc-ext3", "1"), "--to", samples.manifest("olpc-ext3", "2"), "--json"])
        let toObtain = (try JSONSerialization.jsonObject(with: Data(blobs.stdout.utf8)) as! [String: Any])["download_bytes"] as! Int
        let served = try server.server.metric("updatinator_bytes_served_total")
        #expect(served < toObtain * 2, "two batches of \(served / 2) bytes against \(toObtain) bytes of blobs")
    }

    @Test func aSmallWindowTakesSeveralBatchesEachCompressedAfterTheOneBefore() throws {
        let server = try SchoolServerTests.School(school, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"],
                                                  extra: ["--no-batch-precompute"])
        let laptop = try school.installedTree("small-window", version: "1")
        let target = try Keyring(directory: samples.keyring).verifiedManifest(at: samples.manifest("olpc-ext3", "2"))
        var sources = ContentSources(mirrors: FetchOptions(mirrors: [server.server.url]), batchServer: server.server.url,
                                     signer: try TestDevices.signer("small-window"))
        sources.downloadWindow = 64 << 10
        let report = try UpdateEngine.apply(UpdateEngine.ApplyRequest(root: laptop, target: target, sources: sources))
        #expect(report.fallbacks.isEmpty, "\(report.fallbacks)")
        #expect(try fsck(laptop) == 0)
        let batches = try server.server.metric("updatinator_batches_total", ["computed"])
        #expect(batches >= 3, "\(batches) batches")
        #expect(try server.server.metric("updatinator_requests_total", ["blobs"]) == 0)
    }

    @Test func identicalRequestsAtOnceAreComputedOnce() throws {
        let server = try SchoolServerTests.School(school, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"])
        let statuses = try Self.postAtOnce(server.server.url, Array(repeating: requestBody(), count: 6))
        #expect(statuses == Array(repeating: 200, count: 6))
        #expect(try server.server.metric("updatinator_batches_total", ["computed"]) == 1)
        #expect(try server.server.metric("updatinator_batches_total", ["cached"]) == 5)
    }

    @Test func aFloodIsQueuedThenRefusedAndTheCacheStaysBounded() throws {
        let cache = school.tmp.sub("batch-cache")
        let server = try SchoolServerTests.School(school, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"],
                                                  extra: ["--batch-workers", "1", "--batch-queue", "2", "--batch-cache", cache,
                                                          "--batch-cache-bytes", "20000", "--batch-level", "19"])
        // Twelve different requests at once, each for megabytes of the developer image (seconds
        // of work): one computes, two wait, the rest are turned away.
        let count = (try requestBody(image: "olpc-devel-ext3")["items"] as! [Any]).count
        try #require(count >= 12)
        let statuses = try Self.postAtOnce(server.server.url, (0..<12).map { try requestBody(prefix: count - $0, image: "olpc-devel-ext3") })
        let busy = statuses.filter { $0 == 503 }.count
        #expect(busy >= 1 && statuses.filter { $0 == 200 }.count >= 3 && busy + statuses.filter { $0 == 200 }.count == 12, "\(statuses)")
        #expect(try server.server.metric("updatinator_batches_total", ["busy"]) == busy)
        // The server still answers, and the cache keeps at most its bound (or the newest batch alone).
        #expect(try server.server.post("/v1/batch", try requestBody(prefix: 3)).status == 200)
        let sizes = try FileManager.default.contentsOfDirectory(atPath: cache).map { try Sys.lstat("\(cache)/\($0)").st_size }
        #expect(sizes.count == 1 || sizes.reduce(0, +) <= 20000, "\(sizes)")
    }

    @Test func aPolicyCanTurnBatchesOffAndLaptopsStillUpgrade() throws {
        let policy = school.tmp.sub("no-batches.lua")
        try Sys.writeFileAtomically(policy, Array("""
            function decide(device) return { image = "olpc-ext3", version = "2" } end
            function allow_batch(request) return false end
            """.utf8))
        let server = try SchoolServerTests.School(school, policy: policy, settings: [:])
        let laptop = try school.installedTree("laptop", version: "1")
        let r = try upgrade(laptop, server, device: "laptop")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("downloaded one by one"), "\(r.stderr)")
        #expect(try fsck(laptop) == 0)
        #expect(try server.server.metric("updatinator_batches_total", ["refused"]) >= 1)
        #expect(try server.server.metric("updatinator_batches_total", ["computed"]) == 0)
        #expect(try server.server.metric("updatinator_requests_total", ["blobs", "200"]) > 0)
    }

    @Test func aCorruptedBatchIsDetectedByHashAndItsContentsFetchedOnTheirOwn() throws {
        let cache = school.tmp.sub("batch-cache")
        let server = try SchoolServerTests.School(school, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"],
                                                  extra: ["--batch-cache", cache])
        // A first laptop's upgrade computes the batch; then it is changed on the server's disk
        // (a byte near its end flipped), and a second laptop downloads it.
        let first = try school.installedTree("first", version: "1")
        #expect(try upgrade(first, server, device: "first").status == 0)
        let file = "\(cache)/" + (try FileManager.default.contentsOfDirectory(atPath: cache).first { $0.hasSuffix(".batch") }!)
        var bytes = try Sys.readFile(file)
        bytes[bytes.count - 40] ^= 0x20
        try Sys.writeFileAtomically(file, bytes)
        try expectContentsOnTheirOwn("laptop", server)
    }

    @Test func theBatchFormatRoundTripsAndRefusesAnotherPrefix() throws {
        let tmp = TemporaryDirectory("batch")
        let base = DeltaTests.text(lines: 4000), other = DeltaTests.text(lines: 4000, variant: 5)
        let contents: [ContentHash: [UInt8]] = Dictionary(uniqueKeysWithValues: [base, other, DeltaTests.text(lines: 4000, variant: 6), Array("x".utf8)]
            .map { (Blake2b.hash($0), $0) })
        let items = [
            ContentBatch.Item(hash: Blake2b.hash(other), size: UInt64(other.count), base: Blake2b.hash(base), baseSize: UInt64(base.count)),
            ContentBatch.Item(hash: Blake2b.hash(DeltaTests.text(lines: 4000, variant: 6)), size: UInt64(other.count)),
            ContentBatch.Item(hash: Blake2b.hash(Array("x".utf8)), size: 1),
        ]
        let size = try ContentBatch.encode(items, to: tmp.sub("b"), level: 19) { hash, _ in contents[hash]! }
        #expect(size < UInt64(other.count) / 10, "\(size) bytes: the base and the earlier item do the work")
        let reader = try ContentBatchReader(path: tmp.sub("b"), items: items)
        for (i, item) in items.enumerated() {
            #expect(Blake2b.hash(try reader.content(at: i) { contents[$0] }) == item.hash)
        }
        // Without its base the chunk cannot be decoded; with another base it decodes to the wrong bytes.
        expectUpdError(.corrupt, "of a chunk is not intact") {
            try ContentBatchReader(path: tmp.sub("b"), items: items).content(at: 0) { _ in nil }
        }
        let wrong = try ContentBatchReader(path: tmp.sub("b"), items: items).content(at: 0) { _ in Array(base.reversed()) }
        #expect(Blake2b.hash(wrong) != items[0].hash)
    }

    @Test func aBatchIsCompressedAfterTheContentsDecodedBeforeItInEarlierChunksAndBatches() throws {
        let tmp = TemporaryDirectory("batch-history")
        // One chunk per content, and a history of four contents.
        let limits = ContentBatch.Limits(chunkContent: 48 << 10, chunkBases: 48 << 10, history: 160 << 10)
        let r = (1...3).map { DeltaTests.random(40 << 10, seed: UInt64($0)) }
        func changed(_ bytes: [UInt8]) -> [UInt8] { var b = bytes; b[100] ^= 1; b[20_000] ^= 1; return b }
        let all = r + r.map(changed)
        let contents = Dictionary(uniqueKeysWithValues: all.map { (Blake2b.hash($0), $0) })
        func item(_ bytes: [UInt8]) -> ContentBatch.Item { ContentBatch.Item(hash: Blake2b.hash(bytes), size: UInt64(bytes.count)) }
        // The fourth content repeats the first, three chunks back.
        let first = [r[0], r[1], r[2], changed(r[0])].map(item)
        let second = [changed(r[1]), changed(r[2])].map(item)
        let one = try ContentBatch.encode(first, to: tmp.sub("1"), limits: limits) { h, _ in contents[h]! }
        #expect(one < 3 * (40 << 10) + (4 << 10), "\(one) bytes: the fourth content comes from the history")
        #expect(ContentBatch.historyStart(first.map(\.size), limit: limits.history) == 0)
        #expect(ContentBatch.historyStart(first.map(\.size), limit: 100 << 10) == 2)
        let two = try ContentBatch.encode(second, after: first, to: tmp.sub("2"), limits: limits) { h, _ in contents[h]! }
        #expect(two < 4 << 10, "\(two) bytes: the second batch comes from the first")

        let reader = try ContentBatchReader(path: tmp.sub("1"), items: first, limits: limits)
        for (i, item) in first.enumerated() { #expect(Blake2b.hash(try reader.content(at: i) { _ in nil }) == item.hash) }
        #expect(reader.recent.map(\.hash) == first.map(\.hash))
        let next = try ContentBatchReader(path: tmp.sub("2"), items: second, after: reader.recent, limits: limits)
        for (i, item) in second.enumerated() { #expect(Blake2b.hash(try next.content(at: i) { _ in nil }) == item.hash) }
        // Without that history the second batch does not decode to its contents.
        expectUpdError(.corrupt, "2: a chunk does not decode") {
            try ContentBatchReader(path: tmp.sub("2"), items: second, limits: limits).content(at: 0) { _ in nil }
        }
        // A batch cut into other chunks than the request makes is refused: the server does not
        // choose how much the client holds.
        expectUpdError(.corrupt, "where the request makes another cut") {
            try ContentBatchReader(path: tmp.sub("1"), items: first, limits: ContentBatch.Limits(chunkContent: 1 << 20)).content(at: 0) { _ in nil }
        }
    }

    @Test func aMoveComputedAheadServesItsFirstLaptopFromTheCache() throws {
        let server = try SchoolServerTests.School(school, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"],
                                                  extra: ["--batch-precompute-interval", "0.2"])
        // The inventory learns that a device runs version 1; the newest is 2: the server computes that move.
        try server.report("scout", "done", version: "1")
        #expect(try eventually(within: 300) { try server.server.metric("updatinator_batch_precomputes_total", ["done"]) == 1 })
        // The requests it forecast are the laptop's own: every batch comes from the cache.
        let laptop = try school.installedTree("first-after-precompute", version: "1")
        let r = try upgrade(laptop, server, device: "first-after-precompute")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try fsck(laptop) == 0)
        #expect(try server.server.metric("updatinator_batches_total", ["computed"]) == 0)
        #expect(try server.server.metric("updatinator_batches_total", ["cached"]) >= 1)
        #expect(try server.server.metric("updatinator_requests_total", ["blobs"]) == 0)
        #expect(try server.server.metric("updatinator_batch_precomputes_total", ["failed"]) == 0)
    }

    @Test func aForecastMakesTheRequestsOfTheDevicesPlanInItsWindowsGroups() throws {
        let old = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "1"))
        let new = try ManifestParser.parse(contentsOf: samples.manifest("olpc-devel-ext3", "2"))
        let whole = try ContentBatch.forecast(from: old, to: new)
        let small = try ContentBatch.forecast(from: old, to: new, window: 256 << 10)
        #expect(whole.count == 1 && small.count > 2, "\(whole.count) and \(small.count) batches")
        // The same contents in the same order, each with its base; each batch after the ones before it.
        #expect(small.flatMap(\.items) == whole[0].items)
        #expect(whole[0].items.contains { $0.base != nil })
        for (i, request) in small.enumerated() {
            let before = small[..<i].flatMap(\.items).map { ContentBatch.Item(hash: $0.hash, size: $0.size) }
            #expect(request.after == Array(before.suffix(request.after.count)) && request.after.count == before.count)
        }
    }

    @Test func aStreamedBatchIsAnsweredAtOnceAndDownloadsAsItIsComputed() throws {
        let cache = school.tmp.sub("stream-cache")
        let server = try SchoolServerTests.School(school, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"],
                                                  extra: ["--batch-cache", cache, "--no-batch-precompute"])
        var body = try requestBody(image: "olpc-devel-ext3")
        body["stream"] = true
        let answer = try server.server.post("/v1/batch", body)
        #expect(answer.status == 200)
        let fields = try JSONSerialization.jsonObject(with: Data(answer.body)) as! [String: Any]
        // No size: the batch is being computed, and its download follows the computation.
        #expect(fields["bytes"] == nil, "\(fields)")
        let path = fields["path"] as! String
        let fetched = school.tmp.sub("streamed.batch")
        try CurlFetcher(options: FetchOptions(mirrors: [server.server.url]))
            .fetchFile(String(path.dropFirst()), to: fetched, maxBytes: 64 << 20, from: nil, flow: nil, patienceSeconds: 600)
        let cached = "\(cache)/\(path.split(separator: "/").last!).batch"
        let whole = try Sys.readFile(cached)
        #expect(try Sys.readFile(fetched) == whole)
        #expect(!FileManager.default.fileExists(atPath: ContentBatch.partialPath(cached)))
        // Asked again, it is whole: answered with its size.
        let again = try JSONSerialization.jsonObject(with: Data(try server.server.post("/v1/batch", body).body)) as! [String: Any]
        #expect(again["bytes"] as? Int == whole.count)
    }

    @Test func aStreamedBatchWhoseComputationFailsLeavesItsContentsToComeOnTheirOwn() throws {
        let server = try SchoolServerTests.School(school, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"],
                                                  extra: ["--no-batch-precompute"])
        // A base the batch is compressed against is damaged on the server's disk (replaced: the
        // repository shares its files with the samples): its computation fails after the answer.
        let base = try #require(((try requestBody()["items"] as! [[String: Any]]).compactMap { $0["base"] as? String }).first)
        let blob = "\(server.repo)/blobs/\(base.prefix(2))/\(base)"
        var bytes = try Sys.readFile(blob)
        bytes[bytes.count / 2] ^= 0xff
        Sys.unlink(blob)
        try Sys.writeFileAtomically(blob, bytes)
        try expectContentsOnTheirOwn("failed-stream", server)
        // The server says which batch failed and why.
        #expect(try eventually(within: 30) { server.server.process.stderr.contains("its devices download its contents one by one") },
                "\(server.server.process.stderr)")
    }
}
