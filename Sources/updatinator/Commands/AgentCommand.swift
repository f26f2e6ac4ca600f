import ArgumentParser
import Foundation
import Synchronization
import Updatinator
import UpdatinatorLua

struct AgentCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Runs a client policy on its schedule until stopped.",
        discussion: """
            Runs the policy script once (its top level sets its schedule with \
            upd.schedule{every = "6h", jitter = "30m"}), then calls its global function tick() \
            at each interval, with a random delay up to the jitter, and prints what each tick \
            returns. An error in a tick is printed and the agent goes on. SIGTERM or SIGINT \
            stop it cleanly: a running script is interrupted, and an apply in progress stops at \
            a resumable point. With --once, one tick runs at once and its error is the exit status.
            """)

    @OptionGroup var scripting: ScriptOptions

    @Option(help: "The policy script.")
    var policy = DefaultPaths.policy

    @Flag(help: "Run one tick now and exit.")
    var once = false

    func execute() throws {
        var scripting = scripting
        if scripting.config == nil && FileManager.default.fileExists(atPath: DefaultPaths.policySettings) {
            scripting.config = DefaultPaths.policySettings
        }
        let lua = try scripting.makeState()
        let stop = StopRequest(lua)
        do {
            try lua.runFile(policy)
        } catch let error as LuaError {
            ScriptOptions.report(error)
            throw ExitCode(1)
        }
        guard once || lua.schedule != nil else {
            throw UpdError(.usage, "\(policy): the policy sets no schedule (upd.schedule{every = ...}); run it with --once")
        }
        while true {
            do {
                guard let results = try lua.callGlobal("tick") else {
                    throw UpdError(.usage, "\(policy): the policy defines no function tick()")
                }
                Console.print("tick: " + (results.first.map(\.description) ?? "nil"))
            } catch let error as LuaError {
                if stop.requested { break }
                ScriptOptions.report(error)
                if once { throw ExitCode(1) }
            }
            if once || stop.requested { break }
            let (every, jitter) = lua.schedule!
            let wake = Date().addingTimeInterval(every + Double.random(in: 0...max(0, jitter)))
            while Date() < wake && !stop.requested { usleep(100_000) }
            if stop.requested { break }
        }
        if stop.requested { Console.print("agent: stopped") }
    }
}

/// SIGTERM and SIGINT: remembered, and passed to the running script as an interruption.
final class StopRequest: @unchecked Sendable {
    private let flag = Atomic<Bool>(false)
    private let interrupter: LuaInterrupter
    private var watcher: SignalWatcher?

    init(_ lua: LuaState) {
        interrupter = lua.interrupter
        watcher = SignalWatcher([SIGTERM, SIGINT]) { [unowned self] in
            flag.store(true, ordering: .relaxed)
            interrupter.interrupt()
        }
    }

    var requested: Bool { flag.load(ordering: .relaxed) }
}
