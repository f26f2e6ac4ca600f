import Foundation
import Glibc
import Testing
@testable import Updatinator

/// Apply on a real, size-limited tmpfs: the plan's space check, streaming, and ENOSPC mid-way.
@Suite(.serialized) struct FullDiskTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("fulldisk")

    init() throws { samples = try SampleImages.shared }

    var mountPoint: String { tmp.sub("mnt") }
    var root: String { "\(mountPoint)/root" }

    /// Mounts a tmpfs holding a copy of image 1 (installed), and returns the plan to image 2.
    func prepare() throws -> (plan: ApplyPlan, used: UInt64) {
        try Sys.mkdirs(mountPoint)
        try Shell.run(["mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", mountPoint])
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        try Sys.mkdirs("\(root)/.updatinator")
        let old = try Sys.readFile(samples.manifest("olpc-ext3", "1")), new = try Sys.readFile(samples.manifest("olpc-ext3", "2"))
        try Sys.writeFileAtomically("\(root)/.updatinator/installed.manifest", old)
        let plan = try InPlaceApplier.plan(root: root, from: ManifestParser.parse(old), fromBytes: old.count,
                                           to: ManifestParser.parse(new), toBytes: new.count,
                                           blobDirectories: ["\(samples.repo)/blobs"])
        return (plan, try FilesystemSpace(path: mountPoint).used)
    }

    func resize(to bytes: UInt64) throws {
        try Shell.run(["mount", "-o", "remount,size=\(bytes / 1024)k", mountPoint])
    }

    func unmount() {
        _ = try? Shell.run(["umount", "-l", mountPoint])
    }

    var arguments: [String] {
        ["apply", "--root", root, "--to", samples.manifest("olpc-ext3", "2"), "--keyring", samples.keyring,
         "--blobs", "\(samples.repo)/blobs", "--json"]
    }

    @Test func refusesBeforeAnyChangeWhenThePlannedPeakDoesNotFit() throws {
        defer { unmount() }
        let (plan, used) = try prepare()
        try resize(to: used + plan.requiredFreeSpace - 64 * 1024)
        let r = try CLI.run(arguments)
        #expect(r.status == 3, "\(r.stderr)")
        #expect(r.stderr.contains("nothing was changed"))
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "1"), root: root) == [])
        #expect((try Sys.lstatIfExists("\(root)/.updatinator/apply")) == nil)
    }

    @Test func fitsOnlyBecauseRemovalsComeFirstAndContentIsStreamed() throws {
        defer { unmount() }
        let (plan, used) = try prepare()
        // The prototype needed room for every new content at once; this disk has far less.
        let free = plan.requiredFreeSpace + 64 * 1024
        #expect(free < plan.bytesFromBlobs, "free \(free), new contents \(plan.bytesFromBlobs)")
        try resize(to: used + free)
        let r = try CLI.run(arguments)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root) == [])
    }

    /// Two images of the same twelve 512 KiB files, every content replaced (incompressible), so
    /// the new blobs are about as large as the old tree.
    func replacedContentImages() throws -> (repo: String, old: String, new: String) {
        let repo = tmp.sub("repo")
        var rng = SeededGenerator(seed: 42)
        for version in ["1", "2"] {
            let builder = TreeBuilder(root: tmp.sub("image-\(version)")).dir("/data")
            for i in 0..<12 { _ = builder.file("/data/part-\(i)", bytes: (0..<(512 << 10)).map { _ in UInt8.random(in: 0...255, using: &rng) }) }
            builder.fixTimes()
            let r = try CLI.run(["generate", "--tree", tmp.sub("image-\(version)"), "--repo", repo, "--image", "data",
                                 "--version", version, "--sign-key", samples.secretKey])
            try #require(r.status == 0, "\(r.stderr)")
        }
        return (repo, "\(repo)/images/data/1.manifest", "\(repo)/images/data/2.manifest")
    }

    /// A tmpfs holding a copy of the replaced-content image 1 (installed), shrunk to just the
    /// free space an apply from a mirror needs one blob at a time (plus 64 KiB); nginx serves
    /// the repository. Returns the images, the plan (window 0) and the mirror.
    func tightDiskWithAMirror() throws -> (images: (repo: String, old: String, new: String), plan: ApplyPlan, mirror: NginxMirror) {
        let images = try replacedContentImages()
        try Sys.mkdirs(mountPoint)
        try Shell.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mountPoint])
        try Shell.copyTree(tmp.sub("image-1"), root)
        try Sys.mkdirs("\(root)/.updatinator")
        let old = try Sys.readFile(images.old), new = try Sys.readFile(images.new)
        try Sys.writeFileAtomically("\(root)/.updatinator/installed.manifest", old)
        let plan = try InPlaceApplier.plan(root: root, from: ManifestParser.parse(old), fromBytes: old.count,
                                           to: ManifestParser.parse(new), toBytes: new.count, blobDirectories: [],
                                           downloadWindow: 0)
        try resize(to: try FilesystemSpace(path: mountPoint).used + plan.requiredFreeSpace + 64 * 1024)
        return (images, plan, try NginxMirror(repo: images.repo))
    }

    @Test func applyFromAMirrorFitsWhereTheOldTreeAndEveryNewBlobCannot() throws {
        defer { unmount() }
        let (images, plan, mirror) = try tightDiskWithAMirror()
        #expect((plan.requiredFreeSpace + 64 * 1024) * 3 < plan.bytesToObtain, "free \(plan.requiredFreeSpace), every new blob \(plan.bytesToObtain)")
        let r = try CLI.run(["apply", "--root", root, "--to", images.new, "--keyring", samples.keyring,
                             "--mirror", mirror.url, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Shell.rsyncDifferences(expected: tmp.sub("image-2"), root: root) == [])
        #expect((try Sys.lstatIfExists("\(root)/.updatinator/apply")) == nil, "the downloads are gone")
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect(report["blobs_downloaded"] as? Int == plan.contentsToObtain)
        #expect(report["bytes_downloaded"] as? Int == Int(plan.bytesToObtain))
        #expect(mirror.blobBytesSent == Int(plan.bytesToObtain), "nginx sent each blob once")
        let planned = report["planned_peak_extra_disk"] as! Int, observed = report["observed_peak_extra_disk"] as! Int
        #expect(observed <= planned + (1 << 20), "planned \(planned), observed \(observed)")
    }

    @Test func upgradeFromLuaFitsWhereFetchingEverythingFirstCannot() throws {
        defer { unmount() }
        let (_, _, mirror) = try tightDiskWithAMirror()
        let script = tmp.sub("upgrade.lua")
        try Sys.writeFileAtomically(script, Array("""
            local root, mirror, keyring, cache = ...
            local kr = assert(upd.keyring(keyring))
            local target = assert(upd.get_manifest(mirror, "data", "2", { keyring = kr }))
            local plan = assert(upd.plan(assert(upd.manifest.installed(root)), target, { root = root, mirrors = mirror }))
            -- Fetching everything first does not fit: it stops with no_space and changes nothing.
            local fetched, message, code = upd.fetch(plan, { mirrors = mirror, cache = cache })
            assert(fetched == nil and code == "no_space", tostring(message))
            os.execute("rm -rf " .. cache)
            -- The streaming apply does.
            local report = assert(upd.apply(plan, { mirrors = mirror }))
            assert(report.bytes_downloaded == plan.download_bytes)
            assert(upd.fsck(root, target))
            print("ok")
            """.utf8))
        let r = try CLI.run(["run", "--allow-os", "--state", tmp.sub("state.json"), script, "--", root, mirror.url, samples.keyring,
                             "\(mountPoint)/cache"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "ok\n", "\(r.stdout)")
        #expect(try Shell.rsyncDifferences(expected: tmp.sub("image-2"), root: root) == [])
    }

    @Test(arguments: [8, 30, 45])
    func aTightApplyFromAMirrorKilledMidwayResumesInTheSameSpace(after operations: Int) throws {
        defer { unmount() }
        let (images, _, mirror) = try tightDiskWithAMirror()
        let arguments = ["apply", "--root", root, "--to", images.new, "--keyring", samples.keyring, "--mirror", mirror.url]
        let killed = try CLI.run(arguments, environment: ["UPDATINATOR_KILL_AFTER": "\(operations)"])
        #expect(killed.status == 128 + SIGKILL)
        let resumed = try CLI.run(arguments)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try Shell.rsyncDifferences(expected: tmp.sub("image-2"), root: root) == [])
    }

    @Test func thePlannedPeakMatchesThePeakMeasuredOnTmpfs() throws {
        defer { unmount() }
        _ = try prepare()
        // Forward, across, backward and across again, each on a filesystem used by nothing else.
        for (image, version) in [("olpc-ext3", "2"), ("olpc-devel-ext3", "2"), ("olpc-ext3", "1"), ("olpc-devel-ext3", "2")] {
            let r = try CLI.run(["apply", "--root", root, "--to", samples.manifest(image, version), "--keyring", samples.keyring,
                                 "--blobs", "\(samples.repo)/blobs", "--json"])
            #expect(r.status == 0, "\(r.stderr)")
            let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
            let planned = report["planned_peak_extra_disk"] as! Int, observed = report["observed_peak_extra_disk"] as! Int
            #expect(planned > 0)
            #expect(abs(planned - observed) <= 1 << 20, "\(image) \(version): planned \(planned), observed \(observed)")
        }
    }

    @Test func aDiskFilledByAnotherProcessLeavesAResumableTree() throws {
        defer { unmount() }
        _ = try prepare()
        let apply = try Subprocess([CLI.binary] + arguments, environment: ["UPDATINATOR_STOP_AFTER": "50"])
        // Wait until the apply has stopped itself mid-way, then fill the disk and let it go on.
        try apply.waitUntilStoppedOrEnded()
        try #require(apply.isRunning, "the apply ended before it stopped itself")
        let filler = "\(mountPoint)/filler"
        _ = try? Shell.run(["dd", "if=/dev/zero", "of=\(filler)", "bs=64k", "status=none"])
        kill(apply.pid, SIGCONT)
        let status = apply.wait()
        let message = apply.stderr
        #expect(status == 3, "\(message)")
        #expect(message.contains("No space left on device"), "\(message)")
        #expect(try Sys.readFile("\(root)/.updatinator/installed.manifest") == Sys.readFile(samples.manifest("olpc-ext3", "1")))
        #expect((try Sys.lstatIfExists("\(root)/.updatinator/apply/journal")) != nil)

        unlink(filler)
        let resumed = try CLI.run(arguments)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root) == [])
    }
}
