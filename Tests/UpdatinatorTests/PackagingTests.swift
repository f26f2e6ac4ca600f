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
}
