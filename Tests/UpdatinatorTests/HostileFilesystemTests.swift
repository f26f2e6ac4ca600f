import Foundation
import Glibc
import Testing
@testable import Updatinator

/// Filesystem objects the tool did not create, planted in the tree or its state directory by a
/// hostile local user or a hostile stick: apply goes through none of them, refuses with a stable
/// code, changes nothing outside the root, and leaves the tree at the old image or resumable.
@Suite struct HostileFilesystemTests {
    let tmp = TemporaryDirectory("hostile-fs")
    let key = SecretKey.generate()
    var root: String { tmp.sub("root") }
    /// Outside the root, on the same filesystem: a planted link or bind mount can reach it.
    var outside: String { tmp.sub("outside") }
    var repo: String { tmp.sub("repo") }
    var blobs: String { "\(repo)/blobs" }
    var keyring: String { tmp.sub("keyring") }
    var state: String { "\(root)/.updatinator" }
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

    func file(_ path: String, _ content: String, mode: UInt32 = 0o644) throws -> ManifestEntry { try entries.file(path, content, mode: mode) }

    /// Writes and signs a manifest of `entries` (sorted here), returning its path.
    func signed(_ name: String, _ entries: [ManifestEntry]) throws -> String {
        try signedUnchecked(name, ManifestWriter.write(Manifest(image: "hostile", version: name, entries: entries.sorted { $0.path < $1.path })))
    }

    /// Signs manifest text without parsing it first, as a compromised build server could.
    func signedUnchecked(_ name: String, _ text: [UInt8]) throws -> String {
        let path = tmp.sub("\(name).manifest")
        try Sys.writeFileAtomically(path, text)
        var signatures = SignatureFile()
        signatures.sign(text, with: key, purpose: .manifest)
        try Sys.writeFileAtomically(path + ".sig", signatures.encoded())
        return path
    }

    func apply(_ manifest: String, from: String? = nil, _ extra: [String] = ["--blobs"], environment: [String: String] = [:]) throws -> CLI.Result {
        let sources = extra == ["--blobs"] ? ["--blobs", blobs] : extra
        return try CLI.run(["apply", "--root", root, "--to", manifest, "--keyring", keyring] + sources + (from.map { ["--from", $0] } ?? []),
                           environment: environment)
    }

    func emptyTree() throws -> String { try signed("empty", [try dir("/")]) }

    /// Installs `manifest` on the empty root.
    func install(_ manifest: String) throws {
        let r = try apply(manifest, from: try emptyTree())
        try #require(r.status == 0, "\(r.stderr)")
    }

    /// Everything below `outside`, with each file's content and mode.
    func outsideState() throws -> [String: String] {
        var result = [String: String]()
        for name in FileManager.default.enumerator(atPath: outside)?.allObjects as? [String] ?? [] {
            let st = try Sys.lstat("\(outside)/\(name)")
            let content = st.st_mode & S_IFMT == S_IFREG ? String(decoding: try Sys.readFile("\(outside)/\(name)"), as: UTF8.self) : ""
            result[name] = "\(String(st.st_mode, radix: 8)) \(st.st_uid) \(content)"
        }
        return result
    }

    /// The tree is at `manifest`'s image, which is still the installed one, and no apply is in progress.
    func expectAtOldImage(_ manifest: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let parsed = try ManifestParser.parse(contentsOf: manifest)
        #expect(try TreeChecker(manifest: parsed).checkTree(root: root).map(\.description) == [], sourceLocation: sourceLocation)
        #expect(try Sys.readFile("\(state)/installed.manifest") == Sys.readFile(manifest), sourceLocation: sourceLocation)
    }

    // MARK: 1. The state directory's children

    /// Plants `link` (a path below the root) as a symlink to a new directory outside, applies a
    /// move that needs the state directory, and checks the refusal.
    func expectStateSymlinkRefused(_ link: String, mirror: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let first = try signed("first", [try dir("/"), try file("/a", "moves"), try file("/b", "stays")])
        try install(first)
        let second = try signed("second", [try dir("/"), try file("/b", "stays"), try file("/c", "moves"), try file("/d", "downloaded")])
        let target = tmp.sub("planted")
        try Sys.mkdirs(target)
        try Sys.mkdirs(Sys.parentDirectory(of: link))
        #expect(symlink(target, link) == 0, sourceLocation: sourceLocation)
        let before = try outsideState()
        let r = try apply(second, mirror ? ["--mirror", "file://" + repo] : ["--blobs"])
        #expect(r.status == 8, "\(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.contains("refusing"), "\(r.stderr)", sourceLocation: sourceLocation)
        #expect(try FileManager.default.contentsOfDirectory(atPath: target) == [], "nothing was written through the link",
                sourceLocation: sourceLocation)
        #expect(try outsideState() == before, sourceLocation: sourceLocation)
        try expectAtOldImage(first, sourceLocation: sourceLocation)
    }

    @Test("hostile-filesystem: a symlinked apply/ is refused, and nothing is written through it")
    func aSymlinkedApplyDirectoryIsRefused() throws {
        try expectStateSymlinkRefused("\(state)/apply")
    }

    @Test("hostile-filesystem: a symlinked apply/work is refused, and no content is preserved through it")
    func aSymlinkedWorkAreaIsRefused() throws {
        try expectStateSymlinkRefused("\(state)/apply/work")
    }

    @Test("hostile-filesystem: a symlinked apply/downloads is refused, and no blob is downloaded through it")
    func aSymlinkedDownloadsDirectoryIsRefused() throws {
        try expectStateSymlinkRefused("\(state)/apply/downloads", mirror: true)
    }

    @Test("hostile-filesystem: a symlinked journal is refused, not read through")
    func aSymlinkedJournalIsRefused() throws {
        let first = try signed("first", [try dir("/"), try file("/a", "a")])
        try install(first)
        try Sys.mkdirs("\(state)/apply")
        try Sys.writeFileAtomically("\(outside)/journal", Array(#"{"done":0,"from":"x","plan":"y","to":"z"}"#.utf8))
        #expect(symlink("\(outside)/journal", "\(state)/apply/journal") == 0)
        let r = try apply(try signed("second", [try dir("/"), try file("/a", "a2")]))
        #expect(r.status == 8, "\(r.stderr)")
        #expect(r.stderr.contains("journal: not a regular file (a symlink)"), "\(r.stderr)")
        try expectAtOldImage(first)
    }

    @Test("hostile-filesystem: a state directory owned by another user is refused")
    func aStateDirectoryOfAnotherUserIsRefused() throws {
        let first = try signed("first", [try dir("/"), try file("/a", "a")])
        try install(first)
        try Sys.mkdirs("\(state)/apply")
        #expect(chown("\(state)/apply", 1234, 1234) == 0)
        let r = try apply(try signed("second", [try dir("/"), try file("/a", "a2")]))
        #expect(r.status == 8, "\(r.stderr)")
        #expect(r.stderr.contains("not a directory owned by this user"), "\(r.stderr)")
        try expectAtOldImage(first)
    }

    // MARK: 2. Metadata of kept paths

    /// An image whose /bin/tool keeps its content and becomes setuid root, and the outside file
    /// a hostile user links in its place: its mode must never change.
    func setuidMove() throws -> (first: String, second: String, victim: String) {
        let first = try signed("first", [try dir("/"), try dir("/bin"), try file("/bin/tool", "tool", mode: 0o755), try file("/x", "x1")])
        let second = try signed("second", [try dir("/"), try dir("/bin"), try file("/bin/tool", "tool", mode: 0o4755), try file("/x", "x2")])
        let victim = "\(outside)/victim"
        try Sys.writeFileAtomically(victim, Array("tool".utf8), mode: 0o755)
        return (first, second, victim)
    }

    @Test("hostile-filesystem: a hardlink to an outside file, planted where a kept file turns setuid, is refused and the outside file keeps its mode")
    func aPlantedHardlinkIsNotMadeSetuid() throws {
        let (first, second, victim) = try setuidMove()
        try install(first)
        unlink("\(root)/bin/tool")
        #expect(link(victim, "\(root)/bin/tool") == 0)
        let r = try apply(second)
        #expect(r.status == 8, "\(r.stderr)")
        #expect(r.stderr.contains("links where the manifest accounts for 1"), "\(r.stderr)")
        #expect(try Sys.lstat(victim).st_mode & 0o7777 == 0o755, "the outside file is not made setuid")
        #expect(try Sys.readFile("\(state)/installed.manifest") == Sys.readFile(first))
        #expect(try Sys.readFile("\(root)/x") == Array("x1".utf8), "nothing in the tree changed")
        #expect((try Sys.lstatIfExists("\(state)/apply")) == nil, "no apply was started")
    }

    @Test("hostile-filesystem: a hardlink planted while the apply runs is refused before the mode changes, and the apply resumes once it is gone")
    func aHardlinkPlantedDuringTheApplyIsRefused() throws {
        let (first, second, victim) = try setuidMove()
        try install(first)
        // The first operation is the first checkpoint: after the checks made before any change.
        let child = try Subprocess([CLI.binary, "apply", "--root", root, "--to", second, "--keyring", keyring, "--blobs", blobs],
                                   environment: ["UPDATINATOR_STOP_AFTER": "1"])
        try child.waitUntilStoppedOrEnded(seconds: 60)
        try #require(child.isStopped, "the apply stopped itself after its first operation")
        unlink("\(root)/bin/tool")
        #expect(link(victim, "\(root)/bin/tool") == 0)
        kill(child.pid, SIGCONT)
        #expect(child.wait() == 8, "\(child.stderr)")
        #expect(child.stderr.contains("links where the manifest accounts for 1"), "\(child.stderr)")
        #expect(try Sys.lstat(victim).st_mode & 0o7777 == 0o755, "the outside file is not made setuid")
        // Once the planted name is replaced by the file it stood for, the apply completes.
        unlink("\(root)/bin/tool")
        try Sys.writeFileAtomically("\(root)/bin/tool", Array("tool".utf8), mode: 0o755)
        let r = try apply(second)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try TreeChecker(manifest: ManifestParser.parse(contentsOf: second)).checkTree(root: root).map(\.description) == [])
        #expect(try Sys.lstat(victim).st_mode & 0o7777 == 0o755)
    }

    @Test("hostile-filesystem: a fifo planted on an unchanged path is refused before anything changes, without blocking")
    func aFifoOnAnUnchangedPathIsRefused() throws {
        let first = try signed("first", [try dir("/"), try file("/a", "unchanged"), try file("/b", "b1")])
        try install(first)
        unlink("\(root)/a")
        #expect(mkfifo("\(root)/a", 0o644) == 0)
        let r = try apply(try signed("second", [try dir("/"), try file("/a", "unchanged"), try file("/b", "b2")]))
        #expect(r.status == 8, "\(r.stderr)")
        #expect(r.stderr.contains("/a: is a fifo, not the file the installed manifest lists"), "\(r.stderr)")
        #expect(try Sys.lstat("\(root)/a").st_mode & S_IFMT == S_IFIFO)
        #expect(try Sys.readFile("\(root)/b") == Array("b1".utf8), "nothing in the tree changed")
        #expect(try Sys.readFile("\(state)/installed.manifest") == Sys.readFile(first))
    }

    // MARK: 3. Bind mounts

    /// Runs `body` with `outside` bind-mounted at `target`, unmounting afterwards; false when
    /// this process may not mount.
    func withBindMount(at target: String, _ body: () throws -> Void) throws -> Bool {
        let r = try Subprocess(["mount", "--bind", outside, target])
        guard r.wait() == 0 else {
            #expect(r.stderr.contains("permission denied") || r.stderr.contains("must be superuser"), "mount --bind failed: \(r.stderr)")
            return false
        }
        defer { _ = try? Subprocess(["umount", target]).wait() }
        try body()
        return true
    }

    @Test("hostile-filesystem: a bind mount of an outside directory inside the root is refused and nothing is written there")
    func aBindMountInsideTheRootIsRefused() throws {
        let first = try signed("first", [try dir("/"), try dir("/d"), try file("/d/x", "x1")])
        try install(first)
        let mounted = try withBindMount(at: "\(root)/d") {
            #expect(FileManager.default.fileExists(atPath: "\(root)/d/sentinel"), "the outside directory is mounted there")
            let before = try outsideState()
            let r = try apply(try signed("second", [try dir("/"), try dir("/d"), try file("/d/x", "x2"), try file("/d/y", "evil")]))
            #expect(r.status == 8, "\(r.stderr)")
            #expect(r.stderr.contains("is another mount than the root"), "\(r.stderr)")
            #expect(try outsideState() == before)
            #expect(try Sys.readFile("\(state)/installed.manifest") == Sys.readFile(first))
        }
        if !mounted { print("skipped: mount --bind is not permitted here (EPERM)") }
        try expectAtOldImage(first)
    }

    // MARK: 4. Entries that chown or an empty write would not check

    func manifestText(_ entry: String) throws -> [UInt8] {
        Array("""
            updatinator-manifest 1
            image hostile
            version 1
            hash blake2b-256
            entries 2
            / d 0755 0 0 1.000000000
            \(entry)

            """.utf8)
    }

    @Test("hostile-filesystem: an empty file whose hash is of non-empty bytes is refused by the parser")
    func anEmptyFileWithTheHashOfBytesIsRefused() throws {
        let evil = try file("/e", "not empty")
        guard case .file(_, let hash, _) = evil.kind else { return }
        let r = try apply(try signedUnchecked("empty-hash", manifestText("/e f 0644 0 0 1.000000000 0 \(hash.hex) 8")), from: try emptyTree())
        #expect(r.status == 5, "\(r.stderr)")
        #expect(r.stderr.contains("line 7, field hash: a file of size 0 must have the hash of no bytes"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: root) == [])
    }

    @Test("hostile-filesystem: an owner or group of 4294967295 (chown's 'unchanged') is refused by the parser",
          arguments: ["/o f 0644 4294967295 0 1.000000000 0 \(ContentHash.empty.hex) 8",
                      "/o f 0644 0 4294967295 1.000000000 0 \(ContentHash.empty.hex) 8"])
    func anOwnerOfMinusOneIsRefused(entry: String) throws {
        let r = try apply(try signedUnchecked("minus-one", manifestText(entry)), from: try emptyTree())
        #expect(r.status == 5, "\(r.stderr)")
        #expect(r.stderr.contains("line 7, field \(entry.contains(" 0644 0 ") ? "gid" : "uid"): not a decimal number below 4294967295"),
                "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: root) == [])
    }

    @Test("hostile-filesystem: the applier itself refuses an empty file whose hash is of non-empty bytes")
    func theApplierChecksTheHashOfAnEmptyFile() throws {
        let evil = try file("/e", "not empty")
        guard case .file(_, let hash, let blobSize) = evil.kind else { return }
        // Built in memory, past the parser, as a caller of the library could.
        let target = Manifest(image: "hostile", version: "1", entries: [
            try dir("/"), ManifestEntry(path: try ManifestPath("/e"), kind: .file(size: 0, hash: hash, blobSize: blobSize), metadata: meta)])
        let empty = Manifest(image: "hostile", version: "0", entries: [try dir("/")])
        let request = UpdateEngine.ApplyRequest(
            root: root, target: VerifiedManifest(manifest: target, bytes: ManifestWriter.write(target), signers: []),
            from: empty, sources: ContentSources(blobDirectories: [blobs]))
        let error = #expect(throws: UpdError.self) { _ = try UpdateEngine.apply(request) }
        #expect(error?.code == .corrupt)
        #expect(error?.message.contains("which is not the hash of no bytes") == true, "\(String(describing: error))")
        #expect((try Sys.lstatIfExists("\(root)/e")) == nil)
    }

    // MARK: 5. The result is checked

    /// Rewrites a file's bytes in its inode and gives it back its time, as a change the
    /// manifest's metadata cannot see.
    func overwriteInPlace(_ path: String, _ content: String) throws {
        let fd = open(path, O_WRONLY)
        try #require(fd >= 0)
        #expect(content.withCString { write(fd, $0, content.utf8.count) } == content.utf8.count)
        close(fd)
        TreeBuilder(root: root).setTime(path, 1_600_000_000)
    }

    @Test("hostile-filesystem: apply does not report success on a tree its own fsck rejects, and resumes once the tree is repaired")
    func applyNeverSucceedsOnATreeFsckRejects() throws {
        let first = try signed("first", [try dir("/"), try file("/a", "aaaa"), try file("/b", "b1")])
        try install(first)
        // /a changes in place, same size and time: no step touches it, only a check of the result sees it.
        try overwriteInPlace("\(root)/a", "zzzz")
        let second = try signed("second", [try dir("/"), try file("/a", "aaaa"), try file("/b", "b2")])
        let r = try apply(second)
        #expect(r.status == 5, "\(r.stderr)")
        #expect(r.stderr.contains("does not match hostile second after the apply: /a: content differs"), "\(r.stderr)")
        #expect(try Sys.readFile("\(state)/installed.manifest") == Sys.readFile(first), "the target is not recorded as installed")
        try overwriteInPlace("\(root)/a", "aaaa")
        let again = try apply(second)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try Sys.readFile("\(state)/installed.manifest") == Sys.readFile(second))
    }
}
