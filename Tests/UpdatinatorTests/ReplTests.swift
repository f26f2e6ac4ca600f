import Foundation
import Testing
@testable import Updatinator

/// The REPL, driven through a pseudo-terminal with `script`, as a field engineer types.
@Suite struct ReplTests {
    let tmp = TemporaryDirectory("repl")

    /// `updatinator repl` on a pseudo-terminal (`script`), with a pipe to type into.
    func terminal() throws -> Subprocess {
        try Subprocess(["script", "-qc", "\(CLI.binary) repl --state \(tmp.sub("state.json"))", "/dev/null"],
                       environment: ["HOME": tmp.path], input: true)
    }

    func type(_ session: Subprocess, _ text: String) {
        session.input!.write(Data(text.utf8))
    }

    /// The prompts the session has shown: "> ", or ">> " for a continued line, at a line's start.
    func prompts(_ session: Subprocess) -> Int {
        session.stdout.replacingOccurrences(of: "\r", with: "").split(separator: "\n", omittingEmptySubsequences: false)
            .filter { $0.hasPrefix("> ") || $0.hasPrefix(">> ") }.count
    }

    @Test func expressionsFunctionsErrorsAndInterruptsKeepThePrompt() throws {
        let session = try terminal()
        defer { session.stop() }
        try #require(session.waitForOutput("> "), "the prompt: \(session.stdout)")
        let lines = ["1 + 2", "function double(x)", "  return x * 2", "end", "double(21)", "error(\"boom\")",
                     "{1, a = {b = \"c\"}}", "print(\"looping\") while true do end"]
        for (index, line) in lines.enumerated() {
            type(session, line + "\n")
            // The next line once the prompt is back (the last line loops and shows none).
            if index < lines.count - 1 {
                try waitUntil(timeout: 30, "the prompt after '\(line)': \(session.stdout)") { prompts(session) >= index + 2 }
            }
        }
        try #require(session.waitForOutput("looping\r\n"), "\(session.stdout)")
        // Ctrl-C, until the loop is stopped.
        let deadline = Date().addingTimeInterval(30)
        while !session.stdout.contains("interrupted") && Date() < deadline {
            type(session, "\u{3}")
            _ = session.waitForOutput("interrupted", seconds: 1)
        }
        // Type only once the prompt is back, or the terminal echoes the line before the prompt.
        try #require(session.waitForOutput("interrupted\r\n> "), "\(session.stdout)")
        type(session, "double(4)\n")
        try #require(session.waitForOutput("double(4)\r\n8\r\n"), "\(session.stdout)")
        type(session, "\u{4}")
        let exited = session.waitForExit(seconds: 30)
        let out = session.stdout.replacingOccurrences(of: "\r", with: "")
        #expect(exited, "Ctrl-D leaves")
        #expect(out.contains("> 1 + 2\n3\n"), "\(out)")
        #expect(out.contains(">> end\n> double(21)\n42\n"), "a multi-line definition: \(out)")
        #expect(out.contains("stdin:1: boom\n> "), "an error, then the prompt: \(out)")
        #expect(out.contains("{ 1, a = { b = \"c\" } }"), "\(out)")
        #expect(out.contains("interrupted\n> "), "Ctrl-C stops the loop and the prompt returns: \(out)")
        #expect(FileManager.default.fileExists(atPath: tmp.sub(".updatinator_history")), "history is kept")
    }

    @Test func pipedInputIsReadWithoutPrompts() throws {
        let out = try Shell.run(["bash", "-c", "printf 'x = 6\\nx * 7\\n' | timeout 60 \(CLI.binary) repl --state \(tmp.sub("state.json"))"])
        #expect(out == "42\n")
    }
}
