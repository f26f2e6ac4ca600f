import Foundation
import Testing
@testable import Updatinator

/// The attack suite's tests of the fetcher and the manifests it reads: a stale or hostile mirror
/// first in the list, endless documents, the memory a manifest can take, and slow mirrors and
/// peers (docs/security.md, Indefinite freeze, Endless data, Slow retrieval).
@Suite struct FetchAttackTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("fetch-attack")

    init() throws { samples = try SampleImages.shared }

    /// A keyring trusting `key`.
    func keyring(trusting key: SecretKey) throws -> Keyring {
        let directory = tmp.sub("keyring")
        try Sys.mkdirs(directory + "/revoked")
        try Sys.writeFileAtomically(directory + "/build.pub", KeyFile.encode(key.publicKey))
        return try Keyring(directory: directory)
    }

    /// A repository at `name` holding `channels/stable.json` (serial and expiry given), signed by `key`.
    func channelMirror(_ name: String, serial: UInt64, expires: Int64, key: SecretKey) throws -> String {
        let mirror = tmp.sub(name)
        let metadata = ChannelMetadata(channel: "stable", image: "olpc-ext3", version: "2", manifestHash: Blake2b.hash([1]), manifestSize: 1,
                                       serial: serial, expires: expires)
        var signatures = SignatureFile()
        signatures.sign(metadata.encoded(), with: key, purpose: .channel)
        try Sys.mkdirs(mirror + "/channels")
        try Sys.writeFileAtomically(mirror + "/channels/stable.json.sig", signatures.encoded())
        try Sys.writeFileAtomically(mirror + "/channels/stable.json", metadata.encoded())
        return "file://" + mirror
    }

    // MARK: Documents from the next mirror

    @Test("indefinite-freeze: channel metadata that one mirror serves expired, unsigned or garbled is taken from the next mirror")
    func aStaleChannelMirrorFirstDoesNotStopTheUpdate() throws {
        let key = SecretKey.generate()
        let keyring = try keyring(trusting: key)
        let stale = try channelMirror("stale", serial: 7, expires: 1000, key: key)
        let forged = try channelMirror("forged", serial: 9, expires: 4_000_000_000, key: SecretKey.generate())
        let garbled = tmp.sub("garbled")
        try Sys.mkdirs(garbled + "/channels")
        try Sys.writeFileAtomically(garbled + "/channels/stable.json", Array("{not json".utf8))
        try Sys.writeFileAtomically(garbled + "/channels/stable.json.sig", Array("nor this".utf8))
        let fresh = try channelMirror("fresh", serial: 8, expires: 4_000_000_000, key: key)
        let bad = [stale, forged, "file://" + garbled]

        var state = FreshnessState()
        let metadata = try ChannelFollower.check("stable", mirrors: FetchOptions(mirrors: bad + [fresh]), keyring: keyring,
                                                 state: &state, clock: 2000)
        #expect(metadata.serial == 8)

        // With no good mirror, one line names each mirror and what was wrong with it.
        let error = try #require(throws: UpdError.self) {
            var state = FreshnessState()
            _ = try ChannelFollower.check("stable", mirrors: FetchOptions(mirrors: bad + ["file://" + tmp.sub("empty")]), keyring: keyring,
                                          state: &state, clock: 2000)
        }
        #expect(error.code == .verification)
        #expect(!error.message.contains("\n"))
        #expect(error.message.hasPrefix("channels/stable.json: no mirror had an acceptable copy ("), "\(error.message)")
        for (mirror, problem) in [(stale, "expired at"), (forged, "signature"), ("file://" + garbled, "signature"),
                                  ("file://" + tmp.sub("empty"), "not found")] {
            #expect(error.message.contains("\(mirror): ") && error.message.contains(problem), "\(mirror) \(problem): \(error.message)")
        }
    }

    @Test("indefinite-freeze: a delta index that one mirror serves tampered is taken from the next mirror")
    func aTamperedDeltaIndexIsTakenFromTheNextMirror() throws {
        let key = try KeyFile.readSecret(samples.secretKey)
        var index = DeltaIndex(image: "olpc-ext3", version: "2")
        index.add(target: Blake2b.hash([2]), base: .empty, bytes: 100)
        var signatures = SignatureFile()
        signatures.sign(index.encoded(), with: key, purpose: .deltas)
        let path = DeltaIndex.path(image: "olpc-ext3", version: "2")
        let (tampered, good) = (tmp.sub("tampered"), tmp.sub("good"))
        for mirror in [tampered, good] {
            try Sys.mkdirs(Sys.parentDirectory(of: "\(mirror)/\(path)"))
            try Sys.writeFileAtomically("\(mirror)/\(path).sig", signatures.encoded())
            try Sys.writeFileAtomically("\(mirror)/\(path)", index.encoded())
        }
        try Sys.writeFileAtomically("\(tampered)/\(path)", index.encoded() + Array(" ".utf8))
        let keyring = try Keyring(directory: samples.keyring)
        let fetcher = try CurlFetcher(options: FetchOptions(mirrors: ["file://" + tampered, "file://" + good]))
        #expect(try fetcher.downloadDeltaIndex(image: "olpc-ext3", version: "2", keyring: keyring) == index)
    }

    // MARK: Manifest sizes

    @Test("endless-data: a manifest download is capped at the size the channel or decision announces, its compressed copy too")
    func aManifestIsCappedAtItsAnnouncedSize() throws {
        let real = try Sys.readFile(samples.manifest("olpc-ext3", "2"))
        let keyring = try Keyring(directory: samples.keyring)
        // A hostile mirror pads the manifest; its compressed copy inflates past the size.
        let hostile = tmp.sub("hostile"), remote = "images/olpc-ext3/2.manifest"
        try Sys.mkdirs(hostile + "/images/olpc-ext3")
        try Sys.writeFileAtomically("\(hostile)/\(remote)", real + [UInt8](repeating: 0x41, count: 1 << 20))
        try Sys.writeFileAtomically("\(hostile)/\(remote).sig", Sys.readFile(samples.repo + "/\(remote).sig"))
        try Sys.writeFileAtomically("\(hostile)/\(remote)\(CompressedCopy.suffix)",
                                    ContentDelta.compress(real + [10], prefix: [], level: 3))
        let fetcher = try CurlFetcher(options: FetchOptions(mirrors: ["file://" + hostile]))
        let error = try #require(throws: UpdError.self) {
            try fetcher.downloadManifest(image: "olpc-ext3", version: "2", into: nil, keyring: keyring, size: UInt64(real.count))
        }
        #expect(error.message == "\(remote): no mirror had an acceptable copy (file://\(hostile): sent more than the \(real.count) bytes declared)")
        // The next mirror has it, of that size.
        let got = try CurlFetcher(options: FetchOptions(mirrors: ["file://" + hostile, "file://" + samples.repo]))
            .downloadManifest(image: "olpc-ext3", version: "2", into: nil, keyring: keyring, size: UInt64(real.count))
        #expect(got.download.content == real)
    }

    @Test("endless-data: publish and the school server announce the manifest's size")
    func theChannelAndTheDecisionCarryTheManifestSize() throws {
        let repo = tmp.sub("repo")
        try Shell.run(["cp", "-a", samples.repo, repo])
        let r = try CLI.run(["publish", "--repo", repo, "--channel", "stable", "--image", "olpc-ext3", "--version", "2",
                             "--secret-key", samples.secretKey, "--expires", "30d"])
        #expect(r.status == 0, "\(r.stderr)")
        let metadata = try ChannelMetadata.parse(Sys.readFile(repo + "/channels/stable.json"), source: "stable.json")
        let size = try Sys.readFile(samples.manifest("olpc-ext3", "2")).count
        #expect(metadata.manifestSize == UInt64(size))
        let servers = try SchoolServerTests()
        let school = try SchoolServerTests.School(servers, policy: SchoolServerTests.serverPolicy("default.lua"),
                                                  settings: ["image": "olpc-ext3"])
        let decision = try school.check("d1", version: "1", ["channel": "testing"])
        #expect(decision.version == "2" && decision.manifestSize == UInt64(size))
    }

    // MARK: Memory

    /// Runs the CLI with its address space limited to 768 MiB: a manifest read whole at 1 GiB
    /// cannot fit, one capped at `ManifestParser.maxManifestBytes` does.
    func runLimited(_ arguments: [String]) throws -> CLI.Result {
        let child = try Subprocess(["prlimit", "--as=\(768 << 20)", CLI.binary] + arguments)
        let status = child.wait()
        return CLI.Result(status: status, stdout: child.stdout, stderr: child.stderr)
    }

    @Test("endless-data: a 700 MiB manifest, or a copy that inflates to 1 GiB, is refused in one line within bounded memory")
    func aHugeManifestIsRefusedWithinBoundedMemory() throws {
        let remote = "images/olpc-ext3/2.manifest"
        let hostile = tmp.sub("hostile")
        try Sys.mkdirs(hostile + "/images/olpc-ext3")
        // 700 MiB, sparse: a plain manifest, read from disk and from a mirror.
        let huge = "\(hostile)/\(remote)"
        try Shell.run(["truncate", "-s", "700M", huge])
        let verify = try runLimited(["verify", huge, "--keyring", samples.keyring])
        #expect(verify.status == UpdError.Code.corrupt.exitStatus, "\(verify.status): \(verify.stderr)")
        #expect(verify.stderr.split(separator: "\n").count == 1 && verify.stderr.contains(huge), "\(verify.stderr)")

        try Sys.writeFileAtomically(huge + ".sig", Sys.readFile(samples.repo + "/\(remote).sig"))
        let get = try runLimited(["get-manifest", "--mirror", "file://" + hostile, "olpc-ext3", "2", "--out", tmp.sub("out"),
                                  "--keyring", samples.keyring])
        #expect(get.status == UpdError.Code.network.exitStatus, "\(get.status): \(get.stderr)")
        let errors = get.stderr.split(separator: "\n").filter { $0.hasPrefix("updatinator: ") }
        #expect(errors.count == 1 && errors[0].contains("sent more than the \(ManifestParser.maxManifestBytes) bytes"), "\(get.stderr)")

        // A compressed copy of 1 GiB of zeros (tens of KB) beside the real manifest: refused, the plain file used.
        try Sys.writeFileAtomically(huge, Sys.readFile(samples.manifest("olpc-ext3", "2")))
        try Shell.run(["sh", "-c", "head -c 1G /dev/zero | zstd -q -3 -o '\(huge)\(CompressedCopy.suffix)'"])
        let bomb = try runLimited(["get-manifest", "--mirror", "file://" + hostile, "olpc-ext3", "2", "--out", tmp.sub("out"),
                                   "--keyring", samples.keyring])
        #expect(bomb.status == 0, "\(bomb.status): \(bomb.stderr)")
        #expect(try Sys.readFile(tmp.sub("out") + "/2.manifest") == Sys.readFile(samples.manifest("olpc-ext3", "2")))
    }

    @Test("endless-data: upd.manifest.load of /dev/zero, or an installed manifest linked to it, is refused in one line")
    func aManifestThatIsADeviceIsRefused() throws {
        let root = tmp.sub("root")
        let installed = StateDirectory(root: root).installedManifest
        try Sys.mkdirs(Sys.parentDirectory(of: installed))
        try FileManager.default.createSymbolicLink(atPath: installed, withDestinationPath: "/dev/zero")
        let script = tmp.sub("load.lua")
        try Sys.writeFileAtomically(script, Array("""
            local path, root = ...
            for _, m in ipairs({ { upd.manifest.load(path) }, { upd.manifest.installed(root) } }) do print(m[3], m[2]) end
            """.utf8))
        // Allowed on purpose: the paths themselves are what is refused, not where they are.
        let load = try runLimited(["run", "--allow-path", "/dev", "--allow-path", root, script, "--", "/dev/zero", root])
        #expect(load.status == 0, "\(load.stderr)")
        let lines = load.stdout.split(separator: "\n")
        #expect(lines.count == 2, "\(load.stdout)")
        #expect(lines.first?.hasPrefix("unsafe\t/dev/zero: ") == true, "\(load.stdout)")
        #expect(lines.last?.hasPrefix("unsafe\t\(installed): ") == true, "\(load.stdout)")
    }

    // MARK: Slow retrieval

    /// A fetcher with the fetch tests' low-speed window (1000 bytes/s for 2 s).
    func fetcher(_ options: FetchOptions, configure: (inout FetchOptions) -> Void = { _ in }) throws -> CurlFetcher {
        var options = options
        options.lowSpeedLimit = 1000
        options.lowSpeedSeconds = 2
        options.retryDelay = 0.05
        configure(&options)
        return try CurlFetcher(options: options)
    }

    /// The blob requests the mirror got.
    func requests(_ mirror: FlakyMirror) -> Int {
        mirror.output.split(separator: "\n").filter { $0.hasPrefix("got ") }.count
    }

    @Test("slow-retrieval: a mirror that trickles just above the low-speed limit is left at the content's deadline, and the next goes on from what arrived")
    func aTricklingMirrorIsLeftAtTheDeadline() throws {
        // The smallest blob that takes the trickle more than ten seconds.
        let blob = try #require(try samples.upgradeBlobs.filter { $0.blobSize > 20_000 }.min { $0.blobSize < $1.blobSize })
        // 2000 bytes/s never trips the 1000 bytes/s limit; the deadline (1 s, plus 1 s for the blob) does.
        let trickle = try FlakyMirror(repo: samples.repo, mode: "trickle", arguments: ["--rate", "2000"])
        let good = try NginxMirror(repo: samples.repo)
        let store = BlobStore(directory: tmp.sub("cache"))
        let report = try fetcher(FetchOptions(mirrors: [trickle.url, good.url])) {
            $0.minimumAverageRate = blob.blobSize
            $0.deadlineAllowanceSeconds = 1
        }.fetch([blob], into: store)
        #expect(report.failovers == 1)
        try BlobStore.read(blobAt: store.path(for: blob), hash: blob.hash, size: blob.size) { _ in }
        // The good mirror sent what the trickling one had not (nginx logs a request once it has
        // sent the answer, so its line may come just after the blob arrived).
        #expect(eventually(within: 10) { good.blobBytesSent > 0 }, "nothing from the good mirror")
        #expect(good.blobBytesSent < Int(blob.blobSize), "\(good.blobBytesSent) of \(blob.blobSize)")

        // Alone, it fails with the deadline as its reason.
        let error = try #require(throws: UpdError.self) {
            try fetcher(FetchOptions(mirrors: [trickle.url])) {
                $0.minimumAverageRate = blob.blobSize
                $0.deadlineAllowanceSeconds = 1
            }.fetch([blob], into: BlobStore(directory: tmp.sub("cache2")))
        }
        #expect(error.message.contains("not done within its deadline of"), "\(error.message)")
    }

    @Test("slow-retrieval: a stalling first mirror costs one stall for the whole fetch, not one per blob")
    func aStallingMirrorIsLeftByEveryQueuedBlob() throws {
        let stall = try FlakyMirror(repo: samples.repo, mode: "stall")
        let good = try NginxMirror(repo: samples.repo)
        let blobs = Array(try samples.upgradeBlobs.prefix(8))
        let store = BlobStore(directory: tmp.sub("cache"))
        try fetcher(FetchOptions(mirrors: [stall.url, good.url])) { $0.concurrency = 2 }.fetch(blobs, into: store)
        for blob in blobs { try BlobStore.read(blobAt: store.path(for: blob), hash: blob.hash, size: blob.size) { _ in } }
        // The blobs started at once stalled there; every one queued after went to the good mirror.
        #expect(requests(stall) <= 2, "\(stall.output)")
    }

    @Test("slow-retrieval: a stalling peer gets a short stall window and is left for the rest of the fetch")
    func aStallingPeerCostsSecondsOnce() throws {
        let peer = try FlakyMirror(repo: samples.repo, mode: "stall")
        let good = try NginxMirror(repo: samples.repo)
        let blobs = Array(try samples.upgradeBlobs.prefix(8))
        let store = BlobStore(directory: tmp.sub("cache"))
        // A mirror may stall for 20 s; a peer for 1.
        let configure = { (o: inout FetchOptions) in
            o.lowSpeedSeconds = 20
            o.peerStallSeconds = 1
            o.concurrency = 1
        }
        try fetcher(FetchOptions(peers: [peer.url], mirrors: [good.url]), configure: configure).fetch(blobs, into: store)
        for blob in blobs { try BlobStore.read(blobAt: store.path(for: blob), hash: blob.hash, size: blob.size) { _ in } }
        #expect(requests(peer) == 1, "\(peer.output)")

        let error = try #require(throws: UpdError.self) {
            try fetcher(FetchOptions(peers: [peer.url], mirrors: []), configure: configure)
                .fetch([blobs[0]], into: BlobStore(directory: tmp.sub("cache2")))
        }
        #expect(error.message.contains("\(peer.url): slower than 1000 bytes/s for 1 s"), "\(error.message)")
    }
}
