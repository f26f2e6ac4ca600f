import Foundation
import Glibc
import Testing
@testable import Updatinator

/// `apply --live`: an in-place apply to the root a system runs from. Its runtime mounts and
/// state (`/run`, `/var`, `/tmp`…) are the machine's and left alone, `/etc` is merged three
/// ways, and a kill at any point leaves a tree the next run completes to the same result.
@Suite struct LiveRootTests {
    let tmp = TemporaryDirectory("live-root")
    let key = SecretKey.generate()
    var root: String { tmp.sub("root") }
    var blobs: String { tmp.sub("repo/blobs") }
    var keyring: String { tmp.sub("keyring") }
    var entries: SignedEntries { SignedEntries(directory: tmp.path, key: key, blobs: blobs, image: "live") }

    init() throws {
        try Sys.mkdirs(keyring)
        try Sys.writeFileAtomically("\(keyring)/test.pub", KeyFile.encode(key.publicKey))
    }

    func dir(_ path: String, mode: UInt32 = 0o755) throws -> ManifestEntry {
        var d = try entries.dir(path)
        d.metadata.mode = mode
        return d
    }

    func file(_ path: String, _ content: String) throws -> ManifestEntry { try entries.file(path, content, mode: 0o644) }

    func signed(_ version: String, _ list: [ManifestEntry]) throws -> String { try entries.signed(version, list) }

    /// What both images have: a system's top-level directories.
    func skeleton() throws -> [ManifestEntry] {
        try ["/", "/etc", "/usr", "/usr/bin", "/var", "/var/lib", "/run", "/proc", "/tmp"].map { try dir($0) }
    }

    func imageA() throws -> String {
        try signed("A", try skeleton() + [
            try file("/etc/motd", "Image A\n"), try file("/etc/hostname", "image\n"), try file("/etc/image-version", "A\n"),
            try dir("/etc/sudoers.d"),
            try file("/usr/bin/tool", "tool A\n"), try file("/var/lib/packages", "tool A\n"),
        ])
    }

    func imageB() throws -> String {
        try signed("B", try skeleton() + [
            try file("/etc/motd", "Image B\n"), try file("/etc/hostname", "image\n"), try file("/etc/image-version", "B\n"),
            try file("/etc/new.conf", "a new default\n"), try dir("/etc/newdir"), try file("/etc/newdir/conf", "B\n"),
            try dir("/etc/sudoers.d", mode: 0o750),
            try file("/usr/bin/tool", "tool B\n"), try file("/usr/bin/extra", "extra B\n"), try file("/var/lib/packages", "tool B, extra B\n"),
        ])
    }

    func apply(_ manifest: String, _ extra: [String] = [], environment: [String: String] = [:]) throws -> CLI.Result {
        try CLI.run(["apply", "--root", root, "--to", manifest, "--keyring", keyring, "--blobs", blobs] + extra, environment: environment)
    }

    /// Image A installed, then changed as a running machine changes it: its own /etc edits
    /// (one that image B changes too), state in /var, a file in /tmp.
    func runningMachineOnA() throws -> String {
        try Sys.mkdirs(root)
        let empty = try signed("empty", [try dir("/")])
        let a = try imageA()
        let installed = try apply(a, ["--from", empty])
        try #require(installed.status == 0, "\(installed.stderr)")
        try Sys.writeFileAtomically("\(root)/etc/motd", Array("Image A\nWelcome to this school\n".utf8))
        try Sys.writeFileAtomically("\(root)/etc/hostname", Array("laptop-7\n".utf8))
        try Sys.writeFileAtomically("\(root)/etc/local.conf", Array("made here\n".utf8))
        try Sys.mkdirs("\(root)/var/log")
        try Sys.writeFileAtomically("\(root)/var/log/syslog", Array("booted\n".utf8))
        try Sys.writeFileAtomically("\(root)/tmp/session", Array("x".utf8))
        return a
    }

    func text(_ path: String) throws -> String { String(decoding: try Sys.readFile("\(root)\(path)"), as: UTF8.self) }

    /// The tree after `apply --live` of B: the image's files are B's, the machine's /etc edits,
    /// /var and /tmp are the machine's, and the conflict's new version is beside it.
    func expectLiveOnB(sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try text("/usr/bin/tool") == "tool B\n", sourceLocation: sourceLocation)
        #expect(try text("/usr/bin/extra") == "extra B\n", sourceLocation: sourceLocation)
        #expect(try text("/etc/image-version") == "B\n", "the image's own change in /etc is installed", sourceLocation: sourceLocation)
        #expect(try text("/etc/new.conf") == "a new default\n", "a new default is added", sourceLocation: sourceLocation)
        #expect(try text("/etc/hostname") == "laptop-7\n", "a local change is kept", sourceLocation: sourceLocation)
        #expect(try text("/etc/local.conf") == "made here\n", "a local file is kept", sourceLocation: sourceLocation)
        #expect(try text("/etc/motd") == "Image A\nWelcome to this school\n", "the conflict keeps the machine's version", sourceLocation: sourceLocation)
        #expect(try text("/etc/motd.updatinator-new") == "Image B\n", "the new image's version is beside it", sourceLocation: sourceLocation)
        #expect(try text("/var/lib/packages") == "tool A\n", "/var is the machine's: the image's /var is not installed", sourceLocation: sourceLocation)
        #expect(try text("/var/log/syslog") == "booted\n", sourceLocation: sourceLocation)
        #expect(try text("/tmp/session") == "x", sourceLocation: sourceLocation)
        #expect(try Sys.readFile("\(root)/.updatinator/installed.manifest") == (try Sys.readFile(tmp.sub("B.manifest"))),
                "the installed record is the signed image B, the base of the next merge", sourceLocation: sourceLocation)
    }

    @Test("live root: runtime mounts and /var are left alone, /etc is merged three ways, the conflict is reported")
    func liveApplyKeepsTheMachinesPartsAndMergesEtc() throws {
        _ = try runningMachineOnA()
        let b = try imageB()
        // A runtime mount, as /run is on a running system.
        let mount = try Subprocess(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "\(root)/run"])
        guard mount.wait() == 0 else {
            #expect(mount.stderr.contains("permission denied") || mount.stderr.contains("must be superuser"), "mount failed: \(mount.stderr)")
            print("skipped: mounting a tmpfs is not permitted here")
            return
        }
        defer { _ = try? Subprocess(["umount", "\(root)/run"]).wait() }
        try Sys.writeFileAtomically("\(root)/run/daemon.pid", Array("42\n".utf8))

        // Without --live the tree is the image's, whole: the mount stops the apply before anything changes.
        let refused = try apply(b)
        #expect(refused.status == 8, "\(refused.stderr)")
        #expect(refused.stderr.contains("is another mount than the root"), "\(refused.stderr)")
        #expect(try text("/usr/bin/tool") == "tool A\n")

        let live = try apply(b, ["--live", "--json"])
        try #require(live.status == 0, "\(live.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(live.stdout.utf8)) as! [String: Any]
        #expect(report["etc_conflicts"] as? [String] == ["/etc/motd"])
        #expect(Set(report["etc_kept"] as? [String] ?? []) == ["/etc/hostname", "/etc/local.conf"])
        try expectLiveOnB()
        #expect(try text("/run/daemon.pid") == "42\n", "nothing under the runtime mount is touched")
    }

    @Test("live root: implied for the directory the system runs from, and only for it")
    func theSystemsOwnRootIsLive() throws {
        #expect(try MachinePaths.of(root: "/", live: false) == .runningSystem)
        #expect(try MachinePaths.of(root: "//", live: false) == .runningSystem)
        #expect(try MachinePaths.of(root: tmp.path, live: false) == .none)
        #expect(try MachinePaths.of(root: tmp.path, live: true) == .runningSystem)
    }

    /// The filesystem operations of a whole `apply --live` of B on the running machine (the kill
    /// switch's unit); the machine is then on B.
    func operationsOfALiveApplyOfB(_ b: String) throws -> Int {
        _ = try runningMachineOnA()
        let probe = try apply(b, ["--live", "--json"])
        try #require(probe.status == 0, "\(probe.stderr)")
        return (try JSONSerialization.jsonObject(with: Data(probe.stdout.utf8)) as! [String: Any])["operations"] as! Int
    }

    /// A new running machine on A whose `apply --live` of B was killed after `point` operations.
    func killedOnTheWayToB(_ b: String, at point: Int, of total: Int) throws {
        try FileManager.default.removeItem(atPath: root)
        _ = try runningMachineOnA()
        let killed = try apply(b, ["--live"], environment: ["UPDATINATOR_KILL_AFTER": "\(point)"])
        #expect(killed.status == 128 + SIGKILL, "kill point \(point) of \(total): \(killed.stderr)")
    }

    @Test("live root: a kill at any point leaves a tree whose next run ends as an uninterrupted one does")
    func liveApplyResumesAfterAKillAtAnyPoint() throws {
        let b = try imageB()
        let total = try operationsOfALiveApplyOfB(b)
        try #require(total > 10)
        for point in stride(from: 1, to: total, by: max(1, total / 16)) {
            try killedOnTheWayToB(b, at: point, of: total)
            // The rerun plans with what the first run merged, not with the /etc it half changed.
            let resumed = try apply(b, ["--live"])
            try #require(resumed.status == 0, "after a kill at \(point) of \(total): \(resumed.stderr)")
            try expectLiveOnB()
        }
    }

    @Test("live root: an apply to another image takes over from one killed half-way, and the machine's /etc stays its own")
    func aTakeoverOfAnInterruptedLiveApplyKeepsTheMachinesEtc() throws {
        let b = try imageB()
        let total = try operationsOfALiveApplyOfB(b)
        let c = try signed("C", try skeleton() + [
            try file("/etc/motd", "Image B\n"), try file("/etc/hostname", "image\n"), try file("/etc/image-version", "C\n"),
            try dir("/etc/newdir"), try file("/etc/newdir/conf", "C\n"), try dir("/etc/sudoers.d", mode: 0o750),
            try file("/usr/bin/tool", "tool C\n"), try file("/var/lib/packages", "tool C\n"),
        ])
        // Kill points all through B's apply: /etc is written early, the rest after it.
        for point in stride(from: 1, to: total, by: max(1, total / 8)) {
            try killedOnTheWayToB(b, at: point, of: total)
            // Without --live the whole tree would be the image's: the machine's /var, gone.
            let whole = try apply(c)
            #expect(whole.status == 64, "\(whole.stderr)")
            #expect(whole.stderr.contains("take it over so"), "\(whole.stderr)")
            #expect(try text("/var/log/syslog") == "booted\n")
            let taken = try apply(c, ["--live"])
            try #require(taken.status == 0, "after a kill at \(point) of \(total): \(taken.stderr)")
            #expect(try text("/usr/bin/tool") == "tool C\n")
            #expect(try Sys.lstatIfExists("\(root)/usr/bin/extra") == nil, "B's new file, if installed, is not C's")
            #expect(try text("/etc/image-version") == "C\n", "what B's apply installed in /etc is the new image's to change (at \(point))")
            #expect(try text("/etc/hostname") == "laptop-7\n", "a local change is kept (at \(point))")
            #expect(try text("/etc/local.conf") == "made here\n", "a local file is kept")
            #expect(try text("/etc/motd") == "Image A\nWelcome to this school\n", "the machine's version is kept")
            #expect(try Sys.lstatIfExists("\(root)/etc/new.conf") == nil, "B's new default, if installed, is not C's (at \(point))")
            #expect(try text("/etc/newdir/conf") == "C\n", "a directory B made, and its file, are C's to change (at \(point))")
            #expect(try Sys.lstatIfExists("\(root)/etc/newdir/conf.updatinator-new") == nil, "(at \(point))")
            #expect(try Sys.lstat("\(root)/etc/sudoers.d").st_mode & 0o7777 == 0o750, "a directory's new mode is the images' (at \(point))")
            #expect(try text("/var/lib/packages") == "tool A\n", "/var is the machine's")
            #expect(try text("/var/log/syslog") == "booted\n")
            #expect(try text("/tmp/session") == "x")
            #expect(try Sys.readFile("\(root)/.updatinator/installed.manifest") == (try Sys.readFile(tmp.sub("C.manifest"))))
        }
    }
}
