import CLua
import Foundation
import Synchronization
import Testing
@testable import UpdatinatorLua
import Updatinator

/// Counts its live instances: a Swift frame that a longjmp skipped would leak them.
final class Tracker {
    static let live = Atomic<Int>(0)
    init() { Tracker.live.add(1, ordering: .relaxed) }
    deinit { Tracker.live.subtract(1, ordering: .relaxed) }
}

struct TestFailure: Error {}

extension LuaState {
    /// Registers a global Swift function, for tests of the bridge.
    func setGlobalFunction(_ name: String, _ body: @escaping (LuaCall) throws -> Int32) {
        CLua_pushglobaltable(L)
        setFunction(name, body)
        CLua_pop(L, 1)
    }
}

@Suite(.serialized) struct BridgeTests {
    @Test func aChunkReturnsItsValues() throws {
        let lua = try LuaState()
        #expect(try lua.run("return 1 + 2, 'x', {a = true, 4}") == [.integer(3), .string("x"), .table(["a": .boolean(true)], array: [.integer(4)])])
    }

    @Test func aSwiftErrorIsACatchableLuaErrorAndLeaksNothing() throws {
        let lua = try LuaState()
        lua.setGlobalFunction("fails") { call in
            let tracker = Tracker()
            _ = try call.string(1)
            withExtendedLifetime(tracker) {}
            throw TestFailure()
        }
        let trackersBefore = Tracker.live.load(ordering: .relaxed)
        let objectsBefore = lua.liveObjects
        let result = try lua.run("""
            local failures, message = 0
            for i = 1, 10000 do
              local ok, err = pcall(function() local r = fails("x"); return r end)
              if not ok then failures = failures + 1; message = err end
              local kr = upd.keyring("/nonexistent-keyring")  -- an expected failure: nil, message, code
              local ok2, err2 = pcall(upd.diff, nil, nil)       -- misuse: raises
              assert(not ok2 and err2:find("bad argument #1 to 'diff'", 1, true), err2)
            end
            return failures, message
            """, chunkName: "=test")
        #expect(result.first == .integer(10000))
        #expect(result.last?.stringValue?.hasPrefix("test:3: fails: TestFailure") == true, "\(result)")
        try lua.run("collectgarbage()")
        #expect(Tracker.live.load(ordering: .relaxed) == trackersBefore, "every Swift frame was unwound")
        #expect(lua.liveObjects == objectsBefore, "every host object was released")
    }

    @Test func objectsAreReleasedByCloseAndByTheCollector() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lua-keyring-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: "\(dir)/k.sec", publicPath: "\(dir)/k.pub")
        let lua = try LuaState()
        let before = lua.liveObjects
        let r = try lua.run("""
            local kept = upd.keyring("\(dir)")
            do
              local kr <close> = upd.keyring("\(dir)")
            end
            local closed
            do
              local kr <close> = upd.keyring("\(dir)")
              closed = kr
            end
            local ok, err = pcall(function() return closed.threshold end)
            return tostring(kept):match("^Keyring"), ok, err, tostring(closed)
            """, chunkName: "=test")
        #expect(r[0] == .string("Keyring"))
        #expect(r[1] == .boolean(false))
        #expect(r[2].stringValue?.contains("Keyring is closed") == true, "\(r)")
        #expect(r[3] == .string("Keyring (closed)"))
        try lua.run("collectgarbage(); collectgarbage()")
        #expect(lua.liveObjects == before)
    }

    @Test func aScriptErrorComesBackWithItsPositionAndATraceback() throws {
        let lua = try LuaState()
        do {
            try lua.run("local function inner() error('broken policy') end\ninner()", chunkName: "=policy.lua")
            Issue.record("no error")
        } catch let e as LuaError {
            #expect(e.message == "policy.lua:1: broken policy")
            #expect(e.traceback?.hasPrefix("stack traceback:") == true)
            #expect(e.traceback?.contains("in local 'inner'") == true, "\(e.traceback ?? "")")
        }
    }

    @Test func coroutinesWorkAcrossUpdCalls() throws {
        let lua = try LuaState()
        let r = try lua.run("""
            local co = coroutine.wrap(function()
              coroutine.yield(upd.time.in_window("00:00-24:00"))
              local ok, err = pcall(upd.sleep, -1)
              coroutine.yield(err)
              return upd.system.free_bytes("/") > 0
            end)
            return co(), co(), co()
            """, chunkName: "=co")
        #expect(r[0] == .boolean(true))
        #expect(r[1].stringValue?.contains("bad argument #1 to 'sleep'") == true, "\(r)")
        #expect(r[2] == .boolean(true))
    }
}
