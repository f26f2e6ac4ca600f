import CLinux
import Foundation
import Glibc
import Synchronization

/// Where an apply stands.
public struct ApplyProgress: Sendable {
    public var stepsDone = 0
    public var totalSteps = 0
    /// The downloads' progress, when the apply downloads.
    public var download: FetchProgress?
}

/// Transforms a tree from one image to another where it stands, resumably.
///
/// Progress is journaled at checkpoints: a checkpoint flushes the filesystem and then records
/// how many steps are done, so after a crash or power cut the next run redoes only the steps
/// after the last checkpoint, each of which gives the same result when repeated. Files are
/// written under a temporary name in their own directory, with their metadata, and renamed into
/// place. The installed manifest changes to the new one only when the tree matches it.
final class InPlaceApplier {
    let root: String
    let target: Manifest
    let targetBytes: [UInt8]
    /// The manifest the tree matches, for a tree without an installed-manifest record.
    var from: (manifest: Manifest, bytes: [UInt8])?
    /// Where the contents the tree lacks come from.
    let sources: ResolvedSources
    var blobDirectories: [String] { sources.blobDirectories }
    var fetcher: CurlFetcher? { sources.fetcher }
    /// The deltas the mirrors offer into the target's contents (see `Planner.deltaIndex`); a
    /// resumed apply uses the index its first run saved.
    var deltaIndex: DeltaIndex?
    var downloadWindow: UInt64 { sources.downloadWindow }
    /// Called on the applying thread at most five times a second, also while it waits for a
    /// download; throwing stops the apply at a resumable point.
    var onProgress: ((ApplyProgress) throws -> Void)?
    let faults: FaultInjection

    private let state: StateDirectory
    /// The raw size of every content of both images.
    private var contentSizes = [ContentHash: UInt64]()
    private lazy var targetContents = Set(target.contents.keys)
    private var tree: RootedTree!
    private var workFD: Int32 = -1
    private var operations = 0
    private var report = ApplyReport()
    private var startUsed: UInt64 = 0
    private var peakBase: Int64 = 0
    private var downloads: ContentDownloads?
    private let latestDownload = Locked<FetchProgress?>(nil)
    private var progress = ApplyProgress()
    private var lastProgress = Date.distantPast

    init(root: String, target: VerifiedManifest, sources: ResolvedSources, faults: FaultInjection) {
        self.root = root
        self.target = target.manifest
        self.targetBytes = target.bytes
        self.sources = sources
        self.faults = faults
        deltaIndex = sources.deltaIndex
        state = StateDirectory(root: root)
        report.image = target.manifest.image
        report.version = target.manifest.version
    }

    deinit { if workFD >= 0 { Sys.close(workFD) } }

    /// Plans the move from the installed (or given) manifest, without changing anything.
    static func plan(root: String, from: Manifest, fromBytes: Int, to: Manifest, toBytes: Int,
                            blobDirectories: [String], downloadWindow: UInt64? = nil, deltaIndex: DeltaIndex? = nil,
                            batches: Bool = false, grouped: Bool = false) throws -> ApplyPlan {
        var planner = Planner(from: from, to: to)
        planner.downloadWindow = downloadWindow
        planner.deltaIndex = deltaIndex
        planner.batches = batches
        planner.groupedDownloads = grouped
        planner.fromManifestBytes = UInt64(fromBytes)
        planner.toManifestBytes = UInt64(toBytes)
        planner.blobDirectories = blobDirectories
        let fs = try FilesystemSpace(path: root)
        planner.allocationUnit = fs.unit
        planner.directoryBytes = fs.isTmpfs ? 0 : fs.unit
        let state = StateDirectory(root: root)
        planner.existingStateBytes = try Sys.lstatIfExists(state.installedManifest).map { UInt64($0.st_blocks) * 512 } ?? 0
        return try planner.plan()
    }

    func run() throws -> ApplyReport {
        let start = Date()
        tree = try RootedTree(root: root)
        let targetHash = Blake2b.hash(targetBytes).hex
        try checkStateDirectory()
        let lock = try lockStateDirectory()
        defer { Sys.close(lock) }
        let journal = try ApplyJournal.read(state.journal)
        if let journal, journal.to != targetHash {
            throw UpdError(.usage, "\(state.journal): an apply to another manifest (\(journal.to.prefix(16))…) is in progress; finish it first")
        }
        let installed = try Sys.lstatIfExists(state.installedManifest) != nil ? try Sys.readFile(state.installedManifest) : nil

        if installed == targetBytes {
            // A run killed after the switch may have left its state behind.
            try removeApplyState()
            report.alreadyCurrent = true
            return report
        }
        let old: (manifest: Manifest, bytes: [UInt8])
        if let journal {
            let bytes = try Sys.readFile(state.fromManifest)
            guard Blake2b.hash(bytes).hex == journal.from else {
                throw UpdError(.corrupt, "\(state.fromManifest): does not match the journal")
            }
            old = (try ManifestParser.parse(bytes, source: state.fromManifest), bytes)
            report.resumed = true
        } else if let from {
            old = from
        } else if let installed {
            old = (try ManifestParser.parse(installed, source: state.installedManifest), installed)
        } else {
            throw UpdError(.usage, "\(root) has no installed manifest (\(state.installedManifest)); give the manifest it matches with --from")
        }

        contentSizes = old.manifest.contents.mapValues(\.size).merging(target.contents.mapValues(\.size)) { a, _ in a }
        // A resumed apply plans with the delta index the first run saved.
        if journal != nil {
            deltaIndex = try Sys.lstatIfExists(state.deltaIndex) == nil ? nil
                : try DeltaIndex.parse(Sys.readFile(state.deltaIndex, limit: DeltaIndex.maxBytes), source: state.deltaIndex)
        }
        let batches = journal != nil ? try Sys.lstatIfExists(state.batchMarker) != nil : sources.batchServer != nil && fetcher != nil
        if fetcher == nil || batches { deltaIndex = nil }
        func makePlan(window: UInt64?) throws -> ApplyPlan {
            try Self.plan(root: root, from: old.manifest, fromBytes: old.bytes.count, to: target, toBytes: targetBytes.count,
                          blobDirectories: blobDirectories, downloadWindow: window, deltaIndex: deltaIndex, batches: batches,
                          grouped: batches || sources.groupsDownloads)
        }
        // A resumed apply keeps the window the first run chose: the space it checked assumed it.
        var plan = try makePlan(window: fetcher == nil ? nil : journal?.downloadWindow ?? downloadWindow)
        if plan.contentsToObtain > 0 && fetcher == nil {
            let first = plan.missing.keys.sorted().first!
            throw UpdError(.usage, "\(plan.contentsToObtain) contents (\(plan.bytesToObtain) bytes compressed) are in neither the tree nor the blob directories, e.g. blob \(first.hex); give a mirror to download them from")
        }
        let space = try FilesystemSpace(path: root)
        if journal == nil && space.free < plan.requiredFreeSpace && fetcher != nil && downloadWindow > 0 {
            plan = try makePlan(window: 0)
        }
        if journal == nil && space.free < plan.requiredFreeSpace {
            throw UpdError(.noSpace, "\(root): the apply needs \(plan.requiredFreeSpace) bytes free at its peak, and the filesystem has \(space.free); nothing was changed")
        }
        report.plannedPeakExtraDisk = plan.peakExtraDisk
        report.bytesReused = plan.bytesReused
        startUsed = space.used
        // The excess over the larger tree before anything changes; observed growth adds to it.
        peakBase = Int64(plan.oldTreeBytes) - Int64(max(plan.oldTreeBytes, plan.newTreeBytes))

        var journalRecord = ApplyJournal(from: Blake2b.hash(old.bytes).hex, to: targetHash, plan: plan.fingerprint, done: 0,
                                         downloadWindow: journal?.downloadWindow ?? plan.downloadWindow)
        if let journal {
            // The step list must be the one the journal counts: a different planner (an updated
            // binary) could order the steps differently.
            guard journal.plan == plan.fingerprint, (0...plan.steps.count).contains(journal.done) else {
                throw UpdError(.corrupt, "\(state.journal): records a different plan than this version of updatinator makes; finish the apply with the version that started it")
            }
            journalRecord.done = journal.done
        } else {
            try Sys.mkdirs(state.apply, mode: 0o700)
            try Sys.writeFileAtomically(state.fromManifest, old.bytes)
            try Sys.writeFileAtomically(state.targetManifest, targetBytes)
            if let deltaIndex { try Sys.writeFileAtomically(state.deltaIndex, deltaIndex.encoded()) }
            if batches { try Sys.writeFileAtomically(state.batchMarker, []) }
            try journalRecord.write(state.journal)
        }
        try Sys.mkdirs(state.work, mode: 0o700)
        workFD = try Sys.open(state.work, O_RDONLY | O_DIRECTORY)
        observe()

        if journal != nil { removeLeftoverTemporaries(plan.steps[journalRecord.done...]) }
        let (requests, lastUse) = plan.downloads(from: journalRecord.done)
        report.deltas = requests.filter { $0.delta != nil }.count
        progress.totalSteps = plan.steps.count
        if let fetcher, !requests.isEmpty {
            let previous = fetcher.progress
            fetcher.progress = { [weak self] p in
                self?.latestDownload.withLock { $0 = p }
                previous?(p)
            }
            downloads = try sources.downloads(requests, batches: batches, groups: true, target: target, baseSizes: contentSizes,
                                              directory: state.downloads, window: plan.downloadWindow ?? 0)
        }
        defer { downloads?.finish() }
        for index in journalRecord.done..<plan.steps.count {
            let step = plan.steps[index]
            defer {
                if case .writeFile(let e) = step, let hash = e.contentHash, lastUse[hash] == index { downloads?.release(hash) }
            }
            progress.stepsDone = index
            try reportProgress()
            if case .checkpoint = step {
                try syncFilesystem()
                operation()
                journalRecord.done = index + 1
                try journalRecord.write(state.journal)
                operation()
            } else {
                try execute(step)
            }
        }
        if let d = downloads {
            report.download = d.finish()
            report.fallbacks = d.fallbacks
            downloads = nil
        }
        progress.stepsDone = plan.steps.count
        try reportProgress(final: true)
        try finish()
        report.seconds = Date().timeIntervalSince(start)
        report.operations = operations
        return report
    }

    /// Removes the temporary files that steps to redo may have left when the process died
    /// (their space is not in the plan). A directory that is not there yet holds none.
    private func removeLeftoverTemporaries(_ steps: ArraySlice<ApplyStep>) {
        for step in steps {
            let path: ManifestPath
            switch step {
            case .writeFile(let e), .link(let e), .makeSpecial(let e): path = e.path
            default: continue
            }
            _ = try? tree.inParent(of: path) { fd, _ in
                tree.withName(Self.temporaryName(for: path)) { unlinkat(fd, $0, 0) }
            }
        }
    }

    /// Calls `onProgress`, at most five times a second, and once more at the end.
    private func reportProgress(final: Bool = false) throws {
        guard let onProgress, final || Date().timeIntervalSince(lastProgress) >= 0.2 else { return }
        lastProgress = Date()
        progress.download = latestDownload.withLock { $0 }
        try onProgress(progress)
    }

    /// Refuses a state directory that is not a real directory of its own (a planted symlink).
    private func checkStateDirectory() throws {
        guard let st = try Sys.lstatIfExists(state.directory) else { return }
        guard st.st_mode & S_IFMT == S_IFDIR, st.st_uid == geteuid() else {
            throw UpdError(.corrupt, "\(state.directory): not a directory owned by this user; refusing to use it")
        }
    }

    /// Takes the tree's lock (`.updatinator/lock`, held until the descriptor is closed), failing
    /// at once when another apply holds it: two applies must never interleave their steps.
    private func lockStateDirectory() throws -> Int32 {
        try Sys.mkdirs(state.directory, mode: 0o700)
        return try Sys.lockExclusively(state.directory + "/lock",
                                       busy: "\(root): another updatinator apply is changing this tree (it holds \(state.directory)/lock)")
    }

    /// Makes the target the installed manifest, then removes the apply's state.
    private func finish() throws {
        try Sys.rename(state.targetManifest, state.installedManifest)
        try Sys.fsyncDirectory(state.directory)
        operation()
        try removeApplyState()
    }

    /// Removes the journal (first, so that a crash cannot leave a journal without its files),
    /// then the rest of the apply's state.
    private func removeApplyState() throws {
        guard (try Sys.lstatIfExists(state.apply)) != nil else { return }
        Sys.unlink(state.journal)
        try Sys.fsyncDirectory(state.apply)
        operation()
        if workFD >= 0 { Sys.close(workFD); workFD = -1 }
        do {
            try FileManager.default.removeItem(atPath: state.apply)
        } catch {
            throw UpdError(.io, "\(state.apply): cannot remove the finished apply's state: \(error.localizedDescription)")
        }
    }

    /// Counts one filesystem operation, samples disk use, and honours the test kill switch.
    private func operation() {
        operations += 1
        observe()
        faults.reached(operations)
    }

    private func observe() {
        guard let space = try? FilesystemSpace(path: root) else { return }
        let extra = Int64(space.used) - Int64(startUsed) + peakBase
        if extra > Int64(report.observedPeakExtraDisk) { report.observedPeakExtraDisk = UInt64(extra) }
    }

    private func syncFilesystem() throws {
        if CLinux_syncfs(tree.rootFD) != 0 { throw UpdError.system("syncfs", root) }
    }

    private static func temporaryName(for path: ManifestPath) -> [UInt8] {
        Array(".updatinator-\(Blake2b.hash(path.bytes).hex.prefix(16)).tmp".utf8)
    }

    private func execute(_ step: ApplyStep) throws {
        switch step {
        case .preserve(let hash, let path):
            let size = contentSizes[hash] ?? 0
            try tree.inParent(of: path) { fd, name in
                let rc = tree.withName(name) { n in tree.withName(Array(hash.hex.utf8)) { linkat(fd, n, workFD, $0, 0) } }
                if rc != 0 && errno != EEXIST && errno != ENOENT { throw UpdError.system("link", tree.display(path)) }
            }
            // Nothing has been removed yet: check the old copy now, so that a changed file whose
            // content has no blob stops the apply while the tree is still whole.
            // (A content kept only as a delta's base is not needed: its delta falls back to the blob.)
            if !(try preservedCopyIsIntact(hash, size: size)) {
                _ = tree.withName(Array(hash.hex.utf8)) { unlinkat(workFD, $0, 0) }
                guard try !targetContents.contains(hash) || BlobSource.find(hash, in: blobDirectories) != nil else {
                    throw UpdError(.corrupt, "\(tree.display(path)) differs from the installed manifest and no blob directory has its content \(hash.hex); nothing was removed")
                }
            }
            operation()
        case .remove(let path, let directory):
            try tree.remove(path, directory: directory)
            operation()
        case .makeDirectory(let path):
            try tree.inParent(of: path) { fd, name in
                if tree.withName(name, { mkdirat(fd, $0, 0o700) }) != 0 {
                    guard errno == EEXIST, let st = try RootedTree.status(fd, name, display: tree.display(path)),
                          st.st_mode & S_IFMT == S_IFDIR else { throw UpdError.system("mkdir", tree.display(path)) }
                }
            }
            operation()
        case .writeFile(let e):
            try writeFile(e)
        case .link(let e):
            guard case .hardlink(let target) = e.kind else { return }
            let temporary = Self.temporaryName(for: e.path)
            let targetDir = try tree.openDirectory(target.parent)
            defer { Sys.close(targetDir) }
            try tree.inParent(of: e.path) { fd, name in
                _ = tree.withName(temporary) { unlinkat(fd, $0, 0) }
                let rc = tree.withName(target.name) { t in tree.withName(temporary) { linkat(targetDir, t, fd, $0, 0) } }
                if rc != 0 { throw UpdError.system("link", tree.display(e.path)) }
                try rename(fd, temporary, name, display: tree.display(e.path))
                _ = tree.withName(temporary) { unlinkat(fd, $0, 0) }  // left when both names were already one inode
            }
            operation()
        case .makeSpecial(let e):
            let temporary = Self.temporaryName(for: e.path)
            try tree.inParent(of: e.path) { fd, name in
                _ = tree.withName(temporary) { unlinkat(fd, $0, 0) }
                let display = tree.display(e.path)
                try RootedTree.makeSpecial(e, in: fd, named: temporary, display: display)
                try rename(fd, temporary, name, display: display)
            }
            operation()
        case .setMetadata(let e):
            try tree.inParent(of: e.path) { fd, name in
                try RootedTree.setMetadata(fd, name, e.metadata, isSymlink: e.kind.letter == "l", display: tree.display(e.path))
            }
            operation()
        case .release(let hash):
            _ = tree.withName(Array(hash.hex.utf8)) { unlinkat(workFD, $0, 0) }
            operation()
        case .finishDirectories:
            for e in target.entries.reversed() where e.kind == .directory {
                if e.path.isRoot {
                    try RootedTree.setMetadata(tree.rootFD, [UInt8(ascii: ".")], e.metadata, isSymlink: false, display: root)
                } else {
                    try tree.inParent(of: e.path) { fd, name in
                        try RootedTree.setMetadata(fd, name, e.metadata, isSymlink: false, display: tree.display(e.path))
                    }
                }
            }
            operation()
        case .checkpoint:
            break
        }
    }

    private func rename(_ fd: Int32, _ from: [UInt8], _ to: [UInt8], display: String) throws {
        let rc = tree.withName(from) { f in tree.withName(to) { renameat(fd, f, fd, $0) } }
        if rc != 0 { throw UpdError.system("rename", display) }
    }

    /// Writes a regular file under a temporary name, from the work area or a blob directory,
    /// verifying its hash, sets its metadata, and renames it into place.
    private func writeFile(_ e: ManifestEntry) throws {
        guard case .file(let size, let hash, _) = e.kind else { return }
        let temporary = Self.temporaryName(for: e.path)
        let display = tree.display(e.path)
        try tree.inParent(of: e.path) { dir, name in
            _ = tree.withName(temporary) { unlinkat(dir, $0, 0) }
            let fd = tree.withName(temporary) { openat(dir, $0, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
            guard fd >= 0 else { throw UpdError.system("create", display) }
            var renamed = false
            defer {
                Sys.close(fd)
                if !renamed { _ = tree.withName(temporary) { unlinkat(dir, $0, 0) } }
            }
            operation()
            if size > 0 { try copyContent(hash, size: size, into: fd, display: display) }
            report.bytesWritten += size
            try RootedTree.setMetadata(fd: fd, e.metadata, display: display)
            operation()
            try rename(dir, temporary, name, display: display)
            renamed = true
            operation()
        }
    }

    /// Whether the work area's copy of a content is a regular file of the right size and hash.
    private func preservedCopyIsIntact(_ hash: ContentHash, size: UInt64) throws -> Bool {
        try readPreserved(hash, size: size) { _ in }
    }

    /// Streams the work area's copy of a content to `sink`, reading no more than its size; returns
    /// false when there is no copy, or it is not a regular file of that size and hash.
    private func readPreserved(_ hash: ContentHash, size: UInt64, sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        // O_NONBLOCK: a fifo planted where a file was must not hang the apply.
        let fd = tree.withName(Array(hash.hex.utf8)) { openat(workFD, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
        guard fd >= 0 else { return false }
        defer { Sys.close(fd) }
        return try VerifiedContent.read(fd, size: size, hash: hash, display: "preserved \(hash.hex)", sink: sink)
    }

    /// Copies a content into `fd`: from the work area when the old tree had it, else from the
    /// first blob directory whose blob verifies. A source that fails verification is skipped.
    private func copyContent(_ hash: ContentHash, size: UInt64, into fd: Int32, display: String) throws {
        var problems = [String]()
        if try readPreserved(hash, size: size, sink: { try Sys.writeAll(fd, $0, path: display) }) { return }
        if tree.withName(Array(hash.hex.utf8), { faccessat(workFD, $0, F_OK, AT_SYMLINK_NOFOLLOW) }) == 0 {
            problems.append("the old tree's copy does not match its manifest")
            try restart(fd, display: display)
        }
        if let downloads, downloads.isExpected(hash) {
            try downloads.write(hash, into: fd, display: display, base: { base in
                var bytes = [UInt8]()
                return try self.readPreserved(base, size: self.contentSizes[base] ?? 0) { bytes += $0 } ? bytes : nil
            }, whileWaiting: { try self.reportProgress() })
            return
        }
        for directory in blobDirectories {
            let store = BlobStore(directory: directory)
            guard (try Sys.lstatIfExists(store.path(for: hash))) != nil else { continue }
            do {
                try store.read(hash, size: size) { try Sys.writeAll(fd, $0, path: display) }
                return
            } catch let e as UpdError where e.code == .corrupt {
                problems.append(e.message)
                try restart(fd, display: display)
            }
        }
        throw UpdError(.corrupt, "\(display): no intact source for content \(hash.hex)"
            + (problems.isEmpty ? "" : " (" + problems.joined(separator: "; ") + ")"))
    }

    private func restart(_ fd: Int32, display: String) throws {
        guard ftruncate(fd, 0) == 0, lseek(fd, 0, SEEK_SET) == 0 else { throw UpdError.system("ftruncate", display) }
    }
}
