import Foundation
import Glibc
import Testing
@testable import Updatinator

/// Signed manifests that try to make apply reach outside its root. None may touch anything there.
@Suite struct HostileManifestTests {
    let tmp = TemporaryDirectory("hostile")
    let key = SecretKey.generate()
    var root: String { tmp.sub("root") }
    var outside: String { tmp.sub("outside") }
    var blobs: String { tmp.sub("blobs") }
    var keyring: String { tmp.sub("keyring") }
    let meta = Metadata(mode: 0o755, uid: 0, gid: 0, mtime: Timestamp(seconds: 1_600_000_000, nanoseconds: 0))

    init() throws {
        try Sys.mkdirs(root)
        try Sys.mkdirs(outside)
        try Sys.writeFileAtomically("\(outside)/sentinel", Array("keep me".utf8))
        try Sys.mkdirs(keyring)
        try Sys.writeFileAtomically("\(keyring)/test.pub", KeyFile.encode(key.publicKey))
    }

    var entries: SignedEntries { SignedEntries(directory: tmp.path, key: key, blobs: blobs, image: "hostile") }

    func dir(_ path: String) throws -> ManifestEntry { try entries.dir(path) }

    func file(_ path: String, _ content: String) throws -> ManifestEntry { try entries.file(path, content) }

    func symlink(_ path: String, _ target: String) throws -> ManifestEntry {
        ManifestEntry(path: try ManifestPath(path), kind: .symlink(target: Array(target.utf8)), metadata: meta)
    }

    func signed(_ name: String, _ list: [ManifestEntry]) throws -> String { try entries.signed(name, list) }

    func signed(_ name: String, text: [UInt8]) throws -> String { try entries.signed(name, text: text) }

    /// Signs a manifest without parsing it first, as a compromised build server could.
    func signedUnchecked(_ name: String, _ text: String) throws -> String {
        let path = tmp.sub("\(name).manifest")
        try Sys.writeFileAtomically(path, Array(text.utf8))
        var signatures = SignatureFile()
        signatures.sign(Array(text.utf8), with: key, purpose: .manifest)
        try Sys.writeFileAtomically(path + ".sig", signatures.encoded())
        return path
    }

    func apply(_ manifest: String, from: String? = nil) throws -> CLI.Result {
        try CLI.run(["apply", "--root", root, "--to", manifest, "--keyring", keyring, "--blobs", blobs] + (from.map { ["--from", $0] } ?? []))
    }

    func expectOutsideUntouched(sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside) == ["sentinel"], sourceLocation: sourceLocation)
        #expect(try Sys.readFile("\(outside)/sentinel") == Array("keep me".utf8), sourceLocation: sourceLocation)
    }

    func emptyTree() throws -> String { try signed("empty", [try dir("/")]) }

    @Test("hostile-manifest: a path through a symlink is refused before any change")
    func aPathThroughASymlinkIsRefusedBeforeAnyChange() throws {
        let text = """
            updatinator-manifest 1
            image hostile
            version 1
            hash blake2b-256
            entries 3
            / d 0755 0 0 1.000000000
            /a l 0777 0 0 1.000000000 \(outside)
            /a/x p 0644 0 0 1.000000000

            """
        let r = try apply(try signedUnchecked("through", text), from: try emptyTree())
        #expect(r.status == 5, "\(r.stderr)")
        #expect(r.stderr.contains("parent directory of /a/x is not an earlier directory entry"), "\(r.stderr)")
        try expectOutsideUntouched()
        #expect(try FileManager.default.contentsOfDirectory(atPath: root) == [])
    }

    @Test("hostile-manifest: a hardlink to a path outside the tree is refused")
    func aHardlinkToAPathOutsideTheTreeIsRefused() throws {
        for (name, target) in [("dotdot", "/../outside/sentinel"), ("unlisted", outside + "/sentinel")] {
            let text = """
                updatinator-manifest 1
                image hostile
                version 1
                hash blake2b-256
                entries 2
                / d 0755 0 0 1.000000000
                /x h \(target)

                """
            let r = try apply(try signedUnchecked(name, text), from: try emptyTree())
            #expect(r.status == 5, "\(r.stderr)")
            try expectOutsideUntouched()
        }
    }

    @Test func absoluteAndDotDotLinkTargetsFollowedByWritesStayInside() throws {
        let links = try signed("links", [try dir("/"), try symlink("/abs", outside), try symlink("/rel", "../outside"),
                                         try symlink("/deep", "../../../../../../../../\(outside)")])
        #expect(try apply(links, from: try emptyTree()).status == 0)
        // The next image turns every link into a directory and writes into it.
        let writes = try signed("writes", [try dir("/"), try dir("/abs"), try file("/abs/sentinel", "evil"),
                                           try dir("/rel"), try file("/rel/sentinel", "evil"),
                                           try dir("/deep"), try file("/deep/x", "evil")])
        let r = try apply(writes)
        #expect(r.status == 0, "\(r.stderr)")
        try expectOutsideUntouched()
        #expect(try Sys.readFile("\(root)/abs/sentinel") == Array("evil".utf8))
        #expect(try Sys.lstat("\(root)/rel").st_mode & S_IFMT == S_IFDIR)
    }

    @Test func aDirectoryReplacedByASymlinkToTheHostRootTouchesNothingThere() throws {
        let probe = "updatinator-hostile-\(UInt32.random(in: 0...UInt32.max))"
        let first = try signed("first", [try dir("/"), try dir("/etc"), try file("/etc/passwd", "root:x:0:0")])
        #expect(try apply(first, from: try emptyTree()).status == 0)
        let toHost = try signed("tohost", [try dir("/"), try symlink("/etc", "/")])
        #expect(try apply(toHost).status == 0)
        #expect(try Sys.lstat("\(root)/etc").st_mode & S_IFMT == S_IFLNK)
        let back = try signed("back", [try dir("/"), try dir("/etc"), try file("/etc/\(probe)", "evil")])
        let r = try apply(back)
        #expect(r.status == 0, "\(r.stderr)")
        #expect((try Sys.lstatIfExists("/\(probe)")) == nil, "nothing was written to the host's root")
        #expect(try Sys.readFile("\(root)/etc/\(probe)") == Array("evil".utf8))
    }

    @Test func aSymlinkAlreadyInTheTreeWhereADirectoryIsExpectedIsNeverFollowed() throws {
        // The installed manifest says /usr is a directory, but someone put a symlink there.
        let installed = try signed("installed", [try dir("/"), try dir("/usr"), try file("/usr/old", "old")])
        #expect(try apply(installed, from: try emptyTree()).status == 0)
        unlink("\(root)/usr/old")
        rmdir("\(root)/usr")
        Glibc.symlink(outside, "\(root)/usr")
        try Sys.writeFileAtomically("\(outside)/old", Array("outside".utf8))
        let next = try signed("next", [try dir("/"), try dir("/usr"), try file("/usr/new", "evil")])
        let r = try apply(next)
        #expect(r.status == 8, "a symlink where a directory should be is unsafe (exit 8): \(r.stderr)")
        #expect(r.stderr.contains("refusing to follow"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).sorted() == ["old", "sentinel"])
        #expect(try Sys.readFile("\(outside)/old") == Array("outside".utf8))
    }

    /// Blobs of only the given contents, as on a USB stick that carries what is new.
    func blobsOnly(_ contents: [String]) throws -> String {
        let directory = tmp.sub("stick-\(contents.count)")
        let store = BlobStore(directory: directory)
        for c in contents { _ = try store.store(bytes: Array(c.utf8)) }
        return directory
    }

    @Test func aChangedOldFileWhoseContentHasNoBlobStopsBeforeAnythingIsRemoved() throws {
        let first = try signed("first", [try dir("/"), try file("/a", "moves to b"), try file("/c", "goes away")])
        #expect(try apply(first, from: try emptyTree()).status == 0)
        try Sys.writeFileAtomically("\(root)/a", Array("changed locally".utf8))
        let second = try signed("second", [try dir("/"), try file("/b", "moves to b"), try file("/d", "new")])
        let stick = try blobsOnly(["new"])
        let refused = try CLI.run(["apply", "--root", root, "--to", second, "--keyring", keyring, "--blobs", stick])
        #expect(refused.status == 5, "\(refused.stderr)")
        #expect(refused.stderr.contains("nothing was removed"), "\(refused.stderr)")
        #expect(try Sys.readFile("\(root)/c") == Array("goes away".utf8))
        // With a blob for the content, the same apply completes.
        let r = try CLI.run(["apply", "--root", root, "--to", second, "--keyring", keyring, "--blobs", stick, "--blobs", blobs])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Sys.readFile("\(root)/b") == Array("moves to b".utf8))
    }

    /// The parser accepts a manifest that gives one content two sizes (it holds no table by
    /// content); the plan refuses it before anything changes, naming both paths: among the
    /// files it writes, or against the old image's copy.
    @Test func aContentGivenTwoSizesIsRefusedBeforeAnyChange() throws {
        let first = try signed("first", [try dir("/"), try file("/old", "hello")])
        #expect(try apply(first, from: try emptyTree()).status == 0)
        let right = try file("/a", "hello")
        var wrong = try file("/b", "hello")
        guard case .file(let size, let hash, let blobSize) = wrong.kind else { Issue.record("not a file"); return }
        wrong.kind = .file(size: size + 1, hash: hash, blobSize: blobSize)
        for (name, list, message) in [
            ("second", [try dir("/"), right, wrong], "two sizes: \(size) bytes at /a, \(size + 1) at /b; nothing was changed"),
            ("third", [try dir("/"), wrong], "two sizes: \(size + 1) bytes at /b, \(size) at /old in the old image; nothing was changed"),
        ] {
            let r = try apply(try signed(name, list))
            #expect(r.status == 5, "\(r.stderr)")
            #expect(r.stderr.contains("gives content \(hash.hex) \(message)"), "\(r.stderr)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: root).sorted() == [".updatinator", "old"])
            #expect(try Sys.lstatIfExists("\(root)/.updatinator/apply") == nil)
            #expect(try Sys.readFile("\(root)/.updatinator/installed.manifest") == Sys.readFile(first))
        }
    }

    /// A signed release whose apply can never complete strands no machine: the next release
    /// takes over from the tree as the failed apply left it.
    @Test func aReleaseThatCannotBeCompletedIsTakenOverByTheNext() throws {
        let first = try signed("first", [try dir("/"), try file("/a", "shared"), try file("/kept", "kept"), try file("/old", "old")])
        #expect(try apply(first, from: try emptyTree()).status == 0)
        // A release one of whose blobs is damaged wherever it is. Its apply keeps /a's content
        // in its work area (for /b) before it replaces /a, and stops at /0, before /a.
        let damaged = try file("/0", "damaged everywhere")
        let broken = try signed("broken", [try dir("/"), damaged, try file("/a", "hello"), try file("/b", "shared"), try file("/kept", "kept")])
        try Sys.writeFileAtomically(BlobStore(directory: blobs).path(for: damaged.contentHash!), Array("not a blob".utf8))
        let failed = try apply(broken)
        #expect(failed.status == 5, "\(failed.stderr)")
        #expect(try Sys.readFile("\(root)/b") == Array("shared".utf8), "the broken apply got as far as /b")
        #expect(try Sys.lstatIfExists("\(root)/old") == nil, "and removed /old")
        #expect(try Sys.lstat("\(root)/a").st_nlink == 2, "/a's content is kept in the work area")
        // The same broken release fails again, where it failed.
        #expect(try apply(broken).status == 5)
        // A takeover that is refused (a content no source has) changes nothing of it.
        let unreachable = ManifestEntry(path: try ManifestPath("/c"), kind: .file(size: 7, hash: Blake2b.hash(Array("nowhere".utf8)), blobSize: 20),
                                        metadata: meta)
        let refused = try apply(try signed("unreachable", [try dir("/"), unreachable]))
        #expect(refused.status == 64, "\(refused.stderr)")
        #expect(refused.stderr.contains("in neither the tree nor the blob directories"), "\(refused.stderr)")
        #expect(try Sys.lstat("\(root)/a").st_nlink == 2, "the work area still keeps /a's content")
        #expect(try Sys.lstatIfExists("\(root)/.updatinator/apply.next") == nil)

        // The next release keeps /a, with another mode.
        let fixed = try signed("fixed", [try dir("/"), try entries.file("/a", "shared", mode: 0o600), try file("/b", "fixed"), try file("/kept", "kept")])
        let r = try CLI.run(["apply", "--root", root, "--to", fixed, "--keyring", keyring, "--blobs", blobs, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect(report["superseded"] as? String == Blake2b.hash(try Sys.readFile(broken)).hex)
        #expect(try Sys.readFile("\(root)/b") == Array("fixed".utf8))
        #expect(try Sys.lstat("\(root)/a").st_mode & 0o7777 == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root).sorted() == [".updatinator", "a", "b", "kept"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(root)/.updatinator").sorted() == ["installed.manifest", "lock"])
        #expect(try Sys.readFile("\(root)/.updatinator/installed.manifest") == Sys.readFile(fixed))
        let manifest = try ManifestParser.parse(contentsOf: fixed)
        #expect(try TreeChecker(manifest: manifest).checkTree(root: root).map(\.description) == [])
    }

    @Test func aFifoPlantedWhereAReusedFileWasNeitherHangsNorIsCopied() throws {
        let first = try signed("first", [try dir("/"), try file("/a", "reused content")])
        #expect(try apply(first, from: try emptyTree()).status == 0)
        unlink("\(root)/a")
        mkfifo("\(root)/a", 0o644)
        let second = try signed("second", [try dir("/"), try file("/b", "reused content")])
        let r = try apply(second)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Sys.readFile("\(root)/b") == Array("reused content".utf8))
    }
}
