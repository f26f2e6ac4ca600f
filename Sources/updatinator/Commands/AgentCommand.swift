import ArgumentParser
import Foundation
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
            returns. An error in a tick is printed and the agent goes on. A tick that calls \
            upd.system.request_reboot() reboots the machine (systemctl reboot) once it has \
            returned, and the agent ends. SIGTERM or SIGINT \
            stop it cleanly: a running script is interrupted, and an apply in progress stops at \
            a resumable point; a script still running 5 s later (inside a C function) is ended \
            by the watchdog with exit status 75. With --once, one tick runs at once and its error is the exit status.
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
        let lua = try scripting.makeState(script: policy)
        let stop = AgentStop(interrupting: lua)
        let watchdog = ScriptOptions.watchdog(lua, what: "agent")
        let watcher = SignalWatcher([SIGTERM, SIGINT]) {
            stop.request()
            watchdog.stopRequested()
        }
        defer { withExtendedLifetime(watcher) {} }
        let output = PolicyAgent.Output(result: { Console.print("tick: " + $0) }, failure: ScriptOptions.report, reboot: Self.reboot)
        let stopped: Bool
        do {
            stopped = try PolicyAgent(lua: lua, script: policy).run(once: once, stop: stop, output: output)
        } catch let error as LuaError {
            ScriptOptions.report(error)
            throw ExitCode(1)
        }
        if stopped { Console.print("agent: stopped") }
    }

    /// Runs the reboot command a tick asked for, failing with its status when it fails.
    static func reboot() throws {
        let command = Environment.rebootCommand
        Console.print("agent: rebooting (\(command.joined(separator: " ")))")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw UpdError(.io, "\(command.joined(separator: " ")) exited with status \(process.terminationStatus); the machine was not rebooted")
        }
    }
}
