import Foundation
import Glibc
import Testing
@testable import Updatinator

/// In-place apply between real sample images, through the command line as a user runs it.
@Suite struct ApplyTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("apply")

    init() throws { samples = try SampleImages.shared }

    var root: String { tmp.sub("root") }

    /// Starts from a copy of an image tree whose installed manifest is that image's.
    func install(_ image: String, _ version: String, at root: String) throws {
        try Shell.copyTree(samples.tree(image, version), root)
        try Sys.mkdirs("\(root)/.updatinator")
        try Sys.writeFileAtomically("\(root)/.updatinator/installed.manifest", Sys.readFile(samples.manifest(image, version)))
    }

    func applyArguments(_ image: String, _ version: String, root: String) -> [String] {
        ["apply", "--root", root, "--to", samples.manifest(image, version), "--keyring", samples.keyring,
         "--blobs", "\(samples.repo)/blobs", "--json"]
    }

    func report(_ r: CLI.Result) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
    }

    func expectAt(_ image: String, _ version: String, root: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try Shell.rsyncDifferences(expected: samples.tree(image, version), root: root) == [], sourceLocation: sourceLocation)
        let manifest = try ManifestParser.parse(contentsOf: samples.manifest(image, version))
        #expect(try TreeChecker(manifest: manifest).checkTree(root: root).map(\.description) == [], sourceLocation: sourceLocation)
        #expect(try Sys.readFile("\(root)/.updatinator/installed.manifest") == Sys.readFile(samples.manifest(image, version)),
                sourceLocation: sourceLocation)
        #expect((try Sys.lstatIfExists("\(root)/.updatinator/apply")) == nil, "the apply's state is cleaned up",
                sourceLocation: sourceLocation)
    }

    @Test func movesForwardBackwardAndAcrossImages() throws {
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        // A tree that was only generated has no installed manifest: --from names the one it matches.
        let first = try CLI.run(applyArguments("olpc-ext3", "2", root: root) + ["--from", samples.manifest("olpc-ext3", "1")])
        #expect(first.status == 0, "\(first.stderr)")
        try expectAt("olpc-ext3", "2", root: root)
        for (image, version) in [("olpc-ext3", "1"), ("olpc-devel-ext3", "2"), ("olpc-ext3", "2")] {
            let r = try CLI.run(applyArguments(image, version, root: root))
            #expect(r.status == 0, "\(image) \(version): \(r.stderr)")
            try expectAt(image, version, root: root)
        }
        let again = try CLI.run(applyArguments("olpc-ext3", "2", root: root))
        #expect(again.status == 10, "already there: nothing to do")
        #expect(try report(again)["already_current"] as? Bool == true)
    }

    @Test("arbitrary-installation: a manifest the keyring did not sign is refused and the tree is unchanged")
    func refusesAManifestThatTheKeyringDidNotSign() throws {
        try install("olpc-ext3", "1", at: root)
        let other = TemporaryDirectory("otherkeys")
        try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: other.sub("k.sec"), publicPath: other.sub("k.pub"))
        var args = applyArguments("olpc-ext3", "2", root: root)
        args[args.firstIndex(of: samples.keyring)!] = other.path
        let r = try CLI.run(args)
        #expect(r.status == 2)
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "1"), root: root) == [])
    }

    @Test func aSecondApplyWhileOneRunsIsRefusedAtOnce() throws {
        try install("olpc-ext3", "1", at: root)
        let first = try Subprocess([CLI.binary] + applyArguments("olpc-ext3", "2", root: root), environment: ["UPDATINATOR_STOP_AFTER": "50"])
        try first.waitUntilStoppedOrEnded()
        try #require(first.isRunning, "the first apply ended before it stopped itself")
        let second = try CLI.run(applyArguments("olpc-ext3", "2", root: root))
        #expect(second.status == 7, "a held lock is busy (exit 7)")
        #expect(second.stderr.contains("another updatinator apply is changing this tree"), "\(second.stderr)")
        kill(first.pid, SIGCONT)
        #expect(first.wait() == 0, "\(first.stderr)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root) == [])
    }

    @Test func anApplyThatMayNotSetOwnersReportsPermissionAndResumesWhenItMay() throws {
        try install("olpc-ext3", "1", at: root)
        // Root without CAP_CHOWN, as in a container that dropped it: giving a file another
        // owner fails with EPERM, which is a missing permission, not corrupt data.
        let denied = try Subprocess(["setpriv", "--bounding-set", "-chown", CLI.binary] + applyArguments("olpc-ext3", "2", root: root))
        #expect(denied.wait() == UpdError.Code.permission.exitStatus, "\(denied.stderr)")
        #expect(denied.stderr.contains("Operation not permitted"), "\(denied.stderr)")
        #expect(withoutProgress(denied.stderr).split(separator: "\n").count == 1, "one line: \(denied.stderr)")
        let again = try CLI.run(applyArguments("olpc-ext3", "2", root: root))
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root) == [])
    }

    @Test func refusesWhenBlobsAreMissingWithoutChangingTheTree() throws {
        try install("olpc-ext3", "1", at: root)
        let empty = TemporaryDirectory("noblobs")
        let r = try CLI.run(applyArguments("olpc-ext3", "2", root: root).map { $0.hasSuffix("/blobs") ? empty.path : $0 })
        #expect(r.status == 64)
        #expect(r.stderr.contains("are in neither the tree nor the blob directories"), "\(r.stderr)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "1"), root: root) == [])
    }

    @Test("a damaged blob read ahead is named as when read in turn, leaves a resumable tree, and a later blob directory's copy serves it")
    func aDamagedBlobIsNamedAndAnotherDirectorysCopyServesIt() throws {
        try install("olpc-ext3", "1", at: root)
        let old = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "1"))
        let new = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "2"))
        // The last content the move writes from a blob, so that every one before it is read ahead first.
        let written = new.entries.compactMap { e -> ContentHash? in
            guard case .file(let size, let hash, _) = e.kind, size > 0, old.contents[hash] == nil else { return nil }
            return hash
        }
        let victim = try #require(written.last)
        let damaged = tmp.sub("damaged")
        try Shell.copyTree("\(samples.repo)/blobs", damaged)
        let blob = BlobStore(directory: damaged).path(for: victim)
        let other = try #require(written.first { $0 != victim })
        try Sys.writeFileAtomically(blob, Sys.readFile(BlobStore(directory: damaged).path(for: other)))

        var arguments = applyArguments("olpc-ext3", "2", root: root).map { $0.hasSuffix("/blobs") ? damaged : $0 }
        let r = try CLI.run(arguments)
        #expect(r.status == 5)
        #expect(r.stderr.contains("no intact source for content \(victim.hex)") && r.stderr.contains("(\(blob): "), "\(r.stderr)")
        #expect((try Sys.lstatIfExists("\(root)/.updatinator/apply/journal")) != nil, "the apply stopped at a resumable point")

        arguments += ["--blobs", "\(samples.repo)/blobs"]
        let resumed = try CLI.run(arguments)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        try expectAt("olpc-ext3", "2", root: root)
    }

    @Test func completesAfterSigkillAtFiftyPoints() throws {
        // The number of operations of a whole run, to spread the kill points over.
        let total = try operationsFrom1To2()
        let oldBytes = try Sys.readFile(samples.manifest("olpc-ext3", "1"))
        let newBytes = try Sys.readFile(samples.manifest("olpc-ext3", "2"))
        let points = Set((0..<50).map { 1 + $0 * (total - 1) / 49 })
        #expect(points.count == 50)
        for (n, point) in points.sorted().enumerated() {
            let root = tmp.sub("kill-\(n)")
            try install("olpc-ext3", "1", at: root)
            let killed = try CLI.run(applyArguments("olpc-ext3", "2", root: root), environment: ["UPDATINATOR_KILL_AFTER": "\(point)"])
            #expect(killed.status == 128 + SIGKILL, "kill point \(point) of \(total)")
            // The installed record is the old manifest (resumable) or the new one (complete).
            let installed = try Sys.readFile("\(root)/.updatinator/installed.manifest")
            #expect(installed == oldBytes || installed == newBytes)
            // Killed after its last step, the apply was complete: running it again has nothing to do.
            let complete = try installed == newBytes && Sys.lstatIfExists("\(root)/.updatinator/apply") == nil
            let resumed = try CLI.run(applyArguments("olpc-ext3", "2", root: root))
            #expect(resumed.status == (complete ? 10 : 0), "after a kill at \(point): \(resumed.stderr)")
            try expectAt("olpc-ext3", "2", root: root)
            try FileManager.default.removeItem(atPath: root)
        }
    }

    /// The filesystem operations of a whole apply of olpc-ext3 1 → 2 (the kill switch's unit).
    func operationsFrom1To2() throws -> Int {
        let probe = tmp.sub("probe-1-2")
        try install("olpc-ext3", "1", at: probe)
        defer { try? FileManager.default.removeItem(atPath: probe) }
        return try report(try CLI.run(applyArguments("olpc-ext3", "2", root: probe)))["operations"] as! Int
    }

    /// A tree left half-way to olpc-ext3 2 by a kill (`total`: `operationsFrom1To2`).
    func interruptedOnTheWayTo2(at root: String, of total: Int) throws {
        try install("olpc-ext3", "1", at: root)
        let killed = try CLI.run(applyArguments("olpc-ext3", "2", root: root), environment: ["UPDATINATOR_KILL_AFTER": "\(total / 2)"])
        try #require(killed.status == 128 + SIGKILL)
    }

    var hashOf2: String { get throws { Blake2b.hash(try Sys.readFile(samples.manifest("olpc-ext3", "2"))).hex } }

    /// The installed record still names image 1 while the tree is half-way to 2: an apply to 1
    /// is not "already there", and an apply to another target is not refused (a target that
    /// can never complete would strand the machine). It takes over, from the tree as it is.
    @Test func anInterruptedApplyIsTakenOverByAnApplyToAnotherTarget() throws {
        try interruptedOnTheWayTo2(at: root, of: try operationsFrom1To2())
        let back = try CLI.run(applyArguments("olpc-ext3", "1", root: root))
        #expect(back.status == 0, "\(back.stderr)")
        #expect(try report(back)["superseded"] as? String == hashOf2)
        try expectAt("olpc-ext3", "1", root: root)
        #expect(try CLI.run(applyArguments("olpc-ext3", "2", root: root)).status == 0)
        try expectAt("olpc-ext3", "2", root: root)
    }

    /// A takeover killed at any point: the next run, to its target or to the one it took over
    /// from, ends there; so does one to the installed image, which must not take the record
    /// that names it for the end of the apply.
    @Test func aTakeoverKilledAtAnyPointEndsWhereTheNextRunGoes() throws {
        let to2 = try operationsFrom1To2()
        var totals = [String: Int]()
        for image in ["olpc-devel-ext3", "olpc-ext3"] {
            let probe = tmp.sub("probe-\(image)")
            try interruptedOnTheWayTo2(at: probe, of: to2)
            let version = image == "olpc-ext3" ? "1" : "2"
            let r = try CLI.run(applyArguments(image, version, root: probe))
            try #require(r.status == 0, "\(r.stderr)")
            totals[image] = try report(r)["operations"] as? Int
        }
        for (n, fraction) in stride(from: 0.0, to: 1.0, by: 1.0 / 30).enumerated() {
            // Over to olpc-devel-ext3 2, then there again or back to 2; or over to the installed 1, then there again.
            let (image, version) = n % 3 == 2 ? ("olpc-ext3", "1") : ("olpc-devel-ext3", "2")
            let (next, nextVersion) = n % 3 == 1 ? ("olpc-ext3", "2") : (image, version)
            let point = 1 + Int(fraction * Double(totals[image]! - 1))
            let root = tmp.sub("kill-\(n)")
            try interruptedOnTheWayTo2(at: root, of: to2)
            let killed = try CLI.run(applyArguments(image, version, root: root), environment: ["UPDATINATOR_KILL_AFTER": "\(point)"])
            #expect(killed.status == 128 + SIGKILL, "kill point \(point) of \(totals[image]!): \(killed.stderr)")
            let installed = try Sys.readFile("\(root)/.updatinator/installed.manifest")
            let complete = try installed == Sys.readFile(samples.manifest(next, nextVersion)) && Sys.lstatIfExists("\(root)/.updatinator/apply") == nil
            #expect(try complete || Sys.lstatIfExists("\(root)/.updatinator/apply/journal") != nil, "kill point \(point): a journal is there")
            let again = try CLI.run(applyArguments(next, nextVersion, root: root))
            #expect(again.status == (complete ? 10 : 0), "after a kill at \(point) over to \(image) \(version), to \(next) \(nextVersion): \(again.stderr)")
            try expectAt(next, nextVersion, root: root)
            try FileManager.default.removeItem(atPath: root)
        }
    }

    /// The apply's state left by a run stopped before its journal was written is not reused:
    /// its files (here a planned manifest, which would mark the apply as a running system's)
    /// would mislead the next run's resume.
    @Test func stateWithoutAJournalIsNotReused() throws {
        let total = try operationsFrom1To2()
        try install("olpc-ext3", "1", at: root)
        try Sys.mkdirs("\(root)/.updatinator/apply")
        try Sys.writeFileAtomically("\(root)/.updatinator/apply/planned-from.manifest", Array("stale".utf8))
        let killed = try CLI.run(applyArguments("olpc-ext3", "2", root: root), environment: ["UPDATINATOR_KILL_AFTER": "\(total / 2)"])
        try #require(killed.status == 128 + SIGKILL)
        let resumed = try CLI.run(applyArguments("olpc-ext3", "2", root: root))
        #expect(resumed.status == 0, "\(resumed.stderr)")
        try expectAt("olpc-ext3", "2", root: root)
    }

    /// A journal whose target manifest is gone is an apply that ended only if that manifest is
    /// the installed one; otherwise the state is damaged, and said so, not dropped.
    @Test func aJournalWithoutItsTargetIsAnEndedApplyOnlyWhenThatTargetIsInstalled() throws {
        try interruptedOnTheWayTo2(at: root, of: try operationsFrom1To2())
        try FileManager.default.removeItem(atPath: "\(root)/.updatinator/apply/target.manifest")
        let r = try CLI.run(applyArguments("olpc-devel-ext3", "2", root: root))
        #expect(r.status == 5, "\(r.stderr)")
        #expect(r.stderr.contains("target.manifest: missing, though the journal records an apply in progress to it"), "\(r.stderr)")
        #expect(try Sys.lstatIfExists("\(root)/.updatinator/apply/journal") != nil)
    }
}
