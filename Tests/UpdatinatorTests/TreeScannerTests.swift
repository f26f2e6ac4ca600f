import Foundation
import Glibc
import Testing
@testable import Updatinator

@Suite struct TreeScannerTests {
    /// A small tree with every entry type a Debian tree has, with exact metadata.
    static func buildFixture(at root: String) {
        let t = TreeBuilder(root: root)
        t.dir("/bin").dir("/dev").dir("/etc").dir("/tmp", mode: 0o1777).dir("/root", mode: 0o700)
        t.dir("/usr").dir("/usr/bin").dir("/usr/share", mode: 0o2755)
        t.file("/etc/hostname", "school-laptop\n")
        t.file("/etc/empty", "")
        t.file("/etc/shadow", "root:*:19000:0:99999:7:::\n", mode: 0o640)
        t.owner("/etc/shadow", uid: 0, gid: 42)
        t.file("/usr/bin/passwd", bytes: Array(repeating: 0x7f, count: 5000), mode: 0o4755)
        t.file("/usr/bin/wall", "wall\n", mode: 0o2755)
        t.owner("/usr/bin/wall", uid: 0, gid: 5)
        t.file("/usr/bin/gzip", "gzip binary\n", mode: 0o755)
        t.hardlink("/usr/bin/gunzip", to: "/usr/bin/gzip")
        t.hardlink("/bin/zcat", to: "/usr/bin/gzip")
        t.file("/usr/bin/ping", "ping\n", mode: 0o755)
        t.xattr("/usr/bin/ping", "security.capability", netRawCapability)
        t.xattr("/usr/share", "user.comment", Array("shared data".utf8))
        t.file("/usr/share/a copy", "same\n")
        t.file("/usr/share/b copy", "same\n")
        t.file("/usr/share/100%", "percent\n")
        t.file(rawPath: Array("/usr/share/caf".utf8) + [0xe9], content: Array("latin-1 name\n".utf8))
        t.file("/usr/share/line\nbreak", "newline in name\n")
        t.symlink("/usr/bin/sh", to: "dash")
        t.symlink("/etc/localtime", to: "/usr/share/zoneinfo/Etc/UTC")
        t.device("/dev/null", char: true, major: 1, minor: 3)
        t.device("/dev/loop0", char: false, major: 7, minor: 0)
        t.fifo("/dev/initctl")
        t.dir("/home").dir("/home/pupil")
        t.owner("/home/pupil", uid: 1000, gid: 1000)
        t.fixTimes()
    }

    @Test func aContentKnownFromItsWriteIsTrustedOnlyWhileItsFileIsUnchanged() throws {
        let tmp = TemporaryDirectory("known")
        let root = tmp.sub("known")
        try Sys.mkdirs(root)
        TreeBuilder(root: root).file("/f", "abc\n").fixTimes()
        let (manifest, _) = try TreeScanner(root: root).scan(image: "known", version: "1")
        let checker = TreeChecker(manifest: manifest)
        let path = try ManifestPath("/f")
        // A known hash is used instead of reading the file: a wrong one shows through.
        let wrong = KnownContent(hash: Blake2b.hash(Array("xyz\n".utf8)), of: try Sys.lstat(root + "/f"))
        #expect(try checker.checkTree(root: root, known: [path: wrong]).map(\.problem).first?.hasPrefix("content differs") == true)
        // Bytes changed in place, with the size and time put back: the change time moved, so
        // the file is read again, and the change is found even though the known hash was right.
        let right = KnownContent(hash: Blake2b.hash(Array("abc\n".utf8)), of: try Sys.lstat(root + "/f"))
        #expect(try checker.checkTree(root: root, known: [path: right]).isEmpty)
        // Change times come from the kernel's coarse clock: wait for its next tick, so that the
        // write below cannot fall in the tick of the recorded status.
        let recorded = try Sys.lstat(root + "/f").st_ctim
        try waitUntil(timeout: 5, "the coarse clock passes the recorded change time") {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME_COARSE, &now)
            return (now.tv_sec, now.tv_nsec) > (recorded.tv_sec, recorded.tv_nsec)
        }
        let fd = open(root + "/f", O_WRONLY)
        #expect(pwrite(fd, "xyz", 3, 0) == 3)
        close(fd)
        TreeBuilder(root: root).fixTimes()
        #expect(!right.matches(try Sys.lstat(root + "/f")))
        #expect(try checker.checkTree(root: root, known: [path: right]).map(\.problem).first?.hasPrefix("content differs") == true)
    }

    @Test func capturesEveryEntryTypeAndFsckAgrees() throws {
        let tmp = TemporaryDirectory("scan")
        Self.buildFixture(at: tmp.sub("tree"))
        let repo = try Repository(creatingAt: tmp.sub("repo"))
        let (m, stats) = try TreeScanner(root: tmp.sub("tree"), blobs: repo.blobs).scan(image: "fixture", version: "1")
        func kind(_ p: String) throws -> EntryKind? { m.entry(at: try ManifestPath(p))?.kind }
        #expect(try kind("/dev/null") == .characterDevice(major: 1, minor: 3))
        #expect(try kind("/dev/loop0") == .blockDevice(major: 7, minor: 0))
        #expect(try kind("/dev/initctl") == .fifo)
        #expect(try kind("/usr/bin/sh") == .symlink(target: Array("dash".utf8)))
        #expect(try kind("/bin/zcat") != nil)
        // Hardlinks: the first name in path order is the file, the others link to it.
        if case .file = try kind("/bin/zcat") {} else { Issue.record("/bin/zcat should be the file entry") }
        #expect(try kind("/usr/bin/gunzip") == .hardlink(target: try ManifestPath("/bin/zcat")))
        #expect(try kind("/usr/bin/gzip") == .hardlink(target: try ManifestPath("/bin/zcat")))
        #expect(m.entry(at: try ManifestPath("/usr/bin/passwd"))?.metadata.mode == 0o4755)
        #expect(m.entry(at: try ManifestPath("/usr/share"))?.metadata.mode == 0o2755)
        #expect(m.entry(at: try ManifestPath("/tmp"))?.metadata.mode == 0o1777)
        #expect(m.entry(at: try ManifestPath("/etc/shadow"))?.metadata.gid == 42)
        #expect(m.entry(at: try ManifestPath("/usr/bin/ping"))?.metadata.xattrs
                == [ExtendedAttribute(name: Array("security.capability".utf8), value: netRawCapability)])
        #expect(m.entry(at: try ManifestPath("/usr/share"))?.metadata.xattrs.first?.name == Array("user.comment".utf8))
        #expect(m.entry(at: try ManifestPath(bytes: Array("/usr/share/caf".utf8) + [0xe9])) != nil)
        #expect(m.entries.first?.path == .root)
        // Two files with the same content share one blob.
        #expect(stats.contents == stats.blobsNew)
        #expect(stats.contents < m.entries.filter { if case .file = $0.kind { true } else { false } }.count)

        let checker = TreeChecker(manifest: m)
        #expect(try checker.checkTree(root: tmp.sub("tree")).isEmpty)
        #expect(try checker.checkBlobs(repo.blobs).isEmpty)
        // The text survives a round trip through the parser.
        #expect(try ManifestParser.parse(ManifestWriter.write(m)) == m)
    }

    /// The check walks the tree without describing it whole: it must find what comparing the
    /// manifest with a whole scan finds, hardlinks broken and made included, in batches of hashes.
    @Test func theWalkingCheckFindsWhatAWholeScanFinds() throws {
        let tmp = TemporaryDirectory("walking-check")
        let root = tmp.sub("tree")
        Self.buildFixture(at: root)
        let t = TreeBuilder(root: root)
        t.dir("/usr/share/many")
        for i in 0..<(TreeComparison.batchFiles + 10) { t.file("/usr/share/many/\(i)", "content \(i)\n") }
        let (m, _) = try TreeScanner(root: root).scan(image: "fixture", version: "1")
        #expect(try TreeChecker(manifest: m).checkTree(root: root, known: [:]).isEmpty)

        // A name of gzip's inode made a file of its own; another file made a name of hostname's
        // inode; a content changed past the first batch of hashes; a directory where none was.
        unlink(root + "/usr/bin/gunzip")
        t.file("/usr/bin/gunzip", try String(contentsOfFile: root + "/usr/bin/gzip", encoding: .utf8), mode: 0o755)
        unlink(root + "/usr/bin/passwd")
        t.hardlink("/usr/bin/passwd", to: "/etc/hostname")
        t.file("/usr/share/many/4100", "changed\n")
        t.dir("/opt").dir("/opt/planted").file("/opt/planted/file", "planted\n")
        unlink(root + "/usr/share/many/7")

        let findings = try TreeChecker(manifest: m).checkTree(root: root, known: [:]).map(\.description).sorted()
        let (scanned, _) = try TreeScanner(root: root).scan(image: "fixture", version: "1")
        let diff = ManifestDiff(from: m, to: scanned)
        let expected = (diff.removed.map { "\($0.path): missing (\($0.kind.typeName) expected)" }
            + diff.added.map { "\($0.path): unexpected \($0.kind.typeName)" }
            + diff.changed.filter { !TreeChecker.differsOnlyInSymlinkMode($0) }.map { "\($0.path): \(TreeChecker.describe($0))" }).sorted()
        #expect(findings == expected)
        #expect(findings.contains { $0.hasPrefix("/usr/bin/gunzip: is a file, expected a hardlink") }, "\(findings)")
        #expect(findings.contains { $0.hasPrefix("/usr/bin/passwd: is a hardlink, expected a file") }, "\(findings)")
        #expect(findings.contains { $0.hasPrefix("/usr/share/many/4100: content differs") }, "\(findings)")
        #expect(findings.contains("/opt/planted/file: unexpected file"), "\(findings)")
        #expect(findings.contains("/usr/share/many/7: missing (file expected)"), "\(findings)")
    }

    @Test func fsckReportsEveryKindOfDifference() throws {
        let tmp = TemporaryDirectory("fsck")
        let root = tmp.sub("tree")
        Self.buildFixture(at: root)
        let (m, _) = try TreeScanner(root: root).scan(image: "fixture", version: "1")
        chmod(root + "/usr/bin/passwd", 0o755)
        unlink(root + "/etc/empty")
        TreeBuilder(root: root).file("/etc/hostname", "other-laptop\n")
        TreeBuilder(root: root).setTime(root + "/etc/hostname", TreeBuilder.epoch)
        TreeBuilder(root: root).file("/etc/new", "unexpected\n")
        unlink(root + "/usr/bin/sh")
        mkdir(root + "/usr/bin/sh", 0o755)
        let findings = try TreeChecker(manifest: m).checkTree(root: root)
        let byPath = Dictionary(grouping: findings, by: \.path).mapValues { $0.map(\.problem).joined() }
        #expect(byPath["/usr/bin/passwd"]?.contains("mode 0755, expected 4755") == true)
        #expect(byPath["/etc/empty"]?.contains("missing") == true)
        #expect(byPath["/etc/hostname"]?.contains("content differs") == true)
        #expect(byPath["/etc/new"]?.contains("unexpected file") == true)
        #expect(byPath["/usr/bin/sh"]?.contains("is a directory, expected a symlink") == true)
    }

    @Test(arguments: [false, true])
    func generatingTwiceGivesIdenticalBytesMatchingTheGoldenFile(libdeflate: Bool) throws {
        let tmp = TemporaryDirectory("golden")
        Self.buildFixture(at: tmp.sub("tree"))
        var outputs = [[UInt8]]()
        for repo in ["repo1", "repo2"] {
            var generator = ImageGenerator(tree: tmp.sub("tree"), repository: tmp.sub(repo), image: "fixture", version: "1")
            generator.created = 1_700_000_000
            generator.libdeflate = libdeflate
            let result = try generator.run()
            outputs.append(try Array(Data(contentsOf: URL(fileURLWithPath: result.manifestPath))))
        }
        #expect(outputs[0] == outputs[1])
        // The golden file records zlib's blob sizes; libdeflate's are its own, as reproducible.
        guard !libdeflate else { return }
        // UPDATINATOR_UPDATE_GOLDEN=1 rewrites the golden file after a deliberate format change.
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/fixture.manifest")
        if ProcessInfo.processInfo.environment["UPDATINATOR_UPDATE_GOLDEN"] == "1" {
            try Data(outputs[0]).write(to: source)
        }
        let golden = Bundle.module.url(forResource: "fixture", withExtension: "manifest", subdirectory: "Fixtures")!
        let expected = try String(decoding: Data(contentsOf: golden), as: UTF8.self)
        #expect(String(decoding: outputs[0], as: UTF8.self) == expected)
    }

    @Test func neverScansTheStateDirectory() throws {
        let tmp = TemporaryDirectory("state")
        let t = TreeBuilder(root: tmp.sub("tree"))
        t.dir("/.updatinator").file("/.updatinator/journal", "in progress").file("/a", "a")
        let (m, _) = try TreeScanner(root: tmp.sub("tree")).scan(image: "x", version: "1")
        #expect(m.entries.map(\.path.description) == ["/", "/a"])
    }

    @Test func rejectsSockets() throws {
        let tmp = TemporaryDirectory("socket")
        _ = TreeBuilder(root: tmp.sub("tree"))
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = tmp.sub("tree") + "/sock"
        withUnsafeMutableBytes(of: &address.sun_path) { buf in
            for (i, b) in path.utf8.enumerated() { buf[i] = b }
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(rc == 0)
        expectUpdError(.usage, "sockets and other special files cannot be part of an image") {
            try TreeScanner(root: tmp.sub("tree")).scan(image: "x", version: "1")
        }
    }
}
