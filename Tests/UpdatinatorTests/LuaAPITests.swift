import Foundation
import Testing
@testable import Updatinator

/// Every function of the `upd` API, called from scripts run by `updatinator run` against the
/// sample repository, nginx on loopback and real trees.
@Suite struct LuaAPITests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("lua")

    init() throws { samples = try SampleImages.shared }

    /// Runs a script (with `check(cond, what)` and `same(a, b, what)` helpers) and returns its output.
    func run(_ script: String, arguments: [String] = [], environment: [String: String] = [:],
             sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try runScript(script, arguments: arguments, environment: environment, sourceLocation: sourceLocation).stdout
    }

    /// Runs a script as `run` does and returns what the command printed on both outputs.
    func runScript(_ script: String, arguments: [String] = [], environment: [String: String] = [:],
                   sourceLocation: SourceLocation = #_sourceLocation) throws -> CLI.Result {
        let path = tmp.sub("script-\(UUID().uuidString.prefix(8)).lua")
        let helpers = """
            local function check(cond, what) if not cond then error("check failed: " .. what, 2) end end
            local function same(a, b, what) if a ~= b then error(("%s: got %s, expected %s"):format(what, tostring(a), tostring(b)), 2) end end

            """
        try Sys.writeFileAtomically(path, Array((helpers + script).utf8))
        let r = try CLI.run(["run", "--state", tmp.sub("state.json"), "--allow-path", tmp.path, "--allow-path", samples.directory, path, "--"]
                            + arguments, environment: environment)
        #expect(r.status == 0, "\(r.stderr)", sourceLocation: sourceLocation)
        return r
    }

    @Test func manifestsKeyringsAndDiffs() throws {
        let otherKeys = tmp.sub("other")
        try Sys.mkdirs(otherKeys)
        try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: "\(otherKeys)/o.sec", publicPath: "\(otherKeys)/o.pub")
        let out = try run("""
            local path1, path2, keyring, other = ...
            local m1 = assert(upd.manifest.load(path1))
            local m2 = assert(upd.manifest.load(path2))
            same(m1.image, "olpc-ext3", "image"); same(m1.version, "1", "version")
            check(m1.entry_count > 400 and m1.total_bytes > 1000000, "counts")
            check(tostring(m1):find("^Manifest olpc%-ext3 1 %("), tostring(m1))
            local release = assert(m1:get("/etc/os-release"))
            same(release.type, "file", "type"); check(#release.hash == 64 and release.size > 0, "hash and size")
            same(m1:get("/no/such/path"), nil, "missing path")
            local n = 0
            for e in m1:entries() do
              n = n + 1
              check(m1:get(e.path).index == e.index, "m:get finds every entry by its path: " .. e.path)
            end
            same(n, m1.entry_count, "entries iterated")

            for _ = 1, 1000 do m1:entries() end
            local closed = assert(upd.manifest.load(path1))
            local next_entry, state = closed:entries()
            getmetatable(closed)
            check(next_entry(state, nil).path == "/", "first entry")
            check(getmetatable(closed) == "locked", "metatables are locked")
            local d = upd.diff(m1, m2)
            check(#d.added > 0 and #d.removed > 0 and #d.changed > 0 and d.download_bytes > 0, "diff")

            local kr = assert(upd.keyring(keyring))
            same(m2.verified, false, "not verified before")
            same(kr:verify(m2), true, "verify"); same(m2.verified, true, "verified after")
            local wrong = assert(upd.keyring(other))
            local ok, message, code = wrong:verify(m1)
            same(ok, nil, "wrong key"); same(code, "verification", "code"); check(message:find("signatures verified"), message)

            local missing, why, code2 = upd.manifest.load(other .. "/nonexistent.manifest")
            same(missing, nil, "missing manifest"); same(code2, "usage", "code"); check(why:find("no such file"), why)
            local none, why_none, code_none = upd.manifest.installed(other .. "/nonexistent-root")
            same(none, nil, "no installed manifest"); same(code_none, "usage", "installed code")
            local broken, reason, code3 = upd.keyring(other .. "/nonexistent-keyring")
            same(broken, nil, "missing keyring"); check(code3 ~= nil and reason ~= nil, "failure triple")
            -- A school server that does not answer (the server's own tests drive the answers).
            local decision, no_answer, net = upd.check("http://127.0.0.1:9", { image = m1.image, version = m1.version }, kr)
            same(decision, nil, "check"); same(net, "network", "check code"); check(no_answer:find("/v1/check"), no_answer)
            local reported, _, net2 = upd.report("http://127.0.0.1:9", { status = "done" })
            same(reported, nil, "report"); same(net2, "network", "report code")
            check(not pcall(upd.report, "http://127.0.0.1:9", {}), "a report needs a status")
            local misuse_ok, misuse = pcall(kr.verify, kr, "not a manifest")
            check(not misuse_ok and misuse:find("bad argument #2 to 'verify' (Manifest expected, got string)", 1, true), misuse)
            print("ok")
            """, arguments: [samples.manifest("olpc-ext3", "1"), samples.manifest("olpc-ext3", "2"), samples.keyring, otherKeys])
        #expect(out == "ok\n")
    }

    @Test("arbitrary-installation: a script cannot apply a manifest no keyring verified, nor ask to skip the check")
    func installedManifestPlanFetchApplyAndFsck() throws {
        let mirror = try NginxMirror(repo: samples.repo)
        let root = tmp.sub("root")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        try Sys.mkdirs("\(root)/.updatinator")
        try Sys.writeFileAtomically("\(root)/.updatinator/installed.manifest", Sys.readFile(samples.manifest("olpc-ext3", "1")))
        let out = try run("""
            local root, mirror, keyring, cache = ...
            local installed = assert(upd.manifest.installed(root))
            same(installed.version, "1", "installed version")
            local kr = assert(upd.keyring(keyring))
            local target = assert(upd.get_manifest({mirror}, "olpc-ext3", "2", {keyring = kr, dir = cache .. "-manifests"}))
            same(target.verified, true, "get_manifest verifies with a keyring")
            local none, why, code = upd.get_manifest(mirror, "olpc-ext3", "99")
            same(none, nil, "no such version"); same(code, "network", "code")
            local remote = assert(upd.manifest.load(mirror .. "/images/olpc-ext3/2.manifest"))
            same(remote.version, "2", "manifest by URL")

            local plan = assert(upd.plan(installed, target, {root = root, mirrors = {mirror}}))
            check(plan.contents_to_obtain > 0 and plan.download_bytes > 0 and plan.reused_bytes > 0, "plan figures")
            check(plan.peak_disk_bytes > 0 and plan.required_free_bytes > 0 and plan.changes.created > 0, "plan disk and changes")

            -- Prefetch into a cache, with progress.
            local calls = 0
            local fetched = assert(upd.fetch(plan, {mirrors = {mirror}, cache = cache, on_progress = function(p)
              calls = calls + 1
              check(p.total_blobs == plan.contents_to_obtain, "progress total")
            end}))
            same(fetched.blobs, plan.contents_to_obtain, "fetched blobs"); same(fetched.bytes, plan.download_bytes, "fetched bytes")

            -- A target no keyring verified is refused; the streaming apply from the mirror, at a
            -- rate the callback chooses.
            local unverified = assert(upd.plan(installed, remote, {root = root}))
            local refused, reason, rcode = upd.apply(unverified, {mirrors = {mirror}})
            same(refused, nil, "unverified target"); same(rcode, "verification", "refusal code")
            -- And no script can ask for it to be applied anyway.
            local insecure, why = pcall(upd.apply, unverified, {mirrors = {mirror}, insecure = true})
            same(insecure, false, "insecure is not an option"); check(tostring(why):find("insecure"), tostring(why))
            local progress_calls = 0
            local report = assert(upd.apply(plan, {mirrors = {mirror}, rate_limit = 50000000, on_progress = function(p)
              progress_calls = progress_calls + 1
              check(p.total_steps == plan.steps, "steps in progress")
              return 40000000
            end}))
            check(progress_calls > 0, "apply progress")
            same(report.blobs_downloaded, plan.contents_to_obtain, "downloaded blobs")
            same(report.bytes_downloaded, plan.download_bytes, "downloaded bytes")
            same(assert(upd.fsck(root, target)), true, "fsck after apply")
            local bad, message, fcode, findings = upd.fsck(root, installed)
            same(bad, nil, "fsck against the old image"); same(fcode, "differences", "fsck code")
            check(#findings > 0 and message:find("differences"), message)
            print("ok", calls > 0)
            """, arguments: [root, mirror.url, samples.keyring, tmp.sub("cache")])
        #expect(out == "ok\ttrue\n", "\(out)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root) == [])
    }

    @Test func fsckOfARunningSystemsRootLeavesOutTheMachinesPathsAndEtc() throws {
        let root = tmp.sub("root")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        try Sys.mkdirs(root + "/proc/1")
        try Sys.writeFileAtomically(root + "/proc/1/status", Array("State: R\n".utf8))
        try Sys.writeFileAtomically(root + "/etc/hostname", Array("laptop-7\n".utf8))
        _ = try run("""
            local root, manifest = ...
            local m = assert(upd.manifest.load(manifest))
            local bad, _, code, findings = upd.fsck(root, m)
            same(bad, nil, "a tree with the machine's files differs"); same(code, "differences", "code")
            same(#findings, 5, "findings (/etc, /etc/hostname, /proc, /proc/1, /proc/1/status): " .. table.concat(findings, "; "))
            same(assert(upd.fsck(root, m, {live = true})), true, "live: /proc and /etc are the machine's")
            """, arguments: [root, samples.manifest("olpc-ext3", "1")])
    }

    @Test func applyWithAKeyringUsesTheMirrorsDeltasAndPack() throws {
        let repo = tmp.sub("repo")
        try Shell.run(["cp", "-al", samples.repo, repo])
        for command in [["delta", "--repo", repo, "--from", "olpc-ext3/1", "--to", "olpc-ext3/2"], ["pack", "--repo", repo, "olpc-ext3/2"]] {
            #expect(try CLI.run(command + ["--secret-key", samples.secretKey]).status == 0)
        }
        let mirror = try NginxMirror(repo: repo)
        let root = tmp.sub("root")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        let out = try run("""
            local root, mirror, keyring, v1, v2 = ...
            local kr = assert(upd.keyring(keyring))
            local one, two = assert(upd.manifest.load(v1)), assert(upd.manifest.load(v2))
            assert(kr:verify(two))
            local r = assert(upd.apply(assert(upd.plan(one, two, {root = root})), {mirrors = {mirror}, keyring = kr}))
            check(r.deltas > 0, "deltas were used"); same(#r.fallbacks, 0, "no fallback")
            print("ok")
            """, arguments: [root, mirror.url, samples.keyring, samples.manifest("olpc-ext3", "1"), samples.manifest("olpc-ext3", "2")])
        #expect(out == "ok\n", "\(out)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root) == [])
        let log = try String(contentsOfFile: "\(mirror.state)/access.log", encoding: .utf8)
        #expect(log.contains(".pack "), "the pack was used")
    }

    @Test func deployRollbackAndStatus() throws {
        let mirror = try NginxMirror(repo: samples.repo)
        try Sys.mkdirs(tmp.sub("sysroot"))
        let out = try run("""
            local sysroot, mirror, keyring, v1, v2 = ...
            local kr = assert(upd.keyring(keyring))
            local one, two = assert(upd.manifest.load(v1)), assert(upd.manifest.load(v2))
            assert(kr:verify(one)); assert(kr:verify(two))
            local first = assert(upd.deploy(assert(upd.plan(one, one, {root = sysroot})), {sysroot = sysroot, mirrors = {mirror}}))
            check(first.files_written > 0 and first.blobs_downloaded > 0 and first.files_linked == 0, "a first deploy builds from blobs")
            local second = assert(upd.deploy(assert(upd.plan(one, two, {root = sysroot})), {sysroot = sysroot, mirrors = {mirror}}))
            check(second.files_linked > 0, "unchanged files are linked")
            local status = assert(upd.status(sysroot))
            same(status.current.version, "2", "current"); same(status.previous.version, "1", "previous")
            same(status.pending, second.name, "pending"); same(#status.deployments, 2, "deployments")
            check(status.current.shared_bytes > 0, "shared bytes")
            assert(upd.fsck(sysroot .. "/current/", two))
            local back = assert(upd.rollback(sysroot))
            same(back.to, first.name, "rolled back")
            same(assert(upd.status(sysroot)).current.version, "1", "current after rollback")
            local unverified = assert(upd.manifest.load(v2))
            local refused, _, code = upd.deploy(assert(upd.plan(one, unverified, {root = sysroot})), {sysroot = sysroot})
            same(refused, nil, "unverified"); same(code, "verification", "code")
            print("ok")
            """, arguments: [tmp.sub("sysroot"), mirror.url, samples.keyring, samples.manifest("olpc-ext3", "1"), samples.manifest("olpc-ext3", "2")])
        #expect(out == "ok\n", "\(out)")
    }

    @Test func systemTimeStateAndLog() throws {
        let power = tmp.sub("power")
        try Sys.mkdirs("\(power)/AC")
        try Sys.mkdirs("\(power)/BAT0")
        try Sys.writeFileAtomically("\(power)/AC/type", Array("Mains\n".utf8))
        try Sys.writeFileAtomically("\(power)/AC/online", Array("0\n".utf8))
        try Sys.writeFileAtomically("\(power)/BAT0/type", Array("Battery\n".utf8))
        try Sys.writeFileAtomically("\(power)/BAT0/capacity", Array("42\n".utf8))
        let script = """
            check(upd.system.free_bytes("/") > 0, "free bytes")
            same(upd.system.on_ac_power(), false, "on battery"); same(upd.system.battery_percent(), 42, "battery")
            same(upd.system.device_id(), "laptop-7", "device id")
            local now = upd.time.now()
            check(math.abs(now - os_time) < 5, "now")
            -- 12:00 local time on the test's day.
            local noon = os_noon
            same(upd.time.in_window("08:00-16:00", noon), true, "school hours")
            same(upd.time.in_window("22:00-06:00", noon), false, "night window at noon")
            same(upd.time.in_window("22:00-06:00", noon + 14 * 3600), true, "night window at 02:00")
            local ok, err = pcall(upd.time.in_window, "soon")
            check(not ok and err:find("HH:MM%-HH:MM"), err)
            local t0 = upd.time.now(); upd.sleep(0.2); check(upd.time.now() - t0 >= 0.19, "sleep")
            same(upd.state.get("runs"), nil, "fresh state")
            upd.state.set("runs", 1); upd.state.set("budget", {day = "2026-11-27", bytes = 1024})
            print("ok")
            """
        let now = Date()
        let noon = Calendar.current.date(bySettingHour: 12, minute: 0, second: 0, of: now)!
        let prefix = "local os_time, os_noon = \(Int(now.timeIntervalSince1970)), \(Int(noon.timeIntervalSince1970))\n"
        let out = try run(prefix + script, environment: ["UPDATINATOR_POWER_SUPPLY": power, "UPDATINATOR_DEVICE_ID": "laptop-7"])
        #expect(out == "ok\n")
        // The state persists to the next run.
        let again = try run("""
            same(upd.state.get("runs"), 1, "runs kept"); same(upd.state.get("budget").bytes, 1024, "table kept")
            print("ok")
            """)
        #expect(again == "ok\n")
    }

    @Test func logWritesOneLineAtItsLevelOnStandardError() throws {
        let r = try runScript("""
            upd.log.info("state", "written")
            upd.log.warn("a warning")
            print("between")
            upd.log.error("an error", 42)
            """)
        #expect(r.stderr == "[info] state written\n[warn] a warning\n[error] an error 42\n")
        #expect(r.stdout == "between\n", "print goes to standard output, the log does not")
        try Sys.writeFileAtomically(tmp.sub("misuse.lua"), Array("upd.log.warn({})\n".utf8))
        let misuse = try CLI.run(["run", "--state", tmp.sub("state.json"), tmp.sub("misuse.lua")])
        #expect(misuse.status == 1)
        #expect(misuse.stderr.contains("bad argument #1 to 'warn'"), "\(misuse.stderr)")
    }

    @Test func checkAndReportRaiseNamingAFieldTheServerWouldRefuse() throws {
        // Nothing listens on port 9: a field that passed the check would fail as a network error instead.
        let out = try run("""
            local kr = assert(upd.keyring(...))
            local ok, err = pcall(upd.report, "http://127.0.0.1:9", { status = "done", mesage = "typo" })
            check(not ok and err:find("mesage: unknown field", 1, true), tostring(err))
            ok, err = pcall(upd.report, "http://127.0.0.1:9", { status = "finished" })
            check(not ok and err:find("status: one of", 1, true), tostring(err))
            ok, err = pcall(upd.check, "http://127.0.0.1:9", { image = "../etc", school = "north" }, kr)
            check(not ok and err:find("image: ", 1, true), tostring(err))
            ok, err = pcall(upd.check, "http://127.0.0.1:9", { free_bytes = -1 }, kr)
            check(not ok and err:find("free_bytes: a byte count expected", 1, true), tostring(err))
            local none, message, code = upd.check("http://127.0.0.1:9", { image = "olpc", version = "445", school = "north" }, kr)
            same(code, "network", message)
            print("refused")
            """, arguments: [samples.keyring], environment: ["UPDATINATOR_DEVICE_ID": "laptop-17"])
        #expect(out.contains("refused"))
    }

    @Test func theEditorAnnotationsAndTheReferenceNameEveryFunction() throws {
        let out = try run("""
            local names = {}
            local function walk(t, prefix)
              for k, v in pairs(t) do
                if type(v) == "function" then names[#names + 1] = prefix .. k
                elseif type(v) == "table" then walk(v, prefix .. k .. ".") end
              end
            end
            walk(upd, "upd.")
            table.sort(names)
            print(table.concat(names, "\\n"))
            """)
        let functions = out.split(separator: "\n").map(String.init)
        #expect(functions.count > 20)
        let meta = try String(contentsOf: Scripts.repositoryRoot.appendingPathComponent("policies/meta/upd.lua"), encoding: .utf8)
        let reference = try String(contentsOf: Scripts.repositoryRoot.appendingPathComponent("docs/lua-api.md"), encoding: .utf8)
        for name in functions {
            #expect(meta.contains("function \(name)("), "\(name) is annotated in policies/meta/upd.lua")
            #expect(reference.contains("`\(name)("), "\(name) is described in docs/lua-api.md")
        }
    }

    @Test func aScriptErrorPrintsItsPlaceAndTracebackAndExitsOne() throws {
        let path = tmp.sub("broken.lua")
        try Sys.writeFileAtomically(path, Array("local function decide()\n  return upd.nothing.here\nend\ndecide()\n".utf8))
        let r = try CLI.run(["run", "--state", tmp.sub("state.json"), path])
        #expect(r.status == 1)
        #expect(r.stderr.hasPrefix("updatinator: \(path):2: attempt to index a nil value (field 'nothing')"), "\(r.stderr)")
        #expect(r.stderr.contains("stack traceback:"))
    }
}
