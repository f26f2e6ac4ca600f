import Foundation
import Testing
@testable import Updatinator
import UpdatinatorLua
import UpdatinatorServer

/// The operators' side of the school server: the token that guards the fleet, the management
/// API's views and actions (which take effect at the next check), the reasons a device is told,
/// and `updatinator fleet`.
extension SchoolServerTests {
    /// A policy that offers olpc-ext3's newest version, except to a device named "held" (held
    /// back, with its words) and one named "broken" (the policy fails).
    func offeringPolicy() throws -> String {
        let policy = tmp.sub("offering.lua")
        try Sys.writeFileAtomically(policy, Array("""
            local upd = require "updatinator"
            function decide(device)
              if device.device == "broken" then error("policy bug") end
              if device.device == "held" then return { reason = "held", message = "not in this stage" } end
              return { image = "olpc-ext3", version = upd.repo.latest("olpc-ext3") }
            end
            """.utf8))
        return policy
    }

    func operatorPost(_ school: School, _ path: String, _ fields: [String: String] = [:], token: String? = nil) throws -> Curl.Response {
        let body = String(decoding: try JSONSerialization.data(withJSONObject: fields), as: UTF8.self)
        return try Curl.get(school.server.url + path, ["-X", "POST", "-d", body, "-H", "Authorization: Bearer \(token ?? school.server.operatorToken!)"])
    }

    @Test func theFleetAndItsControlsNeedTheOperatorToken() throws {
        let school = try School(self, policy: try offeringPolicy(), settings: [:])
        _ = try school.check("d1")
        let url = school.server.url
        let reads = ["/v1/fleet", "/metrics", "/v1/fleet/devices", "/v1/fleet/devices/d1", "/v1/rollouts", "/v1/rollouts/olpc-ext3"]
        for path in reads {
            #expect(try Curl.get(url + path).status == 401, "\(path) without a token")
            #expect(try Curl.get(url + path, ["-H", "Authorization: Bearer wrong-token-0123456789"]).status == 401, "\(path), wrong token")
            #expect(try school.server.operatorGet(path).status == 200, "\(path) with the token")
        }
        let forged = try operatorPost(school, "/v1/rollouts/olpc-ext3/pause", token: "wrong-token-0123456789")
        #expect(forged.status == 401)
        #expect(try school.check("d1").update, "a refused pause pauses nothing")
        // The dashboard: a sign-in page, and no action without its cookie.
        let page = try Curl.get(url + "/dashboard")
        #expect(page.status == 200 && page.body.contains("name=\"token\"") && !page.body.contains("olpc-ext3"), "\(page.body)")
        #expect(try Curl.get(url + "/dashboard/rollouts/olpc-ext3/pause", ["-X", "POST", "-d", "reason=x"]).status == 401)
        let wrong = try Curl.get(url + "/dashboard/login", ["-d", "token=wrong-token-0123456789"])
        #expect(wrong.status == 401 && wrong.header("Set-Cookie") == nil)
        let signIn = try Curl.get(url + "/dashboard/login", ["-d", "token=\(school.server.operatorToken!)"])
        let cookie = try #require(signIn.header("Set-Cookie"), "\(signIn.headers)")
        #expect(signIn.status == 303 && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"))
        let session = String(cookie.split(separator: ";")[0])
        let crossSite = try Curl.get(url + "/dashboard/rollouts/olpc-ext3/pause",
                                     ["-X", "POST", "-d", "reason=x", "-H", "Cookie: \(session)", "-H", "Origin: http://evil.example"])
        #expect(crossSite.status == 403, "a form from another site")
        #expect(try school.check("d1").update, "still not paused")

        // A server without a token: the management API and dashboard are off, the fleet views
        // closed unless they are made public.
        for publicFleet in [false, true] {
            let closed = try ServeProcess(["--repo", school.repo, "--policy", try offeringPolicy(), "--decision-key", tmp.sub("decision.sec"),
                                           "--db", tmp.sub("closed-\(publicFleet).sqlite")] + (publicFleet ? ["--public-fleet"] : []),
                                          operatorToken: false)
            for path in ["/v1/fleet", "/metrics"] {
                #expect(try Curl.get(closed.url + path).status == (publicFleet ? 200 : 403), "\(path), public: \(publicFleet)")
            }
            for path in ["/v1/fleet/devices", "/v1/rollouts", "/dashboard"] {
                let answer = try Curl.get(closed.url + path)
                #expect(answer.status == 403 && answer.body.contains("--operator-token-file"), "\(path): \(answer.status) \(answer.body)")
            }
        }
    }

    @Test func operatorsPauseHaltPinAndReleaseWithoutARestart() throws {
        let school = try School(self, policy: try offeringPolicy(), settings: [:])
        #expect(try school.check("d1").update)
        let paused = try operatorPost(school, "/v1/rollouts/olpc-ext3/pause", ["reason": "exams this week"])
        #expect(paused.status == 200 && paused.body.contains("\"paused\""), "\(paused.body)")
        let held = try school.check("d1")
        #expect(!held.update && held.reason == "paused" && held.message == "exams this week", "\(held)")
        #expect(try operatorPost(school, "/v1/rollouts/olpc-ext3/pause").status == 200, "pausing again only changes the reason")
        #expect(try operatorPost(school, "/v1/rollouts/olpc-ext3/resume").status == 200)
        #expect(try operatorPost(school, "/v1/rollouts/olpc-ext3/resume").status == 409, "nothing to resume")
        #expect(try school.check("d1").update)
        #expect(try operatorPost(school, "/v1/rollouts/olpc-ext3/halt", ["reason": "boot loops on model X"]).status == 200)
        let halted = try school.check("d1")
        #expect(!halted.update && halted.reason == "halted" && halted.message == "boot loops on model X", "\(halted)")
        #expect(try operatorPost(school, "/v1/rollouts/olpc-ext3/pause").status == 400, "a halted rollout is resumed, not paused")
        #expect(try operatorPost(school, "/v1/rollouts/no-such-image/pause").status == 400)

        // A pin holds a device where an operator wants it, halted rollout or not; a release lets it go.
        #expect(try operatorPost(school, "/v1/fleet/devices/d2/pin", ["image": "olpc-ext3", "version": "1"]).status == 200)
        let pinned = try school.check("d2", version: "1")
        #expect(!pinned.update && pinned.reason == "pinned", "\(pinned)")
        #expect(try operatorPost(school, "/v1/fleet/devices/d3/pin", ["image": "olpc-ext3", "version": "2"]).status == 200)
        let moved = try school.check("d3", version: "1")
        #expect(moved.update && moved.version == "2", "a pin to another version moves the device: \(moved)")
        #expect(try operatorPost(school, "/v1/fleet/devices/d3/pin", ["image": "olpc-ext3", "version": "99"]).status == 400)
        #expect(try operatorPost(school, "/v1/fleet/devices/d2/release").status == 200)
        #expect(try operatorPost(school, "/v1/fleet/devices/d2/release").status == 409, "not pinned")
        #expect(try school.check("d2", version: "1").reason == "halted", "released: the rollout decides again")
        #expect(try operatorPost(school, "/v1/rollouts/olpc-ext3/resume").status == 200)

        // The reasons reach the inventory: the devices' last answers, and the failing devices.
        _ = try school.check("held")
        _ = try school.check("broken")
        try school.report("d1", "failed", ["code": "no_space", "message": "needs 2 GB"])
        func devices(_ query: String) throws -> [String] {
            let answer = try school.server.operatorGet("/v1/fleet/devices?" + query)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any], "\(answer.body)")
            return (object["devices"] as? [[String: Any]] ?? []).compactMap { $0["device"] as? String }.sorted()
        }
        #expect(try devices("decision=held") == ["held"])
        #expect(try devices("decision=policy-error") == ["broken"])
        #expect(try devices("status=failed") == ["d1"])
        #expect(try devices("seen_within=3600&image=olpc-ext3").count == 5)
        #expect(try school.server.operatorGet("/v1/fleet/devices?colour=red").status == 400)
        let device = try school.server.operatorGet("/v1/fleet/devices/d1")
        #expect(device.status == 200 && device.body.contains("needs 2 GB"), "its history: \(device.body)")
        #expect(try school.server.operatorGet("/v1/fleet/devices/nobody").status == 404)
        #expect(try school.server.metric("updatinator_devices", ["status=\"failed\""]) == 1)
        #expect(try school.server.metric("updatinator_reports_total", ["status=\"failed\""]) == 1)
        #expect(try school.server.metric("updatinator_decisions_total", ["outcome=\"paused\""]) == 1)
        #expect(try school.server.metric("updatinator_decisions_total", ["outcome=\"pinned\""]) == 1)
    }

    @Test func anOperatorAdvancesAStagedRollout() throws {
        let school = try School(self, policy: Self.serverPolicy("staged-rollout.lua"),
                                settings: ["image": "olpc-ext3", "version": "2", "salt": "test"])
        let devices = (0..<200).map { "device-\($0)" }
        let first = try devices.filter { try school.check($0).update }
        #expect(first.allSatisfy { RolloutBucket.of(device: $0, salt: "test") < 5 } && !first.isEmpty)
        let waiting = try #require(devices.first { RolloutBucket.of(device: $0, salt: "test") >= 5 && RolloutBucket.of(device: $0, salt: "test") < 25 })
        let told = try school.check(waiting)
        #expect(!told.update && told.reason == "held" && told.message == "stage 1 of 3 reaches 5 % of devices", "\(told)")
        let rollout = try JSONSerialization.jsonObject(with: Data(try school.server.operatorGet("/v1/rollouts/olpc-ext3").body.utf8)) as! [String: Any]
        let policy = try #require(rollout["policy"] as? [String: Any])
        #expect(policy["stage"] as? Int == 1 && policy["percent"] as? Int == 5 && rollout["version"] as? String == "2", "\(rollout)")
        #expect(try operatorPost(school, "/v1/rollouts/olpc-ext3/advance").status == 200)
        #expect(try school.check(waiting).update, "stage 2 reaches it")
        let second = try devices.filter { try school.check($0).update }
        #expect(second.allSatisfy { RolloutBucket.of(device: $0, salt: "test") < 25 } && second.count > first.count)
    }

    @Test func anAdvanceCountsForTheVersionItWasMadeFor() throws {
        let controls = try FleetControls(path: tmp.sub("controls.sqlite"))
        try controls.perform(.advance(image: "olpc-ext3", version: "2"), now: 1)
        try controls.perform(.advance(image: "olpc-ext3", version: "2"), now: 2)
        #expect(controls.rollout("olpc-ext3").stage == 2 && controls.rollout("olpc-ext3").stageVersion == "2")
        try controls.perform(.advance(image: "olpc-ext3", version: "3"), now: 3)
        #expect(controls.rollout("olpc-ext3").stage == 1 && controls.rollout("olpc-ext3").stageVersion == "3", "the next version starts over")
        #expect(try FleetControls(path: tmp.sub("controls.sqlite")).rollout("olpc-ext3") == controls.rollout("olpc-ext3"), "kept across a restart")
    }

    @Test func theFleetCommandShowsAndSteers() throws {
        let school = try School(self, policy: try offeringPolicy(), settings: [:])
        _ = try school.check("d1")
        try school.report("d1", "failed", ["code": "network", "message": "mirror unreachable"])
        let token = tmp.sub("token")
        try Sys.writeFileAtomically(token, Array((school.server.operatorToken! + "\n").utf8), mode: 0o600)
        func fleet(_ arguments: [String]) throws -> CLI.Result {
            try CLI.run(["fleet"] + arguments + ["--server", school.server.url, "--token-file", token])
        }
        let list = try fleet(["devices", "--status", "failed"])
        #expect(list.status == 0 && list.stdout.contains("d1") && list.stdout.contains("1 device"), "\(list.stdout)\(list.stderr)")
        let json = try fleet(["devices", "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json.stdout)")
        #expect((object["devices"] as? [[String: Any]])?.first?["code"] as? String == "network")
        let one = try fleet(["device", "d1"])
        #expect(one.status == 0 && one.stdout.contains("mirror unreachable"), "\(one.stdout)")
        let pause = try fleet(["pause", "olpc-ext3", "--reason", "exams"])
        #expect(pause.status == 0 && pause.stdout.contains("olpc-ext3 → 2: paused (exams)"), "\(pause.stdout)\(pause.stderr)")
        #expect(try school.check("d2").reason == "paused")
        let rollouts = try fleet(["rollouts"])
        #expect(rollouts.stdout.contains("paused (exams)") && rollouts.stdout.contains("1 failed"), "\(rollouts.stdout)")
        #expect(try fleet(["resume", "olpc-ext3"]).status == 0)
        #expect(try fleet(["resume", "olpc-ext3"]).status == 10, "nothing to resume")
        #expect(try fleet(["pin", "d2", "olpc-ext3", "1"]).status == 0)
        #expect(try school.check("d2", version: "1").reason == "pinned")
        #expect(try fleet(["release", "d2"]).status == 0)
        #expect(try fleet(["device", "nobody"]).status == 64)
        // A device id with characters a path encodes (a MAC address) is the same device to the server.
        let mac = "00:11:22:aa:bb:cc"
        #expect(try fleet(["pin", mac, "olpc-ext3", "1"]).status == 0)
        #expect(try school.check(mac, version: "1").reason == "pinned")
        let shown = try fleet(["device", mac])
        #expect(shown.status == 0 && shown.stdout.contains("pinned to olpc-ext3 1"), "\(shown.stdout)\(shown.stderr)")
        #expect(try fleet(["release", mac]).status == 0)
        #expect(try school.check(mac, version: "1").update)
        try Sys.writeFileAtomically(token, Array("not-the-operator-token".utf8), mode: 0o600)
        let refused = try fleet(["devices"])
        #expect(refused.status == 2 && refused.stderr.contains("refused the operator token"), "\(refused.stderr)")
    }

    @Test func upgradeSaysWhyThereIsNoUpdateWithAnExitStatusPerReason() throws {
        let school = try School(self, policy: try offeringPolicy(), settings: [:])
        let laptop = try installedTree("laptop", version: "2")
        let old = try installedTree("old", version: "1")
        func upgrade(_ root: String, as device: String) throws -> CLI.Result {
            try CLI.run(["upgrade", "--root", root, "--server", school.server.url, "--keyring", samples.keyring,
                         "--decision-keyring", school.decisionKeyring], environment: ["UPDATINATOR_DEVICE_ID": device])
        }
        func expectOutcome(_ root: String, _ device: String, status: Int32, _ words: String) throws {
            let r = try upgrade(root, as: device)
            #expect(r.status == status && r.stdout.contains(words), "\(device): \(r.status) \(r.stdout)\(r.stderr)")
        }
        try expectOutcome(laptop, "laptop", status: 10, "no update: up to date")
        try expectOutcome(old, "held", status: 11, "no update: held back by the rollout's stage: not in this stage")
        #expect(try operatorPost(school, "/v1/rollouts/olpc-ext3/pause", ["reason": "exams"]).status == 200)
        try expectOutcome(old, "old", status: 12, "no update: the rollout is paused by an operator: exams")
        #expect(try operatorPost(school, "/v1/rollouts/olpc-ext3/resume").status == 200)
        #expect(try operatorPost(school, "/v1/rollouts/olpc-ext3/halt", ["reason": "bad build"]).status == 200)
        try expectOutcome(old, "old", status: 13, "no update: the rollout is halted: bad build")
        #expect(try operatorPost(school, "/v1/fleet/devices/old/pin", ["image": "olpc-ext3", "version": "1"]).status == 200)
        try expectOutcome(old, "old", status: 14, "no update: pinned by an operator")
        try expectOutcome(old, "broken", status: 15, "no update: the school server's policy failed")
        #expect(try CLI.run(["fsck", "--tree", old, "--manifest", samples.manifest("olpc-ext3", "1")]).status == 0, "nothing moved")
    }
}

/// The dashboard in a real browser: headless Chromium, driven through its DevTools protocol by
/// scripts/browser.
extension SchoolServerTests {
    /// Runs browser steps on the page; the values of its "eval" steps.
    func browse(_ url: String, _ steps: [[String: Any]]) throws -> [Any] {
        let file = tmp.sub("steps-\(UUID().uuidString).json")
        try Sys.writeFileAtomically(file, Array(try JSONSerialization.data(withJSONObject: steps)))
        let out = try Shell.run([Scripts.repositoryRoot.appendingPathComponent("scripts/browser").path, "run", url, file])
        return try out.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8), options: .fragmentsAllowed) }
    }

    @Test func theDashboardShowsTheFleetAndItsPauseButtonPausesTheRollout() throws {
        let school = try School(self, policy: try offeringPolicy(), settings: [:])
        for n in 1...6 { _ = try school.check("laptop-\(n)") }
        for n in 1...4 { try school.report("laptop-\(n)", "done") }
        try school.report("laptop-5", "failed", ["code": "no_space", "message": "needs 2 GB free, has 1 GB"])
        let url = school.server.url + "/dashboard"
        let signIn: [[String: Any]] = [["fill": ["#token", school.server.operatorToken!]], ["click": "#sign-in"], ["wait": "document.querySelector('#by-version')"]]
        let seen = try browse(url, signIn + [
            ["eval": "Array.from(document.querySelectorAll('#by-version tr')).slice(1).map(r => r.innerText.replace(/\\s+/g, ' ').trim())"],
            ["eval": "document.querySelector('#failing').innerText"],
            ["eval": "document.querySelector('#rollout-olpc-ext3 svg.progress polyline.done').getAttribute('points').split(' ').length"],
            ["eval": "document.querySelector('#rollout-olpc-ext3 svg.progress').getBoundingClientRect().width"],
            ["click": "#pause-olpc-ext3"],
            ["wait": "document.querySelector('#rollout-olpc-ext3').dataset.state === 'paused'"],
            ["eval": "document.querySelector('#log').innerText"],
        ])
        #expect(seen[0] as? [String] == ["olpc-ext3 1 2", "olpc-ext3 2 4"], "devices by version: \(seen[0])")
        #expect((seen[1] as? String)?.contains("needs 2 GB free, has 1 GB") == true, "\(seen[1])")
        #expect(seen[2] as? Int == 1 + 2 * 5 + 1, "two points per report (4 done, 1 failed), the start and the end: \(seen[2])")
        #expect((seen[3] as? Double ?? Double(seen[3] as? Int ?? 0)) > 100, "the plot is drawn: \(seen[3])")
        #expect((seen[4] as? String)?.contains("pause olpc-ext3") == true, "\(seen[4])")
        let paused = try school.check("laptop-6")
        #expect(!paused.update && paused.reason == "paused", "the click paused the rollout: \(paused)")
        _ = try browse(url, signIn + [["click": "#resume-olpc-ext3"], ["wait": "document.querySelector('#rollout-olpc-ext3').dataset.state === 'active'"]])
        #expect(try school.check("laptop-6").update, "and resume resumed it")
    }
}
