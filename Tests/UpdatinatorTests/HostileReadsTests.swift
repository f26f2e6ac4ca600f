import Foundation
import Glibc
import Testing
@testable import Updatinator

/// What a hostile local user, a hostile USB stick or a compromised upstream can plant where the
/// tool reads or caches files: FIFOs that would block a read forever, symlinks that would lead a
/// write or a served file outside its directory, links that would switch to a tree outside the
/// sysroot. Every command runs with a deadline, so a regression fails instead of hanging.
@Suite struct HostileReadsTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("hostile-reads")

    init() throws { samples = try SampleImages.shared }

    /// Runs the CLI, killing it (and recording an issue) when it has not ended within `seconds`.
    func run(_ arguments: [String], seconds: Double = 60, sourceLocation: SourceLocation = #_sourceLocation) throws -> CLI.Result {
        let child = try Subprocess([CLI.binary] + arguments)
        guard child.waitForExit(seconds: seconds) else {
            kill(child.pid, SIGKILL)
            child.wait()
            Issue.record("updatinator \(arguments[0]) was still running after \(seconds) s (blocked?)", sourceLocation: sourceLocation)
            return CLI.Result(status: -1, stdout: child.stdout, stderr: child.stderr)
        }
        return CLI.Result(status: child.wait(), stdout: child.stdout, stderr: child.stderr)
    }

    /// Expects exit status 8 (unsafe) and one error line naming `what`.
    func expectUnsafe(_ r: CLI.Result, mentioning what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == 8, "\(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.contains(what), "\(r.stderr)", sourceLocation: sourceLocation)
    }

    func fifo(_ path: String) throws {
        try #require(mkfifo(path, 0o644) == 0, "mkfifo \(path)")
    }

    /// A keyring trusting the samples' key, for adding hostile files to.
    func keyringCopy() throws -> String {
        let keyring = tmp.sub("keyring")
        try Shell.run(["cp", "-a", samples.keyring, keyring])
        return keyring
    }

    /// A copy of the samples' repository, as a USB stick might hold it.
    func mirrorCopy() throws -> String {
        let mirror = tmp.sub("stick")
        try Shell.run(["cp", "-a", samples.repo, mirror])
        return mirror
    }

    /// The blobs `fetch` downloads to move image olpc-ext3 from 1 to 2, in request order.
    func requestsFrom1To2(cache: String) throws -> [BlobRequest] {
        try BlobFetchPlan.missing(target: ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "2")),
                                  present: ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "1")),
                                  stores: [BlobStore(directory: cache)])
    }

    func fetch1To2(cache: String, mirror: String) throws -> CLI.Result {
        try run(["fetch", "--to", samples.manifest("olpc-ext3", "2"), "--from", samples.manifest("olpc-ext3", "1"),
                 "--cache", cache, "--mirror", "file://" + mirror])
    }

    // MARK: FIFOs where a regular file is read

    @Test("A FIFO as a key file in a keyring is refused without blocking")
    func fifoAsKeyFile() throws {
        let keyring = try keyringCopy()
        try fifo(keyring + "/planted.pub")
        let r = try run(["verify", samples.manifest("olpc-ext3", "1"), "--keyring", keyring])
        expectUnsafe(r, mentioning: "planted.pub: not a regular file (a FIFO)")
    }

    @Test("A FIFO as a keyring's threshold file is refused without blocking")
    func fifoAsThreshold() throws {
        let keyring = try keyringCopy()
        try fifo(keyring + "/threshold")
        let r = try run(["verify", samples.manifest("olpc-ext3", "1"), "--keyring", keyring])
        expectUnsafe(r, mentioning: "threshold: not a regular file (a FIFO)")
    }

    @Test("A FIFO as a manifest's signature file is refused without blocking")
    func fifoAsSignatureFile() throws {
        let manifest = tmp.sub("1.manifest")
        try Shell.run(["cp", samples.manifest("olpc-ext3", "1"), manifest])
        try fifo(manifest + ".sig")
        let r = try run(["verify", manifest, "--keyring", samples.keyring])
        expectUnsafe(r, mentioning: "1.manifest.sig: not a regular file (a FIFO)")
    }

    @Test("A FIFO as a tree's installed manifest is refused without blocking")
    func fifoAsInstalledManifest() throws {
        let root = tmp.sub("root")
        try Sys.mkdirs(root + "/.updatinator")
        try fifo(StateDirectory(root: root).installedManifest)
        let r = try run(["plan", "--root", root, "--to", samples.manifest("olpc-ext3", "2")])
        expectUnsafe(r, mentioning: "installed.manifest: not a regular file (a FIFO)")
    }

    @Test("A FIFO as the apply journal is refused without blocking, and the tree is left as it was")
    func fifoAsJournal() throws {
        let root = tmp.sub("root")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        try Sys.mkdirs(root + "/.updatinator/apply")
        try Sys.writeFileAtomically(StateDirectory(root: root).installedManifest, Sys.readFile(samples.manifest("olpc-ext3", "1")))
        try fifo(StateDirectory(root: root).journal)
        let r = try run(["apply", "--root", root, "--to", samples.manifest("olpc-ext3", "2"), "--keyring", samples.keyring,
                         "--blobs", samples.repo + "/blobs"])
        expectUnsafe(r, mentioning: "journal: not a regular file (a FIFO)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "1"), root: root) == [])
    }

    @Test("A FIFO as a blob on a file:// mirror is refused before libcurl opens it")
    func fifoAsBlobOnFileMirror() throws {
        let mirror = try mirrorCopy(), cache = tmp.sub("cache")
        let first = try #require(try requestsFrom1To2(cache: cache).first)
        let blob = "\(mirror)/blobs/\(first.hash.hex.prefix(2))/\(first.hash.hex)"
        try #require(unlink(blob) == 0)
        try fifo(blob)
        let r = try fetch1To2(cache: cache, mirror: mirror)
        expectUnsafe(r, mentioning: "\(first.hash.hex): not a regular file (a FIFO)")
    }

    @Test("A FIFO as a manifest on a file:// mirror is refused before libcurl opens it")
    func fifoAsManifestOnFileMirror() throws {
        let mirror = try mirrorCopy()
        let manifest = "\(mirror)/images/olpc-ext3/2.manifest"
        for path in [manifest, manifest + CompressedCopy.suffix] { unlink(path) }
        try fifo(manifest)
        let r = try run(["get-manifest", "--mirror", "file://" + mirror, "olpc-ext3", "2", "--out", tmp.sub("out"),
                         "--keyring", samples.keyring])
        expectUnsafe(r, mentioning: "2.manifest: not a regular file (a FIFO)")
        #expect(try Sys.lstatIfExists(tmp.sub("out/2.manifest")) == nil)
    }

    // MARK: Symlinks in a fetch cache

    @Test("A symlink planted as a partial download in a fetch cache is refused, and its target is not written")
    func symlinkedPartialDownload() throws {
        let cache = tmp.sub("cache"), victim = tmp.sub("victim")
        let first = try #require(try requestsFrom1To2(cache: cache).first)
        // Larger than the blob, so that the old code truncated it before writing the blob into it.
        let precious = Array(String(repeating: "precious root-owned file\n", count: Int(first.blobSize / 20 + 10)).utf8)
        try Sys.writeFileAtomically(victim, precious)
        try Sys.mkdirs("\(cache)/\(first.hash.hex.prefix(2))")
        try #require(symlink(victim, "\(cache)/\(first.hash.hex.prefix(2))/.partial-\(first.hash.hex)") == 0)
        let r = try fetch1To2(cache: cache, mirror: samples.repo)
        expectUnsafe(r, mentioning: ".partial-\(first.hash.hex): not a regular file (a symlink)")
        #expect(try Sys.readFile(victim) == precious)
    }

    @Test("A symlinked prefix directory in a fetch cache is refused, and nothing is written where it leads")
    func symlinkedPrefixDirectory() throws {
        let cache = tmp.sub("cache"), elsewhere = tmp.sub("elsewhere")
        let first = try #require(try requestsFrom1To2(cache: cache).first)
        try Sys.mkdirs(cache)
        try Sys.mkdirs(elsewhere)
        try #require(symlink(elsewhere, "\(cache)/\(first.hash.hex.prefix(2))") == 0)
        let r = try fetch1To2(cache: cache, mirror: samples.repo)
        expectUnsafe(r, mentioning: "\(first.hash.hex.prefix(2)) is not a directory (a symlink)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere) == [])
    }

    // MARK: The school server

    @Test("The school server answers 404 for a path through a symlinked directory in its repository")
    func serverRefusesSymlinkedDirectory() throws {
        let repo = tmp.sub("repo"), outside = tmp.sub("outside")
        try Shell.run(["cp", "-al", samples.repo, repo])
        try Sys.mkdirs(outside)
        let secret = "SECRET-\(UUID().uuidString)"
        try Sys.writeFileAtomically(outside + "/shadow", Array(secret.utf8))
        // As `rsync -a` from a compromised upstream would keep it.
        try #require(symlink(outside, repo + "/blobs/zz") == 0)
        let secretKey = tmp.sub("decision.sec")
        try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: secretKey, publicPath: tmp.sub("decision.pub"))
        let policy = Scripts.repositoryRoot.appendingPathComponent("policies/server/staged-rollout.lua").path
        let server = try ServeProcess(["--repo", repo, "--policy", policy, "--decision-key", secretKey,
                                       "--db", tmp.sub("fleet.sqlite")])
        let through = try Curl.get(server.url + "/blobs/zz/shadow", ["--max-time", "30"])
        #expect(through.status == 404)
        #expect(!through.body.contains(secret))
        // A real blob is still served.
        let first = try #require(try requestsFrom1To2(cache: tmp.sub("none")).first)
        let blob = try Curl.get(server.url + "/blobs/\(first.hash.hex.prefix(2))/\(first.hash.hex)", ["--max-time", "30"])
        #expect(blob.status == 200)
        #expect(blob.body.unicodeScalars.count == Int(first.blobSize))  // one ISO Latin 1 scalar per byte
    }

    @Test("A FIFO as a manifest or a channel in a served repository is passed over: the newest readable version is offered")
    func serverPassesOverFIFOsInItsRepository() throws {
        let repo = tmp.sub("repo")
        try Shell.run(["cp", "-al", samples.repo, repo])
        try Sys.mkdirs(repo + "/channels")
        #expect(mkfifo(repo + "/images/olpc-ext3/9.manifest", 0o644) == 0)
        #expect(mkfifo(repo + "/channels/stable.json", 0o644) == 0)
        let secretKey = tmp.sub("decision.sec")
        try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: secretKey, publicPath: tmp.sub("decision.pub"))
        // The default policy asks the repository index for the newest version, which reads them.
        let policy = Scripts.repositoryRoot.appendingPathComponent("policies/server/default.lua").path
        let server = try ServeProcess(["--repo", repo, "--policy", policy, "--decision-key", secretKey,
                                       "--db", tmp.sub("fleet.sqlite")])
        let body = Array(#"{"device":"laptop","nonce":"0123456789abcdef0123456789abcdef","image":"olpc-ext3","version":"1"}"#.utf8)
        let answer = try server.post("v1/check", body, as: "laptop")
        #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
        // The decision (a JSON string inside the answer) names the newest version that can be read.
        let text = String(decoding: answer.body, as: UTF8.self)
        #expect(text.contains(#"\"update\":true"#) && text.contains(#"\"version\":\"2\""#), "\(text)")
    }

    // MARK: Sysroot links

    @Test("rollback refuses a previous link that leaves the sysroot, and current stays")
    func rollbackRefusesALinkLeavingTheSysroot() throws {
        let sysroot = tmp.sub("sysroot"), outside = tmp.sub("outside")
        try Sys.mkdirs(sysroot + "/deployments/good")
        try Sys.mkdirs(sysroot + "/manifests")
        try Sys.mkdirs(outside)
        try #require(symlink("deployments/good", sysroot + "/current") == 0)
        try #require(symlink("deployments/../../outside", sysroot + "/previous") == 0)
        let r = try run(["rollback", "--sysroot", sysroot])
        expectUnsafe(r, mentioning: "previous: it points to deployments/../../outside")
        let current = try FileManager.default.destinationOfSymbolicLink(atPath: sysroot + "/current")
        #expect(current == "deployments/good")
    }

    // MARK: Two bugs

    @Test("A connect timeout is reported as one, not as a slow transfer")
    func connectTimeoutIsReportedAsSuch() throws {
        // A listening socket whose accept queue is full: Linux drops further SYNs, so a connect
        // neither succeeds nor fails until the connect timeout.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                try #require(bind(listener, $0, length) == 0)
                try #require(listen(listener, 0) == 0)
                try #require(getsockname(listener, $0, &length) == 0)
            }
        }
        var fillers = [Int32]()
        defer { fillers.forEach { close($0) } }
        for _ in 0..<4 {
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            fillers.append(s)
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, length) } }
        }
        var options = FetchOptions(mirrors: ["http://127.0.0.1:\(UInt16(bigEndian: address.sin_port))"])
        options.connectTimeoutSeconds = 1
        options.lowSpeedSeconds = 60
        options.attemptsPerMirror = 1
        let began = Date()
        let error = #expect(throws: UpdError.self) {
            try CurlFetcher(options: options).fetchFile("channels/stable.json", to: tmp.sub("stable.json"), maxBytes: 1024)
        }
        #expect(error?.message.contains("could not connect within 1 s") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("slower than") == false, "\(error?.message ?? "")")
        #expect(Date().timeIntervalSince(began) < 30)
    }

    @Test("writeFileAtomically whose rename fails closes its descriptor once, not another thread's")
    func failedAtomicWriteClosesOnce() throws {
        let target = tmp.sub("target")
        try Sys.mkdirs(target + "/not-empty")
        // Another thread opens files all the while, as the apply's workers do: each of its
        // descriptors must stay open, and stay /dev/null, until it closes it itself.
        let stop = Locked(false), stolen = Locked(0)
        var null = stat()
        try #require(stat("/dev/null", &null) == 0)
        let device = null.st_rdev
        let worker = Thread {
            var held = [Int32]()
            while !stop.withLock({ $0 }) {
                let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
                if fd >= 0 { held.append(fd) }
                for fd in held {
                    var st = stat()
                    if fstat(fd, &st) != 0 || st.st_rdev != device { stolen.withLock { $0 += 1 } }
                }
                if held.count > 3 { close(held.removeFirst()) }
            }
            held.forEach { close($0) }
        }
        worker.start()
        defer { stop.withLock { $0 = true } }
        let deadline = Date().addingTimeInterval(3)
        var failures = 0
        while Date() < deadline && stolen.withLock({ $0 }) == 0 {
            do {
                try Sys.writeFileAtomically(target, [1, 2, 3])
            } catch {
                failures += 1
            }
        }
        #expect(failures > 0)
        #expect(stolen.withLock { $0 } == 0, "another thread's descriptor was closed under it")
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.path).filter { $0.hasPrefix(".tmp.") } == [])
    }
}
