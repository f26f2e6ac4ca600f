internal import CLua

/// A Lua value as Swift sees it: what the host passes in and gets back.
public enum LuaValue: Equatable, Sendable, CustomStringConvertible {
    case `nil`
    case boolean(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    /// A table's string-keyed fields and its array part.
    case table([String: LuaValue], array: [LuaValue])
    /// A function, userdata or thread, by its type name (not convertible).
    case opaque(String)

    public static func table(_ fields: [String: LuaValue]) -> LuaValue { .table(fields, array: []) }
    public static func array(_ items: [LuaValue]) -> LuaValue { .table([:], array: items) }

    public var description: String {
        switch self {
        case .nil: return "nil"
        case .boolean(let b): return String(b)
        case .integer(let i): return String(i)
        case .number(let d): return String(d)
        case .string(let s): return s
        case .table: return "table"
        case .opaque(let type): return type
        }
    }

    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var integerValue: Int64? {
        switch self {
        case .integer(let i): return i
        case .number(let d) where d == d.rounded(): return Int64(exactly: d)
        default: return nil
        }
    }
    public var isTruthy: Bool {
        switch self {
        case .nil, .boolean(false): return false
        default: return true
        }
    }
    public subscript(key: String) -> LuaValue {
        if case .table(let fields, _) = self { return fields[key] ?? .nil }
        return .nil
    }
}

extension LuaState {
    /// Pushes a Swift value (tables built fresh, without metatables).
    func push(_ value: LuaValue, on thread: OpaquePointer? = nil) {
        let L = thread ?? self.L
        switch value {
        case .nil: lua_pushnil(L)
        case .boolean(let b): lua_pushboolean(L, b ? 1 : 0)
        case .integer(let i): lua_pushinteger(L, lua_Integer(i))
        case .number(let d): lua_pushnumber(L, d)
        case .string(let s): push(s, on: L)
        case .table(let fields, let array):
            lua_createtable(L, Int32(array.count), Int32(fields.count))
            for (i, item) in array.enumerated() {
                push(item, on: L)
                lua_rawseti(L, -2, lua_Integer(i + 1))
            }
            for (key, field) in fields.sorted(by: { $0.key < $1.key }) {
                push(key, on: L)
                push(field, on: L)
                lua_rawset(L, -3)
            }
        case .opaque: lua_pushnil(L)
        }
    }

    func push(_ string: String, on thread: OpaquePointer? = nil) {
        let L = thread ?? self.L
        var s = string
        s.withUTF8 { _ = lua_pushlstring(L, UnsafeRawPointer($0.baseAddress)?.assumingMemoryBound(to: CChar.self), $0.count) }
    }

    /// The value at a stack index, converted without running any metamethod.
    func value(at index: Int32, on thread: OpaquePointer? = nil, depth: Int = 0) -> LuaValue {
        let L = thread ?? self.L
        switch lua_type(L, index) {
        case LUA_TNIL, LUA_TNONE: return .nil
        case LUA_TBOOLEAN: return .boolean(lua_toboolean(L, index) != 0)
        case LUA_TNUMBER:
            if CLua_isinteger(L, index) != 0 { return .integer(Int64(lua_tointegerx(L, index, nil))) }
            return .number(lua_tonumberx(L, index, nil))
        case LUA_TSTRING: return .string(string(at: index, on: L) ?? "")
        case LUA_TTABLE where depth < 16:
            let table = lua_absindex(L, index)
            var fields = [String: LuaValue](), array = [LuaValue]()
            let count = lua_rawlen(L, table)
            for i in 0..<count {
                lua_rawgeti(L, table, lua_Integer(i + 1))
                array.append(value(at: -1, on: L, depth: depth + 1))
                CLua_pop(L, 1)
            }
            lua_pushnil(L)
            while lua_next(L, table) != 0 {
                if lua_type(L, -2) == LUA_TSTRING, let key = string(at: -2, on: L) {
                    fields[key] = value(at: -1, on: L, depth: depth + 1)
                }
                CLua_pop(L, 1)
            }
            return .table(fields, array: array)
        default:
            return .opaque(String(cString: lua_typename(L, lua_type(L, index))))
        }
    }

    /// The bytes of a string value (not converting numbers in place, which would upset `lua_next`).
    func string(at index: Int32, on thread: OpaquePointer? = nil) -> String? {
        let L = thread ?? self.L
        guard lua_type(L, index) == LUA_TSTRING else { return nil }
        var length = 0
        guard let pointer = lua_tolstring(L, index, &length) else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    }
}
