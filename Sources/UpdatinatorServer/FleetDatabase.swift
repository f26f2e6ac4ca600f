import Foundation
import Updatinator

/// A value bound to a statement's parameter or read from a row.
enum SQLValue: Equatable, Sendable {
    case null
    case integer(Int64)
    case text(String)

    var text: String? { if case .text(let s) = self { return s } else { return nil } }
    var integer: Int64? { if case .integer(let i) = self { return i } else { return nil } }
}

/// Where the fleet inventory and operators' controls are kept: SQLite, a file of one server's
/// own (a school's), or PostgreSQL, which several server processes share (national servers side
/// by side). The statements are written once, in the dialect both understand: `?` or `?N`
/// parameters, `INSERT … ON CONFLICT … DO UPDATE`, `INTEGER` columns (64-bit in both). Not
/// thread-safe: its owner serialises every use behind a lock.
protocol FleetDatabase: AnyObject {
    /// Whether other processes may change the data meanwhile (what a process keeps in memory
    /// must then be read again).
    var isShared: Bool { get }
    /// Runs schema statements, separated by `;`, that take no parameters and return no rows.
    func execute(_ sql: String) throws
    /// Runs one statement with its parameters, returning its rows.
    @discardableResult
    func query(_ sql: String, _ parameters: [SQLValue]) throws -> [[SQLValue]]
    /// Runs `body` in one transaction, rolled back when it throws.
    func transaction<T>(_ body: () throws -> T) throws -> T
    /// Adds a column that a table made by an older release lacks.
    func addColumn(_ table: String, _ column: String, _ type: String) throws
    /// What a `SELECT` appends to lock the rows it reads until the transaction ends: the
    /// transaction of a SQLite database already holds the whole file.
    var lockingRead: String { get }
}

extension FleetDatabase {
    @discardableResult
    func query(_ sql: String) throws -> [[SQLValue]] { try query(sql, []) }
}

/// Opens the database that `--db` names: a `postgres://` URL, else a SQLite file.
enum FleetStore {
    static func open(_ location: String) throws -> any FleetDatabase {
        if location.hasPrefix("postgres://") || location.hasPrefix("postgresql://") { return try PostgresDatabase(url: location) }
        return try SQLiteDatabase(path: location)
    }
}
