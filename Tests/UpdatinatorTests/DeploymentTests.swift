import Foundation
import Testing
@testable import Updatinator

/// Staged deployments in a sysroot, through the CLI: deploy, crash, rollback, gc (boot counting: `BootTests`).
@Suite struct DeploymentTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("deploy")

    init() throws { samples = try SampleImages.shared }

    var sysroot: String { tmp.sub("sysroot") }

    @discardableResult
    func deploy(_ manifest: String, environment: [String: String] = [:], sourceLocation: SourceLocation = #_sourceLocation) throws -> CLI.Result {
        let r = try CLI.run(["deploy", "--sysroot", sysroot, "--to", manifest, "--keyring", samples.keyring, "--blobs", samples.repo + "/blobs"],
                            environment: environment)
        if environment["UPDATINATOR_KILL_AFTER"] == nil { #expect(r.status == 0, "\(r.stderr)", sourceLocation: sourceLocation) }
        return r
    }

    func current() -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: sysroot + "/current") }

    /// Whether the tree `current` names matches that deployment's own manifest.
    func currentIsComplete() throws -> Bool {
        guard let link = current() else { return false }
        let name = String(link.dropFirst("deployments/".count))
        return try CLI.run(["fsck", "--tree", "\(sysroot)/current/", "--manifest", "\(sysroot)/manifests/\(name).manifest"]).status == 0
    }

    /// The inode at a manifest path (raw bytes) below a root; nil when there is none.
    func inode(_ root: String, _ path: ManifestPath) -> UInt64? {
        var st = stat()
        let bytes = Array(root.utf8) + path.bytes + [0]
        let rc = bytes.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { lstat($0.baseAddress!, &st) } }
        return rc == 0 ? UInt64(st.st_ino) : nil
    }

    @Test func forwardAcrossAndBackEachVerifiesAndSharesWhatIsUnchanged() throws {
        for (image, version) in [("olpc-ext3", "1"), ("olpc-ext3", "2"), ("olpc-devel-ext3", "2"), ("olpc-ext3", "1")] {
            let before = current()
            try deploy(samples.manifest(image, version))
            let fsck = try CLI.run(["fsck", "--tree", "\(sysroot)/current/", "--manifest", samples.manifest(image, version)])
            #expect(fsck.status == 0, "\(image) \(version): \(fsck.stdout)")
            if let before {
                #expect(try FileManager.default.destinationOfSymbolicLink(atPath: sysroot + "/previous") == before)
            }
        }
        // Moving 1 → 2: a file unchanged in content and metadata is one inode in both deployments,
        // except under /etc, which is the machine's to edit.
        let old = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "1"))
        let new = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "2"))
        let oldEntries = Dictionary(old.entries.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        let names = try FileManager.default.contentsOfDirectory(atPath: sysroot + "/deployments")
        let one = "\(sysroot)/deployments/" + names.first { $0.hasPrefix("olpc-ext3-1-") }!
        let two = "\(sysroot)/deployments/" + names.first { $0.hasPrefix("olpc-ext3-2-") }!
        var shared = 0, etcFiles = 0
        for e in new.entries where e.kind.letter == "f" {
            guard let o = oldEntries[e.path], o.kind.letter == "f" else { continue }
            let inEtc = e.path.description.hasPrefix("/etc/")
            let same = o.contentHash == e.contentHash && o.metadata == e.metadata && !inEtc
            let (a, b) = (inode(one, e.path), inode(two, e.path))
            #expect(a != nil && b != nil && (a == b) == same, "\(e.path): shared \(!same)")
            if same { shared += 1 }
            if inEtc { etcFiles += 1 }
        }
        #expect(shared > 0 && etcFiles > 0)
    }

    @Test func aFileWhoseMetadataChangedGetsItsOwnInode() throws {
        // Version 3: version 2 with one file's mode changed and nothing else.
        let repo = tmp.sub("repo")
        try Shell.run(["cp", "-al", samples.repo, repo])
        let tree = tmp.sub("tree-3")
        try Shell.copyTree(samples.tree("olpc-ext3", "2"), tree)
        let manifest2 = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "2"))
        let file = try #require(manifest2.entries.first {
            $0.kind.letter == "f" && $0.metadata.mode & 0o777 == 0o644 && $0.path.bytes.allSatisfy { (0x21..<0x7f).contains($0) }
        })
        let path = String(decoding: file.path.bytes, as: UTF8.self)
        try Shell.run(["chmod", "0600", tree + path])
        try Shell.run(["touch", "-h", "-r", samples.tree("olpc-ext3", "2") + path, tree + path])
        var generator = ImageGenerator(tree: tree, repository: repo, image: "olpc-ext3", version: "3")
        generator.signingKey = try KeyFile.readSecret(samples.secretKey)
        _ = try generator.run()
        try deploy(samples.manifest("olpc-ext3", "2"))
        try deploy(repo + "/images/olpc-ext3/3.manifest")
        #expect(inode(sysroot + "/previous", file.path) != inode(sysroot + "/current", file.path), "a shared inode would leak the mode")
        var st = stat()
        #expect(lstat(sysroot + "/previous" + path, &st) == 0 && st.st_mode & 0o777 == 0o644, "the previous deployment keeps its mode")
        let unchanged = try #require(manifest2.entries.first { $0.kind.letter == "f" && $0.path != file.path })
        #expect(inode(sysroot + "/previous", unchanged.path) == inode(sysroot + "/current", unchanged.path))
    }

    @Test func aDeployKilledAnywhereLeavesACompleteCurrentAndTheNextRunFinishes() throws {
        let target = samples.manifest("olpc-ext3", "2")
        let entries = try ManifestParser.parse(contentsOf: target).entries.count
        // Operations: the manifest, one per entry, the directories' metadata, the check, the
        // rename, then the three steps of the switch.
        let total = entries + 7
        let points = Set((0..<55).map { 1 + $0 * (total - 1) / 54 })
        #expect(points.count >= 50)
        try deploy(samples.manifest("olpc-ext3", "1"))
        let first = try #require(current())
        var kills = 0
        for point in points.sorted() {
            let killed = try deploy(target, environment: ["UPDATINATOR_KILL_AFTER": String(point)])
            #expect(killed.status == 137 || killed.status == 0, "point \(point): \(killed.stderr)")
            if killed.status == 137 { kills += 1 }
            #expect(try currentIsComplete(), "point \(point): current is \(current() ?? "missing")")
            try deploy(target)
            #expect(try CLI.run(["fsck", "--tree", "\(sysroot)/current/", "--manifest", target]).status == 0, "point \(point)")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: sysroot + "/deployments").filter { $0.hasPrefix(".") }
            #expect(leftovers.isEmpty, "point \(point): \(leftovers)")
            // Back to the first deployment, with the second one gone, for the next point.
            #expect(try CLI.run(["rollback", "--sysroot", sysroot]).status == 0)
            #expect(current() == first)
            let second = try FileManager.default.destinationOfSymbolicLink(atPath: sysroot + "/previous")
            try FileManager.default.removeItem(atPath: "\(sysroot)/\(second)")
            try FileManager.default.removeItem(atPath: sysroot + "/previous")
        }
        #expect(kills >= 50, "\(kills) deploys were killed")
    }

    @Test func aDeployThatCannotFitIsRefusedBeforeAnythingChanges() throws {
        let mount = tmp.sub("mnt")
        try Sys.mkdirs(mount)
        try Shell.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mount])
        defer { _ = try? Shell.run(["umount", "-l", mount]) }
        let small = mount + "/sysroot"
        let first = try CLI.run(["deploy", "--sysroot", small, "--to", samples.manifest("olpc-ext3", "1"), "--keyring", samples.keyring,
                                 "--blobs", samples.repo + "/blobs"])
        #expect(first.status == 0, "\(first.stderr)")
        let used = try FilesystemSpace(path: mount).used
        try Shell.run(["mount", "-o", "remount,size=\((used + (1 << 20)) / 1024)k", mount])
        let before = try FileManager.default.contentsOfDirectory(atPath: small + "/deployments")
        let refused = try CLI.run(["deploy", "--sysroot", small, "--to", samples.manifest("olpc-devel-ext3", "2"), "--keyring",
                                   samples.keyring, "--blobs", samples.repo + "/blobs"])
        #expect(refused.status == 3 && refused.stderr.contains("needs"), "\(refused.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: small + "/deployments") == before)
        #expect(try CLI.run(["fsck", "--tree", small + "/current/", "--manifest", samples.manifest("olpc-ext3", "1")]).status == 0)
    }

    @Test func onlyDeployMakesASysroot() throws {
        for command in ["status", "rollback", "gc", "mark-good"] {
            let r = try CLI.run([command, "--sysroot", sysroot])
            #expect(r.status == 64 && r.stderr.contains("is not a sysroot"), "\(command): \(r.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: sysroot), "a mistyped path is not made into a sysroot")
    }

    @Test func gcNeverRemovesWhatIsInUse() throws {
        // Cached blobs that gc may remove when no kept deployment uses them.
        try Sys.mkdirs(sysroot)
        try Shell.run(["cp", "-al", samples.repo + "/blobs", sysroot + "/blobs"])
        let images = SampleImages.images.map { samples.manifest($0.0, $0.1) }
        func cachedBlobs() -> Set<String> {
            Set(((try? FileManager.default.subpathsOfDirectory(atPath: sysroot + "/blobs")) ?? []).map { String($0.suffix(64)) })
        }
        var rng = SeededGenerator(seed: 20261127)
        var gcRuns = 0, removedByGC = 0
        for step in 0..<24 {
            let before = cachedBlobs()
            switch Int.random(in: 0..<4, using: &rng) {
            case 0, 1:
                let image = images[Int.random(in: 0..<images.count, using: &rng)]
                let (manifest, bytes) = try ManifestFile.read(image)
                // A deployment already current is left as it is: nothing to do (exit 10).
                let isCurrent = current() == "deployments/" + Sysroot.deploymentName(manifest, digest: Blake2b.hash(bytes))
                let r = try CLI.run(["deploy", "--sysroot", sysroot, "--to", image, "--keyring", samples.keyring, "--blobs", samples.repo + "/blobs"])
                #expect(r.status == (isCurrent ? 10 : 0), "step \(step): \(r.stderr)")
            case 2: _ = try CLI.run(["rollback", "--sysroot", sysroot])
            default:
                let keep = Int.random(in: 1...3, using: &rng)
                #expect(try CLI.run(["gc", "--sysroot", sysroot, "--keep", String(keep)]).status == 0)
                gcRuns += 1
            }
            // Whatever ran, current and previous exist, and no blob they use was removed.
            let removed = before.subtracting(cachedBlobs())
            removedByGC += removed.count
            for link in ["current", "previous"] {
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(sysroot)/\(link)") else { continue }
                let name = String(target.dropFirst("deployments/".count))
                let manifest = try ManifestParser.parse(contentsOf: "\(sysroot)/manifests/\(name).manifest")
                #expect(FileManager.default.fileExists(atPath: "\(sysroot)/\(target)"), "step \(step): \(link) \(name) exists")
                let lost = removed.intersection(manifest.entries.compactMap { $0.contentHash?.hex })
                #expect(lost.isEmpty, "step \(step): gc removed \(lost.count) blobs that \(link) uses")
            }
        }
        #expect(gcRuns > 2 && removedByGC > 0, "gc ran \(gcRuns) times and removed \(removedByGC) blobs")
        #expect(try currentIsComplete())
    }
}
