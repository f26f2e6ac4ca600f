import CSQLite
import Foundation
import Updatinator

/// One SQLite connection with prepared statements kept by their text. Not thread-safe: the
/// inventory serialises every use behind its lock.
final class SQLiteDatabase: FleetDatabase {
    private var db: OpaquePointer?
    private var statements = [String: OpaquePointer]()
    let path: String

    init(path: String) throws {
        self.path = path
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(db)
            throw UpdError(.io, "\(path): cannot open the fleet inventory: \(message)")
        }
        sqlite3_busy_timeout(db, 5000)
        try execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")
    }

    var isShared: Bool { false }
    var lockingRead: String { "" }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close(db)
    }

    private func failure(_ what: String) -> UpdError {
        let code = sqlite3_errcode(db)
        let message = String(cString: sqlite3_errmsg(db))
        let kind: UpdError.Code = code == SQLITE_FULL ? .noSpace : (code == SQLITE_CORRUPT || code == SQLITE_NOTADB ? .corrupt : .io)
        return UpdError(kind, "\(path): \(what): \(message)")
    }

    /// Runs statements that take no parameters and return no rows (the schema, pragmas).
    func execute(_ sql: String) throws {
        guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw failure("cannot run '\(sql.prefix(40))…'") }
    }

    func addColumn(_ table: String, _ column: String, _ type: String) throws {
        let columns = Set(try query("PRAGMA table_info(\(table))").compactMap { $0[1].text })
        if !columns.contains(column) { try execute("ALTER TABLE \(table) ADD COLUMN \(column) \(type)") }
    }

    /// Runs one statement with its parameters, returning its rows.
    @discardableResult
    func query(_ sql: String, _ parameters: [SQLValue]) throws -> [[SQLValue]] {
        let statement = try prepared(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        for (index, value) in parameters.enumerated() {
            let position = Int32(index + 1)
            switch value {
            case .null: sqlite3_bind_null(statement, position)
            case .integer(let i): sqlite3_bind_int64(statement, position, i)
            case .text(let s): _ = CSQLite_bind_text(statement, position, s, -1)
            }
        }
        var rows = [[SQLValue]]()
        while true {
            let step = sqlite3_step(statement)
            if step == SQLITE_DONE { break }
            guard step == SQLITE_ROW else { throw failure("cannot run '\(sql.prefix(40))…'") }
            rows.append((0..<sqlite3_column_count(statement)).map { column in
                switch sqlite3_column_type(statement, column) {
                case SQLITE_INTEGER: return .integer(sqlite3_column_int64(statement, column))
                case SQLITE_NULL: return .null
                default: return .text(String(cString: sqlite3_column_text(statement, column)))
                }
            })
        }
        return rows
    }

    /// Runs `body` in one transaction, rolled back when it throws.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    private func prepared(_ sql: String) throws -> OpaquePointer {
        if let statement = statements[sql] { return statement }
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw failure("cannot prepare '\(sql.prefix(40))…'")
        }
        statements[sql] = statement
        return statement
    }
}
