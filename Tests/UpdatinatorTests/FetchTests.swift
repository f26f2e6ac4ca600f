import Foundation
import Glibc
import Testing
@testable import Updatinator

/// Fetching over real HTTP (nginx and a misbehaving server on loopback) and file:// mirrors.
@Suite struct FetchTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("fetch")

    init() throws { samples = try SampleImages.shared }

    func fetcher(_ mirrors: [String], configure: (inout FetchOptions) -> Void = { _ in }) throws -> CurlFetcher {
        var options = FetchOptions(mirrors: mirrors)
        options.lowSpeedLimit = 1000
        options.lowSpeedSeconds = 2
        options.retryDelay = 0.05
        configure(&options)
        return try CurlFetcher(options: options)
    }

    /// Every blob of `requests` is in the store and verifies.
    func expectStored(_ requests: [BlobRequest], in store: BlobStore, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for r in requests { try store.verify(r.hash, size: r.size) }
        let partials = try Shell.run(["find", store.directory, "-name", ".partial-*"])
        #expect(partials.isEmpty, "no partial downloads are left", sourceLocation: sourceLocation)
    }

    @Test func thePrototypesThreeStepsMoveATree() throws {
        let mirror = try NginxMirror(repo: samples.repo)
        let root = tmp.sub("root")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        let manifests = tmp.sub("manifests")
        // 1. The installed image's manifest, and the target's.
        for version in ["1", "2"] {
            let r = try CLI.run(["get-manifest", "--mirror", mirror.url, "olpc-ext3", version, "--out", manifests, "--keyring", samples.keyring])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try Sys.readFile("\(manifests)/\(version).manifest") == Sys.readFile(samples.manifest("olpc-ext3", version)))
        }
        // 2. The blobs the target needs and the installed image lacks.
        let cache = tmp.sub("cache")
        let fetched = try CLI.run(["fetch", "--to", "\(manifests)/2.manifest", "--from", "\(manifests)/1.manifest",
                                   "--mirror", mirror.url, "--cache", cache])
        #expect(fetched.status == 0, "\(fetched.stderr)")
        let needed = try samples.upgradeBlobs
        #expect(fetched.stdout.contains("fetched \(needed.count) blobs"), "\(fetched.stdout)")
        try expectStored(needed, in: BlobStore(directory: cache))
        // 3. The upgrade from the cache.
        let applied = try CLI.run(["apply", "--root", root, "--from", "\(manifests)/1.manifest", "--to", "\(manifests)/2.manifest",
                                   "--keyring", samples.keyring, "--blobs", cache])
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root) == [])
        // Fetching again downloads nothing.
        let again = try CLI.run(["fetch", "--to", "\(manifests)/2.manifest", "--from", "\(manifests)/1.manifest",
                                 "--mirror", mirror.url, "--cache", cache])
        #expect(again.stdout.contains("fetched 0 blobs"))
    }

    /// A copy of image 1, installed, and the apply arguments that move it to image 2 from `mirrors`.
    func installedCopy(mirrors: [String]) throws -> (root: String, arguments: [String]) {
        let root = tmp.sub("root")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        try Sys.mkdirs("\(root)/.updatinator")
        try Sys.writeFileAtomically("\(root)/.updatinator/installed.manifest", Sys.readFile(samples.manifest("olpc-ext3", "1")))
        return (root, ["apply", "--root", root, "--to", samples.manifest("olpc-ext3", "2"), "--keyring", samples.keyring]
            + mirrors.flatMap { ["--mirror", $0] })
    }

    @Test func applyFromAMirrorDownloadsEachMissingBlobOnce() throws {
        let mirror = try NginxMirror(repo: samples.repo)
        let (root, arguments) = try installedCopy(mirrors: [mirror.url])
        let r = try CLI.run(arguments)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root) == [])
        let needed = try samples.upgradeBlobs
        #expect(r.stdout.contains("downloaded \(needed.count) blobs"), "\(r.stdout)")
        #expect(mirror.blobBytesSent == Int(needed.reduce(0) { $0 + $1.blobSize }))
        #expect((try Sys.lstatIfExists("\(root)/.updatinator/apply")) == nil, "no downloaded blob is left")
    }

    @Test func anApplyWhoseBlobNoMirrorHasStopsCleanlyAndResumesFromAnotherMirror() throws {
        let flaky = try FlakyMirror(repo: samples.repo, mode: "missing")
        let (root, arguments) = try installedCopy(mirrors: [flaky.url])
        let failed = try CLI.run(arguments)
        #expect(failed.status == 4, "\(failed.stderr)")
        #expect(failed.stderr.contains(": no mirror could provide it"), "\(failed.stderr)")
        #expect(withoutProgress(failed.stderr).split(separator: "\n").count == 1, "one line: \(failed.stderr)")
        #expect(try Sys.readFile("\(root)/.updatinator/installed.manifest") == Sys.readFile(samples.manifest("olpc-ext3", "1")))
        let good = try NginxMirror(repo: samples.repo)
        let resumed = try CLI.run(arguments + ["--mirror", good.url])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root) == [])
    }

    @Test(arguments: [5, 40, 200])
    func anApplyFromAMirrorKilledMidwayResumes(after operations: Int) throws {
        let mirror = try NginxMirror(repo: samples.repo)
        let (root, arguments) = try installedCopy(mirrors: [mirror.url])
        let killed = try CLI.run(arguments, environment: ["UPDATINATOR_KILL_AFTER": "\(operations)"])
        #expect(killed.status == 128 + SIGKILL)
        let resumed = try CLI.run(arguments)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("(resumed)"), "\(resumed.stdout)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root) == [])
    }

    @Test("wrong-software: another signed manifest served as the version asked for is refused")
    func getManifestRefusesAnotherSignedManifestPassedOffAsTheVersionAsked() throws {
        // A mirror that answers for version 2 with version 1's validly signed manifest (a downgrade).
        let mirror = tmp.sub("mirror")
        try Sys.mkdirs("\(mirror)/images/olpc-ext3")
        for suffix in ["", ".sig"] {
            try Sys.writeFileAtomically("\(mirror)/images/olpc-ext3/2.manifest\(suffix)",
                                        Sys.readFile(samples.manifest("olpc-ext3", "1") + suffix))
        }
        let out = tmp.sub("out")
        let r = try CLI.run(["get-manifest", "--mirror", "file://\(mirror)", "olpc-ext3", "2", "--out", out, "--keyring", samples.keyring])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.contains("the mirror sent the manifest of olpc-ext3 1"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == [], "nothing is left behind")
    }

    @Test func aFileMirrorWorksLikeAnHTTPOne() throws {
        let store = BlobStore(directory: tmp.sub("cache"))
        let report = try fetcher(["file://\(samples.repo)"]).fetch(try samples.upgradeBlobs, into: store)
        #expect(report.blobs == (try samples.upgradeBlobs).count)
        try expectStored(try samples.upgradeBlobs, in: store)
    }

    /// The README's USB stick with a rate limit: libcurl cannot pause a file:// transfer, and
    /// the limit, which is the network's, leaves it alone in every command that downloads.
    @Test(arguments: ["apply", "fetch", "deploy"])
    func aFileMirrorWithARateLimitWorks(command: String) throws {
        let mirror = ["--mirror", "file://\(samples.repo)", "--rate-limit", "2000000"]
        let one = samples.manifest("olpc-ext3", "1"), two = samples.manifest("olpc-ext3", "2")
        switch command {
        case "apply":
            let root = tmp.sub("root")
            try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
            let r = try CLI.run(["apply", "--root", root, "--from", one, "--to", two, "--keyring", samples.keyring] + mirror)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root) == [])
        case "fetch":
            let r = try CLI.run(["fetch", "--to", two, "--from", one, "--cache", tmp.sub("cache")] + mirror)
            #expect(r.status == 0, "\(r.stderr)")
            try expectStored(try samples.upgradeBlobs, in: BlobStore(directory: tmp.sub("cache")))
        default:
            let sysroot = tmp.sub("sysroot")
            let r = try CLI.run(["deploy", "--sysroot", sysroot, "--to", two, "--keyring", samples.keyring] + mirror)
            #expect(r.status == 0, "\(r.stderr)")
            let current = try FileManager.default.destinationOfSymbolicLink(atPath: "\(sysroot)/current")
            #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: "\(sysroot)/\(current)") == [])
        }
    }

    @Test(arguments: ["error500", "drop", "cut", "norange"])
    func retriesAndResumesOnAFlakyMirror(mode: String) throws {
        let flaky = try FlakyMirror(repo: samples.repo, mode: mode)
        let store = BlobStore(directory: tmp.sub("cache"))
        let report = try fetcher([flaky.url]).fetch(try samples.upgradeBlobs, into: store)
        #expect(report.retries > 0)
        #expect(report.failovers == 0)
        try expectStored(try samples.upgradeBlobs, in: store)
    }

    /// (The attack suite runs this for a stalling, trickling, endless and corrupting mirror.)
    @Test(arguments: ["missing"])
    func failsOverToTheSecondMirror(mode: String) throws {
        let flaky = try FlakyMirror(repo: samples.repo, mode: mode)
        let good = try NginxMirror(repo: samples.repo)
        let store = BlobStore(directory: tmp.sub("cache"))
        let requests = Array(try samples.upgradeBlobs.prefix(6))
        let report = try fetcher([flaky.url, good.url]) { $0.concurrency = 2 }.fetch(requests, into: store)
        #expect(report.failovers > 0)
        try expectStored(requests, in: store)
    }

    @Test func aBlobNoMirrorHasIsAClearErrorNamingIt() throws {
        let flaky = try FlakyMirror(repo: samples.repo, mode: "missing")
        let request = try #require(try samples.upgradeBlobs.first)
        do {
            try fetcher([flaky.url, "file://\(tmp.sub("empty"))"]).fetch([request], into: BlobStore(directory: tmp.sub("cache")))
            Issue.record("fetch succeeded")
        } catch let e as UpdError {
            #expect(e.code == .network)
            #expect(e.message.contains("blob \(request.hash.hex): no mirror could provide it"), "\(e.message)")
        }
    }

    /// The limiter's arithmetic is tested over given times (`TokenBucketTests`); over real HTTP
    /// this checks the direction no busy machine can fake: the transfer was held back, never
    /// faster than the limit and the bucket's one burst allow.
    @Test func theRateLimitHoldsTheTransferBack() throws {
        let mirror = try NginxMirror(repo: samples.repo)
        let requests = try BlobFetchPlan.missing(target: ManifestParser.parse(contentsOf: samples.manifest("olpc-devel-ext3", "2")),
                                                 present: nil, stores: [])
        let total = requests.reduce(0) { $0 + $1.blobSize }
        let limit = max(UInt64(1 << 20), total / 3)
        let store = BlobStore(directory: tmp.sub("cache"))
        let report = try fetcher([mirror.url]) { $0.rateLimit = limit }.fetch(requests, into: store)
        try expectStored(requests, in: store)
        let burst = TokenBucket(limit: limit, now: Date()).depth + Double(TokenBucketTests.largestChunk)
        let fastestAllowed = (Double(report.bytes) - burst) / Double(limit)
        #expect(report.bytes == total && report.seconds >= fastestAllowed,
                "\(report.bytes) bytes at \(limit) B/s took \(report.seconds) s; the limit allows no less than \(fastestAllowed) s")
    }
}
