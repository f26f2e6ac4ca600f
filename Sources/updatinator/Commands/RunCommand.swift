import ArgumentParser
import Foundation
import UpdatinatorLua

struct RunCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Runs a Lua script once, with the upd API.",
        discussion: """
            The script runs in the sandbox (no io or os unless --allow-os; strict globals) with \
            the arguments after -- in the global table arg and as the chunk's varargs. A script \
            error prints SCRIPT:LINE: message and a traceback, and exits with status 1; a call \
            stuck inside a C function 5 s past its time limit is ended by the watchdog with exit \
            status 75. Without --allow-os, upd functions use only the allowed paths (see \
            --allow-path). The \
            upd API is described in docs/lua-api.md.
            """)

    @OptionGroup var scripting: ScriptOptions

    @Argument(help: "The Lua script to run.")
    var script: String

    @Argument(parsing: .postTerminator, help: "Arguments for the script, after --.")
    var arguments: [String] = []

    func execute() throws {
        let lua = try scripting.makeState(script: script)
        let watchdog = ScriptOptions.watchdog(lua, what: script)
        defer { withExtendedLifetime(watchdog) {} }
        do {
            try lua.runFile(script, arguments: arguments)
        } catch let error as LuaError {
            ScriptOptions.report(error)
            throw ExitCode(1)
        }
    }
}
