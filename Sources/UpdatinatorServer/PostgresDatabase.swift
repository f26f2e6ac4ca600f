import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Updatinator

/// The fleet inventory on PostgreSQL, which several server processes share (national servers
/// side by side behind a proxy, none with state of its own). One connection per store, used
/// under its owner's lock; each call waits for its answer, so it is made on a worker thread,
/// never on an event loop. The statements are the SQLite ones: `?N` parameters become `$N`,
/// and the schema's `INTEGER` columns `BIGINT` (`INTEGER PRIMARY KEY`, SQLite's row id,
/// `BIGSERIAL`).
final class PostgresDatabase: FleetDatabase {
    let isShared = true
    let lockingRead = " FOR UPDATE"
    /// The URL without its password, for messages.
    let display: String
    private let connection: PostgresConnection
    private let logger = Logger(label: "updatinator.postgres")

    /// Connects to `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`; a HOST that is a
    /// percent-encoded directory (`%2Frun%2Fpostgresql`) is that directory's Unix socket.
    init(url: String) throws {
        guard let parts = URLComponents(string: url), let user = parts.user, !user.isEmpty,
              case let database = String(parts.path.drop { $0 == "/" }), !database.isEmpty else {
            throw UpdError(.usage, "\(url): postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE expected")
        }
        let host = parts.percentEncodedHost.flatMap { $0.removingPercentEncoding } ?? "127.0.0.1"
        let port = parts.port ?? 5432
        display = "postgres://\(user)@\(parts.percentEncodedHost ?? "")\(parts.port.map { ":\($0)" } ?? "")/\(database)"
        let configuration: PostgresConnection.Configuration
        if host.hasPrefix("/") {
            configuration = .init(unixSocketPath: "\(host)/.s.PGSQL.\(port)", username: user, password: parts.password, database: database)
        } else {
            configuration = .init(host: host, port: port, username: user, password: parts.password, database: database, tls: .disable)
        }
        do {
            connection = try PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration,
                                                        id: 1, logger: logger).wait()
        } catch {
            throw UpdError(.io, "\(display): cannot connect to the fleet inventory: \(Self.describe(error))")
        }
    }

    deinit {
        try? connection.close().wait()
    }

    /// Schema statements, one at a time, under an advisory lock: servers starting together would
    /// otherwise race to create the same tables.
    func execute(_ sql: String) throws {
        try run("SELECT pg_advisory_lock(4218)", [])
        defer { _ = try? run("SELECT pg_advisory_unlock(4218)", []) }
        for statement in sql.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }) where !statement.isEmpty {
            let text = statement.replacingOccurrences(of: "INTEGER PRIMARY KEY AUTOINCREMENT", with: "BIGSERIAL PRIMARY KEY")
                .replacingOccurrences(of: "INTEGER PRIMARY KEY", with: "BIGSERIAL PRIMARY KEY")
                .replacingOccurrences(of: "INTEGER", with: "BIGINT")
            try run(text, [])
        }
    }

    func addColumn(_ table: String, _ column: String, _ type: String) throws {
        try execute("ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS \(column) \(type)")
    }

    @discardableResult
    func query(_ sql: String, _ parameters: [SQLValue]) throws -> [[SQLValue]] {
        try run(Self.numbered(sql), parameters)
    }

    func transaction<T>(_ body: () throws -> T) throws -> T {
        try run("BEGIN", [])
        do {
            let result = try body()
            try run("COMMIT", [])
            return result
        } catch {
            _ = try? run("ROLLBACK", [])
            throw error
        }
    }

    /// `?N` as `$N`, and each bare `?` as the next number.
    static func numbered(_ sql: String) -> String {
        var out = ""
        var next = 1
        var rest = Substring(sql)
        while let mark = rest.firstIndex(of: "?") {
            out += rest[..<mark]
            let digits = rest[rest.index(after: mark)...].prefix { $0.isASCII && $0.isNumber }
            if digits.isEmpty {
                out += "$\(next)"
                next += 1
            } else {
                out += "$" + digits
            }
            rest = rest[rest.index(after: mark)...].dropFirst(digits.count)
        }
        return out + rest
    }

    private func run(_ sql: String, _ parameters: [SQLValue]) throws -> [[SQLValue]] {
        var binds = PostgresBindings(capacity: parameters.count)
        for value in parameters {
            switch value {
            case .null: binds.appendNull()
            case .integer(let i): try binds.append(i)
            case .text(let s): try binds.append(s)
            }
        }
        do {
            let result = try connection.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger).wait()
            return try result.rows.map { row in try row.map(Self.value) }
        } catch {
            throw UpdError(.io, "\(display): '\(sql.prefix(60))…': \(Self.describe(error))")
        }
    }

    private static func value(_ cell: PostgresCell) throws -> SQLValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int8: return .integer(try cell.decode(Int64.self))
        case .int4: return .integer(Int64(try cell.decode(Int32.self)))
        case .int2: return .integer(Int64(try cell.decode(Int16.self)))
        default: return .text(try cell.decode(String.self))
        }
    }

    /// What PostgreSQL said: its message and detail, when it said one.
    private static func describe(_ error: Error) -> String {
        if let error = error as? PSQLError, let server = error.serverInfo {
            return [server[.message], server[.detail]].compactMap { $0 }.joined(separator: ": ")
        }
        return String(reflecting: error)
    }
}
