import Foundation
import Updatinator
import UpdatinatorLua

/// The school server's record of its devices, in SQLite: one row per device (its image and
/// version, what it moves to, its last status and when it was last seen) and the history of
/// every report. Safe to use from any thread: one connection behind a lock. Its calls block
/// (SQLite writes to disk): the server makes them on its worker threads, never on the threads
/// that run its async handlers.
public final class FleetInventory: Sendable {
    let database: Locked<any FleetDatabase>
    private let counts: ShortLivedCache<Int>
    private let pendingChecks = Locked<[(CheckRequest, String?, String, Int64)]>([])
    private let peerCandidates: ShortLivedCache<[PeerCandidate]>

    /// Whether each report is also kept in the outbox, for the tier above (`UpstreamService.forwardReports`).
    let keepsOutbox: Bool
    /// Whether other server processes share this inventory (a PostgreSQL one): what a process
    /// keeps in memory of it (enrolments, controls) is then read again.
    public let isShared: Bool

    /// Opens the inventory that `location` names: a SQLite file, or a `postgres://` URL that
    /// several servers share (`FleetStore`).
    public init(path location: String, countLifetime: TimeInterval = 1, keepsOutbox: Bool = false) throws {
        self.keepsOutbox = keepsOutbox
        counts = ShortLivedCache(lifetime: countLifetime, capacity: 10_000)
        peerCandidates = ShortLivedCache(lifetime: countLifetime, capacity: 1000)
        let db = try FleetStore.open(location)
        isShared = db.isShared
        try db.execute("""
            CREATE TABLE IF NOT EXISTS devices (
                device TEXT PRIMARY KEY, image TEXT, version TEXT, channel TEXT, address TEXT,
                status TEXT, code TEXT, target_image TEXT, target_version TEXT, peer TEXT,
                first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, last_report INTEGER, agent_version TEXT);
            CREATE INDEX IF NOT EXISTS devices_by_version ON devices (image, version, status);
            CREATE INDEX IF NOT EXISTS devices_by_target ON devices (target_version, status);
            CREATE TABLE IF NOT EXISTS history (
                id INTEGER PRIMARY KEY, device TEXT NOT NULL, time INTEGER NOT NULL, status TEXT NOT NULL,
                image TEXT, version TEXT, code TEXT, message TEXT, bytes INTEGER);
            CREATE INDEX IF NOT EXISTS history_by_device ON history (device, time);
            CREATE TABLE IF NOT EXISTS schools (
                school TEXT PRIMARY KEY, address TEXT, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
                public_key TEXT, key_fingerprint TEXT, admission TEXT, last_forward INTEGER);
            CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, address TEXT, report TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS forwarded (school TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (school, epoch));
            CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, time INTEGER NOT NULL);
            """)
        // Columns added since the first release, for a database that predates them.
        for column in ["school", "decision", "agent_version", "public_key", "key_fingerprint", "admission"] {
            try db.addColumn("devices", column, "TEXT")
        }
        database = Locked(db)
    }

    /// A check: the device runs `image` `version` (and serves it at `peer`), was seen now, and
    /// was answered `decision` ("update", or the reason there is none: `NoUpdateReason`).
    /// Checks are queued and written together by `writeChecks`, which the server calls five
    /// times a second, and which reports and reads of devices call first; counts may miss
    /// the checks of the last fifth of a second. Only a queue of 50,000 is written at once.
    public func recordCheck(_ request: CheckRequest, address: String?, decision: String, now: Int64) throws {
        let queued = pendingChecks.withLock { pending in
            pending.append((request, address, decision, now))
            return pending.count
        }
        if queued >= 50_000 { try writeChecks() }
    }

    /// Writes the queued checks in one transaction.
    public func writeChecks() throws {
        let checks = pendingChecks.withLock { pending in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
        guard !checks.isEmpty else { return }
        try database.withLock { db in
            try db.transaction {
                for (request, address, decision, now) in checks {
                    try db.query("""
                        INSERT INTO devices (device, image, version, channel, address, peer, status, first_seen, last_seen, school, decision,
                            agent_version)
                        VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'checking', ?7, ?7, ?8, ?9, ?10)
                        ON CONFLICT (device) DO UPDATE SET image = coalesce(?2, devices.image), version = coalesce(?3, devices.version),
                            channel = coalesce(?4, devices.channel), address = coalesce(?5, devices.address), peer = coalesce(?6, devices.peer), last_seen = ?7,
                            school = coalesce(?8, devices.school), decision = ?9, agent_version = coalesce(?10, devices.agent_version)
                        """, [.text(request.device), text(request.image), text(request.version), text(request.channel), text(address),
                              text(request.peer), .integer(now), text(Self.school(of: request)), .text(decision), text(request.agentVersion)])
                }
            }
        }
    }

    /// A report of progress or a result. `image` and `version` name the image the event is about:
    /// the target while checking, downloading or applying, or on failure; the image now running
    /// when `done`.
    public func recordReport(_ report: DeviceReport, address: String?, now: Int64) throws {
        try writeChecks()
        try database.withLock { db in
            try db.transaction {
                try write(report, address: address, now: now, school: nil, in: db)
                if keepsOutbox {
                    try db.query("INSERT INTO outbox (time, address, report) VALUES (?, ?, ?)",
                                 [.integer(now), text(address), .text(String(decoding: try WireCoding.encode(report), as: UTF8.self))])
                }
            }
        }
        forgetCachedCounts()
    }

    /// Writes a report into the device's row and its history; `school`, for a report a school
    /// forwarded, is recorded as the device's school.
    func write(_ report: DeviceReport, address: String?, now: Int64, school: String?, in db: any FleetDatabase) throws {
        if report.status == .done {
            try db.query("""
                INSERT INTO devices (device, image, version, address, status, peer, first_seen, last_seen, last_report)
                VALUES (?1, ?2, ?3, ?4, 'done', ?5, ?6, ?6, ?6)
                ON CONFLICT (device) DO UPDATE SET image = coalesce(?2, devices.image), version = coalesce(?3, devices.version),
                    address = coalesce(?4, devices.address), status = 'done', code = NULL, target_image = NULL,
                    target_version = NULL, peer = ?5, last_seen = ?6, last_report = ?6
                """, [.text(report.device), text(report.image), text(report.version), text(address), text(report.peer), .integer(now)])
        } else {
            try db.query("""
                INSERT INTO devices (device, address, status, code, target_image, target_version, first_seen, last_seen, last_report)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7)
                ON CONFLICT (device) DO UPDATE SET address = coalesce(?2, devices.address), status = ?3, code = ?4,
                    target_image = coalesce(?5, devices.target_image), target_version = coalesce(?6, devices.target_version),
                    last_seen = ?7, last_report = ?7
                """, [.text(report.device), text(address), .text(report.status.rawValue), text(report.code), text(report.image),
                      text(report.version), .integer(now)])
        }
        if let school {
            try db.query("UPDATE devices SET school = ? WHERE device = ?", [.text(school), .text(report.device)])
        }
        try db.query("INSERT INTO history (device, time, status, image, version, code, message, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     [.text(report.device), .integer(now), .text(report.status.rawValue), text(report.image), text(report.version),
                      text(report.code), text(report.message), report.bytes.map { .integer($0) } ?? .null])
    }

    /// How many devices match every filter (field name → value; see `FleetFilter.names`).
    /// Counts are kept until the next report, for at most `countLifetime` seconds (1): a policy asks
    /// the same few counts for every device, and only reports change a status.
    public func count(_ filter: [String: String]) throws -> Int {
        let keys = filter.keys.sorted()
        if let unknown = keys.first(where: { !FleetFilter.names.contains($0) }) {
            throw UpdError(.usage, "fleet: unknown filter '\(unknown)' (known: \(FleetFilter.names.joined(separator: ", ")))")
        }
        let key = keys.map { "\($0)=\(filter[$0]!)" }.joined(separator: "\u{0}")
        return try counts.value(key) {
            let conditions = keys.map { "\($0) = ?" }.joined(separator: " AND ")
            let sql = "SELECT count(*) FROM devices" + (keys.isEmpty ? "" : " WHERE " + conditions)
            return try database.withLock { db in
                Int(try db.query(sql, keys.map { .text(filter[$0]!) }).first?.first?.integer ?? 0)
            }
        }
    }

    /// Peer URLs of admitted devices (other than `asking`) at this image and version, seen within
    /// `maxAge` seconds and not in the middle of a move (applying, downloading, failed), those
    /// whose IPv4 address shares the first `prefix` bits with `near` first, then the most
    /// recently seen. The candidates are kept like counts.
    public func peers(image: String, version: String, near: String?, prefix: Int, limit: Int, now: Int64,
                      asking: String? = nil, maxAge: Int64 = 86_400) throws -> [String] {
        let rows = try peerCandidates.value(image + "\u{0}" + version) {
            try writeChecks()
            return try database.withLock { db in
                try db.query("""
                    SELECT device, peer, address FROM devices WHERE image = ? AND version = ? AND peer IS NOT NULL
                        AND admission = 'admitted' AND (status IS NULL OR status NOT IN ('applying', 'downloading', 'failed'))
                        AND last_seen >= ? ORDER BY last_seen DESC LIMIT 256
                    """, [.text(image), .text(version), .integer(now - maxAge)])
            }.compactMap { row -> PeerCandidate? in
                guard let device = row[0].text, let url = row[1].text else { return nil }
                return PeerCandidate(device: device, url: url, address: row[2].text.flatMap { IPv4.parse($0) })
            }
        }
        let home = near.flatMap { IPv4.parse($0) }
        func isClose(_ candidate: PeerCandidate) -> Bool {
            guard let home, let address = candidate.address else { return false }
            return IPv4.samePrefix(home, address, bits: prefix)
        }
        let others = rows.filter { $0.device != asking }
        let ordered = others.filter(isClose) + others.filter { !isClose($0) }
        return Array(ordered.map(\.url).prefix(max(0, limit)))
    }

    /// Drops the cached counts and peers: a report or an admission changed them.
    func forgetCachedCounts() {
        counts.removeAll()
        peerCandidates.removeAll()
    }

    struct PeerCandidate: Sendable {
        let device: String
        let url: String
        let address: UInt32?
    }

    /// The inventory for operators: counts by image and version and by status, and each device.
    public func summary() throws -> [String: Any] {
        try writeChecks()
        return try database.withLock { db in
            let versions = try db.query("SELECT image, version, count(*) FROM devices GROUP BY image, version ORDER BY image, version")
            let statuses = try db.query("SELECT coalesce(status, 'unknown'), count(*) FROM devices GROUP BY 1 ORDER BY 1")
            let devices = try db.query("SELECT \(Self.deviceColumns.joined(separator: ", ")) FROM devices ORDER BY device")
            return [
                "device_count": devices.count,
                "by_version": versions.map { ["image": $0[0].text ?? NSNull(), "version": $0[1].text ?? NSNull(), "devices": $0[2].integer ?? 0] as [String: Any] },
                "by_status": Dictionary(uniqueKeysWithValues: statuses.map { ($0[0].text ?? "unknown", $0[1].integer ?? 0) }),
                "devices": devices.map { Self.object(Self.deviceColumns, $0) },
                "schools": try db.query("SELECT \(Self.schoolColumns.joined(separator: ", ")) FROM schools ORDER BY school")
                    .map { Self.object(Self.schoolColumns, $0) },
            ]
        }
    }

    /// The school a device names in its check (an extra field `school`), for the operators' filters.
    static func school(of request: CheckRequest) -> String? {
        if case .string(let school) = request.extra["school"] { return school }
        return nil
    }

    func text(_ value: String?) -> SQLValue { value.map { .text($0) } ?? .null }
}

/// Dotted IPv4 addresses, for the nearest-peer rule.
enum IPv4 {
    static func parse(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard let byte = UInt8(part) else { return nil }
            value = value << 8 | UInt32(byte)
        }
        return value
    }

    static func samePrefix(_ a: UInt32, _ b: UInt32, bits: Int) -> Bool {
        let bits = min(32, max(0, bits))
        guard bits > 0 else { return true }
        let mask: UInt32 = bits == 32 ? .max : ~(UInt32.max >> UInt32(bits))
        return a & mask == b & mask
    }
}
