import Foundation

/// What the engine remembers to refuse replayed and frozen metadata: for each channel, the highest
/// serial it accepted and the keys that signed it, and the latest time a verified document vouched
/// for. It is the engine's own (`FreshnessStore`): no script reads or writes it.
public struct FreshnessState: Codable, Equatable, Sendable {
    public var channels: [String: ChannelMemory] = [:]
    /// Seconds since the epoch that it is at least: the highest `time` of a verified decision or
    /// `published` of a verified channel file. It only goes up, so a clock stuck in the past
    /// does not make expired metadata fresh again.
    public var notBefore: Int64 = 0

    enum CodingKeys: String, CodingKey {
        case channels
        case notBefore = "not_before"
    }

    public init() {}

    /// The time to judge expiry by: the clock, or the verified time when the clock is behind it.
    public func now(clock: Int64) -> Int64 { max(clock, notBefore) }

    /// Raises the verified time to `time`, a time a verified document vouched for.
    public mutating func vouch(_ time: Int64?) {
        if let time { notBefore = max(notBefore, time) }
    }
}

/// The file that keeps a `FreshnessState`, written durably (a temporary file, fsync, rename,
/// fsync of the directory), beside a marker (`PATH.kept`) that says one was kept. A machine whose
/// file is gone while the marker remains refuses to start its replay protection again from zero.
public struct FreshnessStore: Sendable {
    public let path: String
    public var markerPath: String { path + ".kept" }

    public init(path: String) {
        self.path = path
    }

    /// The state kept, or nil when this machine never kept one (no file, no marker).
    public func load() throws -> FreshnessState? {
        guard (try Sys.lstatIfExists(path)) != nil else {
            guard (try Sys.lstatIfExists(markerPath)) == nil else {
                throw UpdError(.verification, "\(path): the channel serials and verified time this machine accepted are lost "
                    + "(\(markerPath) says they were kept); to start again from zero deliberately, remove \(markerPath)", path: path)
            }
            return nil
        }
        let bytes = try Sys.readFile(path, limit: 1 << 20)
        do {
            return try JSONDecoder().decode(FreshnessState.self, from: Data(bytes))
        } catch {
            throw UpdError(.corrupt, "\(path): not the engine's freshness state (\(JSONErrors.describe(error)))", path: path)
        }
    }

    /// Writes `state` durably, then the marker if it is missing.
    public func save(_ state: FreshnessState) throws {
        try Sys.mkdirs(Sys.parentDirectory(of: path))
        try Sys.writeFileAtomically(path, CanonicalJSON.encode(state))
        if (try Sys.lstatIfExists(markerPath)) == nil {
            try Sys.writeFileAtomically(markerPath, Array("\(Sys.fileName(of: path)) was kept here; see docs/security.md, Rollback\n".utf8))
        }
    }
}
