import ArgumentParser
import CEdit
import Foundation
import UpdatinatorLua

struct ReplCommand: UpdatinatorSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "repl",
        abstract: "Starts an interactive Lua prompt with the upd API, for debugging a machine.",
        discussion: """
            Type Lua: an expression prints its value (tables and objects spelled out), a \
            statement runs, and an incomplete one continues on the next line (>>). Globals are \
            open here. Ctrl-C stops a running command and returns to the prompt; Ctrl-D leaves. \
            On a terminal, lines can be edited and the history is kept in ~/.updatinator_history; \
            piped input is read line by line without prompts.
            """)

    @OptionGroup var scripting: ScriptOptions

    func execute() throws {
        let lua = try scripting.makeState(interactive: true)
        let repl = try LuaREPL(lua: lua)
        let interrupter = lua.interrupter
        let interrupts = SignalWatcher([SIGINT]) { interrupter.interrupt() }
        // With --time-limit, a command stuck inside a C function ends the REPL as it ends `run`.
        let watchdog = ScriptOptions.watchdog(lua, what: "repl")
        let terminal = isatty(0) == 1
        let history = (ProcessInfo.processInfo.environment["HOME"] ?? "/root") + "/.updatinator_history"
        if terminal {
            using_history()
            _ = read_history(history)
            Console.print("Updatinator Lua REPL (Lua 5.4); upd is the API. Ctrl-D leaves.")
        }
        defer { if terminal { _ = write_history(history) } }
        var pending = ""
        while true {
            guard let line = readInput(prompt: pending.isEmpty ? "> " : ">> ", terminal: terminal) else {
                // Ctrl-C at the prompt interrupts the read (EINTR; the handler that flags it runs on
                // another thread): drop the input and prompt again.
                let interrupted = errno == EINTR
                usleep(50_000)
                if terminal && (lua.takeInterrupt() || interrupted) {
                    Console.print("")
                    pending = ""
                    continue
                }
                break
            }
            if terminal && !line.trimmingCharacters(in: .whitespaces).isEmpty { add_history(line) }
            let input = pending.isEmpty ? line : pending + "\n" + line
            _ = lua.takeInterrupt()
            do {
                switch try repl.evaluate(input) {
                case .incomplete:
                    pending = input
                    continue
                case .ran(let shown):
                    if let shown { Console.print(shown) }
                }
            } catch let error as LuaError {
                Console.print(error.message)
            }
            pending = ""
        }
        withExtendedLifetime((interrupts, watchdog)) {}
        if terminal { Console.print("") }
    }

    private func readInput(prompt: String, terminal: Bool) -> String? {
        guard terminal else { return readLine(strippingNewline: true) }
        errno = 0
        guard let raw = readline(prompt) else { return nil }
        defer { free(raw) }
        return String(cString: raw)
    }
}
