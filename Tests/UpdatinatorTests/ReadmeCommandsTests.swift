import Foundation
import Testing

/// Every command README.md shows runs as written: scripts/readme-commands runs them on scratch
/// machines (chroots in private namespaces) with the built binary, and this suite checks that
/// it ran each one the README's ```sh blocks hold, with the status the README gives.
@Suite struct ReadmeCommandsTests {
    /// The README's commands, read here on their own so that a block or a line the script
    /// skipped fails the test: each command line (continuations joined), and the status its
    /// comment gives ("# exit 10 ..."), 0 without one.
    static func readmeCommands() throws -> [(line: String, status: Int)] {
        let readme = try String(contentsOf: Scripts.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        var commands: [(String, Int)] = []
        var inside = false
        var pending = ""
        for raw in readme.split(separator: "\n", omittingEmptySubsequences: false) {
            if raw.hasPrefix("```") {
                inside = raw.trimmingCharacters(in: .whitespaces) == "```sh" && !inside
                continue
            }
            guard inside else { continue }
            var line = (pending.isEmpty ? "" : pending + " ") + raw.trimmingCharacters(in: .whitespaces)
            if line.hasSuffix("\\") {
                line.removeLast()
                pending = line.trimmingCharacters(in: .whitespaces)
                continue
            }
            pending = ""
            guard !line.isEmpty, !line.hasPrefix("#") else { continue }
            let status = line.firstMatch(of: /#.*exit\s+(\d+)/).map { Int($0.1)! } ?? 0
            commands.append((line, status))
        }
        return commands
    }

    /// What CI runs itself, and the script leaves out.
    static func leftOut(_ line: String) -> Bool {
        line.contains(/^scripts\/(demo|test|bench|fuzz|soak|vm-test)(\s|$)/)
    }

    @Test func everyReadmeCommandRunsAsWritten() throws {
        let commands = try Self.readmeCommands()
        #expect(commands.count > 20, "the README's command blocks were read: \(commands.count) commands")
        let script = try Subprocess([Scripts.path("readme-commands"), "--binary", CLI.binary])
        try #require(script.waitForExit(seconds: 300), "scripts/readme-commands ended within 5 minutes: \(script.stdout)")
        let output = script.stdout
        try #require(script.wait() == 0, "scripts/readme-commands failed:\n\(output.suffix(6000))\n\(script.stderr.suffix(3000))")
        let reported = Set(output.split(separator: "\n").map(String.init))
        var ran = 0
        for (line, status) in commands {
            if Self.leftOut(line) {
                #expect(reported.contains("readme-commands: left out (CI runs it): \(line)"), "left out: \(line)")
            } else {
                ran += 1
                #expect(reported.contains("readme-commands: ran (exit \(status)): \(line)")
                    || (status == 0 && reported.contains("readme-commands: ran (in the background): \(line)")),
                    "ran with exit \(status): \(line)")
            }
        }
        #expect(reported.contains { $0.hasPrefix("readme-commands: \(ran) commands from ") && $0.hasSuffix(" blocks ran as the README says") },
                "summary: \(output.suffix(300))")
    }
}
