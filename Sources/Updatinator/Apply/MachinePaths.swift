/// What of a tree belongs to the machine rather than to its image: what an in-place apply to a
/// running system leaves to the machine.
///
/// A *kept* path is the machine's with everything beneath it: a runtime mount (`/proc`, `/run`)
/// or the machine's state (`/var`, as a staged deployment shares it). The apply neither changes,
/// removes nor checks anything there, the image's entries there are not installed, and it is
/// the only place inside the root where another mount is accepted. With `mergesEtc`, `/etc` is
/// merged three ways as a staged deployment merges it (`EtcMerge`): a path the machine changed,
/// added or removed keeps the machine's version; when the new image changed it too, the new
/// image's file goes beside it as `NAME.updatinator-new` and the path is reported.
public struct MachinePaths: Sendable, Equatable {
    public var kept: [ManifestPath]
    public var mergesEtc: Bool

    public init(kept: [ManifestPath] = [], mergesEtc: Bool = false) {
        self.kept = kept
        self.mergesEtc = mergesEtc
    }

    /// The whole tree is the image's (a tree nothing runs from).
    public static let none = MachinePaths()

    /// The root of the running system: the kernel's and systemd's runtime mounts, the
    /// machine's state, its users' homes, the mount points of removable media and the
    /// filesystem's own `lost+found` are the machine's; `/etc` is merged.
    public static let runningSystem = MachinePaths(
        kept: ["/dev", "/proc", "/sys", "/run", "/tmp", "/var", "/home", "/root", "/media", "/mnt", "/lost+found"]
            .map { ManifestPath(unchecked: Array($0.utf8)) },
        mergesEtc: true)

    /// What of the tree at `root` is the machine's: a running system's parts when `live` says
    /// so, or when `root` is the directory this process's system runs from (`/`); else nothing.
    public static func of(root: String, live: Bool) throws -> MachinePaths {
        if live { return .runningSystem }
        let tree = try Sys.lstat(root), system = try Sys.lstat("/")
        return tree.st_dev == system.st_dev && tree.st_ino == system.st_ino ? .runningSystem : .none
    }

    var isNone: Bool { kept.isEmpty && !mergesEtc }

    /// Whether `path` is a kept path or beneath one.
    func keeps(_ path: ManifestPath) -> Bool {
        kept.contains { k in path.bytes == k.bytes || (path.bytes.starts(with: k.bytes) && path.bytes.count > k.bytes.count
            && (k.isRoot || path.bytes[k.bytes.count] == UInt8(ascii: "/"))) }
    }

    /// What a check of a tree against `manifest` expects: the manifest without the machine's
    /// paths, nor `/etc` when the machine merges it (it is the machine's to change); and the
    /// paths the check leaves out, with what is beneath them.
    func imagePart(of manifest: Manifest) -> (expected: Manifest, excluded: [ManifestPath]) {
        guard !isNone else { return (manifest, []) }
        var machine = self
        if mergesEtc { machine.kept.append(ManifestPath(unchecked: EtcMerge.etc)) }
        let entries = Self.consistent(manifest.entries.filter { !machine.keeps($0.path) })
        return (Manifest(image: manifest.image, version: manifest.version, created: manifest.created, entries: entries), machine.kept)
    }

    /// The two manifests an in-place apply of the tree at `root` plans with and checks against:
    /// the old and new images without the kept paths, the old one's `/etc` as the tree has it
    /// and the new one's as the merge decides (with what the merge did).
    func planned(root: String, old: Manifest, new: Manifest) throws -> (old: Manifest, new: Manifest, etc: EtcMerge.Outcome) {
        var oldEntries = old.entries.filter { !keeps($0.path) }
        var newEntries = new.entries.filter { !keeps($0.path) }
        var outcome = EtcMerge.Outcome()
        if mergesEtc {
            let etc = ManifestPath(unchecked: EtcMerge.etc)
            let local = try EtcMerge.scan(FileSystemPath(root: root).display(etc), image: old.image, version: old.version)
                .mapValues { Self.withBlobSize($0, known: old.contents.merging(new.contents) { a, _ in a }) }
            let decision = EtcMerge.decide(local: local, old: old, new: new)
            outcome = decision.outcome
            oldEntries = oldEntries.filter { !EtcMerge.covers($0.path) } + local.values
            var byPath = [ManifestPath: ManifestEntry](newEntries.map { ($0.path, $0) }) { a, _ in a }
            for path in decision.carry { byPath[path] = local[path] }
            for path in decision.asideFromNew {
                guard var theirs = new.entry(at: path) else { continue }
                theirs.path = path.parent.appending(EtcMerge.asideName(path.name))
                byPath[theirs.path] = theirs
            }
            newEntries = Array(byPath.values)
        }
        return (Manifest(image: old.image, version: old.version, created: old.created, entries: Self.consistent(oldEntries)),
                Manifest(image: new.image, version: new.version, created: new.created, entries: Self.consistent(newEntries)),
                outcome)
    }

    /// A scanned entry with the blob size a manifest gives its content: the images' when they
    /// have it, else the largest it could be (the machine's own contents are never downloaded).
    static func withBlobSize(_ e: ManifestEntry, known: [ContentHash: (size: UInt64, blobSize: UInt64)]) -> ManifestEntry {
        guard case .file(let size, let hash, _) = e.kind else { return e }
        var result = e
        result.kind = .file(size: size, hash: hash, blobSize: known[hash]?.blobSize ?? ManifestParser.blobSizeBound(size))
        return result
    }

    /// The entries in path order, as a manifest must have them: an entry whose parent is not a
    /// directory among them is dropped with everything beneath it, and a hardlink whose first
    /// name was dropped becomes the file (the first of its remaining names).
    static func consistent(_ entries: [ManifestEntry]) -> [ManifestEntry] {
        let sorted = entries.sorted { $0.path < $1.path }
        var files = [ManifestPath: ManifestEntry]()
        for e in sorted where e.kind.letter == "f" { files[e.path] = e }
        var directories = Set<ManifestPath>()
        var present = Set<ManifestPath>()
        var renamed = [ManifestPath: ManifestPath]()
        var result = [ManifestEntry]()
        result.reserveCapacity(sorted.count)
        for var e in sorted {
            guard e.path.isRoot || directories.contains(e.path.parent) else { continue }
            if case .hardlink(let first) = e.kind, !present.contains(first) {
                if let now = renamed[first] {
                    e.kind = .hardlink(target: now)
                } else if let file = files[first] {
                    e.kind = file.kind
                    renamed[first] = e.path
                } else {
                    continue
                }
            }
            if e.kind == .directory { directories.insert(e.path) }
            present.insert(e.path)
            result.append(e)
        }
        return result
    }
}
