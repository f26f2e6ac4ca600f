import Glibc

/// Recording what an already-installed tree runs, as an apply records what it installed.
extension UpdateEngine {
    /// The adoption of a tree that an installer (not an apply) put in place.
    public struct AdoptRequest: Sendable {
        public var root: String
        /// The image the tree is said to run.
        public var target: VerifiedManifest
        /// What of the tree is the machine's: `.runningSystem` for the root a system runs from.
        public var machine: MachinePaths

        public init(root: String, target: VerifiedManifest, machine: MachinePaths = .none) {
            self.root = root
            self.target = target
            self.machine = machine
        }
    }

    /// What an adoption recorded.
    public struct AdoptReport: Sendable {
        /// The entries checked against the tree (the image's, without the machine's paths).
        public var entriesChecked = 0
        /// The image the tree had recorded before, when it had one ("olpc-ext3 406").
        public var replaced: String?
    }

    /// Checks the tree at `root` against a verified manifest, as `fsck` does, and records the
    /// manifest as the tree's installed one, exactly as an apply would once the tree matched it.
    ///
    /// A difference refuses it (`differences`, naming the first ones): the tree must be what the
    /// manifest says before any later move may start from it. For a running system's root, the
    /// machine's paths (`MachinePaths.kept`) are not checked, nor `/etc`, which is the machine's
    /// to change and which the next apply merges three ways from this image.
    public static func adopt(_ request: AdoptRequest) throws -> AdoptReport {
        let root = request.root, target = request.target
        let state = StateDirectory(root: root)
        let tree = try RootedTree(root: root)
        // Making the state directory touches the root's times, which the image gives: they are
        // put back, as an apply sets them once it is done.
        let before = try Sys.lstat(root)
        guard let stateFD = try state.open(in: tree, create: true) else { throw UpdError(.io, "\(state.directory): not made") }
        defer { Sys.close(stateFD) }
        let times = [before.st_atim, before.st_mtim]
        if futimens(tree.rootFD, times) != 0 { throw UpdError.system("futimens", root) }
        let lock = try Sys.lockExclusively(in: stateFD, StateDirectory.lockName, display: "\(state.directory)/\(StateDirectory.lockName)",
                                           busy: "\(root): another updatinator apply is changing this tree (it holds \(state.directory)/lock)")
        defer { Sys.close(lock) }
        if let applyFD = try state.open(StateDirectory.applyDirectory, in: tree, create: false) {
            defer { Sys.close(applyFD) }
            if try ApplyJournal.read(in: applyFD, display: state.journal) != nil {
                throw UpdError(.usage, "\(state.journal): an apply is in progress on \(root); finish it (run it again) instead of adopting", path: state.journal)
            }
        }
        let installed = try Sys.readFileIfExists(in: stateFD, StateDirectory.installedName, display: state.installedManifest, limit: ManifestParser.maxManifestBytes)
        if installed.map(Blake2b.hash) == target.hash {
            throw UpdError(.nothingToDo, "\(root) already has \(target.name) recorded as installed", path: state.installedManifest)
        }

        let (expected, excluded) = request.machine.imagePart(of: target.manifest)
        let findings = try TreeChecker(manifest: expected).checkTree(root: root, known: [:], excluding: excluded)
        guard findings.isEmpty else {
            throw UpdError(.differences, "\(root) does not match \(target.name) (\(findings.count) differences: "
                + findings.prefix(3).map(\.description).joined(separator: "; ") + (findings.count > 3 ? "; …" : "")
                + "); nothing recorded", path: root)
        }

        var report = AdoptReport(entriesChecked: expected.entries.count)
        report.replaced = try installed.map { try ManifestParser.parse($0, source: state.installedManifest) }.map { "\($0.image) \($0.version)" }
        try Sys.writeFileAtomically(in: stateFD, StateDirectory.installedName, display: state.installedManifest, contents: target.write)
        return report
    }
}
