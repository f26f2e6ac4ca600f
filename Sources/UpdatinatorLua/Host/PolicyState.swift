import Foundation
import Updatinator

/// The small persistent key-value store of `upd.state`: a JSON object in one file, rewritten
/// atomically on every change (or kept in memory when there is no file).
final class PolicyState {
    let file: String?
    private var values: [String: StoredValue] = [:]

    init(file: String?) throws {
        self.file = file
        guard let file, let data = FileManager.default.contents(atPath: file) else { return }
        do {
            values = try JSONDecoder().decode([String: StoredValue].self, from: data)
        } catch {
            throw UpdError(.corrupt, "\(file): not a JSON object of stored values")
        }
    }

    func get(_ key: String) -> LuaValue { values[key]?.luaValue ?? .nil }

    func set(_ key: String, _ value: LuaValue) throws {
        values[key] = StoredValue(value)
        guard let file else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(values)
        let temporary = file + ".tmp"
        try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: temporary, contents: data), rename(temporary, file) == 0 else {
            throw UpdError(.io, "\(file): cannot write the policy state")
        }
    }
}

/// A JSON value as Lua sees it: what `upd.state` keeps, and what a device sends a server policy.
public enum StoredValue: Codable, Equatable, Sendable {
    case boolean(Bool), integer(Int64), number(Double), string(String)
    case array([StoredValue]), object([String: StoredValue])

    public init?(_ value: LuaValue) {
        switch value {
        case .nil, .opaque: return nil
        case .boolean(let b): self = .boolean(b)
        case .integer(let i): self = .integer(i)
        case .number(let d): self = .number(d)
        case .string(let s): self = .string(s)
        case .table(let fields, let array):
            if fields.isEmpty && !array.isEmpty {
                self = .array(array.compactMap { StoredValue($0) })
            } else {
                self = .object(fields.compactMapValues { StoredValue($0) })
            }
        }
    }

    public var luaValue: LuaValue {
        switch self {
        case .boolean(let b): return .boolean(b)
        case .integer(let i): return .integer(i)
        case .number(let d): return .number(d)
        case .string(let s): return .string(s)
        case .array(let a): return .array(a.map(\.luaValue))
        case .object(let o): return .table(o.mapValues(\.luaValue))
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = .boolean(b) }
        else if let i = try? c.decode(Int64.self) { self = .integer(i) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([StoredValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: StoredValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .boolean(let b): try c.encode(b)
        case .integer(let i): try c.encode(i)
        case .number(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}

extension LuaValue {
    /// A Codable value (an engine report) as a table with the keys of its JSON form, so that a
    /// script sees the same fields that `--json` prints.
    init(encoding value: some Encodable) throws {
        let data = try JSONEncoder().encode(value)
        self = try JSONDecoder().decode(StoredValue.self, from: data).luaValue
    }
}
