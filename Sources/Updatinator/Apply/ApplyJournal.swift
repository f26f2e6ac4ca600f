import Foundation
import Glibc

/// The record of an apply in progress, `ROOT/.updatinator/apply/journal`: which move, and how
/// many steps are durably done. Everything before `done` reached the disk before it was written.
struct ApplyJournal: Codable, Equatable {
    /// BLAKE2b-256 of the manifests moved from and to, in hex.
    var from: String
    var to: String
    /// The plan's fingerprint: a resumed apply must follow the same steps.
    var plan: String
    var done: Int
    /// The download window the apply chose (its disk figures depend on it), when it downloads.
    var downloadWindow: UInt64? = nil

    /// Reads the journal in the apply directory `applyFD`; nil when there is none.
    static func read(in applyFD: Int32, display: String) throws -> ApplyJournal? {
        guard let bytes = try Sys.readFileIfExists(in: applyFD, StateDirectory.journalName, display: display, limit: 64 * 1024) else {
            return nil
        }
        do {
            return try JSONDecoder().decode(ApplyJournal.self, from: Data(bytes))
        } catch {
            throw UpdError(.corrupt, "\(display): unreadable apply journal (\(JSONErrors.describe(error)))")
        }
    }

    func write(in applyFD: Int32, display: String) throws {
        try Sys.writeFileAtomically(in: applyFD, StateDirectory.journalName, display: display, CanonicalJSON.encode(self, pretty: false))
    }
}

/// The paths of a tree's state directory, `ROOT/.updatinator/`, and the names inside it.
///
/// The apply reaches them only through `open`, which never follows a symlink and refuses a
/// directory it did not make: the paths here are for messages and for readers.
public struct StateDirectory: Sendable {
    public let root: String
    public var directory: String { "\(root)/.updatinator" }
    public var installedManifest: String { "\(directory)/\(Self.installedName)" }
    var apply: String { "\(directory)/apply" }
    var nextApply: String { "\(directory)/\(Self.nextApplyDirectory[0])" }
    var journal: String { "\(apply)/\(Self.journalName)" }
    var fromManifest: String { "\(apply)/\(Self.fromName)" }
    var targetManifest: String { "\(apply)/\(Self.targetName)" }
    var plannedFrom: String { "\(apply)/\(Self.plannedFromName)" }
    var plannedTo: String { "\(apply)/\(Self.plannedToName)" }
    var work: String { "\(apply)/\(Self.workName)" }
    var downloads: String { "\(apply)/\(Self.downloadsName)" }
    /// The delta index the plan was made with, so that a resumed apply makes the same plan.
    var deltaIndex: String { "\(apply)/\(Self.deltasName)" }
    /// Present when the plan keeps bases for a school server's batches.
    var batchMarker: String { "\(apply)/\(Self.batchesName)" }

    static let installedName = "installed.manifest"
    static let lockName = "lock"
    static let journalName = "journal"
    static let fromName = "from.manifest"
    static let targetName = "target.manifest"
    /// The manifests planned with when the machine keeps part of the tree (`MachinePaths`).
    static let plannedFromName = "planned-from.manifest"
    static let plannedToName = "planned-to.manifest"
    static let deltasName = "deltas"
    static let batchesName = "batches"
    /// The subdirectories, as names below the state directory.
    static let applyDirectory = ["apply"]
    /// The work area and the downloads, in an apply's directory.
    static let workName = "work"
    static let downloadsName = "downloads"
    /// Where an apply that takes over from an apply in progress to another target prepares its
    /// state, swapped whole with `apply/` once its journal is there (`ApplyTakeover`).
    static let nextApplyDirectory = ["apply.next"]

    public init(root: String) {
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        self.root = r
    }

    /// Opens the state directory, or its subdirectory `sub`, from the tree's root: every
    /// component must be a real directory owned by the effective user on the root's mount, and
    /// a symlink, another file, another owner or another mount there is refused (`.unsafe`).
    /// Missing directories are made (mode 0700) with `create`; without it, nil when one is missing.
    func open(_ sub: [String] = [], in tree: RootedTree, create: Bool) throws -> Int32? {
        try tree.openDirectoryChain(([ManifestPath.stateDirectoryName] + sub.map { Array($0.utf8) }),
                                    create: create ? 0o700 : nil, owner: geteuid())
    }
}
