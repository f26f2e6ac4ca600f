import Foundation
import Glibc
import Testing
@testable import Updatinator
import UpdatinatorLua

/// The client policies in policies/client/, each run by the agent for one tick against a real
/// repository served by nginx, with the clock, the power supply and the disk set by the test.
@Suite struct PolicyTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("policy")

    init() throws { samples = try SampleImages.shared }

    /// A repository with the samples' images and channel `stable` → olpc-ext3 2, served by nginx,
    /// and a tree at olpc-ext3 1 (under `rootParent`, default a plain directory).
    final class Setup {
        let repo: String
        let root: String
        let mirror: NginxMirror
        init(_ test: PolicyTests, rootParent: String? = nil) throws {
            repo = test.tmp.sub("repo")
            try Shell.run(["cp", "-al", test.samples.repo, repo])
            try test.publish(repo)
            root = "\(rootParent ?? test.tmp.path)/root"
            try Shell.copyTree(test.samples.tree("olpc-ext3", "1"), root)
            try Sys.mkdirs("\(root)/.updatinator")
            try Sys.writeFileAtomically("\(root)/.updatinator/installed.manifest",
                                        Sys.readFile(test.samples.manifest("olpc-ext3", "1")))
            mirror = try NginxMirror(repo: repo)
        }
    }

    func publish(_ repo: String, expires: String = "30d") throws {
        let r = try CLI.run(["publish", "--repo", repo, "--channel", "stable", "--image", "olpc-ext3", "--version", "2",
                             "--expires", expires, "--secret-key", samples.secretKey])
        try #require(r.status == 0, "\(r.stderr)")
    }

    /// Runs one tick of a policy; returns what the tick returned.
    func tick(_ policy: String, _ settings: [String: Any], environment: [String: String] = [:],
              sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let config = tmp.sub("config.json")
        try Sys.writeFileAtomically(config, Array(try JSONSerialization.data(withJSONObject: settings)))
        let r = try CLI.run(["agent", "--once", "--policy", Scripts.policy(policy), "--config", config,
                             "--state", tmp.sub("state.json")], environment: environment)
        #expect(r.status == 0, "\(r.stderr)", sourceLocation: sourceLocation)
        return r.stdout.split(separator: "\n").first { $0.hasPrefix("tick: ") }.map { String($0.dropFirst(6)) } ?? r.stdout
    }

    func settings(_ setup: Setup, _ extra: [String: Any] = [:]) -> [String: Any] {
        ["root": setup.root, "mirrors": [setup.mirror.url], "keyring": samples.keyring].merging(extra) { $1 }
    }

    func isAtVersion2(_ root: String) throws -> Bool {
        try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root).isEmpty
    }

    /// Seconds since the epoch at a local time of day today.
    func today(_ hour: Int, _ minute: Int = 0) -> String {
        String(Int(Calendar.current.date(bySettingHour: hour, minute: minute, second: 0, of: Date())!.timeIntervalSince1970))
    }

    /// A fake /sys/class/power_supply: mains online or not, and a battery level (nil: none).
    func powerSupply(mains: Bool, battery: Int?) throws -> String {
        let dir = tmp.sub("power-\(mains)-\(battery ?? -1)")
        try Sys.mkdirs("\(dir)/AC")
        try Sys.writeFileAtomically("\(dir)/AC/type", Array("Mains\n".utf8))
        try Sys.writeFileAtomically("\(dir)/AC/online", Array((mains ? "1\n" : "0\n").utf8))
        if let battery {
            try Sys.mkdirs("\(dir)/BAT0")
            try Sys.writeFileAtomically("\(dir)/BAT0/type", Array("Battery\n".utf8))
            try Sys.writeFileAtomically("\(dir)/BAT0/capacity", Array("\(battery)\n".utf8))
        }
        return dir
    }

    // MARK: channels.lua

    @Test func channelsFollowsTheChannelAndRefusesReplayedAndExpiredMetadata() throws {
        let setup = try Setup(self)
        #expect(try tick("channels.lua", settings(setup)) == "applied olpc-ext3 2")
        #expect(try isAtVersion2(setup.root))
        #expect(try tick("channels.lua", settings(setup)) == "up to date")

        // A newer publication is accepted; then the older one, replayed by a mirror, is refused.
        let old = try ["json", "json.sig"].map { try Sys.readFile("\(setup.repo)/channels/stable.\($0)") }
        try publish(setup.repo)
        #expect(try tick("channels.lua", settings(setup)) == "up to date")
        try Sys.writeFileAtomically("\(setup.repo)/channels/stable.json", old[0])
        try Sys.writeFileAtomically("\(setup.repo)/channels/stable.json.sig", old[1])
        let replayed = try tick("channels.lua", settings(setup))
        #expect(replayed.hasPrefix("refused: ") && replayed.contains("serial"), "\(replayed)")

        // Sixty days on, even the newest metadata has expired.
        try publish(setup.repo)
        let later = String(Int(Date().timeIntervalSince1970) + 60 * 86400)
        let expired = try tick("channels.lua", settings(setup), environment: ["UPDATINATOR_TIME": later])
        #expect(expired.hasPrefix("refused: ") && expired.contains("expired"), "\(expired)")
    }

    // MARK: bandwidth.lua

    @Test func bandwidthUsesTheSchoolRateInSchoolHours() throws {
        let setup = try Setup(self)
        let result = try tick("bandwidth.lua", settings(setup, ["school_rate": 8 << 20]), environment: ["UPDATINATOR_TIME": today(10)])
        #expect(result == "applied olpc-ext3 2 at \(8 << 20) bytes/s")
        #expect(try isAtVersion2(setup.root))
    }

    @Test func bandwidthRunsAtFullSpeedAtNight() throws {
        let setup = try Setup(self)
        #expect(try tick("bandwidth.lua", settings(setup), environment: ["UPDATINATOR_TIME": today(2)]) == "applied olpc-ext3 2 at full speed")
        // The day's spending was recorded.
        let state = try JSONSerialization.jsonObject(with: Data(Sys.readFile(tmp.sub("state.json")))) as! [String: Any]
        let bandwidth = state["bandwidth"] as! [String: Any]
        #expect((bandwidth["bytes"] as! Int) > 0)
    }

    @Test func bandwidthDefersWhatTheDailyBudgetCannotCover() throws {
        let setup = try Setup(self)
        let result = try tick("bandwidth.lua", settings(setup, ["daily_budget": 1000]), environment: ["UPDATINATOR_TIME": today(2)])
        #expect(result.hasPrefix("deferred: needs ") && result.hasSuffix(", 1000 left today"), "\(result)")
        #expect(try !isAtVersion2(setup.root))
    }

    @Test func bandwidthDefersWhenTodaysBudgetIsSpent() throws {
        let setup = try Setup(self)
        let now = Int(today(2))!
        try Sys.writeFileAtomically(tmp.sub("state.json"), Array("{\"bandwidth\": {\"day\": \(now / 86400), \"bytes\": 600000000}}".utf8))
        #expect(try tick("bandwidth.lua", settings(setup), environment: ["UPDATINATOR_TIME": String(now)]) == "deferred: daily budget spent")
        // The next day the budget is fresh.
        let tomorrow = String(now + 86400)
        #expect(try tick("bandwidth.lua", settings(setup), environment: ["UPDATINATOR_TIME": tomorrow]) == "applied olpc-ext3 2 at full speed")
    }

    // MARK: default.lua

    @Test(arguments: [(true, nil as Int?, "applied"), (false, 80, "applied"), (false, 20, "deferred: on battery at 20 %, below 50 %")])
    func defaultAppliesOnlyOnMainsOrEnoughBattery(mains: Bool, battery: Int?, expected: String) throws {
        let setup = try Setup(self)
        let power = try powerSupply(mains: mains, battery: battery)
        let result = try tick("default.lua", settings(setup), environment: ["UPDATINATOR_POWER_SUPPLY": power])
        #expect(result.hasPrefix(expected), "\(result)")
        #expect(try isAtVersion2(setup.root) == (expected == "applied"))
    }

    @Test func defaultDefersWhenTheDiskLacksThePlannedSpace() throws {
        let mount = tmp.sub("mnt")
        try Sys.mkdirs(mount)
        try Shell.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mount])
        defer { _ = try? Shell.run(["umount", "-l", mount]) }
        let setup = try Setup(self, rootParent: mount)
        let used = try FilesystemSpace(path: mount).used
        try Shell.run(["mount", "-o", "remount,size=\((used + (256 << 10)) / 1024)k", mount])
        let result = try tick("default.lua", settings(setup, ["peers": ["http://127.0.0.1:9/unreachable-peer"]]))
        #expect(result.hasPrefix("deferred: needs ") && result.contains(" bytes free, has "), "\(result)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "1"), root: setup.root) == [])
    }

    @Test func defaultDeploysSideBySideInStagedMode() throws {
        let setup = try Setup(self)
        let sysroot = tmp.sub("sysroot")
        try Sys.mkdirs(sysroot)
        let staged = settings(setup, ["mode": "staged", "sysroot": sysroot])
        #expect(try tick("default.lua", staged) == "deployed olpc-ext3 2; it runs from the next boot", "a first deploy into an empty sysroot")
        #expect(try tick("default.lua", staged) == "up to date")
        let fsck = try CLI.run(["fsck", "--tree", sysroot + "/current/", "--manifest", samples.manifest("olpc-ext3", "2")])
        #expect(fsck.status == 0, "\(fsck.stdout)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "1"), root: setup.root) == [], "the in-place tree is untouched")
    }

    // MARK: the agent

    @Test func theAgentStopsOnSigtermWithTheApplyAtAResumablePoint() throws {
        let setup = try Setup(self)
        let policy = tmp.sub("slow.lua")
        try Sys.writeFileAtomically(policy, Array("""
            local config = upd.config { root = "/", mirrors = {}, keyring = "" }
            upd.schedule { every = "1h" }
            function tick()
              local kr = assert(upd.keyring(config.keyring))
              local target = assert(upd.get_manifest(config.mirrors, "olpc-ext3", "2", { keyring = kr }))
              local plan = assert(upd.plan(assert(upd.manifest.installed(config.root)), target, { root = config.root, mirrors = config.mirrors }))
              print("applying")
              return assert(upd.apply(plan, { mirrors = config.mirrors, rate_limit = 100000 }))
            end
            """.utf8))
        let config = tmp.sub("config.json")
        try Sys.writeFileAtomically(config, Array(try JSONSerialization.data(withJSONObject: settings(setup))))
        let agent = try Subprocess([CLI.binary, "agent", "--policy", policy, "--config", config, "--state", tmp.sub("state.json")])
        // SIGTERM once the apply has begun: its journal is written before the tree changes.
        let journal = "\(setup.root)/.updatinator/apply/journal"
        try waitUntil(timeout: 60, "the agent's apply writes \(journal): \(agent.stdout) \(agent.stderr)") {
            guard agent.isRunning else { return true }
            return try agent.stdout.contains("applying") && Sys.lstatIfExists(journal) != nil
        }
        try #require(agent.isRunning, "the agent ended before it was stopped: \(agent.stderr)")
        kill(agent.pid, SIGTERM)
        #expect(agent.wait() == 0, "\(agent.stderr)")
        #expect(agent.stdout.contains("agent: stopped"), "\(agent.stdout)")
        #expect(try Sys.readFile("\(setup.root)/.updatinator/installed.manifest") == Sys.readFile(samples.manifest("olpc-ext3", "1")))
        #expect((try Sys.lstatIfExists("\(setup.root)/.updatinator/apply/journal")) != nil, "the apply stopped mid-way")
        let resumed = try CLI.run(["apply", "--root", setup.root, "--to", samples.manifest("olpc-ext3", "2"), "--keyring", samples.keyring,
                                   "--mirror", setup.mirror.url])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("(resumed)"))
        #expect(try isAtVersion2(setup.root))
    }

    @Test func theAgentGoesOnAfterAFailedTickAndEndsItsWaitAtOnceWhenStopped() throws {
        let policy = tmp.sub("ticks.lua")
        try Sys.writeFileAtomically(policy, Array("""
            upd.schedule { every = "1s" }
            local n = 0
            function tick()
              n = n + 1
              if n == 1 then error("the first tick fails") end
              upd.schedule { every = "1h" }
              return "tick " .. n
            end
            """.utf8))
        let lua = try LuaState(options: LuaState.Options())
        let stop = AgentStop(interrupting: lua)
        let (results, failures) = (Locked([String]()), Locked([String]()))
        nonisolated(unsafe) let output = PolicyAgent.Output(result: { result in
            results.withLock { $0.append(result) }
            // Stopped while the agent waits its hour for the next tick.
            Thread.detachNewThread { stop.request() }
        }, failure: { error in failures.withLock { $0.append(error.message) } }, reboot: { Issue.record("no tick asked for a reboot") })
        let (ended, stopped) = (DispatchSemaphore(value: 0), Locked<Result<Bool, Error>?>(nil))
        nonisolated(unsafe) let agent = PolicyAgent(lua: lua, script: policy)
        Thread.detachNewThread {
            stopped.withLock { $0 = Result { try agent.run(once: false, stop: stop, output: output) } }
            ended.signal()
        }
        try #require(ended.wait(timeout: .now() + 30) == .success, "the wait for the next tick ended when the stop was requested")
        #expect(try stopped.withLock { $0 }?.get() == true)
        #expect(results.withLock { $0 } == ["tick 2"])
        #expect(failures.withLock { $0 }.count == 1 && failures.withLock { $0 }[0].contains("the first tick fails"))
    }

    // MARK: field-upgrade.lua

    @Test func fieldUpgradeFromAUSBStickShowsProgressAndChecksTheTree() throws {
        let root = tmp.sub("root")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        try Sys.mkdirs("\(root)/.updatinator")
        try Sys.writeFileAtomically("\(root)/.updatinator/installed.manifest", Sys.readFile(samples.manifest("olpc-ext3", "1")))
        let r = try CLI.run(["run", "--root", root, "--state", tmp.sub("state.json"), "--allow-path", samples.directory,
                             Scripts.policy("field-upgrade.lua"), "--",
                             samples.repo, "olpc-ext3", "2", samples.keyring])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("olpc-ext3 1 -> olpc-ext3 2: "), "\(r.stdout)")
        #expect(r.stdout.contains("progress: "), "\(r.stdout)")
        #expect(r.stdout.contains("done: olpc-ext3 2"), "\(r.stdout)")
        #expect(try isAtVersion2(root))
    }
}
