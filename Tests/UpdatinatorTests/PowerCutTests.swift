import Foundation
import Testing
@testable import Updatinator

/// Power cuts, not kills: the tree lives on ext4 on a loop device over `scripts/volatile-disk`,
/// a disk whose writes stay in a volatile cache until a flush. The apply or deploy stops itself
/// at an operation, the cut drops every write not yet made durable, and the filesystem is then
/// mounted from what the disk held, as after the power came back. `kill -9` alone leaves the
/// page cache intact, so only this shows that the fsyncs come in the right order.
@Suite(.serialized) struct PowerCutTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("powercut")

    init() throws { samples = try SampleImages.shared }

    /// A durable ext4 image holding `prepare`'s work, made through a plain loop mount.
    func makeImage(_ prepare: (String) throws -> Void) throws -> String {
        let image = tmp.sub("base.img")
        try Shell.run(["truncate", "-s", "320M", image])
        try Shell.run(["mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", image])
        let mount = tmp.sub("prepare")
        try Sys.mkdirs(mount)
        try Shell.run(["mount", "-o", "loop", image, mount])
        defer { _ = try? Shell.run(["umount", mount]) }
        try prepare(mount)
        return image
    }

    /// Runs `arguments` on a copy of `base` mounted through a volatile disk, cuts the power when
    /// the command has done `operations` operations, and mounts what the disk kept at `after`,
    /// which `check` then examines. Returns whether the command was cut (it may end first), and
    /// how many blocks the cut lost: written but not flushed, or still in the page cache.
    func cut(_ base: String, at operations: Int, run arguments: (String) -> [String],
             check: (String) throws -> Void) throws -> (cut: Bool, lostBlocks: Int) {
        let image = tmp.sub("cut.img"), disk = tmp.sub("disk"), mount = tmp.sub("mnt"), after = tmp.sub("after")
        try Shell.run(["cp", "--sparse=always", base, image])
        for directory in [disk, mount, after] { try Sys.mkdirs(directory) }
        let volatile = try Subprocess([Scripts.path("volatile-disk"), image, disk])
        var stopped = false
        func stopDisk() {
            guard !stopped else { return }
            stopped = true
            kill(volatile.pid, SIGKILL)
            _ = volatile.wait()
            _ = try? Shell.run(["umount", "-l", disk])
        }
        defer { stopDisk() }
        try waitUntil(timeout: 30, "volatile-disk serves \(disk): \(volatile.stderr)") { (try Sys.lstatIfExists(disk + "/cut")) != nil }
        let loop = try Shell.run(["losetup", "-f", "--show", disk + "/disk"]).trimmingCharacters(in: .whitespacesAndNewlines)
        try Shell.run(["mount", loop, mount])
        let command = try Subprocess([CLI.binary] + arguments(mount), environment: ["UPDATINATOR_STOP_AFTER": String(operations)])
        try command.waitUntilStoppedOrEnded()
        let wasCut = command.isRunning
        // The power goes: what is not on the disk now never will be.
        let cutFD = try Sys.open(disk + "/cut", O_WRONLY)
        try [UInt8(1)].withUnsafeBytes { try Sys.writeAll(cutFD, $0, path: disk + "/cut") }
        Sys.close(cutFD)
        kill(command.pid, SIGKILL)
        kill(command.pid, SIGCONT)
        _ = command.wait()
        // What the kernel still held goes to the disk now, which ignores it: count it as lost.
        _ = try? Shell.run(["sync", "-f", mount])
        let lost = Int(String(decoding: try Sys.readFile(disk + "/cut"), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        _ = try? Shell.run(["umount", "-l", mount])
        _ = try? Shell.run(["losetup", "-d", loop])
        stopDisk()
        // The power is back: the disk as it was at the cut (ext4 replays its journal).
        try Shell.run(["mount", "-o", "loop", image, after])
        defer { _ = try? Shell.run(["umount", after]) }
        try check(after)
        return (wasCut, lost)
    }

    func fsck(_ root: String, _ version: String) throws -> Bool {
        try CLI.run(["fsck", "--tree", root, "--manifest", samples.manifest("olpc-ext3", version)]).status == 0
    }

    /// The operations a whole apply of olpc-ext3 1 → 2 makes.
    func applyOperations() throws -> Int {
        let root = tmp.sub("measure")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        let r = try CLI.run(["apply", "--root", root, "--from", samples.manifest("olpc-ext3", "1"), "--to", samples.manifest("olpc-ext3", "2"),
                             "--keyring", samples.keyring, "--blobs", "\(samples.repo)/blobs", "--json"])
        try #require(r.status == 0, "\(r.stderr)")
        return (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any])["operations"] as! Int
    }

    @Test("An apply cut at many points comes back at the old image, the new one, or a point it resumes from")
    func anApplyRecoversFromPowerCuts() throws {
        let operations = try applyOperations()
        let base = try makeImage { mount in
            try Shell.copyTree(samples.tree("olpc-ext3", "1"), mount + "/root")
            try Sys.mkdirs(mount + "/root/.updatinator")
            try Sys.writeFileAtomically(mount + "/root/.updatinator/installed.manifest", Sys.readFile(samples.manifest("olpc-ext3", "1")))
        }
        let apply = { (mount: String) in
            ["apply", "--root", mount + "/root", "--to", self.samples.manifest("olpc-ext3", "2"), "--keyring", self.samples.keyring,
             "--blobs", "\(self.samples.repo)/blobs"]
        }
        var cuts = 0, resumed = 0, losing = 0
        let points = 16
        for k in 1...points {
            let at = max(1, operations * k / (points + 1))
            let outcome = try cut(base, at: at, run: apply) { after in
                let root = after + "/root"
                let journal = (try Sys.lstatIfExists(root + "/.updatinator/apply/journal")) != nil
                let intact = try journal || fsck(root, "1") || fsck(root, "2")
                #expect(intact, "cut at operation \(at): neither image, and no journal to resume")
                if journal { resumed += 1 }
                let again = try CLI.run(apply(after))
                #expect(again.status == 0, "cut at operation \(at): \(again.stderr)")
                #expect(try fsck(root, "2"), "cut at operation \(at): the resumed apply did not reach the new image")
                #expect((try Sys.lstatIfExists(root + "/.updatinator/apply")) == nil, "cut at operation \(at): state left behind")
            }
            if outcome.cut { cuts += 1 }
            if outcome.lostBlocks > 0 { losing += 1 }
        }
        #expect(cuts == points, "\(cuts) of \(points) applies were cut")
        // Cuts that lost nothing would show no more than a kill does.
        #expect(losing > points / 2, "\(losing) of \(points) cuts lost writes not yet made durable")
        #expect(resumed > points / 2, "\(resumed) cuts left a journal to resume from")
    }

    @Test("A staged deploy cut at many points keeps a complete current deployment, and deploying again finishes")
    func aDeployRecoversFromPowerCuts() throws {
        let blobs = "\(samples.repo)/blobs"
        let base = try makeImage { mount in
            let r = try CLI.run(["deploy", "--sysroot", mount + "/sysroot", "--to", samples.manifest("olpc-ext3", "1"),
                                 "--keyring", samples.keyring, "--blobs", blobs])
            try #require(r.status == 0, "\(r.stderr)")
        }
        let deploy = { (mount: String) in
            ["deploy", "--sysroot", mount + "/sysroot", "--to", self.samples.manifest("olpc-ext3", "2"), "--keyring", self.samples.keyring,
             "--blobs", blobs]
        }
        // Cuts at operations 1, 2, 3, 5, 8, 13, … until a deploy ends before its cut.
        var (at, next) = (1, 2), cuts = 0, losing = 0
        while true {
            let outcome = try cut(base, at: at, run: deploy) { after in
                let sysroot = after + "/sysroot"
                let current = try FileManager.default.destinationOfSymbolicLink(atPath: sysroot + "/current")
                let name = URL(fileURLWithPath: current).lastPathComponent
                let complete = try CLI.run(["fsck", "--tree", sysroot + "/current/", "--manifest", "\(sysroot)/manifests/\(name).manifest"])
                #expect(complete.status == 0, "cut at operation \(at): current (\(name)) is not a complete deployment")
                // A cut after the switch left 2 current: deploying it again has nothing to do.
                let switched = try fsck(sysroot + "/current/", "2")
                let again = try CLI.run(deploy(after))
                #expect(again.status == (switched ? 10 : 0), "cut at operation \(at): \(again.stderr)")
                #expect(try fsck(sysroot + "/current/", "2"), "cut at operation \(at): deploying again did not make 2 current")
            }
            guard outcome.cut else { break }
            cuts += 1
            if outcome.lostBlocks > 0 { losing += 1 }
            (at, next) = (next, at + next)
        }
        #expect(cuts >= 8, "only \(cuts) cut points before the deploy ended")
        #expect(losing > cuts / 2, "\(losing) of \(cuts) cuts lost writes not yet made durable")
    }
}
