/// The one entry to everything that changes a tree: every front end (the CLI, the Lua `upd`
/// API, the agent, `upgrade`) describes an operation as values and calls it here.
///
/// The engine resolves the content sources once (`ResolvedSources`), plans, and runs the
/// in-place applier or the deployer over them; only it changes trees.
public enum UpdateEngine {
    /// An in-place move of a tree to a verified target.
    public struct ApplyRequest: Sendable {
        public var root: String
        public var target: VerifiedManifest
        /// The manifest the tree matches, for a tree without an installed-manifest record.
        public var from: Manifest?
        public var sources: ContentSources
        public var faults: FaultInjection
        /// What of the tree is the machine's: `.runningSystem` for the root a system runs from.
        public var machine: MachinePaths

        public init(root: String, target: VerifiedManifest, from: Manifest? = nil,
                    sources: ContentSources, faults: FaultInjection = .none, machine: MachinePaths = .none) {
            self.root = root
            self.target = target
            self.from = from
            self.sources = sources
            self.faults = faults
            self.machine = machine
        }
    }

    /// A staged deployment of a verified target beside a sysroot's current one.
    public struct DeployRequest: Sendable {
        public var sysroot: String
        public var target: VerifiedManifest
        public var sources: ContentSources
        public var faults: FaultInjection

        public init(sysroot: String, target: VerifiedManifest, sources: ContentSources, faults: FaultInjection = .none) {
            self.sysroot = sysroot
            self.target = target
            self.sources = sources
            self.faults = faults
        }
    }

    /// Moves a tree to the target in place, resumably (see `InPlaceApplier`).
    public static func apply(_ request: ApplyRequest, observer: UpdateObserver = UpdateObserver()) throws -> ApplyReport {
        let sources = try ResolvedSources(request.sources, target: request.target.manifest, observer: observer)
        let applier = InPlaceApplier(root: request.root, target: request.target, sources: sources, faults: request.faults)
        applier.from = request.from
        applier.machine = request.machine
        applier.onProgress = observer.progress
        return try applier.run()
    }

    /// Builds the target beside the current deployment and switches to it (see `Deployer`).
    public static func deploy(_ request: DeployRequest, observer: UpdateObserver = UpdateObserver()) throws -> DeployReport {
        let sources = try ResolvedSources(request.sources, target: request.target.manifest, observer: observer)
        let sysroot = try Sysroot(path: request.sysroot, create: true)
        let deployer = Deployer(sysroot: sysroot, target: request.target, sources: sources, faults: request.faults)
        deployer.onProgress = observer.progress
        return try deployer.run()
    }

    /// Plans the move of the tree at `root` from `from` to `to` without changing anything: what
    /// an apply with the same sources (and the same `machine`) would download, reuse, write and need on disk.
    public static func plan(root: String, from: (manifest: Manifest, bytes: [UInt8]), to: (manifest: Manifest, bytes: [UInt8]),
                            sources: ContentSources, machine: MachinePaths = .none,
                            observer: UpdateObserver = UpdateObserver()) throws -> ApplyPlan {
        let resolved = try ResolvedSources(sources, target: to.manifest, observer: observer)
        let downloads = resolved.fetcher != nil
        var planned = (old: from.manifest, new: to.manifest)
        if !machine.isNone {
            let merged = try machine.planned(root: root, old: from.manifest, new: to.manifest)
            planned = (merged.old, merged.new)
        }
        let plannedBytes = InPlaceApplier.plannedManifestBytes(planned, images: (from.manifest, to.manifest))
        return try InPlaceApplier.plan(root: root, from: planned.old, fromBytes: from.bytes.count, to: planned.new,
                                       toBytes: to.bytes.count + plannedBytes, blobDirectories: resolved.blobDirectories,
                                       downloadWindow: downloads ? resolved.downloadWindow : nil,
                                       deltaIndex: resolved.deltaIndex, batches: downloads && resolved.batchServer != nil,
                                       grouped: downloads && resolved.groupsDownloads)
    }
}
