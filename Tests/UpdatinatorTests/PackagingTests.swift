import Foundation
import Testing
@testable import Updatinator

/// What a distribution ships around the binary: journal priorities, the man page, completions
/// and the install step.
@Suite struct PackagingTests {
    let tmp = TemporaryDirectory("packaging")

    /// Runs the CLI through `sh`, with JOURNAL_STREAM set to the device and inode of its own
    /// standard error (as systemd does) when `journal`, or to another file's when not.
    func runLogging(_ arguments: [String], journal: Bool) throws -> CLI.Result {
        let other = tmp.sub("elsewhere")
        try Sys.writeFileAtomically(other, [])
        let stream = journal ? "$(stat -L -c %d:%i /proc/self/fd/2)" : "$(stat -L -c %d:%i \(other))"
        let child = try Subprocess(["sh", "-c", "JOURNAL_STREAM=\(stream) exec \"$0\" \"$@\"", CLI.binary] + arguments)
        return CLI.Result(status: child.wait(), stdout: child.stdout, stderr: child.stderr)
    }

    @Test func linesOnTheJournalCarryTheirPriority() throws {
        let script = tmp.sub("log.lua")
        try Sys.writeFileAtomically(script, Array("""
            upd.log.info("starting")
            upd.log.warn("careful")
            print("to stdout")
            error("boom")
            """.utf8))
        let r = try runLogging(["run", script], journal: true)
        #expect(r.status == 1 && r.stdout == "to stdout\n", "\(r.stdout)\(r.stderr)")
        let lines = r.stderr.split(separator: "\n").map(String.init)
        try #require(lines.count > 3, "\(r.stderr)")
        #expect(lines[0] == "<6>[info] starting" && lines[1] == "<4>[warn] careful", "\(r.stderr)")
        #expect(lines[2] == "<3>updatinator: \(script):4: boom", "\(r.stderr)")
        #expect(lines.dropFirst(3).allSatisfy { $0.hasPrefix("<3>") }, "the traceback is an error too: \(r.stderr)")

        let failed = try runLogging(["verify", tmp.sub("missing.manifest"), "--keyring", tmp.sub("none")], journal: true)
        #expect(failed.status != 0 && failed.stderr.hasPrefix("<3>updatinator: ") && failed.stderr.filter { $0 == "\n" }.count == 1,
                "\(failed.stderr)")
    }

    @Test func linesElsewhereHaveNoPriority() throws {
        let script = tmp.sub("log.lua")
        try Sys.writeFileAtomically(script, Array("upd.log.warn(\"careful\")\n".utf8))
        let r = try runLogging(["run", script], journal: false)
        #expect(r.status == 0 && r.stderr == "[warn] careful\n", "\(r.stderr)")
    }

    static func shipped(_ path: String) throws -> String {
        try String(contentsOfFile: Scripts.repositoryRoot.appendingPathComponent(path).path, encoding: .utf8)
    }

    /// Each subcommand of the man page, with the arguments its list names (`--keyring`, `-h`,
    /// `<file>`) and the line after its name (its abstract).
    static func manPageCommands() throws -> [String: (arguments: Set<String>, abstract: String)] {
        let lines = try shipped("contrib/man/updatinator.1").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var commands = [String: (arguments: Set<String>, abstract: String)]()
        var current: String?
        for (index, line) in lines.enumerated() {
            let words = line.split(separator: " ").map(String.init)
            if words.starts(with: [".It", "Em"]), words.count == 3 {
                current = words[2]
                commands[words[2]] = ([], index + 1 < lines.count ? lines[index + 1] : "")
            } else if line == ".El", let name = current, commands[name] != nil, !commands[name]!.arguments.isEmpty {
                current = nil
            } else if let name = current, words.first == ".It" {
                // A repeated argument is "Ar arguments...".
                if words.dropFirst().first == "Ar" { commands[name]!.arguments.insert("<\(words[2].replacingOccurrences(of: "...", with: ""))>") }
                guard words.dropFirst().first == "Fl" else { continue }
                for word in words.dropFirst(2).prefix(while: { $0 != "Ar" }) where word != "," {
                    commands[name]!.arguments.insert("-" + word)
                }
            }
        }
        return commands
    }

    @Test func theManPageDescribesEveryCommandAndOptionAsTheHelpDoes() throws {
        let page = try Self.manPageCommands()
        let commands = try CommandDescription.all()
        #expect(Set(page.keys).subtracting(["help"]) == Set(commands.map(\.name)),
                "the page lists the commands the binary has; run scripts/help-pages")
        for command in commands {
            let described = try #require(page[command.name], "\(command.name) is in the page; run scripts/help-pages")
            #expect(described.abstract == command.abstract, "\(command.name)'s abstract; run scripts/help-pages")
            let help = Set(command.arguments.map(\.name))
            #expect(help.subtracting(described.arguments).isEmpty,
                    "\(command.name): \(help.subtracting(described.arguments)) missing from the page; run scripts/help-pages")
            let stale = described.arguments.filter { $0.hasPrefix("--") && !help.contains($0) }
            #expect(stale.isEmpty, "\(command.name): \(stale) in the page but not in the help; run scripts/help-pages")
        }
    }

    @Test(arguments: [("bash", "updatinator.bash"), ("zsh", "_updatinator"), ("fish", "updatinator.fish")])
    func theShippedCompletionsAreWhatTheBinaryGenerates(shell: String, file: String) throws {
        let r = try CLI.run(["--generate-completion-script", shell])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("get-manifest") && r.stdout.contains("decision-keyring"), "\(r.stdout.prefix(200))")
        #expect(try Self.shipped("contrib/completions/\(file)") == r.stdout, "contrib/completions/\(file) is stale; run scripts/help-pages")
    }
}
