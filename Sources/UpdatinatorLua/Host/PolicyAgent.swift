import Foundation
import Updatinator

/// Runs a client policy as the agent does: the script once (its top level sets its schedule
/// with `upd.schedule`), then its global `tick()` now and after each interval plus a random
/// delay up to the jitter, until stopped. An error in a tick goes to `Output.failure` and the
/// agent goes on; with `once`, one tick runs and its error is thrown.
///
/// The front end handles signals (calling `AgentStop.request`) and prints what `Output` gets.
public struct PolicyAgent {
    /// Where the agent's results go.
    public struct Output {
        /// What a tick returned (its first result, as Lua prints it).
        public var result: (String) -> Void
        /// A tick's error, after which the agent goes on.
        public var failure: (LuaError) -> Void
        /// Reboots the machine, as a tick asked (`upd.system.request_reboot`); the agent stops then.
        public var reboot: () throws -> Void

        public init(result: @escaping (String) -> Void, failure: @escaping (LuaError) -> Void, reboot: @escaping () throws -> Void) {
            self.result = result
            self.failure = failure
            self.reboot = reboot
        }
    }

    public let lua: LuaState
    /// The policy script.
    public let script: String

    public init(lua: LuaState, script: String) {
        self.lua = lua
        self.script = script
    }

    /// Runs until `stop` is requested or a tick asked for a reboot (true) or, with `once`, after
    /// one tick (false). Throws the
    /// script's `LuaError` at load (or, with `once`, in its tick), and `UpdError(.usage)` for a
    /// policy without a schedule (unless `once`) or without `tick()`.
    public func run(once: Bool, stop: AgentStop, output: Output) throws -> Bool {
        try lua.runFile(script)
        guard once || lua.schedule != nil else {
            throw UpdError(.usage, "\(script): the policy sets no schedule (upd.schedule{every = ...}); run it with --once")
        }
        while true {
            do {
                guard let results = try lua.callGlobal("tick") else {
                    throw UpdError(.usage, "\(script): the policy defines no function tick()")
                }
                output.result(results.first.map(\.description) ?? "nil")
                if lua.rebootRequested {
                    try output.reboot()
                    return true
                }
            } catch let error as LuaError {
                // A tick interrupted by the stop ends the agent without an error.
                if stop.isRequested { return true }
                if once { throw error }
                output.failure(error)
            }
            if once { return stop.isRequested }
            let (every, jitter) = lua.schedule!
            if stop.wait(seconds: every + Double.random(in: 0...max(0, jitter))) { return true }
        }
    }
}

/// A request to stop an agent, which any thread (a signal watcher's) may make: it interrupts
/// the script the agent is running and ends its wait for the next tick at once.
public final class AgentStop: Sendable {
    private let requested = Locked(false)
    private let wake = DispatchSemaphore(value: 0)
    private let interrupter: LuaInterrupter

    /// A stop that interrupts `lua` when requested.
    public init(interrupting lua: LuaState) {
        interrupter = lua.interrupter
    }

    public func request() {
        requested.withLock { $0 = true }
        interrupter.interrupt()
        wake.signal()
    }

    public var isRequested: Bool { requested.withLock { $0 } }

    /// Waits `seconds` (on the monotonic clock) or until a stop is requested; whether it was.
    func wait(seconds: Double) -> Bool {
        if isRequested { return true }
        _ = wake.wait(timeout: .now() + .nanoseconds(Int(min(seconds, 1e9) * 1e9)))
        return isRequested
    }
}
