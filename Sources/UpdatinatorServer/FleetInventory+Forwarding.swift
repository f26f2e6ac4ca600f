import Foundation
import Updatinator

/// The roll-up of reports between tiers. A school server keeps each report it records in its
/// outbox, in the same transaction, numbered in order (`seq`); `ReportForwarder` sends the
/// oldest upstream in batches and removes them only once upstream has answered that it
/// recorded them. The upper tier keeps, per school and outbox (`epoch`: a random name the
/// outbox gets when it is made, so that a school whose database was replaced starts a new
/// count), the highest number it recorded, and skips what it already has: a batch sent again
/// after a lost answer counts once, even when two server processes sharing the inventory get it
/// at the same time.
extension FleetInventory {
    /// The outbox's name, made on first use.
    public func outboxEpoch() throws -> String {
        try database.withLock { db in
            try db.transaction {
                if let epoch = try db.query("SELECT value FROM settings WHERE name = 'outbox_epoch'").first?.first?.text { return epoch }
                let epoch = UUID().uuidString.lowercased()
                try db.query("INSERT INTO settings (name, value) VALUES ('outbox_epoch', ?)", [.text(epoch)])
                return epoch
            }
        }
    }

    /// The oldest `limit` reports of the outbox, in order.
    public func outbox(limit: Int) throws -> [ForwardedReports.Entry] {
        try database.withLock { db in
            try db.query("SELECT seq, time, address, report FROM outbox ORDER BY seq LIMIT ?", [.integer(Int64(limit))]).map { row in
                let report = try WireCoding.decode(DeviceReport.self, from: Array((row[3].text ?? "").utf8))
                return ForwardedReports.Entry(seq: row[0].integer ?? 0, time: row[1].integer ?? 0, address: row[2].text, report: report)
            }
        }
    }

    /// How many reports wait in the outbox.
    public func outboxCount() throws -> Int {
        try database.withLock { db in Int(try db.query("SELECT count(*) FROM outbox").first?.first?.integer ?? 0) }
    }

    /// Removes the reports upstream recorded: those numbered up to `seq`.
    public func removeFromOutbox(through seq: Int64) throws {
        try database.withLock { db in _ = try db.query("DELETE FROM outbox WHERE seq <= ?", [.integer(seq)]) }
    }

    /// Records the reports a school forwarded that this server does not have yet, in one
    /// transaction, and returns how many were new.
    public func recordForwarded(_ batch: ForwardedReports, school: String, now: Int64) throws -> Int {
        try writeChecks()
        let recorded: Int = try database.withLock { db in
            try db.transaction {
                let key: [SQLValue] = [.text(school), .text(batch.epoch)]
                // The school's row, locked until the end of the transaction: another server process
                // given the same batch at the same time waits, then sees what this one recorded.
                try db.query("INSERT INTO forwarded (school, epoch, seq) VALUES (?, ?, 0) ON CONFLICT (school, epoch) DO NOTHING", key)
                let last = try db.query("SELECT seq FROM forwarded WHERE school = ? AND epoch = ?" + db.lockingRead, key).first?.first?.integer ?? 0
                let new = batch.reports.filter { $0.seq > last }
                for entry in new { try write(entry.report, address: entry.address, now: entry.time, school: school, in: db) }
                if let highest = new.last?.seq {
                    try db.query("UPDATE forwarded SET seq = ? WHERE school = ? AND epoch = ?", [.integer(highest)] + key)
                }
                try db.query("UPDATE schools SET last_forward = ? WHERE school = ?", [.integer(now), .text(school)])
                return new.count
            }
        }
        forgetCachedCounts()
        return recorded
    }

    static let schoolColumns = ["school", "admission", "key_fingerprint", "address", "first_seen", "last_seen", "last_forward"]

    /// The school servers that enrolled here, with their admission and their last forwarded batch.
    public func schools() throws -> [[String: Any]] {
        try database.withLock { db in
            try db.query("SELECT \(Self.schoolColumns.joined(separator: ", ")) FROM schools ORDER BY school").map { Self.object(Self.schoolColumns, $0) }
        }
    }
}
