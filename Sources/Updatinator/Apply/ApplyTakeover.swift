import CLinux
import Glibc

/// What an apply to a new target needs to take over from an apply in progress to another one
/// (a release that could not be completed, superseded by the next): the tree as that apply
/// left it, described as the image to plan from.
///
/// The tree is then neither image, and no manifest describes it, so it is scanned, every
/// content hashed: the new apply plans from what is there, and its usual checks hold (the kept
/// entries, the final tree check). The old apply's own state (its journal, work area and
/// downloads) is replaced whole by the new one's (`StateDirectory.nextApplyDirectory`).
struct ApplyTakeover {
    let root: String
    let tree: RootedTree
    /// What of the tree is the machine's: not scanned, as an apply never touches it.
    let machine: MachinePaths

    /// The tree as it is, after removing the temporaries a stopped apply leaves beside the names
    /// it writes. Blob sizes are the images' where they know the content (a scan has none).
    ///
    /// With `/etc` merged three ways, `/etc` is the base of that merge: for each path, the
    /// interrupted apply's target (`unfinished`) where the tree has what that image has there
    /// (the apply installed it, or it was already so; a directory it made, which the installed
    /// image lacks, may not have its final mode yet), else the installed image. So the machine's own changes are kept, and
    /// what the interrupted apply installed is the new target's to change.
    func scan(installed: Manifest?, unfinished: Manifest?, target: Manifest) throws -> Manifest {
        try removeTemporaries(in: tree.rootFD, .root)
        var scanner = TreeScanner(root: root)
        scanner.excluded = Set(machine.kept)
        let base = installed ?? target
        let (scanned, _) = try scanner.scan(image: base.image, version: base.version, created: base.created)
        var known = target.contents
        for image in [installed, unfinished] { known.merge(image?.contents ?? [:]) { a, _ in a } }
        var entries = scanned.entries.map { MachinePaths.withBlobSize($0, known: known) }
        if machine.mergesEtc {
            guard let installed, let unfinished else {
                throw UpdError(.usage, "\(root): the images the apply in progress moved between are not both known, and /etc's merge needs them; it cannot be taken over")
            }
            let now = EtcMerge.etcEntries(entries), before = EtcMerge.etcEntries(installed.entries)
            let meant = EtcMerge.etcEntries(unfinished.entries)
            // (A directory that apply made has its final mode and time only at its end.)
            let etc = Set(now.keys).union(before.keys).union(meant.keys).compactMap { path in
                EtcMerge.same(now[path], meant[path]) || (now[path]?.kind == .directory && meant[path]?.kind == .directory
                                                          && before[path]?.kind != .directory)
                    ? meant[path] : before[path]
            }
            entries = entries.filter { !EtcMerge.covers($0.path) } + etc
        }
        return Manifest(image: base.image, version: base.version, created: base.created, entries: MachinePaths.consistent(entries))
    }

    /// Removes every apply temporary below the directory `fd` (`path`), but for the machine's
    /// paths and the state directory. A directory under a temporary name was swapped out of its
    /// own by a rename stopped halfway (`InPlaceApplier.rename`): it is swapped back.
    private func removeTemporaries(in fd: Int32, _ path: ManifestPath) throws {
        let display = tree.display(path)
        let names = try RootedTree.list(fd, display: display)
        var temporaries = [[UInt8]: [UInt8]?]()  // temporary name -> the name it stands for
        for name in names where ManifestPath.isTemporaryName(name) { temporaries[name] = .some(nil) }
        if !temporaries.isEmpty {
            for name in names where !ManifestPath.isTemporaryName(name) {
                let temporary = InPlaceApplier.temporaryName(for: path.appending(name))
                if temporaries[temporary] != nil { temporaries[temporary] = name }
            }
        }
        for (temporary, name) in temporaries {
            let display = tree.display(path.appending(temporary))
            if try !InPlaceApplier.removeTemporary(temporary, standingFor: name, in: fd, tree: tree, display: display) {
                try tree.removeTree(fd, temporary, display: display)
            }
        }
        for name in names where !ManifestPath.isTemporaryName(name) {
            if path.isRoot && name == ManifestPath.stateDirectoryName { continue }
            let child = path.appending(name)
            if machine.keeps(child) { continue }
            guard let st = try RootedTree.status(fd, name, display: tree.display(child)), st.st_mode & S_IFMT == S_IFDIR,
                  let childFD = try tree.openChildDirectory(fd, name, display: tree.display(child)) else { continue }
            defer { Sys.close(childFD) }
            try removeTemporaries(in: childFD, child)
        }
    }
}
