import ArgumentParser
import Foundation
import Updatinator
import UpdatinatorLua

/// The options of every command that runs Lua scripts.
struct ScriptOptions: ParsableArguments {
    @Option(help: "The tree that upd functions act on when a script gives no root.")
    var root: String?

    @Option(help: "The file upd.state keeps its values in; default: ROOT/.updatinator/policy-state.json with --root, else /var/lib/updatinator/policy-state.json. The engine keeps the channel serials and the verified time it accepted in freshness.json beside it.")
    var state: String?

    @Option(help: "A JSON file of settings that upd.config lays over a policy's defaults; the agent reads /etc/updatinator/policy.json when it exists.")
    var config: String?

    @Flag(help: "Grant scripts Lua's io and os libraries (and with them every path).")
    var allowOS = false

    @Option(name: .customLong("allow-path"), help: ArgumentHelp("A directory whose files scripts may read and write, besides the state directory, the root's, the sysroot and what the settings file names (repeatable).", valueName: "DIR"))
    var allowPaths: [String] = []

    @Option(help: "Lua instructions a script may run per call (0 for no limit); default 200 million, none in the REPL.")
    var instructionLimit: Int?

    @Option(help: "Seconds of wall-clock time a script may run per call, not counting fetches, applies and requests to servers (0 for no limit); default 60, none in the REPL.")
    var timeLimit: Double?

    @Option(help: "Bytes of memory the Lua state and the objects it holds may use (0 for no limit).")
    var memoryLimit = 256 << 20

    /// The exit status when the watchdog ends a script no hook could stop.
    static let watchdogStatus: Int32 = 75
    /// Seconds past its time limit, or after a request to stop, before the watchdog ends the process.
    static let watchdogGrace = 5.0

    /// Ends the process (status 75, one line) when a call stays inside a C function past its
    /// time limit plus a grace, or does not stop within the grace once `stopRequested`.
    static func watchdog(_ lua: LuaState, what: String) -> LuaWatchdog {
        LuaWatchdog(watching: lua.interrupter, grace: watchdogGrace) { reason in
            Console.error("\(what): \(reason); ended by the watchdog (an apply in progress resumes at the next run)")
            _exit(watchdogStatus)
        }
    }
    @OptionGroup var tls: TLSOptions

    /// Prints a script's error, `SCRIPT:LINE: message` and its traceback, on standard error.
    static func report(_ error: LuaError) {
        Console.error(error.message)
        if let traceback = error.traceback { Console.log(.error, traceback) }
    }

    /// The paths a script may use: see docs/lua-api.md (Paths).
    func allowedPaths(script: String?) -> AllowedPaths {
        let stateFile = state ?? root.map { "\($0)/.updatinator/policy-state.json" } ?? DefaultPaths.policyState
        var writable = [DefaultPaths.state, DefaultPaths.sysroot, (stateFile as NSString).deletingLastPathComponent] + allowPaths
        if let root { writable.append("\(root)/.updatinator") }
        var readable = [DefaultPaths.configuration]
        if let script { readable.append((script as NSString).deletingLastPathComponent) }
        if let config {
            readable.append((config as NSString).deletingLastPathComponent)
            // The paths the operator's settings name (a root of / is a tree, not every file).
            writable += Self.paths(in: FileManager.default.contents(atPath: config).flatMap { try? JSONSerialization.jsonObject(with: $0) })
        }
        return AllowedPaths(writable: writable, readable: readable, trees: ["/"] + (root.map { [$0] } ?? []))
    }

    /// The absolute paths among a settings file's strings, other than `/`.
    private static func paths(in value: Any?) -> [String] {
        switch value {
        case let s as String: return s.hasPrefix("/") && s != "/" ? [s] : []
        case let array as [Any]: return array.flatMap { paths(in: $0) }
        case let object as [String: Any]: return object.values.flatMap { paths(in: $0) }
        default: return []
        }
    }

    /// A Lua state with these options, for `script` (nil at the prompt).
    func makeState(interactive: Bool = false, script: String? = nil) throws -> LuaState {
        var options = LuaState.Options()
        options.allowOS = allowOS
        if !allowOS { options.allowedPaths = allowedPaths(script: script) }
        // At the prompt, globals are open and Ctrl-C, not a count, stops a long command.
        options.strictGlobals = !interactive
        let limit = instructionLimit ?? (interactive ? 0 : 200_000_000)
        options.instructionLimit = limit > 0 ? limit : nil
        options.memoryLimit = memoryLimit > 0 ? memoryLimit : nil
        let seconds = timeLimit ?? (interactive ? 0 : 60)
        options.timeLimit = seconds > 0 ? seconds : nil
        options.deviceID = Environment.deviceID
        options.deviceKey = DeviceCredentials.keyPath(nil)
        options.enrolmentToken = try DeviceCredentials.enrolmentToken(nil)
        options.caFile = tls.caFile
        options.fixedTime = Environment.fixedTime
        if let directory = Environment.powerSupplyDirectory { options.powerSupplyDirectory = directory }
        let lua = try LuaState(options: options)
        lua.output = { Console.write($0) }
        lua.log = { level, message in
            Console.log(level == "error" ? .error : level == "warn" ? .warning : .info, "[\(level)] \(message)")
        }
        lua.root = root
        lua.configFile = config
        let stateFile = state ?? root.map { "\($0)/.updatinator/policy-state.json" } ?? DefaultPaths.policyState
        lua.stateFile = stateFile
        lua.freshnessFile = URL(fileURLWithPath: stateFile).deletingLastPathComponent().appendingPathComponent("freshness.json").path
        return lua
    }
}
