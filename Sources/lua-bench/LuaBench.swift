import Foundation
import Updatinator
import UpdatinatorLua

/// Measures what the Lua layer adds: one `upd` primitive called from Lua against the same Swift
/// call made directly, and a trivial policy decision end to end (a new state, the policy
/// loaded, one decision) against the same decision in Swift. Run by `scripts/bench lua`.
struct WrongDecision: Error {}

/// Where the direct calls' results go, so that the optimizer keeps the calls.
nonisolated(unsafe) var kept = 0

@main
enum LuaBench {
    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    static let policy = """
        local needed = 1024
        function decide(root)
          if upd.system.free_bytes(root) < needed then return "deferred" end
          return "applied"
        end
        """

    static func main() throws {
        let calls = 200_000
        let root = FileManager.default.temporaryDirectory.path

        var sink = 0
        let direct = try seconds {
            for _ in 0..<calls { sink &+= Int(try FilesystemSpace(path: root).free & 1) }
        }
        let lua = try LuaState()
        try lua.run("root = '\(root)'")
        let fromLua = try seconds {
            try lua.run("local f = upd.system.free_bytes for i = 1, \(calls) do f(root) end")
        }

        let decisions = 2_000
        let swiftDecision = try seconds {
            for _ in 0..<decisions { sink &+= try FilesystemSpace(path: root).free < 1024 ? 1 : 2 }
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("lua-bench-policy.lua").path
        try policy.write(toFile: file, atomically: true, encoding: .utf8)
        let luaDecision = try seconds {
            for _ in 0..<decisions {
                let state = try LuaState()
                try state.runFile(file)
                guard try state.callGlobal("decide", [.string(root)])?.first == .string("applied") else { throw WrongDecision() }
            }
        }
        let warm = try LuaState()
        try warm.runFile(file)
        let warmDecision = try seconds {
            for _ in 0..<decisions { _ = try warm.callGlobal("decide", [.string(root)]) }
        }

        func micro(_ s: Double, _ n: Int) -> String { String(format: "%.2f µs", s / Double(n) * 1e6) }
        print("upd.system.free_bytes from Lua:        \(micro(fromLua, calls)) per call")
        print("FilesystemSpace(path:) from Swift:      \(micro(direct, calls)) per call   Lua / Swift = \(String(format: "%.2f", fromLua / direct))")
        print("policy decision, new state each time:   \(micro(luaDecision, decisions)) per decision")
        print("policy decision, loaded state:          \(micro(warmDecision, decisions)) per decision")
        print("the same decision in Swift:             \(micro(swiftDecision, decisions)) per decision   (new state) Lua / Swift = \(String(format: "%.1f", luaDecision / swiftDecision))")
        print("Lua adds \(String(format: "%.3f", (luaDecision - swiftDecision) / Double(decisions) * 1000)) ms to a decision, with a fresh state")
        kept = sink
    }
}
