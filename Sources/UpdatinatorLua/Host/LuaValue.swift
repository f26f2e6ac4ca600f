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
            guard lua_checkstack(L, 3) != 0 else { lua_pushnil(L); return }
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

    /// The value at a stack index, converted without running any metamethod. Tables are followed
    /// 16 levels deep; one with more than 100,000 values in all becomes `.opaque("table too
    /// large")`, so a script cannot make the host work without bound.
    func value(at index: Int32, on thread: OpaquePointer? = nil) -> LuaValue {
        let L = thread ?? self.L
        var budget = 100_000
        let converted = convert(at: lua_absindex(L, index), on: L, depth: 0, budget: &budget)
        return budget < 0 ? .opaque("table too large") : converted
    }

    private func convert(at index: Int32, on L: OpaquePointer, depth: Int, budget: inout Int) -> LuaValue {
        budget -= 1
        switch lua_type(L, index) {
        case LUA_TNIL, LUA_TNONE: return .nil
        case LUA_TBOOLEAN: return .boolean(lua_toboolean(L, index) != 0)
        case LUA_TNUMBER:
            if CLua_isinteger(L, index) != 0 { return .integer(Int64(lua_tointegerx(L, index, nil))) }
            return .number(lua_tonumberx(L, index, nil))
        case LUA_TSTRING: return .string(string(at: index, on: L) ?? "")
        case LUA_TTABLE where depth < 16 && budget >= 0:
            // Each level holds a key and a value on the stack; a C function is promised only 20 slots.
            guard lua_checkstack(L, 3) != 0 else { return .opaque("table") }
            let top = lua_gettop(L)
            var fields = [String: LuaValue](), array = [LuaValue]()
            let count = lua_rawlen(L, index)
            var i: lua_Unsigned = 0
            while i < count && budget >= 0 {
                lua_rawgeti(L, index, lua_Integer(i + 1))
                array.append(convert(at: lua_gettop(L), on: L, depth: depth + 1, budget: &budget))
                CLua_pop(L, 1)
                i += 1
            }
            lua_pushnil(L)
            while budget >= 0 && lua_next(L, index) != 0 {
                if lua_type(L, -2) == LUA_TSTRING, let key = string(at: -2, on: L) {
                    fields[key] = convert(at: lua_gettop(L), on: L, depth: depth + 1, budget: &budget)
                }
                CLua_pop(L, 1)
            }
            lua_settop(L, top)  // a key, when the budget ran out mid-way
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
