internal import CLua

/// The evaluation side of an interactive prompt, as Lua's own `lua.c`: a line is tried as an
/// expression first (`return LINE`), so that values print; input that ends too early waits for
/// more lines; results are shown with tables and userdata spelled out.
public final class LuaREPL {
    public enum Outcome: Equatable {
        /// The input ran; what it returned, shown (nil when it returned nothing).
        case ran(String?)
        /// The input is an incomplete statement: read another line and evaluate them together.
        case incomplete
    }

    public let lua: LuaState

    /// Shows values: strings as they are at the top level and quoted inside tables, tables as
    /// `{ 1, 2, key = value }` (three levels deep), everything else with `tostring`.
    static let show = """
        local function show(value, depth, seen)
          local kind = type(value)
          if kind == "string" then return depth == 0 and value or string.format("%q", value) end
          if kind ~= "table" or seen[value] or depth >= 3 then return tostring(value) end
          seen[value] = true
          local parts, count = {}, #value
          for i = 1, count do parts[#parts + 1] = show(value[i], depth + 1, seen) end
          local keys = {}
          for k in pairs(value) do
            if not (math.type(k) == "integer" and k >= 1 and k <= count) then keys[#keys + 1] = k end
          end
          table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
          for _, k in ipairs(keys) do
            local name = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. show(k, 1, seen) .. "]"
            parts[#parts + 1] = name .. " = " .. show(value[k], depth + 1, seen)
          end
          seen[value] = nil
          return #parts == 0 and "{}" or "{ " .. table.concat(parts, ", ") .. " }"
        end
        return function(...)
          local out = {}
          for i = 1, select("#", ...) do out[i] = show((select(i, ...)), 0, {}) end
          return table.concat(out, "\\t")
        end
        """

    public init(lua: LuaState) throws {
        self.lua = lua
        try lua.load(Array(Self.show.utf8), chunkName: "=repl")
        try lua.protectedCall(arguments: 0, results: 1)
        lua.references["show"] = luaL_ref(lua.L, CLua_registryindex())
    }

    /// Evaluates one input (one or more lines). Script errors are thrown as `LuaError`.
    public func evaluate(_ input: String) throws -> Outcome {
        let L = lua.L
        let base = lua_gettop(L)
        defer { lua_settop(L, base) }
        do {
            try lua.load(Array(("return " + input).utf8), chunkName: "=stdin")
        } catch {
            do {
                try lua.load(Array(input.utf8), chunkName: "=stdin")
            } catch let e as LuaError where e.message.hasSuffix("<eof>") {
                return .incomplete
            }
        }
        lua_rawgeti(L, CLua_registryindex(), lua_Integer(lua.references["show"]!))
        CLua_insert(L, -2)
        try lua.protectedCall(arguments: 0, results: LUA_MULTRET)
        let results = lua_gettop(L) - base - 1
        guard results > 0 else { return .ran(nil) }
        try lua.protectedCall(arguments: results, results: 1)
        return .ran(lua.string(at: -1))
    }
}
