import CLinux
import Foundation
import Glibc

/// Builds a deployment of a manifest beside the current one in a sysroot, and switches to it.
///
/// Every file whose content and metadata are the current deployment's at the same path is a
/// hardlink to it (no extra space); any other file gets its own inode, with its content copied
/// from the current deployment (verified by its hash) or a blob, so metadata that differs
/// between the images never leaks through a shared inode. Missing contents are downloaded as
/// the build goes and deleted after their last use, as the in-place apply does. The build
/// happens in `deployments/.building-NAME`; only once the whole tree verifies against the
/// manifest, and the machine's own changes to `/etc` are merged into it (`EtcMerge`), is it
/// renamed to `deployments/NAME`, given a boot entry when it has a kernel (`BootEntries`), and
/// `current` switched to it. A crash leaves `current` on a complete deployment, and the next
/// run removes the half-built one.
final class Deployer {
    let sysroot: Sysroot
    /// The image to deploy; its signed text is made again from it for the sysroot.
    let signed: VerifiedManifest
    var target: Manifest { signed.manifest }
    /// Where the contents the current deployment lacks come from; a content to download comes as
    /// its cheapest delta against a content of the current deployment, when that is smaller than its blob.
    let sources: ResolvedSources
    let faults: FaultInjection
    /// Called on the building thread at most five times a second, also while it waits for a
    /// download, with the entries written of the target's; throwing stops the build.
    var onProgress: ((ApplyProgress) throws -> Void)?

    private var operations = 0
    private var report = DeployReport()

    init(sysroot: Sysroot, target: VerifiedManifest, sources: ResolvedSources, faults: FaultInjection) {
        self.sysroot = sysroot
        signed = target
        self.sources = sources
        self.faults = faults
    }

    private func operation() {
        operations += 1
        faults.reached(operations)
    }

    func run() throws -> DeployReport {
        let started = Date()
        let name = Sysroot.deploymentName(target, digest: signed.hash)
        report.name = name
        let boot = try BootEntries(sysroot: sysroot)   // an ESP not mounted is refused before the build
        try removeUnfinishedBuilds()
        if sysroot.link("current") == name {
            report.alreadyCurrent = true
            return report
        }
        // A deployment that exists already (a rollback's previous one, or a switch a crash
        // interrupted) is only switched to.
        if !FileManager.default.fileExists(atPath: sysroot.tree(of: name)) { try build(name) }
        report.bootEntry = try boot.install(name, manifest: target)
        operation()
        try sysroot.switchTo(name, boot: boot, operation: operation)
        report.seconds = Date().timeIntervalSince(started)
        return report
    }

    /// Removes what a killed build left: `.building-*` trees and leftover downloads.
    private func removeUnfinishedBuilds() throws {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: sysroot.deployments)) ?? [] where entry.hasPrefix(".building-") {
            try FileManager.default.removeItem(atPath: "\(sysroot.deployments)/\(entry)")
        }
        try? FileManager.default.removeItem(atPath: sysroot.downloads)
    }

    private func build(_ name: String) throws {
        let building = "\(sysroot.deployments)/.building-\(name)"
        let current = sysroot.link("current").flatMap { name -> (tree: RootedTree, manifest: Manifest)? in
            guard let manifest = try? sysroot.manifest(of: name, sharingPathsWith: target), let tree = try? RootedTree(root: sysroot.tree(of: name)) else { return nil }
            return (tree, manifest)
        }
        let currentManifest = current?.manifest ?? Manifest(image: target.image, version: target.version, entries: [])
        var currentPaths = [ContentHash: ManifestPath]()
        for e in current?.manifest.entries ?? [] {
            // A copy outside /etc first: the machine may have changed its /etc.
            if case .file(_, let hash, _) = e.kind, currentPaths[hash].map({ EtcMerge.covers($0) && !EtcMerge.covers(e.path) }) ?? true {
                currentPaths[hash] = e.path
            }
        }
        // Contents neither the current deployment nor a blob directory has: downloaded in order of first use.
        var requests = [BlobRequest]()
        var lastUse = [ContentHash: Int]()
        var requested = Set<ContentHash>()
        for (index, e) in target.entries.enumerated() {
            guard case .file(let size, let hash, let blobSize) = e.kind, size > 0, currentPaths[hash] == nil else { continue }
            lastUse[hash] = index
            if requested.insert(hash).inserted, try BlobSource.find(hash, in: sources.blobDirectories + [sysroot.blobCache]) == nil {
                let delta = sources.deltaIndex?.cheapest(into: hash, from: { currentPaths[$0] != nil }).flatMap { $0.bytes < blobSize ? $0 : nil }
                requests.append(BlobRequest(hash: hash, size: size, blobSize: blobSize, delta: delta))
            }
        }
        report.deltas = requests.filter { $0.delta != nil }.count
        // The sizes of the deltas' bases, which come from the current deployment.
        var baseSizes = [ContentHash: UInt64]()
        for case let base? in requests.map(\.delta?.base) {
            if let path = currentPaths[base], case .file(let size, _, _)? = currentManifest.entry(at: path)?.kind { baseSizes[base] = size }
        }
        try checkSpace(current: currentManifest, downloadBytes: requests.reduce(0) { $0 + $1.downloadBytes })
        try Sys.writeFileAtomically(sysroot.manifestPath(of: name), contents: signed.write)
        operation()
        try Sys.mkdirs(building, mode: 0o700)
        let tree = try RootedTree(root: building)
        let progress = ProgressReporter(onProgress)
        if let fetcher = sources.fetcher, !requests.isEmpty { progress.watch(fetcher, downloading: requests) }
        let downloads = try sources.downloads(requests, batches: false, groups: false, target: target, baseSizes: [:],
                                              directory: sysroot.downloads, window: sources.downloadWindow)
        progress.downloads = downloads
        var entriesDone = 0
        let entryCount = target.entries.count
        defer {
            if let downloads {
                report.download = downloads.finish()
                report.fallbacks += downloads.fallbacks
            }
        }

        var usedInodes = Set<TreeScanner.InodeKey>()
        // The files this build wrote, each verified as it was written, for the final check.
        var written = [ManifestPath: KnownContent]()
        let dirs = DirectoryCursor(tree)
        let currentDirs = current.map { DirectoryCursor($0.tree) }
        // The current deployment's copy of a content, by its first path there.
        let chain = ContentChain(local: { hash, size, sink in
            guard let currentDirs, let path = currentPaths[hash] else { return .absent }
            return try Self.read(from: currentDirs, path, hash: hash, size: size, sink: sink)
        }, localSizes: baseSizes, downloads: downloads,
           blobDirectories: sources.blobDirectories + [sysroot.blobCache],
           whileWaiting: { try progress.report(entriesDone, of: entryCount) },
           fetchOne: sources.fetchOne(target: target, directory: sysroot.downloads + "/fallback"),
           onFallback: { [unowned self] in report.addFallback($0, $1) })
        for (index, e) in target.entries.enumerated() {
            entriesDone = index
            try progress.report(index, of: entryCount)
            let display = tree.display(e.path)
            switch e.kind {
            case .directory:
                if !e.path.isRoot {
                    let (fd, n) = try dirs.parent(of: e.path)
                    if tree.withName(n, { mkdirat(fd, $0, 0o700) }) != 0 { throw UpdError.system("mkdir", display) }
                }
            case .file(let size, let hash, _):
                // /etc is the machine's to change: a file there shares no inode with another deployment.
                if let currentDirs, let old = currentManifest.entry(at: e.path), old.contentHash == hash, old.metadata == e.metadata,
                   !EtcMerge.covers(e.path), try link(e, from: currentDirs, into: dirs, used: &usedInodes) {
                    report.filesLinked += 1
                    report.bytesLinked += size
                } else {
                    let st = try Self.write(e, into: dirs) { fd in try chain.write(hash, size: size, into: fd, display: display) }
                    written[e.path] = KnownContent(hash: hash, of: st)
                    report.filesWritten += 1
                    report.bytesWritten += size
                }
                if let downloads, lastUse[hash] == index { downloads.release(hash) }
            case .hardlink(let first):
                let (fd, n) = try dirs.parent(of: e.path)
                try tree.makeHardlink(to: first, in: fd, named: n, display: display)
            case .symlink, .characterDevice, .blockDevice, .fifo:
                let (fd, n) = try dirs.parent(of: e.path)
                try tree.makeSpecial(e, in: fd, named: n, display: display)
            }
            operation()
        }
        try tree.finishDirectories(of: target)
        operation()
        try progress.report(entryCount, of: entryCount, final: true)
        if CLinux_syncfs(tree.rootFD) != 0 { throw UpdError.system("syncfs", building) }
        let findings = try TreeChecker(manifest: target).checkTree(root: building, known: written)
        guard findings.isEmpty else {
            throw UpdError(.corrupt, "\(building) does not match \(target.image) \(target.version) after the build: "
                + findings.prefix(3).map(\.description).joined(separator: "; ") + " (was the current deployment changed?)")
        }
        operation()
        if let current {
            let merged = try EtcMerge(old: current.manifest, current: current.tree, building: tree, new: target).run()
            report.etcKept = merged.kept
            report.etcConflicts = merged.conflicts
            operation()
        }
        try Sys.rename(building, sysroot.tree(of: name))
        if CLinux_syncfs(tree.rootFD) != 0 { throw UpdError.system("syncfs", sysroot.path) }
        operation()
    }

    /// Refuses before anything is built when the filesystem lacks room for the files that
    /// cannot be shared (whole allocation units), the directories, and the download window.
    private func checkSpace(current: Manifest, downloadBytes: UInt64) throws {
        let space = try FilesystemSpace(path: sysroot.path)
        let unit = max(space.unit, 1)
        var need: UInt64 = 0
        for e in target.entries {
            switch e.kind {
            case .file(let size, let hash, _):
                if let old = current.entry(at: e.path), old.contentHash == hash, old.metadata == e.metadata, !EtcMerge.covers(e.path) { continue }
                need += (size + unit - 1) / unit * unit
            case .directory:
                if !space.isTmpfs { need += unit }
            default:
                break
            }
        }
        need += min(downloadBytes, sources.downloadWindow)
        guard need <= space.free else {
            throw UpdError(.noSpace, "\(sysroot.path): deploying \(target.image) \(target.version) needs \(need) bytes free, "
                + "the filesystem has \(space.free); nothing was changed (gc --sysroot removes old deployments)")
        }
    }

    /// Hardlinks the current deployment's file when it still is what its manifest says (a
    /// regular file of that size, mode, owner and time) and no other entry uses its inode.
    ///
    /// Its link count is not checked: older deployments share unchanged inodes, so a count above
    /// the manifest's is normal. A hardlink planted there to an outside file is harmless: the
    /// build never changes a linked file's metadata (it links only when the metadata is equal),
    /// and the check of the whole built tree refuses a content that is not the manifest's.
    private func link(_ e: ManifestEntry, from current: DirectoryCursor, into dirs: DirectoryCursor, used: inout Set<TreeScanner.InodeKey>) throws -> Bool {
        // (Where the current deployment has no such directory, or a symlink in its place, there is nothing to link.)
        guard case .file(let size, _, _) = e.kind, let sourceDir = (try? current.directory(e.path.parent)) ?? nil else { return false }
        let n = e.path.name
        var st = stat()
        guard current.tree.withName(n, { fstatat(sourceDir, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0, st.st_mode & S_IFMT == S_IFREG,
              UInt64(st.st_size) == size, UInt32(st.st_mode & 0o7777) == e.metadata.mode & 0o7777,
              st.st_uid == e.metadata.uid, st.st_gid == e.metadata.gid, Int64(st.st_mtim.tv_sec) == e.metadata.mtime.seconds,
              UInt32(st.st_mtim.tv_nsec) == e.metadata.mtime.nanoseconds,
              used.insert(TreeScanner.InodeKey(st)).inserted else { return false }
        let (fd, _) = try dirs.parent(of: e.path)
        if dirs.tree.withName(n, { linkat(sourceDir, $0, fd, $0, 0) }) != 0 { throw UpdError.system("link", dirs.tree.display(e.path)) }
        return true
    }

    /// Creates a new file, fills it, and sets its metadata through the descriptor; its status then.
    static func write(_ e: ManifestEntry, into dirs: DirectoryCursor, fill: (Int32) throws -> Void) throws -> stat {
        let display = dirs.tree.display(e.path)
        let (dir, n) = try dirs.parent(of: e.path)
        let fd = dirs.tree.withName(n) { openat(dir, $0, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
        guard fd >= 0 else { throw UpdError.system("create", display) }
        defer { Sys.close(fd) }
        try fill(fd)
        try RootedTree.setMetadata(fd: fd, e.metadata, opened: true, display: display)
        return try Sys.fstat(fd, path: display)
    }

    /// Streams a content from the current deployment to `sink`, reading no more than its size.
    static func read(from dirs: DirectoryCursor, _ path: ManifestPath, hash: ContentHash, size: UInt64,
                      sink: (UnsafeRawBufferPointer) throws -> Void) throws -> ContentChain.LocalCopy {
        let current = dirs.tree
        guard let dir = (try? dirs.directory(path.parent)) ?? nil else { return .damaged }
        let source = current.withName(path.name) { openat(dir, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
        guard source >= 0 else { return .damaged }
        defer { Sys.close(source) }
        return try VerifiedContent.read(source, size: size, hash: hash, display: current.display(path), sink: sink) ? .copied : .damaged
    }
}
