import Foundation
import Testing
@testable import Updatinator

/// A server policy that runs away — inside Lua's C functions, where the instruction budget does
/// not count — against a real `updatinator serve` on loopback: the call is stopped at the
/// policy time limit (its worker process killed and replaced), its device is told
/// "policy-error", and other devices, the repository and the reports are answered meanwhile.
@Suite(.serialized) struct PolicyIsolationAttackTests {
    /// Where the servers' repository, keys and databases are.
    let schools: SchoolServerTests
    let tmp = TemporaryDirectory("policy-isolation")
    /// The policy time limit the servers of these tests run with, in seconds.
    static let limit = 2.0

    init() throws { schools = try SchoolServerTests() }

    /// Runs away, for a device named `runaway-KIND`, in the C function KIND names; says so in
    /// the log first. Every other device is told to move to version 2.
    static let policy = """
        local upd = require "updatinator"
        local runaways = {
          -- Backtracking: too deep for Lua's recursion limit (an error or a long search) ...
          backtracking = function()
            return string.find(string.rep("a", 200000), string.rep("a?", 200000) .. string.rep("a", 200000))
          end,
          -- ... and under it: one call of string.find that runs for ever.
          shallow_backtracking = function()
            return string.find(string.rep("a", 40), string.rep("a*", 40) .. "b")
          end,
          rep = function() while true do local s = string.rep("x", 20000000) end end,
          sort = function()
            local t = {}
            for i = 1, 200000 do t[i] = (i * 7919) % 200003 end
            while true do table.sort(t, nil) end
          end,
          concat = function()
            local t = {}
            for i = 1, 100000 do t[i] = "0123456789" end
            while true do local s = table.concat(t) end
          end,
          collectgarbage = function()
            local keep = {}
            for i = 1, 200000 do keep[i] = {} end
            while true do collectgarbage("collect") end
          end,
          sleep = function() upd.sleep(3600) end,
        }
        function decide(device)
          local kind = device.device:match("^runaway%-(.+)$")
          if kind then
            upd.log.info("running away in " .. kind .. " for " .. device.device)
            runaways[kind]()
          end
          return { image = "olpc-ext3", version = "2" }
        end
        """

    /// The server with the runaway policy.
    func school(_ extra: [String] = []) throws -> SchoolServerTests.School {
        let policy = tmp.sub("runaway.lua")
        try Sys.writeFileAtomically(policy, Array(Self.policy.utf8))
        return try SchoolServerTests.School(schools, policy: policy, settings: [:],
                                            extra: ["--policy-time-limit", String(Self.limit)] + extra)
    }

    /// Sends a check for `device` on a thread of its own; its decision (or error) and how long
    /// it took, once answered.
    final class PendingCheck: @unchecked Sendable {
        let answer = Locked<(Result<Decision, Error>, Double)?>(nil)

        init(_ school: SchoolServerTests.School, _ device: String) {
            let answer = self.answer
            // The school's properties are constants; a check is one request of its own.
            nonisolated(unsafe) let school = school
            Thread {
                let started = Date()
                let result = Result { try school.check(device) }
                answer.withLock { $0 = (result, Date().timeIntervalSince(started)) }
            }.start()
        }

        /// The decision once it arrives (failing after `timeout` seconds), and the seconds it took.
        func wait(timeout: Double) throws -> (Decision, Double) {
            try waitUntil(timeout: timeout, "the runaway device's check is answered") { answer.withLock { $0 != nil } }
            let (result, seconds) = answer.withLock { $0! }
            return (try result.get(), seconds)
        }
    }

    /// Other devices get their decisions, and the repository and reports are answered.
    func serverAnswers(_ school: SchoolServerTests.School, _ tag: String) throws {
        for n in 1...3 {
            let decision = try school.check("\(tag)-\(n)")
            #expect(decision.update && decision.version == "2", "\(decision)")
        }
        #expect(try Curl.get(school.server.url + "/repo.json").status == 200)
        #expect(try school.server.operatorGet("/metrics").status == 200)
        try school.report("\(tag)-1", "done")
    }

    @Test("lua-sandbox: a server policy running away inside a C function is stopped at the time limit, and the server answers everyone else meanwhile",
          arguments: ["backtracking", "shallow_backtracking", "rep", "sort", "concat", "collectgarbage", "sleep"])
    func aRunawayPolicyCallIsStoppedAtTheTimeLimit(kind: String) throws {
        let school = try school()
        let device = "runaway-\(kind)"
        let runaway = PendingCheck(school, device)
        try waitUntil("the policy runs away in \(kind)") { school.server.process.stderr.contains("running away in \(kind) for \(device)") }
        try serverAnswers(school, "during-\(kind)")

        let (decision, seconds) = try runaway.wait(timeout: Self.limit + 30)
        #expect(!decision.update && decision.reason == NoUpdateReason.policyError.rawValue, "\(decision)")
        #expect(seconds < Self.limit + 10, "answered after \(seconds) s")
        // One line names the policy, the function and the limit.
        let lines = school.server.process.stderr.split(separator: "\n").filter { $0.contains("for device \(device):") }
        if kind != "backtracking" {
            #expect(lines.count == 1 && lines[0].contains("runaway.lua: decide ran past the policy time limit of 2 s"), "\(lines)")
        } else {
            #expect(lines.count == 1, "\(lines)")
        }
        // The worker was replaced: the server still answers as many checks at once as before.
        try serverAnswers(school, "after-\(kind)")
    }

    @Test("lua-sandbox: three server policy calls running away at once do not stop the school server")
    func threeRunawaysAtOnceDoNotStopTheServer() throws {
        let school = try school()
        let runaways = ["shallow_backtracking", "sleep", "rep"].map { PendingCheck(school, "runaway-\($0)") }
        try waitUntil("three policy calls run away") {
            let log = school.server.process.stderr
            return ["shallow_backtracking", "sleep", "rep"].allSatisfy { log.contains("running away in \($0)") }
        }
        try serverAnswers(school, "during")
        for runaway in runaways {
            let (decision, seconds) = try runaway.wait(timeout: Self.limit + 30)
            #expect(decision.reason == NoUpdateReason.policyError.rawValue && seconds < Self.limit + 10, "\(decision) after \(seconds) s")
        }
        // Three more, then every worker in use at once still gets a decision.
        let again = ["shallow_backtracking", "sleep", "rep"].map { PendingCheck(school, "runaway-\($0)") }
        for runaway in again { #expect(try runaway.wait(timeout: Self.limit + 30).0.reason == NoUpdateReason.policyError.rawValue) }
        let many = (1...8).map { PendingCheck(school, "after-\($0)") }
        for check in many { #expect(try check.wait(timeout: 60).0.update) }
    }

    @Test("lua-sandbox: a policy worker that crashes is replaced with the policy read at start, its file gone, and policy workers end with the server")
    func aCrashedWorkerIsReplacedAndWorkersEndWithTheServer() throws {
        let school = try school(["--policy-workers", "3"])
        let serve = school.server.process.pid
        let first = try Self.workers(of: serve)
        #expect(first.count == 3)
        // The replacements run the text the server read at start, not the file.
        try FileManager.default.removeItem(atPath: tmp.sub("runaway.lua"))
        for pid in first { kill(pid, SIGSEGV) }
        // The next checks find the workers dead and new ones answer (the first checks may find
        // none started yet: policy-error).
        try waitUntil("a check is decided again") { try school.check("after-crash").update }
        try waitUntil("the crashed workers are replaced") {
            let now = try Self.workers(of: serve)
            return now.count == 3 && now.isDisjoint(with: first)
        }
        for n in 1...6 {
            let decision = try school.check("after-crash-\(n)")
            #expect(decision.update, "\(decision)")
        }
        #expect(school.server.process.stderr.contains("ended by signal 11; starting another"))

        // Killed outright, the server takes its workers with it.
        let last = try Self.workers(of: serve)
        kill(serve, SIGKILL)
        school.server.process.stop()
        try waitUntil("the workers end with the server") { last.allSatisfy { !Self.isRunning($0) } }
    }

    /// The policy worker processes of the server `pid`.
    static func workers(of pid: pid_t) throws -> Set<pid_t> {
        var children = Set<pid_t>()
        for task in try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") {
            let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? ""
            children.formUnion(text.split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
        }
        return children.filter { (try? String(contentsOfFile: "/proc/\($0)/cmdline", encoding: .utf8))?.contains("policy-worker") == true }
    }

    /// Whether a process exists and is not a zombie.
    static func isRunning(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[close...].hasPrefix(") Z")
    }
}
