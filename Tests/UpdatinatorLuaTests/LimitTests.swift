import Dispatch
import Foundation
import Testing
import Updatinator
@testable import UpdatinatorLua

/// The limits of a call into Lua hold whatever the script runs: message handlers, `__close`,
/// coroutines, error objects with metamethods, and the host's own waits.
@Suite struct LimitTests {
    /// Runs `code` on a thread of its own and returns its error message; nil when it ran without
    /// one. A call that the limits did not stop is still running after a minute (a hang, not a
    /// slow machine): the test records it instead of hanging.
    func error(_ code: String, _ options: LuaState.Options, interruptAfterStart: Bool = false,
               sourceLocation: SourceLocation = #_sourceLocation) throws -> String? {
        nonisolated(unsafe) let lua = try LuaState(options: options)
        let started = Locked(false)
        lua.output = { _ in started.withLock { $0 = true } }
        let result = Locked<Result<String?, Error>?>(nil)
        let ended = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let r = Result<String?, Error> {
                do {
                    try lua.run(code, chunkName: "=script")
                    return nil
                } catch let e as LuaError {
                    return e.message
                }
            }
            result.withLock { $0 = r }
            ended.signal()
        }
        if interruptAfterStart {
            // The script prints once it is running; interrupt it then (again until it ends).
            let interrupter = lua.interrupter
            while ended.wait(timeout: .now() + .milliseconds(20)) == .timedOut {
                if started.withLock({ $0 }) { interrupter.interrupt() }
            }
            ended.signal()
        }
        guard ended.wait(timeout: .now() + 60) == .success else {
            Issue.record("the call is still running after a minute", sourceLocation: sourceLocation)
            return nil
        }
        return try result.withLock { $0! }.get()
    }

    static func instructions(_ n: Int) -> LuaState.Options {
        var options = LuaState.Options()
        options.instructionLimit = n
        options.timeLimit = nil
        return options
    }

    static let escapes = [
        // The message handler, called by the error that the hook raised.
        "xpcall(function() while true do end end, function(e) while true do end end)",
        // A handler that calls a handler.
        "xpcall(function() while true do end end, function(e) xpcall(error, function() while true do end end) while true do end end)",
        // A to-be-closed variable's __close, run while the stop unwinds.
        "do local x <close> = setmetatable({}, {__close = function() while true do end end}) while true do end end",
        "local function f() local x <close> = setmetatable({}, {__close = function() while true do end end}) while true do end end "
            + "while true do pcall(f) end",
        // Nested pcall and xpcall, each level catching and going on.
        "local function f(n) while true do if n > 0 then xpcall(f, function() while true do end end, n - 1) end end end f(50)",
        // Coroutines: their own hooks, and handlers inside them.
        "local co = coroutine.wrap(function() xpcall(function() while true do end end, function() while true do end end) end) co()",
        "while true do local co = coroutine.create(function() while true do end end) coroutine.resume(co) end",
        "local co = coroutine.wrap(function() while true do pcall(coroutine.yield) end end) while true do pcall(co) end",
        // Error objects whose metamethods loop, in the host's handler and in a script's.
        "error(setmetatable({}, {__tostring = function() while true do end end}))",
        "xpcall(function() while true do end end, function(e) return tostring(setmetatable({}, {__tostring = function() while true do end end})) end)",
    ]

    @Test("lua-sandbox: the instruction budget holds across message handlers, __close, coroutines and error metamethods", arguments: escapes)
    func theBudgetHolds(code: String) throws {
        let e = try error(code, Self.instructions(1_000_000))
        #expect(e?.hasPrefix("script:") == true && e?.contains("instruction limit exceeded (1000000 instructions)") == true, "\(e ?? "no error")")
    }

    @Test("lua-sandbox: the time limit holds across message handlers, __close, coroutines and error metamethods", arguments: escapes)
    func theTimeLimitHolds(code: String) throws {
        var options = LuaState.Options()
        options.instructionLimit = nil
        options.timeLimit = 0.2
        let e = try error(code, options)
        #expect(e?.contains("time limit exceeded (0.2 s)") == true, "\(e ?? "no error")")
    }

    @Test("lua-sandbox: an interrupt stops a script in its message handlers and __close", arguments: escapes)
    func anInterruptHolds(code: String) throws {
        var options = LuaState.Options()
        options.instructionLimit = nil
        options.timeLimit = nil
        let e = try error("print('running') " + code, options, interruptAfterStart: true)
        #expect(e?.contains("interrupted") == true, "\(e ?? "no error")")
    }

    @Test func theStateRunsNormallyAfterAStop() throws {
        let lua = try LuaState(options: Self.instructions(1_000_000))
        #expect(throws: LuaError.self) { try lua.run("xpcall(function() while true do end end, function(e) while true do end end)") }
        #expect(try lua.run("local t = {} for i = 1, 1000 do t[i] = {i} end return #t") == [.integer(1000)])
    }

    @Test("lua-sandbox: upd.sleep wakes at the call's deadline, and when interrupted, and cannot be caught")
    func sleepEndsAtTheDeadline() throws {
        var options = LuaState.Options()
        options.timeLimit = 0.3
        let e = try error("while true do pcall(upd.sleep, 3600) end", options)
        #expect(e?.contains("script:1: time limit exceeded (0.3 s)") == true, "\(e ?? "no error")")
        options.timeLimit = nil
        let i = try error("print('sleeping') while true do pcall(upd.sleep, 3600) end", options, interruptAfterStart: true)
        #expect(i?.contains("script:1: interrupted") == true, "\(i ?? "no error")")
    }

    @Test func aShortSleepEndsOnItsOwn() throws {
        let lua = try LuaState()
        #expect(try lua.run("upd.sleep(0.01) return 1") == [.integer(1)])
    }

    @Test("lua-sandbox: manifests a script holds count against its memory limit, and are given back when collected")
    func hostObjectsCountAgainstTheMemoryLimit() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lua-memory-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A manifest of 20,000 files: about 2 MB in memory, 1 MB as text.
        let hash = Blake2b.hash([])
        let time = Timestamp(seconds: 0, nanoseconds: 0)
        let entries = [ManifestEntry(path: .root, kind: .directory, metadata: Metadata(mode: 0o755, uid: 0, gid: 0, mtime: time))]
            + (0..<20_000).map { i in
                ManifestEntry(path: try! ManifestPath(String(format: "/file-%06d-with-a-longish-name", i)),
                              kind: .file(size: 1, hash: hash, blobSize: 10), metadata: Metadata(mode: 0o644, uid: 0, gid: 0, mtime: time))
            }
        let text = ManifestWriter.write(Manifest(image: "big", version: "1", entries: entries))
        #expect(FileManager.default.createFile(atPath: "\(dir)/big.manifest", contents: Data(text)))
        var options = LuaState.Options()
        options.memoryLimit = 32 << 20
        let lua = try LuaState(options: options)
        #expect(try lua.run("m = assert(upd.manifest.load('\(dir)/big.manifest')) return m.entry_count") == [.integer(20_001)])
        let used = lua.memoryInUse
        #expect(used > 2_000_000, "the manifest is charged: \(used) bytes in use")
        try lua.run("m = nil collectgarbage()")
        #expect(lua.memoryInUse < used - 2_000_000, "and given back: \(lua.memoryInUse) of \(used)")
        // Kept, they reach the limit; dropped, they are collected and loading goes on.
        let kept = try error("local all = {} for i = 1, 100 do all[i] = assert(upd.manifest.load('\(dir)/big.manifest')) end", options)
        #expect(kept?.contains("load: memory limit exceeded (33554432 bytes): no room for a Manifest of") == true, "\(kept ?? "no error")")
        #expect(try lua.run("for i = 1, 100 do local m = assert(upd.manifest.load('\(dir)/big.manifest')) end return 1") == [.integer(1)])
    }
}
