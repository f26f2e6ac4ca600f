import Glibc

/// Computes the ordered steps of an in-place apply and what they cost, exactly.
///
/// The order: preserve every old content the new image needs (hardlinks into the work area),
/// remove what goes away (children first, so space is freed before anything is written),
/// create new directories, write contents grouped by content (each preserved content is
/// dropped after its last use), create symlinks and special files, fix metadata that changed
/// in place, and set directory metadata last. Checkpoints between phases, and every
/// `checkpointBytes` written (`releaseCheckpointBytes` while a preserved content waits to be
/// released), make the apply resumable after a crash.
public struct Planner {
    /// Bytes written between two checkpoints: the most that a crash makes the apply write again.
    /// Each checkpoint flushes the whole filesystem, which costs a disk's cache flush and a
    /// journal commit however little it writes.
    public static let checkpointBytes: UInt64 = 64 << 20
    /// Bytes written or held for release between two checkpoints while a preserved content
    /// waits to be released: its space is freed only at the checkpoint after its last use.
    public static let releaseCheckpointBytes: UInt64 = 8 << 20
    /// The journal, and its replacement while a checkpoint rewrites it.
    public var journalBytes: UInt64 { 2 * allocationUnit }

    public let from: Manifest
    public let to: Manifest
    /// The byte size of each manifest's text, for the copies the state directory holds.
    public var fromManifestBytes: UInt64 = 0
    public var toManifestBytes: UInt64 = 0
    /// Bytes of the state directory before the apply starts (the installed manifest).
    public var existingStateBytes: UInt64 = 0
    public var blobDirectories: [String] = []
    /// The filesystem's allocation unit; files occupy whole units.
    public var allocationUnit: UInt64 = 4096
    /// What one directory occupies: a unit on disk filesystems, nothing on tmpfs.
    public var directoryBytes: UInt64 = 4096
    /// When the contents to obtain are downloaded during the apply (`BlobStream`): the most
    /// compressed bytes downloaded ahead of their use. Nil when they are not downloaded.
    public var downloadWindow: UInt64?
    /// The deltas the mirrors offer into the target's contents; a content to download comes as
    /// its cheapest delta against a content of the old tree, when that is smaller than its blob.
    public var deltaIndex: DeltaIndex?
    /// When the contents come in a school server's batches: each content to download names the
    /// base `DeltaBases` matches in the old tree (kept like a delta's base), and its download
    /// is counted at its blob's size, the most the server's answer may take.
    public var batches = false
    /// When the downloads come in groups that are deleted whole (a school server's batches, or a
    /// pack's ranges): the disk model then holds the whole window until the last download is released.
    public var groupedDownloads = false

    public init(from: Manifest, to: Manifest) {
        self.from = from
        self.to = to
    }

    public func plan() throws -> ApplyPlan {
        let old = InodeGroups(from), new = InodeGroups(to)
        let deltas = try chooseDeltas(old: old)
        let steps = try makeSteps(old: old, new: new, deltas: deltas)
        var plan = ApplyPlan(from: from, to: to, steps: steps, changes: countChanges())
        plan.downloadWindow = downloadWindow
        plan.deltas = deltas
        try account(&plan, old: old, new: new)
        simulateDisk(&plan, old: old, new: new)
        return plan
    }

    /// A target that gives a content it writes two sizes (among its files, or against the old
    /// image's): one hash names one byte string, so an apply would stop at the file whose size
    /// is wrong, with the tree half-way. It is refused before any step.
    private func twoSizes(_ hash: ContentHash, _ a: (ManifestPath, UInt64), _ b: (ManifestPath, UInt64), old: Bool) -> UpdError {
        UpdError(.corrupt, "\(to.image) \(to.version) gives content \(hash.hex) two sizes: \(a.1) bytes at \(a.0), \(b.1) at \(b.0)"
                 + (old ? " in the old image" : "") + "; nothing was changed")
    }

    /// The new inode groups whose old inode stays: same content, and every path of the new group
    /// is already a name of that one old inode. Each old inode is kept by at most one new group.
    func keptGroups(old: InodeGroups, new: InodeGroups) -> [ManifestPath: ManifestPath] {
        var kept = [ManifestPath: ManifestPath]()
        var taken = Set<ManifestPath>()
        for g in new.all {
            guard let oldID = old.inode(of: g.file), let og = old.group(file: oldID), og.hash == g.hash, og.size == g.size,
                  !taken.contains(oldID), g.otherNames.allSatisfy({ old.inode(of: $0) == oldID }) else { continue }
            kept[g.file] = oldID
            taken.insert(oldID)
        }
        return kept
    }

    /// The delta each content to download comes as: the cheapest one against a content of the
    /// old tree, when it is smaller than the blob and no blob directory has the content.
    func chooseDeltas(old: InodeGroups) throws -> [ContentHash: DeltaIndex.Delta] {
        let oldHashes = Set(old.all.filter { $0.size > 0 }.map(\.hash))
        var chosen = [ContentHash: DeltaIndex.Delta]()
        if batches {
            let contents = to.contents
            for (hash, match) in DeltaBases.match(from: from, to: to) where try BlobSource.find(hash, in: blobDirectories) == nil {
                chosen[hash] = DeltaIndex.Delta(base: match.base, bytes: contents[hash]!.blobSize)
            }
            return chosen
        }
        guard let deltaIndex else { return [:] }
        for (hash, sizes) in to.contents where sizes.size > 0 && !oldHashes.contains(hash) {
            guard let delta = deltaIndex.cheapest(into: hash, from: oldHashes.contains), delta.bytes < sizes.blobSize,
                  try BlobSource.find(hash, in: blobDirectories) == nil else { continue }
            chosen[hash] = delta
        }
        return chosen
    }

    func makeSteps(old: InodeGroups, new: InodeGroups, deltas: [ContentHash: DeltaIndex.Delta] = [:]) throws -> [ApplyStep] {
        var steps = [ApplyStep]()
        let kept = keptGroups(old: old, new: new)
        let writes = Array(new.all.filter { kept[$0.file] == nil })

        // Each content written, in the order first met (made before the steps that come first,
        // which need to know what is written), and its position in that order.
        var order = [ContentHash]()
        var positionOf = [ContentHash: Int]()
        for g in writes where positionOf[g.hash] == nil {
            positionOf[g.hash] = order.count
            order.append(g.hash)
        }
        // Old contents that new files need, kept safe from the removals and replacements below,
        // and the bases of the chosen deltas (a delta against no base needs none). Only these
        // old contents are held here, not every content of the old image.
        let bases = deltas.compactMapValues { $0.base == .empty ? nil : $0.base }
        let baseHashes = Set(bases.values)
        var oldHolder = [ContentHash: (path: ManifestPath, size: UInt64)]()
        for g in old.all where g.size > 0 && oldHolder[g.hash] == nil && (positionOf[g.hash] != nil || baseHashes.contains(g.hash)) {
            oldHolder[g.hash] = (g.file, g.size)
        }
        let copied = Set(order.filter { oldHolder[$0] != nil })
        for (hash, holder) in oldHolder.sorted(by: { $0.key < $1.key }) { steps.append(.preserve(hash, from: holder.path)) }
        steps.append(.checkpoint)

        for e in from.entries.reversed() where !e.path.isRoot {
            let isDirectory = e.kind == .directory
            if let n = to.entry(at: e.path), (n.kind == .directory) == isDirectory { continue }
            steps.append(.remove(e.path, directory: isDirectory))
        }
        steps.append(.checkpoint)

        for e in to.entries where e.kind == .directory && !e.path.isRoot && from.entry(at: e.path)?.kind != .directory {
            steps.append(.makeDirectory(e.path))
        }

        // Copies of old contents first, then patched contents, then the rest, each in path order
        // (the order of a version's pack); each preserved content is released after its last use.
        let patched = order.filter { deltas[$0] != nil }
        order = order.filter { copied.contains($0) } + patched + order.filter { !copied.contains($0) && deltas[$0] == nil }
        for (position, hash) in order.enumerated() { positionOf[hash] = position }
        // The writes of the content at `position`, in path order, are `writes` at
        // `grouped[start[position]..<start[position + 1]]` (a counting sort: no list for each content).
        var start = [Int](repeating: 0, count: order.count + 1)
        for g in writes { start[positionOf[g.hash]! + 1] += 1 }
        for position in order.indices { start[position + 1] += start[position] }
        var grouped = [Int](repeating: 0, count: writes.count)
        var filled = start
        for (index, g) in writes.enumerated() {
            let position = positionOf[g.hash]!
            grouped[filled[position]] = index
            filled[position] += 1
        }
        var lastUse = [ContentHash: Int]()
        for (position, hash) in order.enumerated() {
            if copied.contains(hash) { lastUse[hash] = position }
            if let base = bases[hash] { lastUse[base] = position }
        }
        var releasedAfter = [Int: [ContentHash]]()
        for (hash, position) in lastUse { releasedAfter[position, default: []].append(hash) }
        var sinceCheckpoint: UInt64 = 0
        var pendingReleases = [ContentHash]()
        func checkpoint() {
            steps.append(.checkpoint)
            for hash in pendingReleases { steps.append(.release(hash)) }
            pendingReleases = []
            sinceCheckpoint = 0
        }
        for (position, hash) in order.enumerated() {
            let group = grouped[start[position]..<start[position + 1]]
            let first = writes[group.first!]
            if let o = oldHolder[hash], o.size != first.size { throw twoSizes(hash, (first.file, first.size), (o.path, o.size), old: true) }
            for index in group {
                let g = writes[index]
                if g.size != first.size { throw twoSizes(hash, (first.file, first.size), (g.file, g.size), old: false) }
                steps.append(.writeFile(to.entry(at: g.file)!))
                for path in g.otherNames { steps.append(.link(to.entry(at: path)!)) }
                sinceCheckpoint += g.size
            }
            for released in (releasedAfter[position] ?? []).sorted() {
                pendingReleases.append(released)
                sinceCheckpoint += oldHolder[released]!.size
            }
            if sinceCheckpoint >= (pendingReleases.isEmpty ? Self.checkpointBytes : Self.releaseCheckpointBytes) { checkpoint() }
        }
        if !pendingReleases.isEmpty { checkpoint() }

        for e in to.entries {
            switch e.kind {
            case .symlink, .characterDevice, .blockDevice, .fifo:
                if let o = from.entry(at: e.path), o.kind == e.kind {
                    if o.metadata != e.metadata { steps.append(.setMetadata(e)) }
                } else {
                    steps.append(.makeSpecial(e))
                }
            case .file:
                if let oldID = kept[e.path], old.group(file: oldID)!.metadata != e.metadata { steps.append(.setMetadata(e)) }
            default:
                break
            }
        }
        steps.append(.finishDirectories)
        steps.append(.checkpoint)
        return steps
    }

    func countChanges() -> ApplyPlan.Changes {
        var c = ApplyPlan.Changes()
        ManifestDiff.forEachDifference(from: from, to: to) { difference in
            switch difference {
            case .added: c.created += 1
            case .removed: c.removed += 1
            case .changed(let change):
                if !change.aspects.isDisjoint(with: [.type, .content]) { c.replaced += 1 }
                let a = change.old.metadata, b = change.new.metadata
                if a.uid != b.uid || a.gid != b.gid { c.reowned += 1 }
                if a.mode != b.mode { c.remoded += 1 }
                if a.mtime != b.mtime { c.retimed += 1 }
                if a.xattrs != b.xattrs { c.xattrsChanged += 1 }
            }
        }
        return c
    }

    /// Where each written content comes from, and the byte figures.
    func account(_ plan: inout ApplyPlan, old: InodeGroups, new: InodeGroups) throws {
        let oldHashes = Set(old.all.map(\.hash))
        var counted = Set<ContentHash>()
        for step in plan.steps {
            guard case .writeFile(let e) = step, case .file(let size, let hash, let blobSize) = e.kind else { continue }
            plan.bytesToWrite += size
            if size == 0 || oldHashes.contains(hash) {
                plan.bytesReused += size
                continue
            }
            guard counted.insert(hash).inserted else { continue }
            if try BlobSource.find(hash, in: blobDirectories) != nil {
                plan.contentsFromBlobs += 1
                plan.bytesFromBlobs += size
            } else {
                plan.missing[hash] = plan.deltas[hash]?.bytes ?? blobSize
            }
        }
        let kept = keptGroups(old: old, new: new)
        for g in new.all where kept[g.file] != nil { plan.bytesReused += g.size }
    }

    func rounded(_ bytes: UInt64) -> UInt64 {
        (bytes + allocationUnit - 1) / allocationUnit * allocationUnit
    }

    /// Walks the steps, tracking every inode's links and the bytes allocated, for the peak.
    /// It holds only what the steps change: an old path's inode, and an old inode's links and
    /// size, are otherwise the old image's.
    func simulateDisk(_ plan: inout ApplyPlan, old: InodeGroups, new: InodeGroups) {
        enum Inode: Hashable { case old(ManifestPath), new(ManifestPath) }
        var at = [ManifestPath: Inode?]()
        var links = [Inode: Int]()
        var newSizes = [ManifestPath: UInt64]()
        var work = [ContentHash: Inode]()
        func current(at path: ManifestPath) -> Inode? {
            if let changed = at[path] { return changed }
            return old.inode(of: path).map(Inode.old)
        }
        func linkCount(_ inode: Inode) -> Int {
            if let n = links[inode] { return n }
            guard case .old(let file) = inode, let g = old.group(file: file) else { return 0 }
            return 1 + g.otherNames.count
        }
        func size(_ inode: Inode) -> UInt64 {
            switch inode {
            case .old(let file): return rounded(old.group(file: file)!.size)
            case .new(let path): return newSizes[path]!
            }
        }
        let directories = { (m: Manifest) in UInt64(m.entries.reduce(0) { $0 + ($1.kind == .directory ? 1 : 0) }) }
        plan.oldTreeBytes = old.all.reduce(0) { $0 + rounded($1.size) } + directories(from) * directoryBytes
        plan.newTreeBytes = new.all.reduce(0) { $0 + rounded($1.size) } + directories(to) * directoryBytes
        var allocated = existingStateBytes + plan.oldTreeBytes
        let start = allocated
        let floor = max(plan.oldTreeBytes, plan.newTreeBytes) + existingStateBytes
        var highest = allocated

        func unlink(_ inode: Inode?) {
            guard let inode else { return }
            let n = linkCount(inode)
            links[inode] = n - 1
            if n == 1 { allocated -= size(inode) }
        }
        func replace(_ path: ManifestPath, with inode: Inode?) {
            unlink(current(at: path))
            at[path] = .some(inode)
        }
        // The state directory's copies of both manifests and the journal.
        allocated += rounded(fromManifestBytes) + rounded(toManifestBytes) + journalBytes
        highest = max(highest, allocated)
        var downloads = DownloadModel(plan: plan, window: downloadWindow, planner: self, batched: groupedDownloads)
        allocated += downloads.directories
        for (index, step) in plan.steps.enumerated() {
            switch step {
            case .preserve(let hash, let path):
                let inode = current(at: path)!
                work[hash] = inode
                links[inode] = linkCount(inode) + 1
            case .remove(let path, let directory):
                replace(path, with: nil)
                if directory { allocated -= directoryBytes }
            case .makeDirectory:
                allocated += directoryBytes
            case .writeFile(let e):
                let inode = Inode.new(e.path)
                let size = rounded(ManifestDiff.fileSize(e))
                newSizes[e.path] = size
                links[inode] = 1
                allocated += size   // the temporary file, before it replaces the old entry
                highest = max(highest, allocated + downloads.held)
                replace(e.path, with: inode)
            case .link(let e):
                guard case .hardlink(let target) = e.kind, let inode = current(at: target) else { continue }
                links[inode] = linkCount(inode) + 1
                replace(e.path, with: inode)
            case .makeSpecial(let e):
                replace(e.path, with: nil)
            case .release(let hash):
                unlink(work.removeValue(forKey: hash))
            case .checkpoint, .setMetadata, .finishDirectories:
                break
            }
            highest = max(highest, allocated + downloads.held)
            downloads.stepDone(index)
        }
        plan.peakExtraDisk = highest > floor ? highest - floor : 0
        plan.requiredFreeSpace = highest - start
    }
}

/// The blobs an apply that downloads as it goes holds at each step: its downloads directories,
/// and from the next blob not yet released, as many blobs as fit in the window (at least one).
struct DownloadModel {
    /// Each blob's compressed size (what the window counts) and what it occupies on disk.
    private var sizes = [(bytes: UInt64, allocated: UInt64)]()
    private var releasedAfter = [Int: Int]()
    private var next = 0
    private let window: UInt64
    /// Batches are held whole until their last content is released: the model then counts the
    /// whole window (at least the largest download, at most all of them) until the last
    /// download is released.
    private let batched: Bool
    /// Bytes of the directories the downloads go to.
    let directories: UInt64
    /// Bytes of downloaded blobs present now.
    private(set) var held: UInt64 = 0

    init(plan: ApplyPlan, window: UInt64?, planner: Planner, batched: Bool = false) {
        self.window = window ?? 0
        self.batched = batched
        guard window != nil else {
            directories = 0
            return
        }
        let (requests, lastUse) = plan.downloads()
        sizes = requests.map { ($0.downloadBytes, planner.rounded($0.downloadBytes)) }
        for (position, r) in requests.enumerated() { releasedAfter[lastUse[r.hash]!] = position }
        // The downloads directory and one subdirectory per hash prefix (`BlobStore` layout).
        let prefixes = Set(requests.map { $0.hash.hex.prefix(2) })
        directories = requests.isEmpty ? 0 : UInt64(1 + prefixes.count) * planner.directoryBytes
        held = heldFromNext()
    }

    mutating func stepDone(_ index: Int) {
        guard let position = releasedAfter[index] else { return }
        next = position + 1
        held = heldFromNext()
    }

    private func heldFromNext() -> UInt64 {
        if batched {
            guard next < sizes.count else { return 0 }
            return min(max(window, sizes.map(\.allocated).max()!), sizes.reduce(0) { $0 + $1.allocated })
        }
        var admitted: UInt64 = 0, allocated: UInt64 = 0
        for size in sizes[next...] {
            guard admitted == 0 || admitted + size.bytes <= window else { break }
            admitted += size.bytes
            allocated += size.allocated
        }
        return allocated
    }
}
