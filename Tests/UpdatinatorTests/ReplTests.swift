import Foundation
import Testing
@testable import Updatinator

/// The REPL, driven through a pseudo-terminal with `script`, as a field engineer types.
@Suite struct ReplTests {
    let tmp = TemporaryDirectory("repl")

    /// Types `lines` into `updatinator repl` on a terminal, one every fifth of a second; a line
    /// "^C" sends Ctrl-C, once a second for three seconds (one may arrive before the command
    /// starts, and Ctrl-C at the prompt does nothing). Returns the terminal's output; the whole
    /// session is killed after a minute.
    func type(_ lines: [String]) throws -> String {
        let typing = lines.map { $0 == "^C" ? "for i in 1 2 3; do sleep 1; printf '\\003'; done; sleep 0.5" : "printf '%s\\n' '\($0)'; sleep 0.2" }
            .joined(separator: "; ")
        let command = "\(CLI.binary) repl --state \(tmp.sub("state.json"))"
        let output = try Shell.run(["bash", "-c", "(sleep 1; \(typing); sleep 0.5; printf '\\004') | HOME=\(tmp.path) timeout 60 script -qc '\(command)' /dev/null"])
        return output.replacingOccurrences(of: "\r", with: "")
    }

    @Test func expressionsFunctionsErrorsAndInterruptsKeepThePrompt() throws {
        let out = try type(["1 + 2", "function double(x)", "  return x * 2", "end", "double(21)", "error(\"boom\")",
                            "{1, a = {b = \"c\"}}", "while true do end", "^C", "double(4)"])
        #expect(out.contains("> 1 + 2\n3\n"), "\(out)")
        #expect(out.contains(">> end\n> double(21)\n42\n"), "a multi-line definition: \(out)")
        #expect(out.contains("stdin:1: boom\n> "), "an error, then the prompt: \(out)")
        #expect(out.contains("{ 1, a = { b = \"c\" } }"), "\(out)")
        #expect(out.contains("interrupted\n> "), "Ctrl-C stops the loop: \(out)")
        #expect(out.contains("double(4)\n8\n"), "the prompt stays: \(out)")
        #expect(FileManager.default.fileExists(atPath: tmp.sub(".updatinator_history")), "history is kept")
    }

    @Test func pipedInputIsReadWithoutPrompts() throws {
        let out = try Shell.run(["bash", "-c", "printf 'x = 6\\nx * 7\\n' | timeout 60 \(CLI.binary) repl --state \(tmp.sub("state.json"))"])
        #expect(out == "42\n")
    }
}
