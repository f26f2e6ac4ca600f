import CLinux
import Foundation
import Glibc

/// The boot loader's side of a sysroot: each bootable deployment's kernel and initramfs, and a
/// boot entry for it in the Boot Loader Specification's format, which systemd-boot reads (and
/// from which a GRUB menu can be generated).
///
///     BOOT/boot/NAME/vmlinuz, initrd.img          the deployment's own
///     BOOT/loader/entries/updatinator-NAME.conf   title, version, linux, initrd, options
///     BOOT/loader/loader.conf                     "default updatinator-NAME.conf": current's
///
/// BOOT, the boot loader's `$BOOT`, is the sysroot itself (a loader that reads its filesystem,
/// such as GRUB), or the EFI system partition when one is mounted at `SYSROOT/efi`: firmware
/// reads only FAT, so systemd-boot finds entries and kernels there (the initramfs mounts it at
/// each boot). The kernels are hardlinks to the deployment's files on the sysroot, and copies
/// on the ESP. The entries' paths are relative to BOOT. A deployment is bootable when its tree
/// has `boot/vmlinuz-VERSION` and `boot/initrd.img-VERSION` (the newest VERSION is used). The
/// entry's options are the deployment's `etc/kernel/cmdline` (the file `kernel-install` reads)
/// and `updatinator.deployment=NAME`, which tells the initramfs which deployment to boot.
struct BootEntries {
    let sysroot: Sysroot
    /// BOOT: the sysroot, or the EFI system partition mounted at SYSROOT/efi.
    let directory: String
    /// Whether BOOT is the ESP: a filesystem of its own, with no hardlinks to the deployments
    /// and no Unix modes.
    let onESP: Bool

    /// Finds BOOT; a `SYSROOT/efi` on the sysroot's own filesystem (the ESP not mounted) is
    /// refused, so that no entry is written where the loader would never read it.
    init(sysroot: Sysroot) throws {
        self.sysroot = sysroot
        let esp = sysroot.path + "/efi"
        var espInfo = stat(), rootInfo = stat()
        guard lstat(esp, &espInfo) == 0 else {
            guard errno == ENOENT else { throw UpdError.system("stat", esp) }
            directory = sysroot.path
            onESP = false
            return
        }
        guard espInfo.st_mode & S_IFMT == S_IFDIR else { throw UpdError(.unsafe, "\(esp) is not a directory", path: esp) }
        guard stat(sysroot.path, &rootInfo) == 0 else { throw UpdError.system("stat", sysroot.path) }
        guard espInfo.st_dev != rootInfo.st_dev else {
            throw UpdError(.io, "\(esp) is on the sysroot's own filesystem: mount the EFI system partition there (boot entries go on it)", path: esp)
        }
        directory = esp
        onESP = true
    }

    var entries: String { directory + "/loader/entries" }
    var loaderConf: String { directory + "/loader/loader.conf" }
    func entry(of name: String) -> String { "\(entries)/updatinator-\(name).conf" }
    func kernelDirectory(of name: String) -> String { "\(directory)/boot/\(name)" }
    /// What files in BOOT are written with: 0644, or on the ESP whatever its mount gives.
    var mode: mode_t? { onESP ? nil : 0o644 }

    /// The kernel version of a manifest's newest kernel that has an initramfs; nil when none has.
    static func kernelVersion(of manifest: Manifest) -> String? {
        var kernels = Set<String>(), initrds = Set<String>()
        for e in manifest.entries where e.kind.letter == "f" && e.path.parent.bytes == Array("/boot".utf8) {
            let name = String(decoding: e.path.name, as: UTF8.self)
            if name.hasPrefix("vmlinuz-") { kernels.insert(String(name.dropFirst("vmlinuz-".count))) }
            if name.hasPrefix("initrd.img-") { initrds.insert(String(name.dropFirst("initrd.img-".count))) }
        }
        return kernels.intersection(initrds).max { $0.compare($1, options: .numeric) == .orderedAscending }
    }

    /// Puts a deployment's kernel and initramfs beside the entries and writes its entry; false
    /// when the deployment has no kernel (a tree that is not booted, or one booted otherwise).
    func install(_ name: String, manifest: Manifest) throws -> Bool {
        guard let version = Self.kernelVersion(of: manifest) else { return false }
        let tree = sysroot.tree(of: name)
        let kernels = kernelDirectory(of: name)
        try Sys.mkdirs(kernels)
        for (source, link) in [("vmlinuz-\(version)", "vmlinuz"), ("initrd.img-\(version)", "initrd.img")] {
            let target = "\(kernels)/\(link)"
            if onESP {
                try Sys.writeFileAtomically(target, Sys.readFile("\(tree)/boot/\(source)"), mode: mode)
                continue
            }
            if unlink(target) != 0 && errno != ENOENT { throw UpdError.system("unlink", target) }
            if Glibc.link("\(tree)/boot/\(source)", target) != 0 { throw UpdError.system("link", target) }
        }
        let cmdline = try? String(contentsOfFile: "\(tree)/etc/kernel/cmdline", encoding: .utf8)
        let options = (cmdline ?? "").split(whereSeparator: \.isWhitespace).filter { !$0.hasPrefix("updatinator.deployment=") }
            .map(String.init) + ["updatinator.deployment=\(name)"]
        let text = """
            title \(manifest.image) \(manifest.version)
            version \(manifest.version)
            linux /boot/\(name)/vmlinuz
            initrd /boot/\(name)/initrd.img
            options \(options.joined(separator: " "))

            """
        try Sys.mkdirs(entries)
        try Sys.writeFileAtomically(entry(of: name), Array(text.utf8), mode: mode)
        return true
    }

    /// Makes a deployment's entry the loader's default, keeping loader.conf's other settings;
    /// nothing when the deployment has no entry.
    func setDefault(_ name: String) throws {
        guard FileManager.default.fileExists(atPath: entry(of: name)) else { return }
        let old = (try? String(contentsOfFile: loaderConf, encoding: .utf8)) ?? ""
        let kept = old.split(separator: "\n").filter { !($0.hasPrefix("default ") || $0.hasPrefix("default\t")) }
        try Sys.writeFileAtomically(loaderConf, Array((kept + ["default updatinator-\(name).conf"]).joined(separator: "\n").utf8 + [0x0A]), mode: mode)
        checkpoint()
    }

    /// Writes BOOT's journal out, so that a boot loader, which reads the filesystem without
    /// replaying the journal, sees the new default after a power cut too. A filesystem
    /// that cannot freeze (tmpfs), or a caller without CAP_SYS_ADMIN, keeps what `fsync` gave:
    /// the initramfs then finds a loader that has not seen the switch (`updatinator-boot`).
    private func checkpoint() {
        guard let fd = try? Sys.open(directory, O_RDONLY | O_DIRECTORY) else { return }
        defer { Sys.close(fd) }
        _ = CLinux_checkpoint_filesystem(fd)
    }

    /// Removes a deployment's entry, then its kernel and initramfs.
    func remove(_ name: String) throws {
        if unlink(entry(of: name)) != 0 && errno != ENOENT { throw UpdError.system("unlink", entry(of: name)) }
        if FileManager.default.fileExists(atPath: kernelDirectory(of: name)) {
            try FileManager.default.removeItem(atPath: kernelDirectory(of: name))
        }
    }
}
