import Foundation

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

    static func read(_ path: String) throws -> ApplyJournal? {
        guard (try Sys.lstatIfExists(path)) != nil else { return nil }
        do {
            return try JSONDecoder().decode(ApplyJournal.self, from: Data(Sys.readFile(path, limit: 64 * 1024)))
        } catch let e as UpdError {
            throw e
        } catch {
            throw UpdError(.corrupt, "\(path): unreadable apply journal (\(JSONErrors.describe(error)))")
        }
    }

    func write(_ path: String) throws {
        try Sys.writeFileAtomically(path, CanonicalJSON.encode(self, pretty: false))
    }
}

/// The paths of a tree's state directory, `ROOT/.updatinator/`.
public struct StateDirectory: Sendable {
    public let root: String
    public var directory: String { "\(root)/.updatinator" }
    public var installedManifest: String { "\(directory)/installed.manifest" }
    var apply: String { "\(directory)/apply" }
    var journal: String { "\(apply)/journal" }
    var fromManifest: String { "\(apply)/from.manifest" }
    var targetManifest: String { "\(apply)/target.manifest" }
    var work: String { "\(apply)/work" }
    var downloads: String { "\(apply)/downloads" }
    /// The delta index the plan was made with, so that a resumed apply makes the same plan.
    var deltaIndex: String { "\(apply)/deltas" }
    /// Present when the plan keeps bases for a school server's batches.
    var batchMarker: String { "\(apply)/batches" }

    public init(root: String) {
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        self.root = r
    }
}
