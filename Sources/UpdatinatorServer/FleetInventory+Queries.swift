import Foundation
import Updatinator

/// Which devices an operator asks for: every field optional, all of them must match.
public struct DeviceQuery: Sendable, Equatable {
    public var image: String?
    public var version: String?
    public var status: String?
    public var school: String?
    /// The last answer to its check: "update" or a `NoUpdateReason`.
    public var decision: String?
    /// `pending`, `admitted` or `rejected` (`AdmissionState`).
    public var admission: String?
    /// Seen within this many seconds of now.
    public var seenWithin: Int64?
    public var limit = 1000

    public init() {}

    /// The query's fields by their names in the management API's query string.
    public static let names = ["image", "version", "status", "school", "decision", "admission", "seen_within", "limit"]

    /// The query a URL's parameters name; an unknown name or a malformed number is refused.
    public init(parameters: [(String, String)]) throws {
        for (name, value) in parameters {
            switch name {
            case "image": image = value
            case "version": version = value
            case "status": status = value
            case "school": school = value
            case "decision": decision = value
            case "admission":
                guard AdmissionState(rawValue: value) != nil else { throw UpdError(.usage, "admission: pending, admitted or rejected expected") }
                admission = value
            case "seen_within":
                guard let seconds = Int64(value), seconds >= 0 else { throw UpdError(.usage, "seen_within: a number of seconds expected") }
                seenWithin = seconds
            case "limit":
                guard let count = Int(value), (1...100_000).contains(count) else { throw UpdError(.usage, "limit: 1 to 100000 expected") }
                limit = count
            default:
                throw UpdError(.usage, "unknown filter '\(name)' (known: \(Self.names.joined(separator: ", ")))")
            }
        }
    }
}

extension FleetInventory {
    static let deviceColumns = ["device", "image", "version", "channel", "school", "address", "status", "code", "decision",
                                "target_image", "target_version", "peer", "agent_version", "admission", "key_fingerprint",
                                "first_seen", "last_seen", "last_report"]

    /// The devices that match, most recently seen first.
    public func devices(_ query: DeviceQuery, now: Int64) throws -> [[String: Any]] {
        try writeChecks()
        var conditions = [String]()
        var values = [SQLValue]()
        for (column, value) in [("image", query.image), ("version", query.version), ("status", query.status),
                                ("school", query.school), ("decision", query.decision), ("admission", query.admission)] {
            if let value {
                conditions.append("\(column) = ?")
                values.append(.text(value))
            }
        }
        if let seconds = query.seenWithin {
            conditions.append("last_seen >= ?")
            values.append(.integer(now - seconds))
        }
        let sql = "SELECT \(Self.deviceColumns.joined(separator: ", ")) FROM devices"
            + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + " ORDER BY last_seen DESC, device LIMIT ?"
        values.append(.integer(Int64(query.limit)))
        return try database.withLock { db in try db.query(sql, values) }.map { Self.object(Self.deviceColumns, $0) }
    }

    /// One device and its reports, newest first (at most `historyLimit`); nil for a device never seen.
    public func device(_ id: String, historyLimit: Int = 200) throws -> [String: Any]? {
        try writeChecks()
        return try database.withLock { db -> [String: Any]? in
            let sql = "SELECT \(Self.deviceColumns.joined(separator: ", ")) FROM devices WHERE device = ?"
            guard let row = try db.query(sql, [.text(id)]).first else { return nil }
            var device = Self.object(Self.deviceColumns, row)
            let names = ["time", "status", "image", "version", "code", "message", "bytes"]
            device["history"] = try db.query("""
                SELECT time, status, image, version, code, message, bytes FROM history WHERE device = ? ORDER BY time DESC, id DESC LIMIT ?
                """, [.text(id), .integer(Int64(historyLimit))]).map { Self.object(names, $0) }
            return device
        }
    }

    /// The versions the image's devices run now.
    public func versions(of image: String) throws -> [String] {
        try writeChecks()
        return try database.withLock { db in
            try db.query("SELECT DISTINCT version FROM devices WHERE image = ? AND version IS NOT NULL ORDER BY version", [.text(image)])
                .compactMap { $0[0].text }
        }
    }

    /// A rollout's counts: the image's devices, those done at `version`, those failed on it,
    /// those moving to it, and the devices' last answers by reason.
    public func rolloutCounts(image: String, version: String) throws -> [String: Int] {
        try writeChecks()
        return try database.withLock { db in
            var counts = [String: Int]()
            func count(_ sql: String, _ values: [SQLValue]) throws -> Int {
                Int(try db.query(sql, values).first?.first?.integer ?? 0)
            }
            counts["devices"] = try count("SELECT count(*) FROM devices WHERE image = ? OR target_image = ?", [.text(image), .text(image)])
            counts["done"] = try count("SELECT count(*) FROM devices WHERE image = ? AND version = ? AND status = 'done'",
                                       [.text(image), .text(version)])
            counts["failed"] = try count("SELECT count(*) FROM devices WHERE target_image = ? AND target_version = ? AND status = 'failed'",
                                         [.text(image), .text(version)])
            counts["moving"] = try count("""
                SELECT count(*) FROM devices WHERE target_image = ? AND target_version = ? AND status IN ('downloading', 'applying', 'staged')
                """, [.text(image), .text(version)])
            for row in try db.query("SELECT decision, count(*) FROM devices WHERE image = ? AND decision IS NOT NULL GROUP BY decision",
                                    [.text(image)]) {
                if let decision = row[0].text { counts["decision_" + decision] = Int(row[1].integer ?? 0) }
            }
            return counts
        }
    }

    /// How the rollout went: for each report of a device reaching `version` done or failing on
    /// it, the time and the running totals of devices done and failed (each device counted once,
    /// at its latest report of each kind).
    public func progress(image: String, version: String) throws -> [(time: Int64, done: Int, failed: Int)] {
        try writeChecks()
        let rows = try database.withLock { db in
            try db.query("""
                SELECT max(time), status FROM history WHERE image = ? AND version = ? AND status IN ('done', 'failed')
                GROUP BY device, status ORDER BY 1
                """, [.text(image), .text(version)])
        }
        var done = 0, failed = 0
        return rows.compactMap { row in
            guard let time = row[0].integer, let status = row[1].text else { return nil }
            if status == "done" { done += 1 } else { failed += 1 }
            return (time, done, failed)
        }
    }

    /// The devices whose last report is a failure, newest first, with the failure's message.
    public func failing(limit: Int = 50) throws -> [[String: Any]] {
        try writeChecks()
        let names = ["device", "image", "version", "target_image", "target_version", "code", "last_report", "message"]
        return try database.withLock { db in
            try db.query("""
                SELECT device, image, version, target_image, target_version, code, last_report,
                    (SELECT message FROM history h WHERE h.device = d.device AND h.status = 'failed' ORDER BY time DESC, id DESC LIMIT 1)
                FROM devices d WHERE status = 'failed' ORDER BY last_report DESC LIMIT ?
                """, [.integer(Int64(limit))])
        }.map { Self.object(names, $0) }
    }

    /// Devices by image, version and status, and reports by status: what `/metrics` exports.
    public func gauges() throws -> (devices: [(image: String, version: String, status: String, count: Int)], reports: [String: Int]) {
        try writeChecks()
        return try database.withLock { db in
            let devices = try db.query("""
                SELECT coalesce(image, ''), coalesce(version, ''), coalesce(status, 'unknown'), count(*) FROM devices GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
                """).map { ($0[0].text ?? "", $0[1].text ?? "", $0[2].text ?? "", Int($0[3].integer ?? 0)) }
            let reports = try db.query("SELECT status, count(*) FROM history GROUP BY status")
            return (devices, Dictionary(uniqueKeysWithValues: reports.map { ($0[0].text ?? "", Int($0[1].integer ?? 0)) }))
        }
    }

    /// A row as a JSON object, without its nulls.
    static func object(_ names: [String], _ row: [SQLValue]) -> [String: Any] {
        var object = [String: Any]()
        for (name, value) in zip(names, row) {
            switch value {
            case .null: break
            case .integer(let i): object[name] = i
            case .text(let s): object[name] = s
            }
        }
        return object
    }
}
