import Foundation
import Updatinator

/// What operators decide for the fleet: each image's rollout (active, paused or halted, with the
/// reason, and the stage an operator advanced it to) and the devices pinned to a version. Kept
/// in the inventory's database, so it outlives a restart, and in memory, so every check reads it
/// without SQLite; a change takes effect at the next check. Every action is logged with its time.
public final class FleetControls: Sendable {
    /// An image's rollout as operators set it.
    public struct Rollout: Sendable, Equatable {
        public enum State: String, Sendable, CaseIterable { case active, paused, halted }
        public var image: String
        public var state = State.active
        /// Why it is paused or halted, in the operator's words.
        public var reason: String?
        /// How many stages operators advanced the rollout of `stageVersion` (0: none); advancing
        /// the rollout of another version starts again from 0.
        public var stage = 0
        public var stageVersion: String?
        /// When operators last changed it, in seconds since the epoch.
        public var changed: Int64?

        public init(image: String) { self.image = image }
    }

    /// A device held at a version, whatever the policy decides.
    public struct Pin: Sendable, Equatable {
        public var image: String
        public var version: String
        public var since: Int64
    }

    /// What an operator can do.
    public enum Action: Sendable, Equatable {
        case pause(image: String, reason: String?)
        case resume(image: String)
        case halt(image: String, reason: String?)
        case advance(image: String, version: String)
        case pin(device: String, image: String, version: String)
        case release(device: String)

        /// The action's name and what it acts on, as the log records them.
        var record: (name: String, target: String, reason: String?) {
            switch self {
            case .pause(let image, let reason): return ("pause", image, reason)
            case .resume(let image): return ("resume", image, nil)
            case .halt(let image, let reason): return ("halt", image, reason)
            case .advance(let image, let version): return ("advance", image, version)
            case .pin(let device, let image, let version): return ("pin", device, "\(image) \(version)")
            case .release(let device): return ("release", device, nil)
            }
        }
    }

    private struct Current {
        var rollouts = [String: Rollout]()
        var pins = [String: Pin]()
    }

    private let database: Locked<any FleetDatabase>
    private let current: Locked<Current>

    /// Opens the controls kept where `location` names (`FleetStore`), and reads them.
    public init(path location: String) throws {
        let db = try FleetStore.open(location)
        try db.execute("""
            CREATE TABLE IF NOT EXISTS rollouts (
                image TEXT PRIMARY KEY, state TEXT NOT NULL, reason TEXT, stage INTEGER NOT NULL, stage_version TEXT, changed INTEGER);
            CREATE TABLE IF NOT EXISTS pins (device TEXT PRIMARY KEY, image TEXT NOT NULL, version TEXT NOT NULL, since INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS operator_actions (
                id INTEGER PRIMARY KEY, time INTEGER NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT);
            """)
        isShared = db.isShared
        database = Locked(db)
        current = Locked(try Self.load(db))
    }

    /// Whether other server processes may change the controls (a shared PostgreSQL): the server
    /// then reads them again every second (`reload`).
    public let isShared: Bool

    /// Reads the controls again, for what other processes changed.
    public func reload() throws {
        let loaded = try database.withLock { try Self.load($0) }
        current.withLock { $0 = loaded }
    }

    private static func load(_ db: any FleetDatabase) throws -> Current {
        var loaded = Current()
        for row in try db.query("SELECT image, state, reason, stage, changed, stage_version FROM rollouts") {
            guard let image = row[0].text else { continue }
            var rollout = Rollout(image: image)
            rollout.state = row[1].text.flatMap(Rollout.State.init(rawValue:)) ?? .active
            rollout.reason = row[2].text
            rollout.stage = Int(row[3].integer ?? 0)
            rollout.changed = row[4].integer
            rollout.stageVersion = row[5].text
            loaded.rollouts[image] = rollout
        }
        for row in try db.query("SELECT device, image, version, since FROM pins") {
            guard let device = row[0].text, let image = row[1].text, let version = row[2].text else { continue }
            loaded.pins[device] = Pin(image: image, version: version, since: row[3].integer ?? 0)
        }
        return loaded
    }

    /// The image's rollout (active when no operator touched it).
    public func rollout(_ image: String) -> Rollout {
        current.withLock { $0.rollouts[image] } ?? Rollout(image: image)
    }

    /// Every rollout operators touched, by image.
    public func rollouts() -> [Rollout] {
        current.withLock { $0.rollouts.values.sorted { $0.image < $1.image } }
    }

    /// The version the device is pinned to, if any.
    public func pin(_ device: String) -> Pin? {
        current.withLock { $0.pins[device] }
    }

    /// Every pin, by device.
    public func pins() -> [String: Pin] {
        current.withLock { $0.pins }
    }

    /// Carries out an action: written to the database (with the log line) first, then made
    /// current. Resuming or releasing what is not paused or pinned is `nothing_to_do`. Actions
    /// are serialised by the database's lock; checks read `current` meanwhile, which is only
    /// locked to read or to put the result in.
    @discardableResult
    public func perform(_ action: Action, now: Int64) throws -> Rollout? {
        try database.withLock { db in
            var rollout: Rollout?
            try db.transaction {
                // Another server process may have acted since this one last read them.
                if db.isShared {
                    let loaded = try Self.load(db)
                    current.withLock { $0 = loaded }
                }
                let (rollouts, pins) = current.withLock { ($0.rollouts, $0.pins) }
                switch action {
                case .pause(let image, let reason), .halt(let image, let reason):
                    var r = rollouts[image] ?? Rollout(image: image)
                    if case .pause = action, r.state == .halted {
                        throw UpdError(.usage, "the rollout of \(image) is halted; resume it before pausing it")
                    }
                    r.state = { if case .pause = action { return .paused } else { return .halted } }()
                    r.reason = reason
                    rollout = try save(r, now: now, in: db)
                case .resume(let image):
                    var r = rollouts[image] ?? Rollout(image: image)
                    guard r.state != .active else { throw UpdError(.nothingToDo, "the rollout of \(image) is not paused or halted") }
                    r.state = .active
                    r.reason = nil
                    rollout = try save(r, now: now, in: db)
                case .advance(let image, let version):
                    var r = rollouts[image] ?? Rollout(image: image)
                    if r.stageVersion != version { (r.stage, r.stageVersion) = (0, version) }
                    r.stage += 1
                    rollout = try save(r, now: now, in: db)
                case .pin(let device, let image, let version):
                    try db.query("""
                        INSERT INTO pins (device, image, version, since) VALUES (?1, ?2, ?3, ?4)
                        ON CONFLICT (device) DO UPDATE SET image = ?2, version = ?3, since = ?4
                        """, [.text(device), .text(image), .text(version), .integer(now)])
                case .release(let device):
                    guard pins[device] != nil else { throw UpdError(.nothingToDo, "device \(device) is not pinned") }
                    try db.query("DELETE FROM pins WHERE device = ?", [.text(device)])
                }
                let record = action.record
                try db.query("INSERT INTO operator_actions (time, action, target, detail) VALUES (?, ?, ?, ?)",
                             [.integer(now), .text(record.name), .text(record.target), record.reason.map { .text($0) } ?? .null])
            }
            current.withLock { current in
                if let rollout { current.rollouts[rollout.image] = rollout }
                switch action {
                case .pin(let device, let image, let version): current.pins[device] = Pin(image: image, version: version, since: now)
                case .release(let device): current.pins[device] = nil
                default: break
                }
            }
            return rollout
        }
    }

    /// The newest operator actions, newest first: time, action, target and detail.
    public func log(limit: Int = 50) throws -> [[String: Any]] {
        try database.withLock { db in
            try db.query("SELECT time, action, target, detail FROM operator_actions ORDER BY id DESC LIMIT ?", [.integer(Int64(limit))])
        }.map { row in
            var entry: [String: Any] = ["time": row[0].integer ?? 0, "action": row[1].text ?? "", "target": row[2].text ?? ""]
            entry["detail"] = row[3].text
            return entry
        }
    }

    private func save(_ rollout: Rollout, now: Int64, in db: any FleetDatabase) throws -> Rollout {
        var saved = rollout
        saved.changed = now
        try db.query("""
            INSERT INTO rollouts (image, state, reason, stage, stage_version, changed) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
            ON CONFLICT (image) DO UPDATE SET state = ?2, reason = ?3, stage = ?4, stage_version = ?5, changed = ?6
            """,
                     [.text(saved.image), .text(saved.state.rawValue), saved.reason.map { .text($0) } ?? .null,
                      .integer(Int64(saved.stage)), saved.stageVersion.map { .text($0) } ?? .null, .integer(now)])
        return saved
    }
}
