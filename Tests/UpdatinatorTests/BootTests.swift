import Foundation
import Testing
@testable import Updatinator

/// Booting staged deployments: the initramfs's boot counter (the real script, under the shells
/// an initramfs and a Debian system have), the boot entries `deploy` writes, and the machine's
/// own `/etc` carried into a new deployment.
@Suite struct BootTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("boot")
    var sysroot: String { tmp.sub("sysroot") }
    var repo: String { tmp.sub("repo") }

    /// The shells the counter must work under: busybox's (the initramfs) and dash (/bin/sh).
    static let shells = [["busybox", "sh"], ["dash"]]
    static let counter = Scripts.repositoryRoot.appendingPathComponent("contrib/initramfs-tools/updatinator-boot").path

    init() throws { samples = try SampleImages.shared }

    /// Runs the boot counter as the initramfs does.
    func boot(_ shell: [String], requested: String = "", maxTries: Int = 3) throws -> (chosen: [String], log: String) {
        let child = try Subprocess(shell + [Self.counter, "choose", sysroot, requested, String(maxTries)])
        let status = child.wait()
        try #require(status == 0, "updatinator-boot exited \(status): \(child.stderr)")
        return (child.stdout.split(whereSeparator: \.isWhitespace).map(String.init), child.stderr)
    }

    func link(_ which: String) -> String? {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(sysroot)/\(which)")).map { String($0.dropFirst("deployments/".count)) }
    }

    func run(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> CLI.Result {
        let r = try CLI.run(arguments)
        #expect(r.status == 0, "\(arguments.joined(separator: " ")): \(r.stderr)", sourceLocation: sourceLocation)
        return r
    }

    /// A small bootable image: an init, a kernel and initramfs of `kernel`, and `etc` files.
    func publish(_ version: String, kernel: String, etc: [String: String]) throws -> String {
        let tree = tmp.sub("tree-\(version)")
        let builder = TreeBuilder(root: tree).dir("/sysroot").dir("/var").dir("/sbin").dir("/boot").dir("/etc").dir("/etc/kernel")
            .file("/sbin/init", "#!/bin/sh\n", mode: 0o755)
            .file("/boot/vmlinuz-\(kernel)", "kernel \(kernel)\n").file("/boot/initrd.img-\(kernel)", "initramfs \(kernel)\n")
            .file("/etc/kernel/cmdline", "root=/dev/vda rw console=ttyS0 updatinator.deployment=stale\n")
        for (path, content) in etc { _ = builder.file("/etc/\(path)", content) }
        builder.fixTimes()
        _ = try run(["generate", "--tree", tree, "--repo", repo, "--image", "laptop", "--version", version, "--sign-key", samples.secretKey])
        return "\(repo)/images/laptop/\(version).manifest"
    }

    @discardableResult
    func deploy(_ manifest: String, from source: [String]? = nil) throws -> [String: Any] {
        let r = try run(["deploy", "--sysroot", sysroot, "--to", manifest, "--keyring", samples.keyring, "--json"]
                        + (source ?? ["--blobs", repo + "/blobs"]))
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
    }

    @Test(arguments: shells)
    func aPendingDeploymentNotMarkedGoodIsRolledBackAfterItsBoots(shell: [String]) throws {
        try deploy(publish("1", kernel: "6.1.0-9", etc: [:]))
        let good = try #require(link("current"))
        _ = try run(["mark-good", "--sysroot", sysroot])
        #expect(try boot(shell).chosen == [good], "a deployment marked good is booted, and nothing is counted")
        try deploy(publish("2", kernel: "6.1.0-10", etc: ["marker": "2\n"]))
        let trial = try #require(link("current"))
        // A loader that read the disk without its journal after a power cut still starts the
        // old entry: before the new deployment's first boot, the counter boots it all the same.
        let stale = try boot(shell, requested: good)
        #expect(stale.chosen == [trial] && stale.log.contains("never booted"), "\(stale)")
        for n in 2...3 {
            let (chosen, log) = try boot(shell, requested: trial)
            #expect(chosen == [trial] && log.contains("boot \(n) of 3"), "\(chosen) \(log)")
        }
        let (chosen, log) = try boot(shell, requested: trial)
        #expect(chosen == [good, "rolled-back"], "\(log)")
        #expect(link("current") == good && link("previous") == trial)
        #expect(try String(contentsOfFile: "\(sysroot)/loader/loader.conf", encoding: .utf8).contains("default updatinator-\(good).conf"))
        let status = try JSONSerialization.jsonObject(with: Data(try run(["status", "--sysroot", sysroot, "--json"]).stdout.utf8)) as! [String: Any]
        #expect(status["rolled_back"] as? String == trial && status["pending"] is NSNull, "\(status)")
        // The entry that still names the failed deployment (a loader that kept it) boots current.
        #expect(try boot(shell, requested: trial).chosen == [good])

        // Deployed again and marked good, it stays however often the machine boots.
        try deploy("\(repo)/images/laptop/2.manifest")
        #expect(try boot(shell, requested: trial).chosen == [trial])
        #expect(try run(["mark-good", "--sysroot", sysroot]).stdout.contains("marked good"))
        for _ in 0..<5 { #expect(try boot(shell, requested: trial).chosen == [trial]) }
    }

    @Test func aSecondRollbackToADeploymentNeverMarkedGoodCountsItsBootsAgain() throws {
        try deploy(publish("1", kernel: "6.1.0-9", etc: [:]))
        let good = try #require(link("current"))
        _ = try run(["mark-good", "--sysroot", sysroot])
        try deploy(publish("2", kernel: "6.1.0-10", etc: ["marker": "2\n"]))
        let trial = try #require(link("current"))
        func status() throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(try run(["status", "--sysroot", sysroot, "--json"]).stdout.utf8)) as! [String: Any]
        }
        _ = try run(["rollback", "--sysroot", sysroot])
        var state = try status()
        #expect(link("current") == good && state["pending"] is NSNull && state["rolled_back"] as? String == trial, "\(state)")
        // Back to the deployment that was never marked good: it is pending again, and counted.
        _ = try run(["rollback", "--sysroot", sysroot])
        state = try status()
        #expect(link("current") == trial && state["pending"] as? String == trial && state["tries"] as? Int == 0, "\(state)")
        for n in 1...3 {
            let (chosen, log) = try boot(["busybox", "sh"], requested: trial)
            #expect(chosen == [trial] && log.contains("boot \(n) of 3"), "\(chosen) \(log)")
        }
        #expect(try boot(["busybox", "sh"], requested: trial).chosen == [good, "rolled-back"])
        // A deployment marked good stays good through two rollbacks: nothing is counted.
        _ = try run(["rollback", "--sysroot", sysroot])
        _ = try run(["mark-good", "--sysroot", sysroot])
        _ = try run(["rollback", "--sysroot", sysroot])
        _ = try run(["rollback", "--sysroot", sysroot])
        state = try status()
        #expect(link("current") == trial && state["pending"] is NSNull, "\(state)")
    }

    @Test(arguments: shells)
    func theInitramfsScriptsParse(shell: [String]) throws {
        let contrib = Scripts.repositoryRoot.appendingPathComponent("contrib/initramfs-tools").path
        for script in ["updatinator-boot", "hooks/updatinator", "scripts/local-bottom/updatinator"] {
            let child = try Subprocess(shell + ["-n", "\(contrib)/\(script)"])
            #expect(child.wait() == 0 && child.stderr.isEmpty, "\(script): \(child.stderr)")
        }
    }

    @Test func aDeploymentWithoutAnInitIsRolledBackAtItsFirstBoot() throws {
        try deploy(publish("1", kernel: "6.1.0-9", etc: [:]))
        let good = try #require(link("current"))
        try deploy(publish("2", kernel: "6.1.0-9", etc: ["marker": "2\n"]))
        let broken = try #require(link("current"))
        unlink("\(sysroot)/deployments/\(broken)/sbin/init")
        let (chosen, log) = try boot(["busybox", "sh"], requested: broken)
        #expect(chosen == [good, "rolled-back"] && log.contains("no /sbin/init"), "\(chosen) \(log)")
        #expect(link("current") == good)
    }

    @Test func aHostileBootStateOrLinkStopsTheCounterWithItsReason() throws {
        try deploy(publish("1", kernel: "6.1.0-9", etc: [:]))
        try Sys.writeFileAtomically("\(sysroot)/boot.state", Array("pending=x\ntries=1; reboot\n".utf8))
        for shell in Self.shells {
            let child = try Subprocess(shell + [Self.counter, "choose", sysroot])
            #expect(child.wait() == 1 && child.stderr.contains("tries is not a number"), "\(child.stderr)")
        }
        try Sys.writeFileAtomically("\(sysroot)/boot.state", Array("pending=\ntries=0\n".utf8))
        unlink("\(sysroot)/current")
        symlink("deployments/../../etc", "\(sysroot)/current")
        let child = try Subprocess(["busybox", "sh", Self.counter, "choose", sysroot])
        #expect(child.wait() == 1 && child.stderr.contains("not to deployments/NAME"), "\(child.stderr)")
    }

    @Test func deployWritesABootEntryPerDeploymentAndTheDefaultFollowsCurrent() throws {
        try deploy(publish("1", kernel: "6.1.0-9", etc: [:]))
        let one = try #require(link("current"))
        let report = try deploy(publish("2", kernel: "6.1.0-10", etc: [:]))
        let two = try #require(link("current"))
        #expect(report["boot_entry"] as? Bool == true)
        let entry = try String(contentsOfFile: "\(sysroot)/loader/entries/updatinator-\(two).conf", encoding: .utf8)
        #expect(entry.contains("linux /boot/\(two)/vmlinuz\n") && entry.contains("initrd /boot/\(two)/initrd.img\n"), "\(entry)")
        #expect(entry.contains("options root=/dev/vda rw console=ttyS0 updatinator.deployment=\(two)\n"), "the image's cmdline, its own deployment named once: \(entry)")
        #expect(try String(contentsOfFile: "\(sysroot)/boot/\(two)/vmlinuz", encoding: .utf8) == "kernel 6.1.0-10\n")
        #expect(try String(contentsOfFile: "\(sysroot)/loader/loader.conf", encoding: .utf8) == "default updatinator-\(two).conf\n")

        // Other loader settings stay; a rollback moves the default back.
        try Sys.writeFileAtomically("\(sysroot)/loader/loader.conf", Array("timeout 3\ndefault updatinator-\(two).conf\n".utf8))
        _ = try run(["rollback", "--sysroot", sysroot])
        #expect(try String(contentsOfFile: "\(sysroot)/loader/loader.conf", encoding: .utf8) == "timeout 3\ndefault updatinator-\(one).conf\n")

        // gc takes a removed deployment's entry and kernel with it.
        _ = try run(["rollback", "--sysroot", sysroot])
        try deploy(publish("3", kernel: "6.1.0-10", etc: ["three": "3\n"]))
        _ = try run(["gc", "--sysroot", sysroot, "--keep", "2"])
        #expect(!FileManager.default.fileExists(atPath: "\(sysroot)/loader/entries/updatinator-\(one).conf"))
        #expect(!FileManager.default.fileExists(atPath: "\(sysroot)/boot/\(one)"))
        #expect(FileManager.default.fileExists(atPath: "\(sysroot)/loader/entries/updatinator-\(two).conf"))
    }

    @Test func theMachinesEtcChangesSurviveADeploymentAndAConflictIsReported() throws {
        let base = ["hostname": "image\n", "edited": "image 1\n", "both": "image 1\n", "removed-here": "x\n", "updated": "image 1\n"]
        try deploy(publish("1", kernel: "6.1.0-9", etc: base))
        let current = "\(sysroot)/current"
        // The machine's own changes.
        try Sys.writeFileAtomically("\(current)/etc/edited", Array("the machine's\n".utf8))
        try Sys.writeFileAtomically("\(current)/etc/both", Array("the machine's\n".utf8))
        unlink("\(current)/etc/removed-here")
        _ = TreeBuilder(root: current).dir("/etc/site").file("/etc/site/wifi.conf", "ssid=school\n", mode: 0o600)
        // The new image changes "both" and "updated", and adds a default.
        var next = base
        next["both"] = "image 2\n"
        next["updated"] = "image 2\n"
        next["added"] = "new default\n"
        let report = try deploy(publish("2", kernel: "6.1.0-9", etc: next))
        let etc = "\(sysroot)/current/etc"
        func read(_ name: String) -> String? { try? String(contentsOfFile: "\(etc)/\(name)", encoding: .utf8) }
        #expect(read("edited") == "the machine's\n")
        #expect(read("both") == "the machine's\n" && read("both.updatinator-new") == "image 2\n")
        #expect(read("removed-here") == nil)
        #expect(read("site/wifi.conf") == "ssid=school\n")
        #expect(try Sys.lstat("\(etc)/site/wifi.conf").st_mode & 0o777 == 0o600)
        #expect(read("updated") == "image 2\n" && read("added") == "new default\n" && read("hostname") == "image\n")
        #expect(report["etc_conflicts"] as? [String] == ["/etc/both"], "\(report)")
        #expect(Set(report["etc_kept"] as? [String] ?? []) == ["/etc/edited", "/etc/removed-here", "/etc/site", "/etc/site/wifi.conf"], "\(report)")
        // The old deployment's /etc is its own: nothing of the new one leaks into it.
        #expect(try String(contentsOfFile: "\(sysroot)/previous/etc/updated", encoding: .utf8) == "image 1\n")
    }

    @Test func aContentWhoseOnlyLocalCopyTheMachineChangedIsDownloaded() throws {
        try deploy(publish("1", kernel: "6.1.0-9", etc: ["a": "shared content\n"]))
        try Sys.writeFileAtomically("\(sysroot)/current/etc/a", Array("the machine's\n".utf8))
        // Image 2 has the old content of /etc/a at a new path: the plan counted on the local copy.
        let report = try deploy(publish("2", kernel: "6.1.0-9", etc: ["a": "shared content\n", "b": "shared content\n"]),
                                from: ["--mirror", "file://" + repo])
        #expect(try String(contentsOfFile: "\(sysroot)/current/etc/b", encoding: .utf8) == "shared content\n")
        #expect(try String(contentsOfFile: "\(sysroot)/current/etc/a", encoding: .utf8) == "the machine's\n")
        // /etc/a is written from the image before the merge puts the machine's back: it needs the content too.
        let fallbacks = report["fallbacks"] as? [String] ?? []
        #expect(fallbacks.count == 2 && fallbacks.allSatisfy { $0.contains("downloaded content") && $0.contains("does not match its hash") }, "\(report)")
        #expect(report["blobs_downloaded"] as? Int == 2 && (report["bytes_downloaded"] as? Int ?? 0) > 0, "\(report)")
    }

    /// On a UEFI machine, systemd-boot reads entries and kernels only from the EFI system
    /// partition (FAT), mounted at SYSROOT/efi: deploy, rollback, gc and the boot counter all
    /// write there, and refuse an efi/ with nothing mounted on it.
    @Test func entriesAndKernelsGoOnTheESPMountedAtEfi() throws {
        try FileManager.default.createDirectory(atPath: "\(sysroot)/efi", withIntermediateDirectories: true)
        let one = try publish("1", kernel: "6.1.0-9", etc: [:])
        // Nothing mounted on efi/: refused before anything is built.
        let refused = try CLI.run(["deploy", "--sysroot", sysroot, "--to", one, "--keyring", samples.keyring, "--blobs", repo + "/blobs"])
        #expect(refused.status == 1 && refused.stderr.contains("mount the EFI system partition there"), "\(refused.stderr)")
        let built = (try? FileManager.default.contentsOfDirectory(atPath: "\(sysroot)/deployments")) ?? []
        #expect(link("current") == nil && built.isEmpty, "\(built)")

        // The ESP is a filesystem of its own; the host's kernel has no vfat, so a tmpfs stands in
        // for it here (scripts/vm-test boots a real FAT ESP through systemd-boot).
        let mount = try Subprocess(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", "\(sysroot)/efi"])
        try #require(mount.wait() == 0, "mount: \(mount.stderr)")
        defer { _ = try? Subprocess(["umount", "\(sysroot)/efi"]).wait() }
        let esp = "\(sysroot)/efi"
        func read(_ path: String) -> String? { try? String(contentsOfFile: "\(esp)/\(path)", encoding: .utf8) }

        try deploy(one)
        let good = try #require(link("current"))
        _ = try run(["mark-good", "--sysroot", sysroot])
        try deploy(publish("2", kernel: "6.1.0-10", etc: [:]))
        let trial = try #require(link("current"))
        #expect(read("boot/\(trial)/vmlinuz") == "kernel 6.1.0-10\n" && read("boot/\(trial)/initrd.img") == "initramfs 6.1.0-10\n")
        #expect(try Sys.lstat("\(esp)/boot/\(trial)/vmlinuz").st_nlink == 1, "a copy: no hardlink crosses filesystems")
        #expect(read("loader/entries/updatinator-\(trial).conf")?.contains("linux /boot/\(trial)/vmlinuz\n") == true)
        #expect(read("loader/loader.conf") == "default updatinator-\(trial).conf\n")
        #expect(!FileManager.default.fileExists(atPath: "\(sysroot)/loader"), "nothing goes where the loader does not read")

        // The counter rolls back on the ESP.
        for _ in 1...3 { _ = try boot(["busybox", "sh"], requested: trial) }
        #expect(try boot(["busybox", "sh"], requested: trial).chosen == [good, "rolled-back"])
        #expect(read("loader/loader.conf") == "default updatinator-\(good).conf\n")
        // rollback and gc too.
        _ = try run(["rollback", "--sysroot", sysroot])
        #expect(read("loader/loader.conf") == "default updatinator-\(trial).conf\n")
        _ = try run(["rollback", "--sysroot", sysroot])
        try deploy(publish("3", kernel: "6.1.0-10", etc: ["three": "3\n"]))
        _ = try run(["gc", "--sysroot", sysroot, "--keep", "2"])
        #expect(read("loader/entries/updatinator-\(trial).conf") == nil && read("boot/\(trial)/vmlinuz") == nil)
        #expect(read("boot/\(good)/vmlinuz") == "kernel 6.1.0-9\n")
    }
}
