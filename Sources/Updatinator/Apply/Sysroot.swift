import Foundation
import Glibc

/// A directory of deployments, each a complete tree of one image, and two symbolic links:
///
///     DIR/deployments/NAME/           a complete, verified deployment (NAME: image-version-hash)
///     DIR/deployments/.building-NAME/ a deployment being built (removed by the next run)
///     DIR/manifests/NAME.manifest     the manifest of each deployment, kept or being built
///     DIR/current -> deployments/NAME the deployment in use
///     DIR/previous -> deployments/NAME the one before, for rollback
///     DIR/boot.state                  the pending deployment and its boot tries
///     DIR/boot/NAME/                  a bootable deployment's kernel and initramfs
///     DIR/loader/entries/updatinator-NAME.conf   its boot entry (Boot Loader Specification)
///     DIR/loader/loader.conf          names the default entry: current's
///     DIR/efi/                        where the EFI system partition is mounted, when the
///                                     loader reads it (systemd-boot): then boot/ and loader/
///                                     are there instead (`BootEntries`)
///     DIR/lock                        held by whichever command changes the sysroot
///
/// Links are switched by renaming a new link over the old one, so a crash leaves each naming
/// either its old or its new deployment, and both are complete.
public final class Sysroot {
    public let path: String
    private var lockFD: Int32 = -1

    public var deployments: String { path + "/deployments" }
    public var manifests: String { path + "/manifests" }
    public var blobCache: String { path + "/blobs" }
    var downloads: String { path + "/downloads" }
    var bootFile: String { path + "/boot.state" }

    /// Opens the sysroot (creating it with `create`) and, unless only `reading`, takes its
    /// lock, failing at once when another command holds it.
    public init(path: String, create: Bool = false, reading: Bool = false) throws {
        self.path = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        if create {
            try Sys.mkdirs(deployments)
            try Sys.mkdirs(manifests)
        } else if !FileManager.default.fileExists(atPath: deployments) {
            throw UpdError(.usage, "\(self.path) is not a sysroot (it has no deployments/); deploy into it first")
        }
        if reading { return }
        lockFD = try Sys.lockExclusively(self.path + "/lock",
                                         busy: "\(self.path): another updatinator command is changing this sysroot (it holds \(self.path)/lock)")
    }

    deinit { if lockFD >= 0 { Sys.close(lockFD) } }

    /// A deployment's name: image, version and the first 12 hex digits of `digest`, the BLAKE2b
    /// hash of the manifest's signed text.
    public static func deploymentName(_ manifest: Manifest, digest: ContentHash) -> String {
        "\(manifest.image)-\(manifest.version)-\(digest.hex.prefix(12))"
    }

    public func tree(of name: String) -> String { "\(deployments)/\(name)" }
    public func manifestPath(of name: String) -> String { "\(manifests)/\(name).manifest" }

    /// The deployment a link names, or nil when there is no link or `checkedLink` refuses it.
    public func link(_ which: String) -> String? {
        (try? checkedLink(which)) ?? nil
    }

    /// The deployment a link (`current`, `previous`) names, or nil when there is no link.
    ///
    /// Only a symlink to `deployments/NAME` is accepted, NAME one component (not `.` or `..`)
    /// naming nothing or a real directory (no symlink) in a real `deployments/`. Anything else
    /// — `deployments/../../etc`, a link to another deployment's symlink — is refused (`unsafe`):
    /// following it would switch the machine to a tree outside the sysroot.
    public func checkedLink(_ which: String) throws -> String? {
        let linkPath = "\(path)/\(which)"
        guard let st = try Sys.lstatIfExists(linkPath) else { return nil }
        func refuse(_ why: String) -> UpdError {
            UpdError(.unsafe, "\(linkPath): \(why); refusing to follow it", path: linkPath)
        }
        guard st.st_mode & S_IFMT == S_IFLNK else { throw refuse("not a symlink (\(Sys.kind(st.st_mode)))") }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(linkPath, &buffer, buffer.count - 1)
        guard count >= 0 else { throw UpdError.system("readlink", linkPath) }
        let target = String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let prefix = "deployments/"
        let name = String(target.dropFirst(prefix.count))
        guard target.hasPrefix(prefix), !name.isEmpty, name != ".", name != "..", !name.contains("/") else {
            throw refuse("it points to \(target), not to deployments/NAME")
        }
        guard let d = try Sys.lstatIfExists(deployments), d.st_mode & S_IFMT == S_IFDIR else {
            throw refuse("\(deployments) is not a directory")
        }
        if let entry = try Sys.lstatIfExists(tree(of: name)), entry.st_mode & S_IFMT != S_IFDIR {
            throw refuse("\(tree(of: name)) is not a directory (\(Sys.kind(entry.st_mode)))")
        }
        return name
    }

    /// Points `which` (current or previous) at a deployment, atomically; nil removes it.
    func setLink(_ which: String, to name: String?) throws {
        let final = "\(path)/\(which)"
        guard let name else {
            if unlink(final) != 0 && errno != ENOENT { throw UpdError.system("unlink", final) }
            try syncDirectory()
            return
        }
        let temporary = "\(path)/.\(which).new"
        unlink(temporary)
        guard symlink("deployments/\(name)", temporary) == 0 else { throw UpdError.system("symlink", temporary) }
        try Sys.rename(temporary, final)
        try syncDirectory()
    }

    func syncDirectory() throws {
        let fd = try Sys.open(path, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(fd) }
        if fsync(fd) != 0 { throw UpdError.system("fsync", path) }
    }

    /// Complete deployments, newest (by when their build began) first.
    public func deploymentNames() -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: deployments)) ?? []).filter { !$0.hasPrefix(".") }
        let began = Dictionary(uniqueKeysWithValues: names.map { name in
            (name, (try? FileManager.default.attributesOfItem(atPath: manifestPath(of: name))[.modificationDate] as? Date) ?? .distantPast)
        })
        return names.sorted { (began[$0]!, $0) > (began[$1]!, $1) }
    }

    /// The manifest of a deployment (taking `other`'s equal paths: see `ManifestParser.parse`).
    public func manifest(of name: String, sharingPathsWith other: Manifest? = nil) throws -> Manifest {
        try ManifestParser.parse(contentsOf: manifestPath(of: name), sharingPathsWith: other)
    }

    // MARK: Boot counting

    /// The deployment switched to and not yet marked good, with the boots it has had.
    ///
    /// The initramfs counts the boots (`contrib/initramfs-tools/updatinator-boot`), so the file
    /// is lines of `key=value` that a busybox shell reads and writes.
    public struct BootState: Equatable, Sendable {
        public var pending: String?
        public var tries = 0
        /// The last deployment the boot counter rolled back from.
        public var rolledBack: String?

        public init(pending: String? = nil, tries: Int = 0, rolledBack: String? = nil) {
            self.pending = pending
            self.tries = tries
            self.rolledBack = rolledBack
        }

        init(parsing text: String, file: String) throws {
            for line in text.split(separator: "\n") {
                let (key, value) = (line.prefix { $0 != "=" }, String(line.drop { $0 != "=" }.dropFirst()))
                switch key {
                case "pending": pending = value.isEmpty ? nil : value
                case "rolled_back": rolledBack = value.isEmpty ? nil : value
                case "tries":
                    guard let count = Int(value), count >= 0 else { throw UpdError(.corrupt, "\(file): tries is not a count: \(value)", path: file) }
                    tries = count
                default: break
                }
            }
        }

        var text: String { "pending=\(pending ?? "")\ntries=\(tries)\nrolled_back=\(rolledBack ?? "")\n" }
    }

    public func bootState() throws -> BootState {
        guard let data = FileManager.default.contents(atPath: bootFile) else { return BootState() }
        return try BootState(parsing: String(decoding: data, as: UTF8.self), file: bootFile)
    }

    func writeBootState(_ state: BootState) throws {
        try Sys.writeFileAtomically(bootFile, Array(state.text.utf8))
        try syncDirectory()
    }

    /// Makes a complete deployment current, the current one previous, and the new one pending;
    /// the loader's default entry, in `boot`, follows.
    func switchTo(_ name: String, boot: BootEntries, operation: () -> Void = {}) throws {
        let old = try checkedLink("current")
        guard old != name else { return }
        try writeBootState(BootState(pending: name, tries: 0))
        operation()
        if let old { try setLink("previous", to: old) }
        operation()
        try setLink("current", to: name)
        operation()
        try boot.setDefault(name)
        try syncDirectory()
    }

    /// Switches back to the previous deployment; the current one becomes previous.
    ///
    /// A current deployment still pending (never marked good) is recorded as rolled back from,
    /// as the boot counter records it; switching back to such a deployment (a second rollback)
    /// makes it pending again, its boots counted from zero, so that boot counting still guards
    /// it: it was never marked good.
    public func rollback() throws -> (from: String, to: String) {
        guard let previous = try checkedLink("previous"), try Sys.lstatIfExists(tree(of: previous)) != nil else {
            throw UpdError(.nothingToDo, "\(path): there is no previous deployment to roll back to")
        }
        let current = try checkedLink("current")
        let boot = try BootEntries(sysroot: self)   // before anything changes: an ESP not mounted is refused
        var state = try bootState()
        let unproven = state.rolledBack == previous
        if state.pending == current {
            state = BootState(rolledBack: current)
        }
        if unproven {
            state = BootState(pending: previous, tries: 0)
        }
        try writeBootState(state)
        if let current { try setLink("previous", to: current) }
        try setLink("current", to: previous)
        try boot.setDefault(previous)
        try syncDirectory()
        return (current ?? "nothing", previous)
    }

    /// The health check's word: the current deployment is good.
    public func markGood() throws -> String? {
        var state = try bootState()
        guard let pending = state.pending, try pending == checkedLink("current") else { return nil }
        state.pending = nil
        state.tries = 0
        try writeBootState(state)
        return pending
    }

    // MARK: Status and garbage collection

    public struct DeploymentStatus: Sendable {
        public let name: String
        public let image: String
        public let version: String
        public let isCurrent: Bool
        public let isPrevious: Bool
        public let isPending: Bool
        /// Bytes of files whose inodes no other deployment shares, and of those it shares.
        public var ownBytes: UInt64 = 0
        public var sharedBytes: UInt64 = 0
    }

    /// Every deployment, newest first, with its disk use by allocated blocks (a walk of every
    /// deployment's files: for people, not for gc).
    public func status() throws -> (deployments: [DeploymentStatus], boot: BootState) {
        let boot = try bootState()
        let (current, previous) = (link("current"), link("previous"))
        var inodes = [String: [[UInt64]: UInt64]]()   // deployment → inode → bytes
        var users = [[UInt64]: Int]()
        var result = [DeploymentStatus]()
        for name in deploymentNames() {
            let manifest = try self.manifest(of: name)
            var mine = [[UInt64]: UInt64]()
            for e in manifest.entries where e.kind.letter == "f" {
                var st = stat()
                let path = Array(tree(of: name).utf8) + e.path.bytes
                guard RootedTree.withName(path, { lstat($0, &st) }) == 0 else { continue }
                mine[[UInt64(st.st_dev), UInt64(st.st_ino)]] = UInt64(st.st_blocks) * 512
            }
            for inode in mine.keys { users[inode, default: 0] += 1 }
            inodes[name] = mine
            result.append(DeploymentStatus(name: name, image: manifest.image, version: manifest.version, isCurrent: name == current,
                                           isPrevious: name == previous, isPending: name == boot.pending))
        }
        for i in result.indices {
            for (inode, bytes) in inodes[result[i].name] ?? [:] {
                if users[inode]! > 1 { result[i].sharedBytes += bytes } else { result[i].ownBytes += bytes }
            }
        }
        return (result, boot)
    }

    public struct Collected: Sendable {
        public var deployments = [String]()
        public var blobs = 0
        public var blobBytes: UInt64 = 0
    }

    /// Removes deployments beyond the current, previous and pending ones and the newest others
    /// up to `keep` in all, manifests of no deployment, and cached blobs (`DIR/blobs`) that no
    /// kept deployment's manifest uses.
    public func collectGarbage(keep: Int) throws -> Collected {
        let all = deploymentNames()
        // A link refused here would leave its deployment unprotected: refuse to collect instead.
        var kept = Set([try checkedLink("current"), try checkedLink("previous"), try bootState().pending].compactMap { $0 })
        for name in all where kept.count < keep { kept.insert(name) }
        var collected = Collected()
        let boot = try BootEntries(sysroot: self)
        for name in all where !kept.contains(name) {
            // The manifest goes last: a crash in between leaves a deployment that is still listed.
            try boot.remove(name)
            try FileManager.default.removeItem(atPath: tree(of: name))
            try FileManager.default.removeItem(atPath: manifestPath(of: name))
            collected.deployments.append(name)
        }
        for file in (try? FileManager.default.contentsOfDirectory(atPath: manifests)) ?? [] where file.hasSuffix(".manifest") {
            let name = String(file.dropLast(".manifest".count))
            if !kept.contains(name) && !FileManager.default.fileExists(atPath: tree(of: name)) {
                try FileManager.default.removeItem(atPath: manifestPath(of: name))
            }
        }
        var used = Set<ContentHash>()
        for name in kept { for e in try manifest(of: name).entries { if let h = e.contentHash { used.insert(h) } } }
        for prefix in (try? FileManager.default.contentsOfDirectory(atPath: blobCache)) ?? [] {
            for file in (try? FileManager.default.contentsOfDirectory(atPath: "\(blobCache)/\(prefix)")) ?? [] {
                guard let hash = ContentHash(hex: file), !used.contains(hash) else { continue }
                let path = "\(blobCache)/\(prefix)/\(file)"
                collected.blobBytes += UInt64((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)
                try FileManager.default.removeItem(atPath: path)
                collected.blobs += 1
            }
        }
        try syncDirectory()
        return collected
    }
}
