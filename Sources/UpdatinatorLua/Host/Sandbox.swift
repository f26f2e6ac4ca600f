internal import CLua

/// The libraries and globals a script gets: an allowlist, not a denylist.
enum Sandbox {
    /// Runs once per state, before any script. Its arguments: `debug.getinfo` (kept here only,
    /// for strict globals), whether globals are strict, the host's output function, and the
    /// host's charge for a new coroutine.
    static let prelude = """
        local getinfo, strict, write, charge = ...
        local raw_load, tostring, error, rawset, rawget, select, concat = load, tostring, error, rawset, rawget, select, table.concat
        local raw_setmetatable, create, wrap = setmetatable, coroutine.create, coroutine.wrap

        dofile, loadfile = nil, nil

        -- Text chunks only: precompiled bytecode can break the interpreter.
        function load(chunk, name, mode, ...)
          return raw_load(chunk, name, "t", ...)
        end

        -- A finalizer would run outside the limits (Lua runs it without hooks, and at close).
        function setmetatable(t, mt)
          if mt ~= nil and rawget(mt, "__gc") ~= nil then error("__gc metamethods are not allowed", 2) end
          return raw_setmetatable(t, mt)
        end

        -- Each coroutine starts a new instruction count: charge for it.
        function coroutine.create(f) charge() return create(f) end
        function coroutine.wrap(f) charge() return wrap(f) end

        function print(...)
          local parts = {}
          for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
          write(concat(parts, "\\t") .. "\\n")
        end

        local upd = upd
        function require(name)
          if name == "updatinator" then return upd end
          error("module '" .. tostring(name) .. "' not found (scripts can require only \\"updatinator\\")", 2)
        end

        if strict then
          -- As Lua's classic strict.lua: a global is created only at a chunk's top level, and
          -- reading one never assigned raises, so a typo is an error.
          local declared = {}
          raw_setmetatable(_G, {
            __metatable = "strict globals",
            __newindex = function(t, k, v)
              if not declared[k] then
                local what = getinfo(2, "S").what
                if what ~= "main" and what ~= "C" then
                  error("assignment to undeclared global '" .. tostring(k) .. "'", 2)
                end
                declared[k] = true
              end
              rawset(t, k, v)
            end,
            __index = function(_, k)
              if not declared[k] and getinfo(2, "S").what ~= "C" then
                error("global '" .. tostring(k) .. "' is not declared", 2)
              end
              return nil
            end,
          })
        end
        """

    static func install(in state: LuaState) throws {
        let L = state.L
        var libraries: [(String, lua_CFunction)] = [
            ("_G", luaopen_base), ("string", luaopen_string), ("table", luaopen_table), ("math", luaopen_math),
            ("utf8", luaopen_utf8), ("coroutine", luaopen_coroutine),
        ]
        if state.options.allowOS { libraries += [("io", luaopen_io), ("os", luaopen_os)] }
        for (name, open) in libraries {
            luaL_requiref(L, name, open, 1)
            CLua_pop(L, 1)
        }
        UpdLibrary.install(in: state)

        try state.load(Array(prelude.utf8), chunkName: "=sandbox")
        luaL_requiref(L, "debug", luaopen_debug, 0)
        lua_getfield(L, -1, "getinfo")
        CLua_remove(L, -2)
        lua_pushboolean(L, state.options.strictGlobals ? 1 : 0)
        state.pushFunction("write") { call in
            call.state.output(try call.string(1))
            return 0
        }
        lua_pushcclosure(L, CLua_charge_coroutine, 0)
        try state.protectedCall(arguments: 4, results: 0)
    }
}
