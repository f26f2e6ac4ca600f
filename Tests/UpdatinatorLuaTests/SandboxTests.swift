import Foundation
import Testing
import Updatinator
@testable import UpdatinatorLua

@Suite struct SandboxTests {
    func error(_ code: String, options: LuaState.Options = .init()) throws -> String? {
        let lua = try LuaState(options: options)
        do {
            try lua.run(code, chunkName: "=script")
            return nil
        } catch let e as LuaError {
            return e.message
        }
    }

    @Test("lua-sandbox: no io, os, debug, package, file loading or bytecode; host objects' metatables are locked", arguments: [
        ("os.execute('touch /tmp/updatinator-sandbox-escape')", "global 'os' is not declared"),
        ("package.loadlib('libc.so.6', 'system')", "global 'package' is not declared"),
        ("assert(load(string.dump(function() end), 'chunk', 'b'))", "attempt to load a binary chunk"),
        ("io.open('/etc/passwd')", "global 'io' is not declared"),
        ("dofile('/etc/passwd')", "global 'dofile' is not declared"),
        ("loadfile('/etc/passwd')", "global 'loadfile' is not declared"),
        ("debug.sethook()", "global 'debug' is not declared"),
        ("require('os')", "module 'os' not found"),
        ("assert(load(string.dump(function() end)))", "attempt to load a binary chunk"),
        ("local function f() sttaus = 1 end f()", "assignment to undeclared global 'sttaus'"),
        ("local x = undefined_name", "global 'undefined_name' is not declared"),
        ("setmetatable({}, {__gc = function() while true do end end})", "__gc metamethods are not allowed"),
        ("setmetatable(_G, nil)", "cannot change a protected metatable"),
        ("setmetatable(_G, {__index = function() return 1 end})", "cannot change a protected metatable"),
        ("getmetatable(_G).__newindex = nil", "attempt to index a string value"),
    ])
    func refuses(code: String, message: String) throws {
        let e = try error(code)
        #expect(e?.contains(message) == true, "\(e ?? "no error")")
    }

    @Test("lua-sandbox: a script gets the word 'locked' for a host object's metatable, so it cannot rewrite its methods")
    func hostObjectsHaveLockedMetatables() throws {
        let keys = FileManager.default.temporaryDirectory.appendingPathComponent("lua-locked-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: keys, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: keys) }
        try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: "\(keys)/k.sec", publicPath: "\(keys)/k.pub")
        let lua = try LuaState()
        let r = try lua.run("""
            local kr = assert(upd.keyring("\(keys)"))
            local ok, err = pcall(function() getmetatable(kr).__index = function() return "hijacked" end end)
            return getmetatable(kr), ok, err, kr.directory
            """, chunkName: "=script")
        #expect(r[0] == .string("locked"))
        #expect(r[1] == .boolean(false), "rewriting the metatable: \(r)")
        #expect(r[2].stringValue?.contains("script:2: attempt to index a string value") == true, "\(r)")
        #expect(r[3] == .string(keys), "the keyring's own field")
    }

    @Test func topLevelGlobalsAndRequireWork() throws {
        let lua = try LuaState()
        let r = try lua.run("""
            status = "ok"
            local function read() return status end
            return read(), require("updatinator") == upd
            """)
        #expect(r == [.string("ok"), .boolean(true)])
    }

    @Test func osAndIoOnlyWhenGranted() throws {
        var options = LuaState.Options()
        options.allowOS = true
        let lua = try LuaState(options: options)
        #expect(try lua.run("return type(os.time()), io.open('/nonexistent') == nil") == [.string("number"), .boolean(true)])
    }

    @Test func anInfiniteLoopIsStopped() throws {
        var options = LuaState.Options()
        options.instructionLimit = 1_000_000
        let e = try error("while true do end", options: options)
        #expect(e?.contains("instruction limit exceeded") == true, "\(e ?? "no error")")
    }

    @Test func aMemoryBombIsStopped() throws {
        var options = LuaState.Options()
        options.memoryLimit = 16 << 20
        let lua = try LuaState(options: options)
        do {
            try lua.run("local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end")
            Issue.record("no error")
        } catch let e as LuaError {
            #expect(e.message.contains("not enough memory"), "\(e.message)")
        }
        // The state is still usable, and its memory came back.
        #expect(try lua.run("return 1 + 1") == [.integer(2)])
        #expect(lua.memoryInUse < 4 << 20)
    }

    @Test("lua-sandbox: collectgarbage cannot switch off the memory limit, and a full collection loop meets the instruction limit")
    func collectgarbageAbuseMeetsTheLimits() throws {
        var options = LuaState.Options()
        options.memoryLimit = 16 << 20
        options.instructionLimit = 1_000_000
        let lua = try LuaState(options: options)
        do {
            try lua.run("collectgarbage('stop') local t = {} for i = 1, 1e9 do t[i] = {} end")
            Issue.record("no error")
        } catch let e as LuaError {
            #expect(e.message.contains("not enough memory"), "\(e.message)")
        }
        #expect(lua.memoryInUse < 4 << 20)
        let e = try error("while true do collectgarbage('collect') end", options: options)
        #expect(e?.contains("instruction limit exceeded") == true, "\(e ?? "no error")")
    }

    @Test func pcallCannotCatchTheInstructionLimit() throws {
        var options = LuaState.Options()
        options.instructionLimit = 1_000_000
        let e = try error("local n = 0 while n < 200000 do n = n + 1; pcall(function() while true do end end) end", options: options)
        #expect(e?.contains("instruction limit exceeded") == true, "\(e ?? "no error")")
    }

    @Test func shortLivedCoroutinesCannotMultiplyTheBudget() throws {
        var options = LuaState.Options()
        options.instructionLimit = 1_000_000
        let e = try error("local function burn() for i = 1, 300 do end end for k = 1, 20000 do coroutine.wrap(burn)() end",
                          options: options)
        #expect(e?.contains("instruction limit exceeded") == true, "\(e ?? "no error")")
    }

    @Test func hostileTablesAreRefusedWithoutHarm() throws {
        let lua = try LuaState()
        // A chain deeper than the stack a C function is promised, converted inside a coroutine.
        try lua.run("""
            local t = {} local c = t for i = 1, 40 do c.a = {} c = c.a end
            coroutine.wrap(function() local l0, l1, l2, l3, l4, l5, l6, l7, l8, l9; upd.state.set("k", t) end)()
            """)
        // A table whose shared subtables would expand to billions of values.
        let r = try lua.run("""
            local t = {} for level = 1, 15 do local n = {} for i = 1, 8 do n[i] = t end t = n end
            return pcall(upd.get_manifest, t, "a", "b")
            """)
        #expect(r.first == .boolean(false))
        #expect(r.last?.stringValue?.contains("bad argument #1 to 'get_manifest'") == true, "\(r)")
    }

    @Test func loadKeepsTheGlobalEnvironmentUnlessGivenOne() throws {
        let lua = try LuaState()
        #expect(try lua.run("return load('return math.pi')() == math.pi, load('return x', 'c', 't', {x = 7})()")
                == [.boolean(true), .integer(7)])
    }

    @Test func eachCallGetsAFreshInstructionBudget() throws {
        var options = LuaState.Options()
        options.instructionLimit = 2_000_000
        let lua = try LuaState(options: options)
        try lua.run("function work() local n = 0 for i = 1, 200000 do n = n + i end return n end")
        for _ in 0..<20 { #expect(try lua.callGlobal("work") == [.integer(20_000_100_000)]) }
    }
}
