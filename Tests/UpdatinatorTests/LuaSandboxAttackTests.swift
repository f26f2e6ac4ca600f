import Foundation
import Testing
@testable import Updatinator

/// A hostile or stuck script, run by the real CLI: the time limit and its watchdog, and the
/// agent's stop on SIGTERM wherever the script is (`lua-sandbox:`, docs/security.md).
@Suite struct LuaSandboxAttackTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("lua-sandbox")

    init() throws { samples = try SampleImages.shared }

    /// A backtracking pattern that takes longer than anyone waits, all inside one C function.
    static let backtracking = #"string.find(string.rep("a", 40), string.rep("a*", 40) .. "b")"#

    func script(_ name: String, _ text: String) throws -> String {
        let path = tmp.sub(name)
        try Sys.writeFileAtomically(path, Array(text.utf8))
        return path
    }

    @Test("lua-sandbox: a tight loop is stopped by the time limit when it has no instruction limit")
    func aLoopMeetsTheTimeLimit() throws {
        let path = try script("loop.lua", "local n = 0\nwhile true do n = n + 1 end\n")
        let r = try CLI.run(["run", "--state", tmp.sub("state.json"), "--instruction-limit", "0", "--time-limit", "0.5", path])
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.hasPrefix("updatinator: \(path):2: time limit exceeded (0.5 s)"), "\(r.stderr)")
    }

    @Test("lua-sandbox: a call stuck in a C function past its time limit ends the process with one line and status 75")
    func aCallStuckInCIsEndedByTheWatchdog() throws {
        let path = try script("backtrack.lua", Self.backtracking + "\n")
        let run = try Subprocess([CLI.binary, "run", "--state", tmp.sub("state.json"), "--time-limit", "1", path])
        try waitUntil(timeout: 120, "the watchdog ends \(path): \(run.stderr)") { !run.isRunning }
        #expect(run.wait() == 75, "\(run.stderr)")
        #expect(run.stderr == "updatinator: \(path): the script ran past its time limit (1.0 s) inside a function that cannot be interrupted; "
                + "ended by the watchdog (an apply in progress resumes at the next run)\n", "\(run.stderr)")
    }

    /// Starts `agent` on a policy whose tick runs `tick` (which prints "stuck" where it gets
    /// stuck), with no instruction or time limit (only SIGTERM can end it), and sends SIGTERM
    /// once it is there (and `ready` holds).
    func stopAgent(tick: String, ready: () -> Bool = { true }) throws -> Subprocess {
        let policy = try script("policy-\(UUID().uuidString).lua", """
            upd.schedule { every = "1h" }
            function tick()
              \(tick)
              return "not stuck"
            end
            """)
        let agent = try Subprocess([CLI.binary, "agent", "--policy", policy, "--state", tmp.sub("state.json"),
                                    "--instruction-limit", "0", "--time-limit", "0", "--allow-path", tmp.path, "--allow-path", samples.directory])
        try waitUntil(timeout: 60, "the tick is stuck: \(agent.stdout) \(agent.stderr)") {
            agent.stdout.contains("stuck") && ready() || !agent.isRunning
        }
        try #require(agent.isRunning, "the agent ended before it was stopped: \(agent.stderr)")
        kill(agent.pid, SIGTERM)
        try waitUntil(timeout: 120, "the agent ends after SIGTERM: \(agent.stderr)") { !agent.isRunning }
        return agent
    }

    @Test("lua-sandbox: SIGTERM stops an agent whose script loops in Lua, in a message handler, in __close or in upd.sleep", arguments: [
        "while true do end",
        "xpcall(function() while true do end end, function(e) while true do end end)",
        "local x <close> = setmetatable({}, {__close = function() while true do end end}) while true do end",
        "while true do pcall(upd.sleep, 3600) end",
    ])
    func sigtermStopsAScriptInLua(stuck: String) throws {
        let agent = try stopAgent(tick: "print('stuck') " + stuck)
        #expect(agent.wait() == 0, "\(agent.stderr)")
        #expect(agent.stdout == "stuck\nagent: stopped\n", "\(agent.stdout)")
    }

    @Test("lua-sandbox: SIGTERM ends an agent stuck inside a C function, by the watchdog, with status 75")
    func sigtermEndsAScriptInC() throws {
        let agent = try stopAgent(tick: "print('stuck') " + Self.backtracking)
        #expect(agent.wait() == 75, "\(agent.stderr)")
        #expect(agent.stderr == "updatinator: agent: the script did not stop within 5.0 s of the request to stop; "
                + "ended by the watchdog (an apply in progress resumes at the next run)\n", "\(agent.stderr)")
    }

    @Test("lua-sandbox: SIGTERM stops an agent in a fetch from a stalling mirror, leaving a cache that the next fetch completes")
    func sigtermStopsAFetch() throws {
        // A mirror that holds every blob request without answering.
        let stalling = try FlakyMirror(repo: samples.repo, mode: "hold", arguments: ["--cut", "none", "--whole", "0"])
        let root = tmp.sub("root")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        try Sys.mkdirs("\(root)/.updatinator")
        try Sys.writeFileAtomically("\(root)/.updatinator/installed.manifest", Sys.readFile(samples.manifest("olpc-ext3", "1")))
        let cache = tmp.sub("cache")
        let agent = try stopAgent(tick: """
            local target = assert(upd.manifest.load("\(samples.manifest("olpc-ext3", "2"))"))
              local plan = assert(upd.plan(assert(upd.manifest.installed("\(root)")), target, { root = "\(root)" }))
              print("stuck")
              upd.fetch(plan, { mirrors = { "\(stalling.url)" }, cache = "\(cache)" })
            """, ready: { stalling.output.contains("held blobs/") })
        #expect(agent.wait() == 0, "\(agent.stderr)")
        #expect(agent.stdout == "stuck\nagent: stopped\n", "\(agent.stdout)")
        let mirror = try NginxMirror(repo: samples.repo)
        let fetched = try CLI.run(["fetch", "--to", samples.manifest("olpc-ext3", "2"), "--from", samples.manifest("olpc-ext3", "1"),
                                   "--mirror", mirror.url, "--cache", cache])
        #expect(fetched.status == 0, "\(fetched.stderr)")
        let store = BlobStore(directory: cache)
        for r in try samples.upgradeBlobs { try store.verify(r.hash, size: r.size) }
        #expect(try Shell.run(["find", cache, "-name", ".partial-*"]).isEmpty, "no partial downloads are left")
    }
}
