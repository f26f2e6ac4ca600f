import CLinux
import Foundation
import Glibc
import Synchronization

/// Transforms a tree from one image to another where it stands, resumably.
///
/// Progress is journaled at checkpoints: a checkpoint flushes the filesystem and then records
/// how many steps are done, so after a crash or power cut the next run redoes only the steps
/// after the last checkpoint, each of which gives the same result when repeated. Files are
/// written under a temporary name in their own directory, with their metadata, and renamed into
/// place. The installed manifest changes to the new one only when the tree matches it.
final class InPlaceApplier {
    let root: String
    /// The image to move to; its signed text is made again from it for the state directory.
    let signed: VerifiedManifest
    var target: Manifest { signed.manifest }
    /// The manifest the tree matches, for a tree without an installed-manifest record.
    var from: Manifest?
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
    /// What of the tree is the machine's (a running system's root), not the image's.
    var machine = MachinePaths.none

    private let state: StateDirectory
    /// The manifests the steps are planned from and the result checked against: the images as
    /// `machine` leaves them to the apply (`MachinePaths.planned`); the images themselves when
    /// the whole tree is theirs.
    private var planned: (old: Manifest, new: Manifest)!
    private lazy var targetContents = Set(planned.new.contents.keys)
    /// The inodes of both images, for counting the names a kept file may have.
    private lazy var newGroups = InodeGroups(planned.new)
    private var oldGroups: InodeGroups?
    private var tree: RootedTree!
    private lazy var writingDirectories = DirectoryCursor(tree)
    /// Whether the filesystem swaps names (`rename`).
    private var exchangeWorks = true
    /// The parents of the entries the remove steps remove (a directory removed is never asked
    /// for again: asking for its parent closes it).
    private lazy var removingDirectories = DirectoryCursor(tree)
    /// The state directory, `apply/` in it and the work area, opened from the root without
    /// following symlinks (`StateDirectory.open`); -1 while not open.
    private var stateFD: Int32 = -1
    private var applyFD: Int32 = -1
    private var workFD: Int32 = -1
    /// During a takeover, until its switch: the work area of the apply taken over.
    private var oldWorkFD: Int32 = -1
    private var operations = 0
    private var report = ApplyReport()
    /// The files this run wrote, each verified as it was written, for the final check.
    private var written = [ManifestPath: KnownContent]()
    private var startUsed: UInt64 = 0
    /// When `run` began.
    private var started = Date()
    private var peakBase: Int64 = 0
    private var downloads: ContentDownloads?
    /// Contents to download that the run this one resumes had already written to a path of the
    /// new image after its last checkpoint, found intact there: the steps it redoes copy them
    /// from that path instead of downloading them again.
    private var writtenEarlier = [ContentHash: ManifestPath]()
    /// The contents the plan keeps a copy of in the work area (only these can be there), with
    /// their sizes: the old contents the writes copy and the bases of the deltas.
    private var preserved = [ContentHash: UInt64]()
    /// The contents the writes take from the blob directories, read ahead on another thread.
    private var prefetch: ContentPrefetch?
    private var writeback: EarlyWriteback?
    /// Where the writes take their contents from (`makeContentChain`).
    private var contentChain: ContentChain!
    private lazy var progress = ProgressReporter(onProgress)
    private var stepsDone = 0
    private var totalSteps = 0

    init(root: String, target: VerifiedManifest, sources: ResolvedSources, faults: FaultInjection) {
        self.root = root
        signed = target
        self.sources = sources
        self.faults = faults
        deltaIndex = sources.deltaIndex
        state = StateDirectory(root: root)
        report.image = target.manifest.image
        report.version = target.manifest.version
    }

    deinit { for fd in [stateFD, applyFD, workFD, oldWorkFD] where fd >= 0 { Sys.close(fd) } }

    /// The bytes of the planned manifests the state directory keeps beside the images' (counted
    /// with the new image's in the plan): none when they are the images themselves.
    static func plannedManifestBytes(_ planned: (old: Manifest, new: Manifest), images: (old: Manifest, new: Manifest)) -> Int {
        planned == images ? 0 : ManifestWriter.measure(planned.old).byteCount + ManifestWriter.measure(planned.new).byteCount
    }

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
        started = Date()
        tree = try RootedTree(root: root)
        let targetHash = signed.hash.hex
        stateFD = try state.open(in: tree, create: true)!
        let lock = try Sys.lockExclusively(in: stateFD, StateDirectory.lockName, display: "\(state.directory)/\(StateDirectory.lockName)",
                                           busy: "\(root): another updatinator apply is changing this tree (it holds \(state.directory)/lock)")
        defer { Sys.close(lock) }
        applyFD = try state.open(StateDirectory.applyDirectory, in: tree, create: false) ?? -1
        var found = applyFD < 0 ? nil : try ApplyJournal.read(in: applyFD, display: state.journal)
        // A takeover stopped before its switch leaves what it prepared, which starts again.
        try tree.removeTree(stateFD, Array(StateDirectory.nextApplyDirectory[0].utf8), display: state.nextApply)
        let leftOver = applyFD >= 0
        var installed = try Sys.readFileIfExists(in: stateFD, StateDirectory.installedName, display: state.installedManifest,
                                                 limit: ManifestParser.maxManifestBytes)
        // `finish` installs the target by renaming its manifest out of `apply/`, then removes the
        // rest: a journal without that manifest is an apply that ended, stopped while cleaning up
        // (its target is the installed manifest).
        if let journal = found, try RootedTree.status(applyFD, Array(StateDirectory.targetName.utf8), display: state.targetManifest) == nil {
            guard installed.map({ Blake2b.hash($0).hex }) == journal.to else {
                throw UpdError(.corrupt, "\(state.targetManifest): missing, though the journal records an apply in progress to it")
            }
            try removeApplyState()
            found = nil
        }
        // An apply in progress to another target is taken over, from the tree as it left it:
        // its target may never complete (a release withdrawn, a content no source has).
        let takesOver = found.map { $0.to != targetHash } ?? false
        let journal = takesOver ? nil : found
        // (The images it moved between matter only to /etc's merge.)
        var unfinished: Manifest?
        if takesOver {
            if machine.isNone, try RootedTree.status(applyFD, Array(StateDirectory.plannedFromName.utf8), display: state.plannedFrom) != nil {
                throw UpdError(.usage, "\(state.journal): the apply in progress leaves part of the tree to the machine (it was started as a running system's, --live); take it over so")
            }
            report.superseded = found!.to
            if machine.mergesEtc {
                unfinished = try Sys.readFileIfExists(in: applyFD, StateDirectory.targetName, display: state.targetManifest, limit: ManifestParser.maxManifestBytes)
                    .map { try ManifestParser.parse($0, source: state.targetManifest, sharingPathsWith: target) }
            }
            // Its work area stays until the switch: the contents there may be the tree's only
            // copies, should this apply be refused and that one resumed. Its partial downloads
            // are of no use here, and their space is this apply's.
            oldWorkFD = try state.open(StateDirectory.applyDirectory + [StateDirectory.workName], in: tree, create: false) ?? -1
            try tree.removeTree(applyFD, Array(StateDirectory.downloadsName.utf8), display: state.downloads)
            Sys.close(applyFD)
            applyFD = -1
        }
        let applyDirectory = takesOver ? StateDirectory.nextApplyDirectory : StateDirectory.applyDirectory

        if found == nil, let installed, Blake2b.hash(installed) == signed.hash {
            // A run killed after the switch may have left its state behind: finishing it is
            // the end of that apply, not "already there".
            try removeApplyState()
            if leftOver { report.resumed = true } else { report.alreadyCurrent = true }
            return report
        }
        let old: Manifest
        if takesOver {
            let base = machine.mergesEtc ? try installed.map { try ManifestParser.parse($0, source: state.installedManifest, sharingPathsWith: target) } : nil
            old = try ApplyTakeover(root: root, tree: tree, machine: machine).scan(installed: base, unfinished: unfinished, target: target)
            unfinished = nil
        } else if let journal {
            guard let bytes = try Sys.readFileIfExists(in: applyFD, StateDirectory.fromName, display: state.fromManifest, limit: ManifestParser.maxManifestBytes) else {
                throw UpdError(.corrupt, "\(state.fromManifest): missing, though the journal records an apply in progress")
            }
            guard Blake2b.hash(bytes).hex == journal.from else {
                throw UpdError(.corrupt, "\(state.fromManifest): does not match the journal")
            }
            old = try ManifestParser.parse(bytes, source: state.fromManifest, sharingPathsWith: target)
            report.resumed = true
        } else if let from {
            old = from
        } else if let installed {
            old = try ManifestParser.parse(installed, source: state.installedManifest, sharingPathsWith: target)
        } else {
            throw state.nothingInstalled
        }
        // (Manifests' text is not kept: a large image's is tens of megabytes. The old manifest's
        // is made again from the parsed one where the state directory needs it.)
        installed = nil
        let (oldHash, oldByteCount) = ManifestWriter.measure(old)

        planned = try plannedManifests(old: old, resumed: journal != nil)
        let plannedBytes = Self.plannedManifestBytes(planned, images: (old, target))
        let savesPlanned = plannedBytes > 0  // (a manifest's text is never empty)
        oldGroups = InodeGroups(planned.old)
        // A resumed apply plans with the delta index the first run saved.
        if journal != nil {
            deltaIndex = try Sys.readFileIfExists(in: applyFD, StateDirectory.deltasName, display: state.deltaIndex, limit: DeltaIndex.maxBytes)
                .map { try DeltaIndex.parse($0, source: state.deltaIndex) }
        }
        let batches = journal != nil ? try RootedTree.status(applyFD, Array(StateDirectory.batchesName.utf8), display: state.batchMarker) != nil
            : sources.batchServer != nil && fetcher != nil
        if fetcher == nil || batches { deltaIndex = nil }
        func makePlan(window: UInt64?) throws -> ApplyPlan {
            // The state files: both images, and the planned manifests when they differ (counted with the new one).
            try Self.plan(root: root, from: planned.old, fromBytes: oldByteCount, to: planned.new, toBytes: signed.byteCount + plannedBytes,
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
        for case .preserve(let hash, let path) in plan.steps {
            if case .file(let size, _, _)? = planned.old.entry(at: path)?.kind { preserved[hash] = size }
        }
        report.bytesReused = plan.bytesReused
        startUsed = space.used
        // The excess over the larger tree before anything changes; observed growth adds to it.
        peakBase = Int64(plan.oldTreeBytes) - Int64(max(plan.oldTreeBytes, plan.newTreeBytes))

        var journalRecord = ApplyJournal(from: oldHash.hex, to: targetHash, plan: plan.fingerprint, done: 0,
                                         downloadWindow: journal?.downloadWindow ?? plan.downloadWindow)
        if let journal {
            // The step list must be the one the journal counts: a different planner (an updated
            // binary) could order the steps differently.
            guard journal.plan == plan.fingerprint, (0...plan.steps.count).contains(journal.done) else {
                throw UpdError(.corrupt, "\(state.journal): records a different plan than this version of updatinator makes; finish the apply with the version that started it")
            }
            journalRecord.done = journal.done
        }
        var (requests, lastUse) = plan.downloads(from: journalRecord.done)
        // Reading ahead starts while the kept entries are checked.
        startPrefetch(plan.steps[journalRecord.done...], downloading: Set(requests.map(\.hash)))
        defer { prefetch?.finish() }
        writeback = EarlyWriteback(filesystemOf: tree.rootFD)
        defer { writeback?.finish() }
        if journal == nil {
            // The tree must still be the old image where the apply keeps what is there.
            try checkKeptEntries(old: planned.old, steps: plan.steps)
        }
        // Every directory of the apply's state is checked (or made) before anything is written there.
        if applyFD < 0 { applyFD = try state.open(applyDirectory, in: tree, create: true)! }
        workFD = try state.open(applyDirectory + [StateDirectory.workName], in: tree, create: true)!
        if fetcher != nil && !requests.isEmpty {
            // The download streams write below this path.
            Sys.close(try state.open(applyDirectory + [StateDirectory.downloadsName], in: tree, create: true)!)
        }
        if journal == nil {
            // What a takeover scanned is on disk before a journal says the tree is so.
            if takesOver { try syncFilesystem() }
            try Sys.writeFileAtomically(in: applyFD, StateDirectory.fromName, display: state.fromManifest) { try ManifestWriter.write(old, into: $0) }
            try Sys.writeFileAtomically(in: applyFD, StateDirectory.targetName, display: state.targetManifest, contents: signed.write)
            if savesPlanned {
                try Sys.writeFileAtomically(in: applyFD, StateDirectory.plannedFromName, display: state.plannedFrom) { try ManifestWriter.write(planned.old, into: $0) }
                try Sys.writeFileAtomically(in: applyFD, StateDirectory.plannedToName, display: state.plannedTo) { try ManifestWriter.write(planned.new, into: $0) }
            }
            if let deltaIndex {
                try Sys.writeFileAtomically(in: applyFD, StateDirectory.deltasName, display: state.deltaIndex, deltaIndex.encoded())
            }
            if batches { try Sys.writeFileAtomically(in: applyFD, StateDirectory.batchesName, display: state.batchMarker, []) }
            // A run stopped before its journal may have left files this apply does not write,
            // which a resume would take for its own.
            for (name, written) in [(StateDirectory.plannedFromName, savesPlanned), (StateDirectory.plannedToName, savesPlanned),
                                    (StateDirectory.deltasName, deltaIndex != nil), (StateDirectory.batchesName, batches)] where !written {
                if unlinkat(applyFD, name, 0) != 0 && errno != ENOENT { throw UpdError.system("unlink", "\(state.apply)/\(name)") }
            }
            try journalRecord.write(in: applyFD, display: state.journal)
            if takesOver { try switchToNextApply() }
        }
        observe()

        if journal != nil {
            removeLeftoverTemporaries(plan.steps[journalRecord.done...])
            // Files are written after every removal and new directory: a run stopped before
            // that wrote none (and the tree's directories may still be the old image's).
            let wrote = !plan.steps[journalRecord.done...].contains { step in
                switch step {
                case .remove, .makeDirectory: true
                default: false
                }
            }
            if fetcher != nil && wrote {
                writtenEarlier = try contentsWrittenEarlier(plan.steps, among: Set(requests.map(\.hash)))
                requests.removeAll { writtenEarlier[$0.hash] != nil }
                lastUse = lastUse.filter { writtenEarlier[$0.key] == nil }
            }
        }
        report.deltas = requests.filter { $0.delta != nil }.count
        totalSteps = plan.steps.count
        if let fetcher, !requests.isEmpty {
            progress.watch(fetcher, downloading: requests)
            downloads = try sources.downloads(requests, batches: batches, groups: true, target: target, baseSizes: preserved,
                                              directory: state.downloads, window: plan.downloadWindow ?? 0)
            progress.downloads = downloads
        }
        defer { downloads?.finish() }
        contentChain = makeContentChain()
        for index in journalRecord.done..<plan.steps.count {
            let step = plan.steps[index]
            defer {
                if case .writeFile(let e) = step, let hash = e.contentHash, lastUse[hash] == index { downloads?.release(hash) }
            }
            stepsDone = index
            try reportProgress()
            if case .checkpoint = step {
                try syncFilesystem()
                operation()
                journalRecord.done = index + 1
                try journalRecord.write(in: applyFD, display: state.journal)
                operation()
            } else {
                try execute(step)
            }
        }
        if let d = downloads {
            report.download = d.finish()
            report.fallbacks += d.fallbacks
            downloads = nil
        }
        stepsDone = plan.steps.count
        try reportProgress(final: true)
        try checkResult()
        try finish()
        report.seconds = Date().timeIntervalSince(started)
        report.operations = operations
        return report
    }

    /// The manifests to plan with: those a resumed apply saved (the tree's /etc has changed
    /// since it was merged), else the images as `machine` leaves them to the apply.
    private func plannedManifests(old: Manifest, resumed: Bool) throws -> (old: Manifest, new: Manifest) {
        if resumed, let from = try Sys.readFileIfExists(in: applyFD, StateDirectory.plannedFromName, display: state.plannedFrom, limit: ManifestParser.maxManifestBytes) {
            guard !machine.isNone else {
                throw UpdError(.usage, "\(state.journal): the apply in progress leaves part of the tree to the machine (it was started as a running system's, --live); run it again so")
            }
            guard let to = try Sys.readFileIfExists(in: applyFD, StateDirectory.plannedToName, display: state.plannedTo, limit: ManifestParser.maxManifestBytes) else {
                throw UpdError(.corrupt, "\(state.plannedTo): missing, though \(state.plannedFrom) is there")
            }
            let plannedOld = try ManifestParser.parse(from, source: state.plannedFrom, sharingPathsWith: target)
            return (plannedOld, try ManifestParser.parse(to, source: state.plannedTo, sharingPathsWith: plannedOld))
        }
        if resumed || machine.isNone { return (old, target) }
        let merged = try machine.planned(root: root, old: old, new: target)
        report.etcKept = merged.etc.kept
        report.etcConflicts = merged.etc.conflicts
        return (merged.old, merged.new)
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
            // (A directory that cannot be swapped back stays, for the step to meet.)
            _ = try? tree.inParent(of: path) { fd, name in
                try Self.removeTemporary(Self.temporaryName(for: path), standingFor: name, in: fd, tree: tree, display: tree.display(path))
            }
        }
    }

    private func reportProgress(final: Bool = false) throws {
        try progress.report(stepsDone, of: totalSteps, final: final)
    }

    /// Refuses, before anything changes, a tree that is not the old image where the apply keeps
    /// what is there: a path to which both images give one type must have it (a fifo planted
    /// where a file stays is `.unsafe`), and a file whose metadata changes in place must have
    /// no link that the manifests do not account for (`links(of:)`). Kept paths are otherwise
    /// never written, so apply would leave such a thing in place, or change an outside file's
    /// metadata through a planted hardlink.
    private func checkKeptEntries(old: Manifest, steps: [ApplyStep]) throws {
        let dirs = DirectoryCursor(tree)
        for e in planned.new.entries where !e.path.isRoot {
            guard let o = old.entry(at: e.path), RootedTree.fileType(of: o.kind) == RootedTree.fileType(of: e.kind) else { continue }
            // Opening a directory refuses another mount there: a mount the apply would meet later.
            if e.kind == .directory { _ = try dirs.directory(e.path) }
            let display = tree.display(e.path)
            guard let dir = try dirs.directory(e.path.parent), let st = try RootedTree.status(dir, e.path.name, display: display) else {
                throw UpdError(.corrupt, "\(display): missing, though the installed manifest lists a \(o.kind.typeName) there; nothing was changed",
                               path: display)
            }
            guard st.st_mode & S_IFMT == RootedTree.fileType(of: o.kind) else {
                let expected = o.kind.letter == "h" ? "file" : o.kind.typeName  // a hardlink is a name of a file
                throw UpdError(.unsafe, "\(display): is a \(RootedTree.typeName(ofMode: st.st_mode)), not the \(expected) the installed manifest "
                               + "lists; refusing to follow or keep it, nothing was changed", path: display)
            }
        }
        for case .setMetadata(let e) in steps where e.kind.letter == "f" {
            let (fd, name) = try dirs.parent(of: e.path)
            Sys.close(try tree.openEntry(fd, name, expecting: e.kind, links: links(of: e), display: tree.display(e.path)))
        }
    }

    /// How many links the entry `e` may have, given its status: nil for a directory, 1 for a
    /// symlink, device or fifo, and for a regular file the names of its inode that the manifests
    /// account for, each counted when it is that inode now: its own name (the status is that
    /// name's), the other names the old and the new image give it, and the work area's copy
    /// (only a preserved content has one), and during a takeover the old work area's.
    private func links(of e: ManifestEntry) -> ((stat) throws -> Int)? {
        guard case .file(_, let hash, _) = e.kind else { return e.kind == .directory ? nil : { _ in 1 } }
        return { [self] st in
            let others = Set((newGroups.group(at: e.path)?.paths ?? []) + (oldGroups?.group(at: e.path)?.paths ?? [])).subtracting([e.path])
            var count = 1
            func isSame(_ other: stat?) -> Bool { other.map { $0.st_dev == st.st_dev && $0.st_ino == st.st_ino } ?? false }
            let dirs = others.isEmpty ? nil : DirectoryCursor(tree)
            for name in others.sorted() {
                guard let dir = try dirs!.directory(name.parent) else { continue }
                if isSame(try RootedTree.status(dir, name.name, display: tree.display(name))) { count += 1 }
            }
            if workFD >= 0, preserved[hash] != nil,
               isSame(try RootedTree.status(workFD, Array(hash.hex.utf8), display: "\(state.work)/\(hash.hex)")) { count += 1 }
            if oldWorkFD >= 0, isSame(try RootedTree.status(oldWorkFD, Array(hash.hex.utf8), display: "\(state.work)/\(hash.hex)")) { count += 1 }
            return count
        }
    }

    /// Starts reading ahead the contents the steps' writes take from the blob directories: those
    /// neither preserved in the work area nor downloaded, each no larger than the window.
    private func startPrefetch(_ steps: ArraySlice<ApplyStep>, downloading: Set<ContentHash>) {
        let window = ContentPrefetch.defaultWindow
        let planned = steps.compactMap { step -> (hash: ContentHash, size: UInt64)? in
            guard case .writeFile(let e) = step, case .file(let size, let hash, _) = e.kind, size > 0, size <= window,
                  preserved[hash] == nil, !downloading.contains(hash) else { return nil }
            return (hash, size)
        }
        if !planned.isEmpty && !blobDirectories.isEmpty {
            prefetch = ContentPrefetch(planned: planned, blobDirectories: blobDirectories, window: window)
        }
    }

    /// Refuses to make the target the installed manifest unless the tree matches it as `fsck`
    /// checks it (`TreeChecker`): every entry, its type, metadata, links and content.
    private func checkResult() throws {
        let findings = try TreeChecker(manifest: planned.new).checkTree(root: root, known: written, excluding: machine.kept)
        guard findings.isEmpty else {
            throw UpdError(.corrupt, "\(root) does not match \(target.image) \(target.version) after the apply: "
                + findings.prefix(3).map(\.description).joined(separator: "; ") + (findings.count > 3 ? " (and \(findings.count - 3) more)" : ""),
                           path: root)
        }
    }

    /// Puts the state a takeover prepared in place of the old apply's, in one step: a crash
    /// leaves either whole. The descriptors open in it stay valid. Then removes the old one.
    private func switchToNextApply() throws {
        let (next, current) = (StateDirectory.nextApplyDirectory[0], StateDirectory.applyDirectory[0])
        if CLinux_exchange(stateFD, next, current) != 0 { throw UpdError.system("rename", "\(state.nextApply) <-> \(state.apply)") }
        try Sys.fsync(stateFD, path: state.directory)
        operation()
        if oldWorkFD >= 0 { Sys.close(oldWorkFD) }
        oldWorkFD = -1
        try tree.removeTree(stateFD, Array(next.utf8), display: state.nextApply)
        operation()
    }

    /// Makes the target the installed manifest, then removes the apply's state.
    private func finish() throws {
        if renameat(applyFD, StateDirectory.targetName, stateFD, StateDirectory.installedName) != 0 {
            throw UpdError.system("rename", "\(state.targetManifest) -> \(state.installedManifest)")
        }
        try Sys.fsync(stateFD, path: state.directory)
        operation()
        try removeApplyState()
    }

    /// Removes the journal (first, so that a crash cannot leave a journal without its files),
    /// then the rest of the apply's state.
    private func removeApplyState() throws {
        guard applyFD >= 0 else { return }
        _ = unlinkat(applyFD, StateDirectory.journalName, 0)
        try Sys.fsync(applyFD, path: state.apply)
        operation()
        for fd in [workFD, applyFD] where fd >= 0 { Sys.close(fd) }
        (workFD, applyFD) = (-1, -1)
        try tree.removeTree(stateFD, Array(StateDirectory.applyDirectory[0].utf8), display: state.apply)
    }

    /// Counts one filesystem operation, samples disk use, and honours the test kill switch.
    private func operation() {
        operations += 1
        observe()
        faults.reached(operations)
    }

    private func observe() {
        guard let space = try? FilesystemSpace(fd: tree.rootFD, display: root) else { return }
        let extra = Int64(space.used) - Int64(startUsed) + peakBase
        if extra > Int64(report.observedPeakExtraDisk) { report.observedPeakExtraDisk = UInt64(extra) }
    }

    private func syncFilesystem() throws {
        if CLinux_syncfs(tree.rootFD) != 0 { throw UpdError.system("syncfs", root) }
    }

    static func temporaryName(for path: ManifestPath) -> [UInt8] {
        Array(".updatinator-\(Blake2b.hash(path.bytes).hex.prefix(16)).tmp".utf8)
    }

    /// Removes the temporary `temporary` in the directory `fd`, which stands for `name` there
    /// (`display`). A directory under it was swapped out of `name` by a `rename` stopped
    /// halfway: back it goes. False when a directory is still there (no name stands for it, or
    /// it could not be swapped back).
    @discardableResult
    static func removeTemporary(_ temporary: [UInt8], standingFor name: [UInt8]?, in fd: Int32, tree: RootedTree, display: String) throws -> Bool {
        if tree.withName(temporary, { unlinkat(fd, $0, 0) }) == 0 || errno == ENOENT { return true }
        guard errno == EISDIR else { throw UpdError.system("unlink", display) }
        guard let name, tree.withName(temporary, { t in tree.withName(name) { CLinux_exchange(fd, t, $0) } }) == 0 else { return false }
        if tree.withName(temporary, { unlinkat(fd, $0, 0) }) != 0 { throw UpdError.system("unlink", display) }
        return true
    }

    private func execute(_ step: ApplyStep) throws {
        switch step {
        case .preserve(let hash, let path):
            let size = preserved[hash] ?? 0
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
            try tree.remove(path, directory: directory, through: removingDirectories)
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
            try inParentWriting(e.path) { fd, name in
                _ = tree.withName(temporary) { unlinkat(fd, $0, 0) }
                let rc = tree.withName(target.name) { t in tree.withName(temporary) { linkat(targetDir, t, fd, $0, 0) } }
                if rc != 0 { throw UpdError.system("link", tree.display(e.path)) }
                try rename(fd, temporary, name, display: tree.display(e.path))
                _ = tree.withName(temporary) { unlinkat(fd, $0, 0) }  // left when both names were already one inode
            }
            operation()
        case .makeSpecial(let e):
            let temporary = Self.temporaryName(for: e.path)
            try inParentWriting(e.path) { fd, name in
                _ = tree.withName(temporary) { unlinkat(fd, $0, 0) }
                let display = tree.display(e.path)
                try tree.makeSpecial(e, in: fd, named: temporary, display: display)
                try rename(fd, temporary, name, display: display)
            }
            operation()
        case .setMetadata(let e):
            try inParentWriting(e.path) { fd, name in
                try tree.setMetadata(fd, name, expecting: e.kind, links: links(of: e), e.metadata, display: tree.display(e.path))
            }
            operation()
        case .release(let hash):
            _ = tree.withName(Array(hash.hex.utf8)) { unlinkat(workFD, $0, 0) }
            operation()
        case .finishDirectories:
            try tree.finishDirectories(of: planned.new)
            operation()
        case .checkpoint:
            break
        }
    }

    /// `tree.inParent` for the steps that write entries, through one cursor: they come after
    /// every removal and new directory and in path order, so most reuse the parent left open.
    private func inParentWriting<T>(_ path: ManifestPath, _ body: (Int32, [UInt8]) throws -> T) throws -> T {
        guard let fd = try writingDirectories.directory(path.parent) else {
            throw UpdError.system("openat", tree.display(path.parent), errno: ENOENT)
        }
        return try body(fd, path.name)
    }

    /// Puts the entry `from` at `to` in the directory `fd`, atomically. An entry already at `to`
    /// is swapped with it (`RENAME_EXCHANGE`) and then removed from `from`, rather than renamed
    /// over: ext4 writes out a file renamed over another there and then (`auto_da_alloc`), one
    /// file at a time, where the next checkpoint's syncfs writes them all at once.
    private func rename(_ fd: Int32, _ from: [UInt8], _ to: [UInt8], display: String) throws {
        let swapped = exchangeWorks && tree.withName(from) { f in tree.withName(to) { CLinux_exchange(fd, f, $0) } } == 0
        if !swapped {
            if errno == EINVAL { exchangeWorks = false }
            let rc = tree.withName(from) { f in tree.withName(to) { renameat(fd, f, fd, $0) } }
            if rc != 0 { throw UpdError.system("rename", display) }
            return
        }
        if tree.withName(from, { unlinkat(fd, $0, 0) }) != 0 {
            let err = errno
            // A directory was there (which renaming over refuses): put it back (or, stopped
            // before that, `removeLeftoverTemporaries` does).
            if tree.withName(from, { f in tree.withName(to) { CLinux_exchange(fd, f, $0) } }) != 0 {
                throw UpdError.system("rename", display)
            }
            throw UpdError.system("rename", display, errno: err)
        }
    }

    /// Writes a regular file under a temporary name, from the work area or a blob directory,
    /// verifying its hash, sets its metadata, and renames it into place.
    private func writeFile(_ e: ManifestEntry) throws {
        guard case .file(let size, let hash, _) = e.kind else { return }
        let temporary = Self.temporaryName(for: e.path)
        let display = tree.display(e.path)
        try inParentWriting(e.path) { dir, name in
            func create() -> Int32 { tree.withName(temporary) { openat(dir, $0, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) } }
            var fd = create()
            if fd < 0 && errno == EEXIST {  // left by a run stopped while writing it
                _ = tree.withName(temporary) { unlinkat(dir, $0, 0) }
                fd = create()
            }
            guard fd >= 0 else { throw UpdError.system("create", display) }
            var renamed = false
            defer {
                Sys.close(fd)
                if !renamed { _ = tree.withName(temporary) { unlinkat(dir, $0, 0) } }
            }
            operation()
            try contentChain.write(hash, size: size, into: fd, display: display)
            if report.firstDownloadSeconds == nil, downloads?.isExpected(hash) == true {
                report.firstDownloadSeconds = Date().timeIntervalSince(started)
            }
            report.bytesWritten += size
            writeback?.wrote(size)
            try RootedTree.setMetadata(fd: fd, e.metadata, opened: true, display: display)
            operation()
            try rename(dir, temporary, name, display: display)
            renamed = true
            written[e.path] = KnownContent(hash: hash, of: try Sys.fstat(fd, path: display))
            operation()
        }
    }

    /// Contents among `wanted` that a path the steps write them to already holds, with the
    /// new image's size and time and, checked by hash, the content itself: what the run a
    /// resumed apply continues wrote after its last checkpoint (each such file was verified
    /// and renamed into place whole; a power cut may have lost it, which the hash check finds).
    private func contentsWrittenEarlier(_ steps: [ApplyStep], among wanted: Set<ContentHash>) throws -> [ContentHash: ManifestPath] {
        var found = [ContentHash: ManifestPath]()
        let dirs = DirectoryCursor(tree)
        let entries = steps.compactMap { step -> ManifestEntry? in
            guard case .writeFile(let e) = step, let hash = e.contentHash, wanted.contains(hash) else { return nil }
            return e
        }
        for e in entries.sorted(by: { $0.path < $1.path }) {
            guard case .file(let size, let hash, _) = e.kind, found[hash] == nil, let dir = try dirs.directory(e.path.parent),
                  let st = try RootedTree.status(dir, e.path.name, display: tree.display(e.path)), st.st_mode & S_IFMT == S_IFREG,
                  UInt64(st.st_size) == size,
                  Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: UInt32(st.st_mtim.tv_nsec)) == e.metadata.mtime
            else { continue }
            if try readTreeFile(dir, e.path, hash, size: size, sink: { _ in }) == .copied { found[hash] = e.path }
        }
        return found
    }

    /// Streams the file at `path` (its parent open as `dir`) to `sink` if it is a regular file
    /// holding the content, reading no more than its size; opened without blocking or following.
    private func readTreeFile(_ dir: Int32, _ path: ManifestPath, _ hash: ContentHash, size: UInt64,
                              sink: (UnsafeRawBufferPointer) throws -> Void) throws -> ContentChain.LocalCopy {
        let fd = tree.withName(path.name) { openat(dir, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
        guard fd >= 0 else { return .damaged }
        defer { Sys.close(fd) }
        return try VerifiedContent.read(fd, size: size, hash: hash, display: tree.display(path), sink: sink) ? .copied : .damaged
    }

    /// Streams a local copy of a content to `sink`: the work area's, else the one an earlier
    /// run wrote into the tree (`writtenEarlier`; gone or changed since, it counts as damaged).
    private func readLocal(_ hash: ContentHash, size: UInt64, sink: (UnsafeRawBufferPointer) throws -> Void) throws -> ContentChain.LocalCopy {
        let preserved = try readPreserved(hash, size: size, sink: sink)
        guard preserved == .absent, let path = writtenEarlier[hash] else { return preserved }
        return try tree.inParent(of: path) { dir, _ in try readTreeFile(dir, path, hash, size: size, sink: sink) }
    }

    /// Whether the work area's copy of a content is a regular file of the right size and hash.
    private func preservedCopyIsIntact(_ hash: ContentHash, size: UInt64) throws -> Bool {
        try readPreserved(hash, size: size) { _ in } == .copied
    }

    /// Streams the work area's copy of a content to `sink`, reading no more than its size.
    private func readPreserved(_ hash: ContentHash, size: UInt64, sink: (UnsafeRawBufferPointer) throws -> Void) throws -> ContentChain.LocalCopy {
        guard preserved[hash] != nil else { return .absent }
        let name = Array(hash.hex.utf8)
        // O_NONBLOCK: a fifo planted where a file was must not hang the apply.
        let fd = tree.withName(name) { openat(workFD, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
        guard fd >= 0 else {
            return tree.withName(name, { faccessat(workFD, $0, F_OK, AT_SYMLINK_NOFOLLOW) }) == 0 ? .damaged : .absent
        }
        defer { Sys.close(fd) }
        return try VerifiedContent.read(fd, size: size, hash: hash, display: "preserved \(hash.hex)", sink: sink) ? .copied : .damaged
    }

    /// The sources of the files this apply writes: the work area, the downloads, the blob
    /// directories (made once, when the downloads and the read-ahead have started).
    private func makeContentChain() -> ContentChain {
        ContentChain(local: { [unowned self] in try readLocal($0, size: $1, sink: $2) }, localSizes: preserved,
                     downloads: downloads, blobDirectories: blobDirectories, whileWaiting: { [unowned self] in try reportProgress() },
                     fetchOne: sources.fetchOne(target: target, directory: state.downloads + "/fallback"),
                     onFallback: { [unowned self] in report.addFallback($0, $1) }, prefetched: prefetch)
    }
}
