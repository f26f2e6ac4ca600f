import Foundation
import Glibc

/// Carries the machine's own changes to `/etc` into a new deployment: a three-way merge of the
/// old image's `/etc` (its manifest), the machine's `/etc` (the current deployment's tree) and
/// the new image's (the deployment being built).
///
/// A path the machine changed, added or removed keeps the machine's version when the new image
/// left that path as the old one had it. When the new image changed it too, that is a conflict:
/// the machine's version is kept, the new image's file is kept beside it as
/// `NAME.updatinator-new`, and the path is reported. Everything else is the new image's.
/// Time stamps alone are no change: a file rewritten with the same content and mode is not
/// the machine's own.
struct EtcMerge {
    /// What the merge did, by path.
    struct Outcome: Sendable, Equatable {
        var kept = [String]()
        var conflicts = [String]()
    }

    static let etc = Array("/etc".utf8)

    let old: Manifest
    let current: RootedTree
    let building: RootedTree
    let new: Manifest

    func run() throws -> Outcome {
        let local = try Self.scan(current.display(ManifestPath(unchecked: Self.etc)), image: old.image, version: old.version)
        let decision = Self.decide(local: local, old: old, new: new)
        for path in decision.asideFromNew {
            try building.inParent(of: path) { dir, name in
                if building.withName(name, { n in building.withName(Self.asideName(name)) { renameat(dir, n, dir, $0) } }) != 0 {
                    throw UpdError.system("rename", building.display(path))
                }
            }
        }
        let newEntries = Self.etcEntries(new.entries)
        // Removals deepest first, then what the machine has, parents before children.
        for path in decision.carry.reversed() where !(local[path]?.kind == .directory && newEntries[path]?.kind == .directory) {
            try remove(path)
        }
        for path in decision.carry { if let entry = local[path] { try make(entry) } }
        return decision.outcome
    }

    /// What a merge does, decided from the three versions of /etc alone.
    struct Decision {
        /// The paths that take the machine's version (or its absence), parents before children:
        /// those it changed, and the directories of its own that hold them.
        var carry = [ManifestPath]()
        /// Conflicting paths where the new image has a file: it goes beside the machine's.
        var asideFromNew = [ManifestPath]()
        var outcome = Outcome()
    }

    /// Decides the merge: a path the machine changed (`local` against the old image) takes the
    /// machine's version unless the new image has that version too; a conflict when the new
    /// image changed it as well.
    static func decide(local: [ManifestPath: ManifestEntry], old: Manifest, new: Manifest) -> Decision {
        let oldEntries = etcEntries(old.entries)
        let newEntries = etcEntries(new.entries)
        var decision = Decision()
        var carry = [ManifestPath]()
        for path in Set(local.keys).union(oldEntries.keys).sorted() {
            let mine = local[path], theirs = newEntries[path], base = oldEntries[path]
            guard !same(mine, base), !same(mine, theirs) else { continue }
            if !same(theirs, base) {
                decision.outcome.conflicts.append(path.description)
                if case .file = theirs?.kind { decision.asideFromNew.append(path) }
            } else {
                decision.outcome.kept.append(path.description)
            }
            carry.append(path)
        }
        // A directory of the machine's that the new image dropped comes back with what is kept in it.
        var parents = Set<ManifestPath>()
        for path in carry where local[path] != nil {
            var parent = path.parent
            while parent.bytes.count > etc.count, newEntries[parent] == nil, local[parent] != nil {
                parents.insert(parent)
                parent = parent.parent
            }
        }
        decision.carry = Set(carry).union(parents).sorted()
        return decision
    }

    /// The name beside a conflicting file that holds the new image's version.
    static func asideName(_ name: [UInt8]) -> [UInt8] { name + Array(".updatinator-new".utf8) }

    /// Whether a path is /etc or under it.
    static func covers(_ path: ManifestPath) -> Bool {
        path.bytes == etc || path.bytes.starts(with: etc + [UInt8(ascii: "/")])
    }

    /// The entries of a manifest at and under /etc.
    static func etcEntries(_ entries: [ManifestEntry]) -> [ManifestPath: ManifestEntry] {
        var result = [ManifestPath: ManifestEntry]()
        for e in entries where covers(e.path) { result[e.path] = e }
        return result
    }

    /// A tree's /etc (at `etcPath` on disk) as entries with the tree's paths; empty when it has none.
    static func scan(_ etcPath: String, image: String, version: String) throws -> [ManifestPath: ManifestEntry] {
        guard let st = try Sys.lstatIfExists(etcPath), st.st_mode & S_IFMT == S_IFDIR else { return [:] }
        let (scanned, _) = try TreeScanner(root: etcPath).scan(image: image, version: version)
        var result = [ManifestPath: ManifestEntry]()
        for var e in scanned.entries {
            e.path = Self.rebased(e.path)
            if case .hardlink(let first) = e.kind { e.kind = .hardlink(target: Self.rebased(first)) }
            result[e.path] = e
        }
        return result
    }

    private static func rebased(_ path: ManifestPath) -> ManifestPath {
        ManifestPath(unchecked: path.isRoot ? etc : etc + path.bytes)
    }

    /// Whether two entries are the same to a person: type, content, mode, owner, attributes.
    static func same(_ a: ManifestEntry?, _ b: ManifestEntry?) -> Bool {
        guard let a, let b else { return a == nil && b == nil }
        let (m, n) = (a.metadata, b.metadata)
        guard m.mode == n.mode, m.uid == n.uid, m.gid == n.gid, m.xattrs == n.xattrs else { return false }
        switch (a.kind, b.kind) {
        case (.file(let s1, let h1, _), .file(let s2, let h2, _)): return s1 == s2 && h1 == h2
        default: return a.kind == b.kind
        }
    }

    /// Removes what the new deployment has at `path`, a directory with everything in it.
    private func remove(_ path: ManifestPath) throws {
        guard let dir = try building.openDirectoryIfExists(path.parent) else { return }
        defer { Sys.close(dir) }
        let display = building.display(path)
        guard let st = try RootedTree.status(dir, path.name, display: display) else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            try building.removeTree(dir, path.name, display: display)
        } else if building.withName(path.name, { unlinkat(dir, $0, 0) }) != 0 {
            throw UpdError.system("unlink", display)
        }
    }

    /// Makes the machine's entry in the new deployment: a copy of its file, or the same
    /// directory, link or node, with its metadata.
    private func make(_ e: ManifestEntry) throws {
        let display = building.display(e.path)
        try building.inParent(of: e.path) { dir, name in
            switch e.kind {
            case .directory:
                if building.withName(name, { mkdirat(dir, $0, 0o700) }) != 0 && errno != EEXIST { throw UpdError.system("mkdir", display) }
                try building.setMetadata(dir, name, expecting: e.kind, links: nil, e.metadata, display: display)
            case .file(let size, let hash, _):
                _ = try Deployer.write(e, into: DirectoryCursor(building)) { fd in
                    let copied = try Deployer.read(from: DirectoryCursor(current), e.path, hash: hash, size: size) { bytes in
                        try Sys.writeAll(fd, bytes, path: display)
                    }
                    guard copied == .copied else {
                        throw UpdError(.io, "\(current.display(e.path)) changed while it was copied into the new deployment; deploy again",
                                       path: current.display(e.path))
                    }
                }
            case .hardlink(let first):
                try building.makeHardlink(to: first, in: dir, named: name, display: display)
            case .symlink, .characterDevice, .blockDevice, .fifo:
                try building.makeSpecial(e, in: dir, named: name, display: display)
            }
        }
    }
}
