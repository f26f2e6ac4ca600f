import ArgumentParser
import Foundation
import Updatinator
import UpdatinatorLua

/// The options of every command that runs Lua scripts.
struct ScriptOptions: ParsableArguments {
    @Option(help: "The tree that upd functions act on when a script gives no root.")
    var root: String?

    @Option(help: "The file upd.state keeps its values in; default: ROOT/.updatinator/policy-state.json with --root, else /var/lib/updatinator/policy-state.json.")
    var state: String?

    @Option(help: "A JSON file of settings that upd.config lays over a policy's defaults; the agent reads /etc/updatinator/policy.json when it exists.")
    var config: String?

    @Flag(help: "Grant scripts Lua's io and os libraries.")
    var allowOS = false

    @Option(help: "Lua instructions a script may run per call (0 for no limit); default 200 million, none in the REPL.")
    var instructionLimit: Int?

    @Option(help: "Bytes of memory the Lua state may use (0 for no limit).")
    var memoryLimit = 256 << 20

    @OptionGroup var tls: TLSOptions

    /// Prints a script's error, `SCRIPT:LINE: message` and its traceback, on standard error.
    static func report(_ error: LuaError) {
        Console.error(error.message)
        if let traceback = error.traceback { Console.log(.error, traceback) }
    }

    /// A Lua state with these options.
    func makeState(interactive: Bool = false) throws -> LuaState {
        var options = LuaState.Options()
        options.allowOS = allowOS
        // At the prompt, globals are open and Ctrl-C, not a count, stops a long command.
        options.strictGlobals = !interactive
        let limit = instructionLimit ?? (interactive ? 0 : 200_000_000)
        options.instructionLimit = limit > 0 ? limit : nil
        options.memoryLimit = memoryLimit > 0 ? memoryLimit : nil
        options.deviceID = Environment.deviceID
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
        lua.stateFile = state ?? root.map { "\($0)/.updatinator/policy-state.json" } ?? DefaultPaths.policyState
        return lua
    }
}
