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

    var keys: [String] { Array(values.keys) }

    func set(_ key: String, _ value: LuaValue) throws {
        values[key] = StoredValue(value)
        try save()
    }

    /// Removes `keys` (values the engine has taken over).
    func remove(_ keys: [String]) throws {
        for key in keys { values[key] = nil }
        try save()
    }

    private func save() throws {
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
public typealias StoredValue = JSONValue

extension JSONValue {
    /// A Lua value as JSON: nil for nil and opaque values, which JSON cannot hold; a table with
    /// only a sequence as an array, any other table as an object.
    public init?(_ value: LuaValue) {
        switch value {
        case .nil, .opaque: return nil
        case .boolean(let b): self = .boolean(b)
        case .integer(let i): self = .integer(i)
        case .number(let d): self = .number(d)
        case .string(let s): self = .string(s)
        case .table(let fields, let array):
            if fields.isEmpty && !array.isEmpty {
                self = .array(array.compactMap { JSONValue($0) })
            } else {
                self = .object(fields.compactMapValues { JSONValue($0) })
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
}

extension LuaValue {
    /// A Codable value (an engine report) as a table with the keys of its JSON form, so that a
    /// script sees the same fields that `--json` prints.
    init(encoding value: some Encodable) throws {
        let data = try JSONEncoder().encode(value)
        self = try JSONDecoder().decode(StoredValue.self, from: data).luaValue
    }
}
