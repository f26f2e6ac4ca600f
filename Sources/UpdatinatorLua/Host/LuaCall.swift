internal import CLua
import Updatinator

/// One call from Lua into a Swift function: checked access to its arguments, and its results.
///
/// Argument checks throw `LuaArgumentError`, which the dispatcher raises in Lua as
/// `bad argument #N to 'NAME' (...)` once Swift has returned.
struct LuaCall {
    let L: OpaquePointer
    let name: String
    /// (Unowned-unsafe like `LuaFunction.state`: `__gc` runs while the state closes.)
    unowned(unsafe) let state: LuaState

    var argumentCount: Int32 { lua_gettop(L) }

    func typeName(_ index: Int32) -> String { String(cString: lua_typename(L, lua_type(L, index))) }

    func argumentError(_ index: Int32, _ message: String) -> LuaArgumentError {
        LuaArgumentError(message: "bad argument #\(index) to '\(name)' (\(message))")
    }

    private func expected(_ index: Int32, _ what: String) -> LuaArgumentError {
        argumentError(index, "\(what) expected, got \(lua_type(L, index) == LUA_TNONE ? "no value" : typeName(index))")
    }

    func isNil(_ index: Int32) -> Bool { lua_type(L, index) <= LUA_TNIL }

    func string(_ index: Int32) throws -> String {
        switch lua_type(L, index) {
        case LUA_TSTRING: return state.string(at: index, on: L)!
        case LUA_TNUMBER: return state.value(at: index, on: L).description
        default: throw expected(index, "string")
        }
    }

    func optionalString(_ index: Int32) throws -> String? { isNil(index) ? nil : try string(index) }

    func integer(_ index: Int32) throws -> Int64 {
        guard lua_type(L, index) == LUA_TNUMBER else { throw expected(index, "number") }
        guard let i = state.value(at: index, on: L).integerValue else { throw argumentError(index, "number has no integer representation") }
        return i
    }

    func number(_ index: Int32) throws -> Double {
        guard lua_type(L, index) == LUA_TNUMBER else { throw expected(index, "number") }
        return lua_tonumberx(L, index, nil)
    }

    /// A string, or an array of strings (a list of mirrors).
    func strings(_ index: Int32) throws -> [String] {
        if lua_type(L, index) == LUA_TSTRING { return [try string(index)] }
        guard lua_type(L, index) == LUA_TTABLE, case .table(_, let array) = state.value(at: index, on: L) else {
            throw expected(index, "string or array of strings")
        }
        return try array.map { item in
            guard let s = item.stringValue else { throw argumentError(index, "array of strings expected") }
            return s
        }
    }

    /// An options table's fields, refusing names not in `allowed` (a typo must not pass silently).
    func options(_ index: Int32, allowed: Set<String>) throws -> LuaOptions {
        if isNil(index) { return LuaOptions(call: self, index: 0, fields: [:]) }
        guard lua_type(L, index) == LUA_TTABLE, case .table(let fields, _) = state.value(at: index, on: L) else {
            throw expected(index, "table")
        }
        if let unknown = fields.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw argumentError(index, "unknown option '\(unknown)'")
        }
        return LuaOptions(call: self, index: lua_absindex(L, index), fields: fields)
    }

    // MARK: Objects

    /// The Swift object of a userdata argument of the given type.
    func object<T: AnyObject>(_ index: Int32, _ type: LuaObjectType<T>) throws -> T {
        guard luaL_testudata(L, index, type.name) != nil else { throw expected(index, type.luaName) }
        guard let object = openObject(index, type) else { throw argumentError(index, "\(type.luaName) is closed") }
        return object
    }

    /// The Swift object of a userdata of the given type, or nil when it is another value or closed.
    func openObject<T: AnyObject>(_ index: Int32, _ type: LuaObjectType<T>) -> T? {
        guard let pointer = luaL_testudata(L, index, type.name)?.load(as: UnsafeRawPointer?.self) else { return nil }
        return Unmanaged<LuaObjectBox>.fromOpaque(pointer).takeUnretainedValue().object as? T
    }

    /// Pushes a host object, charging its size against the memory limit.
    func push<T: LuaHostObject>(_ object: T, as type: LuaObjectType<T>) throws {
        try state.pushObject(object, typeName: type.name, bytes: object.hostBytes, on: L)
    }

    // MARK: Results

    func push(_ value: LuaValue) { state.push(value, on: L) }

    /// Pushes the values and returns their count, for `return call.results(...)`.
    func results(_ values: LuaValue...) -> Int32 {
        for v in values { state.push(v, on: L) }
        return Int32(values.count)
    }

    /// An expected failure: `nil, message, code`.
    func failure(_ error: UpdError) -> Int32 {
        results(.nil, .string(error.message), .string(error.code.rawValue))
    }
}

/// The fields of an options table, read when the call starts.
struct LuaOptions {
    let call: LuaCall
    /// The table's stack index (0 when no table was given).
    let index: Int32
    let fields: [String: LuaValue]

    subscript(key: String) -> LuaValue { fields[key] ?? .nil }

    func string(_ key: String) throws -> String? {
        switch self[key] {
        case .nil: return nil
        case .string(let s): return s
        default: throw call.argumentError(index, "option '\(key)' must be a string")
        }
    }

    func integer(_ key: String) throws -> Int64? {
        switch self[key] {
        case .nil: return nil
        case let v where v.integerValue != nil: return v.integerValue
        default: throw call.argumentError(index, "option '\(key)' must be an integer")
        }
    }

    func boolean(_ key: String) throws -> Bool? {
        switch self[key] {
        case .nil: return nil
        case .boolean(let b): return b
        default: throw call.argumentError(index, "option '\(key)' must be a boolean")
        }
    }

    func strings(_ key: String) throws -> [String]? {
        switch self[key] {
        case .nil: return nil
        case .string(let s): return [s]
        case .table(let f, let array) where f.isEmpty:
            return try array.map { item in
                guard let s = item.stringValue else { throw call.argumentError(index, "option '\(key)' must be strings") }
                return s
            }
        default: throw call.argumentError(index, "option '\(key)' must be a string or an array of strings")
        }
    }

    /// Pushes a function option onto the stack and returns its index, or nil when absent.
    func function(_ key: String) throws -> Int32? {
        guard index != 0 else { return nil }
        call.state.push(key, on: call.L)
        lua_rawget(call.L, index)
        switch lua_type(call.L, -1) {
        case LUA_TFUNCTION: return lua_gettop(call.L)
        case LUA_TNIL:
            CLua_pop(call.L, 1)
            return nil
        default:
            CLua_pop(call.L, 1)
            throw call.argumentError(index, "option '\(key)' must be a function")
        }
    }
}

/// A kind of Swift object held by Lua userdata, with its metatable name (`upd.Manifest`).
struct LuaObjectType<T: AnyObject>: Sendable {
    let name: String
    /// The name scripts see in messages: `Manifest`.
    var luaName: String { String(name.split(separator: ".").last ?? Substring(name)) }
}

/// What a userdata holds: a retained box, released by `__gc` or `__close`.
final class LuaObjectBox {
    let object: AnyObject
    /// What the object is charged against the memory limit.
    let bytes: Int

    init(_ object: AnyObject, bytes: Int) {
        self.object = object
        self.bytes = bytes
    }
}
