import Foundation
import Testing
@testable import Updatinator
import UpdatinatorServer

/// Device identity: every check, report and batch request is signed by the device's key, and
/// only admitted devices get decisions and batches, count in rollouts, and are listed as peers.
/// Each test is an attack a host on the school's network can make with `curl`.
@Suite struct DeviceIdentityAttackTests {
    typealias School = SchoolServerTests.School
    let school: SchoolServerTests
    var samples: SampleImages { school.samples }
    var tmp: TemporaryDirectory { school.tmp }

    init() throws { school = try SchoolServerTests() }

    func offeringPolicy() throws -> String { try school.offeringPolicy() }
    func installedTree(_ name: String, version: String) throws -> String { try school.installedTree(name, version: version) }
    static func serverPolicy(_ name: String) -> String { SchoolServerTests.serverPolicy(name) }

    /// A check's body for `device`, with a fresh nonce.
    func checkBody(_ device: String, version: String = "1", peer: String? = nil) throws -> [UInt8] {
        var fields: [String: Any] = ["device": device, "nonce": SchoolServerClient.newNonce(), "image": "olpc-ext3", "version": version]
        fields["peer"] = peer
        return Array(try JSONSerialization.data(withJSONObject: fields))
    }

    /// The JSON error of a refusal: its code, state and server time.
    func refusal(_ response: CurlFetcher.Response) -> DeviceRefusal? { DeviceRefusal(response) }

    /// What the rollout of olpc-ext3 counts, as operators see it.
    func rolloutCounts(_ school: School) throws -> [String: Int] {
        let view = try JSONSerialization.jsonObject(with: Data(try school.server.operatorGet("/v1/rollouts/olpc-ext3").body.utf8)) as! [String: Any]
        return view["counts"] as? [String: Int] ?? [:]
    }

    /// The operator token in a file, for `updatinator fleet`.
    func tokenFile(_ school: School) throws -> String {
        let path = tmp.sub("operator-token-\(UUID().uuidString.prefix(8))")
        try Sys.writeFileAtomically(path, Array(school.server.operatorToken!.utf8), mode: 0o600)
        return path
    }

    @Test("device-identity: a forged report (the right device id, unsigned or signed by another key) is refused and moves no rollout count")
    func forgedReportsAreRefused() throws {
        let server = try School(self.school, policy: Self.serverPolicy("staged-rollout.lua"), settings: ["image": "olpc-ext3", "version": "2"])
        _ = try server.check("victim")
        let failed: [String: Any] = ["device": "victim", "status": "failed", "image": "olpc-ext3", "version": "2", "code": "io", "message": "forged"]
        let body = Array(try JSONSerialization.data(withJSONObject: failed))
        // Unsigned, as curl sends it; and ten made-up devices, as in the issue.
        #expect(refusal(try server.server.postUnsigned("/v1/report", body))?.code == DeviceRefusal.signature)
        for n in 0..<10 {
            var madeUp = failed
            madeUp["device"] = "made-up-\(n)"
            #expect(try server.server.postUnsigned("/v1/report", Array(try JSONSerialization.data(withJSONObject: madeUp))).status == 401)
        }
        // Signed by another key for the victim's id; and signed by the attacker's own enrolled
        // device for the victim's id in the body.
        let thief = RequestSigner(sender: "victim", key: SecretKey.generate())
        let stolenID = try thief.post("/v1/report", to: server.server.url, body: body, via: CurlFetcher(options: FetchOptions(mirrors: [server.server.url])))
        #expect(stolenID.status == 403 && refusal(stolenID)?.message.contains("another key") == true, "\(String(decoding: stolenID.body, as: UTF8.self))")
        _ = try server.check("attacker")
        let asAttacker = try TestDevices.signer("attacker").post("/v1/report", to: server.server.url, body: body,
                                                                 via: CurlFetcher(options: FetchOptions(mirrors: [server.server.url])))
        #expect(asAttacker.status == 403, "\(String(decoding: asAttacker.body, as: UTF8.self))")
        #expect(try rolloutCounts(server)["failed"] == 0)
        #expect(try server.server.metric("updatinator_reports_total", ["failed"]) == 0)
        #expect(try server.server.metric("updatinator_device_refusals_total", ["signature"]) == 13)
        // The victim's own signed report counts.
        try server.report("victim", "failed", ["code": "io", "message": "real"])
        #expect(try rolloutCounts(server)["failed"] == 1)
    }

    @Test("device-identity: a replayed check, an altered body, and a time outside the window are refused")
    func replayedAlteredAndStaleRequestsAreRefused() throws {
        let server = try School(self.school, policy: try offeringPolicy(), settings: [:])
        let signer = try TestDevices.signer("replayed")
        let now = Int64(Date().timeIntervalSince1970)
        let body = try checkBody("replayed")
        let headers = signer.headers(method: "POST", path: "/v1/check", body: body, time: now)
        #expect(try server.server.postUnsigned("/v1/check", body, headers: headers).status == 200)
        let replay = try server.server.postUnsigned("/v1/check", body, headers: headers)
        #expect(replay.status == 401 && refusal(replay)?.code == DeviceRefusal.replay, "\(String(decoding: replay.body, as: UTF8.self))")

        let fresh = signer.headers(method: "POST", path: "/v1/check", body: body, time: now)
        let altered = try server.server.postUnsigned("/v1/check", try checkBody("replayed", version: "2"), headers: fresh)
        #expect(altered.status == 401 && refusal(altered)?.code == DeviceRefusal.signature, "\(String(decoding: altered.body, as: UTF8.self))")
        let otherPath = try server.server.postUnsigned("/v1/report", body, headers: signer.headers(method: "POST", path: "/v1/check", body: body, time: now))
        #expect(otherPath.status == 401, "a check's signature does not sign a report")

        for skew: Int64 in [-3600, 3600] {
            let stale = try server.server.postUnsigned("/v1/check", body, headers: signer.headers(method: "POST", path: "/v1/check", body: body, time: now + skew))
            let answer = try #require(refusal(stale))
            #expect(stale.status == 401 && answer.code == DeviceRefusal.clock)
            #expect(abs((answer.serverTime ?? 0) - now) < 120, "the refusal carries the server's time")
        }
    }

    @Test("device-identity: a pending, rejected or unknown device gets no decision and no batch; once admitted it gets one")
    func unadmittedDevicesGetNothing() throws {
        let server = try School(self.school, policy: try offeringPolicy(), settings: [:], extra: ["--admission", "operator"])
        let pending = try server.server.post("/v1/check", ["device": "newcomer", "nonce": SchoolServerClient.newNonce(), "image": "olpc-ext3", "version": "1"])
        #expect(pending.status == 403 && refusal(pending)?.state == "pending", "\(String(decoding: pending.body, as: UTF8.self))")
        let batch = try server.server.post("/v1/batch", ["device": "newcomer", "items": [["hash": String(repeating: "0", count: 64), "size": 1]]])
        #expect(batch.status == 403 && refusal(batch)?.state == "pending")
        #expect(try server.server.metric("updatinator_decisions_total") == 0, "no decision was made")
        // Operators see it, with its key's fingerprint.
        let token = try tokenFile(server)
        let fleet = ["--server", server.server.url, "--token-file", token]
        let listed = try CLI.run(["fleet", "devices", "--admission", "pending", "--json"] + fleet)
        let devices = (try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any])?["devices"] as? [[String: Any]] ?? []
        let fingerprint = try TestDevices.signer("newcomer").fingerprint
        #expect(devices.count == 1 && devices.first?["key_fingerprint"] as? String == fingerprint, "\(listed.stdout)")
        #expect(try CLI.run(["fleet", "admit", "newcomer"] + fleet).status == 0)
        #expect(try server.check("newcomer").update)
        #expect(try CLI.run(["fleet", "admit", "newcomer"] + fleet).status == 10, "admitting an admitted device is nothing to do")
        #expect(try CLI.run(["fleet", "reject", "stranger"] + fleet).status == 64, "a device that never enrolled")
        #expect(try CLI.run(["fleet", "reject", "newcomer"] + fleet).status == 0)
        let rejected = try server.server.post("/v1/check", ["device": "newcomer", "nonce": SchoolServerClient.newNonce()])
        #expect(rejected.status == 403 && refusal(rejected)?.state == "rejected")
        let rejectedBatch = try server.server.post("/v1/batch", ["device": "newcomer", "items": [["hash": String(repeating: "0", count: 64), "size": 1]]])
        #expect(rejectedBatch.status == 403 && refusal(rejectedBatch)?.state == "rejected")

        // By token: a device without the token is unknown, and nothing of it is kept.
        let tokenPath = tmp.sub("enrolment-token")
        try Sys.writeFileAtomically(tokenPath, Array("baked-into-the-image".utf8), mode: 0o600)
        let byToken = try School(self.school, policy: try offeringPolicy(), settings: [:], extra: ["--admission", "token", "--enrolment-token-file", tokenPath])
        let unknown = try byToken.server.post("/v1/check", ["device": "no-token", "nonce": SchoolServerClient.newNonce()])
        #expect(unknown.status == 403 && refusal(unknown)?.state == "unknown")
        let unknownBatch = try byToken.server.post("/v1/batch", ["device": "no-token", "items": [["hash": String(repeating: "0", count: 64), "size": 1]]])
        #expect(unknownBatch.status == 403 && refusal(unknownBatch)?.state == "unknown")
        #expect(try byToken.server.operatorGet("/v1/fleet/devices/no-token").status == 404)
    }

    @Test("device-identity: the enrolment token admits a device; a wrong token does not")
    func theEnrolmentTokenAdmits() throws {
        let tokenPath = tmp.sub("enrolment-token")
        try Sys.writeFileAtomically(tokenPath, Array("baked-into-the-image".utf8), mode: 0o600)
        let server = try School(self.school, policy: try offeringPolicy(), settings: [:], extra: ["--admission", "token", "--enrolment-token-file", tokenPath])
        let client = try CurlFetcher(options: FetchOptions(mirrors: [server.server.url]))
        let wrong = try TestDevices.signer("wrong-token", enrolmentToken: Array("guessed".utf8))
        let refused = try wrong.post("/v1/check", to: server.server.url, body: try checkBody("wrong-token"), via: client)
        #expect(refused.status == 403 && refusal(refused)?.state == "unknown", "\(String(decoding: refused.body, as: UTF8.self))")
        let right = try TestDevices.signer("right-token", enrolmentToken: Array("baked-into-the-image".utf8))
        let admitted = try right.post("/v1/check", to: server.server.url, body: try checkBody("right-token"), via: client)
        #expect(admitted.status == 200, "\(String(decoding: admitted.body, as: UTF8.self))")
        // Its later requests need no token: its key is admitted.
        let later = try TestDevices.signer("right-token").post("/v1/check", to: server.server.url, body: try checkBody("right-token"), via: client)
        #expect(later.status == 200)
    }

    @Test("device-identity: a peer is listed only while an admitted device advertises it")
    func onlyAdmittedDevicesArePeers() throws {
        let server = try School(self.school, policy: Self.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"], extra: ["--admission", "operator"])
        let fleet = ["--server", server.server.url, "--token-file", try tokenFile(server)]
        // Each device's first check enrols it, pending.
        for device in ["asker", "neighbour", "stranger"] {
            #expect(try server.server.post("/v1/check", ["device": device, "nonce": SchoolServerClient.newNonce()]).status == 403)
        }
        for device in ["asker", "neighbour"] { #expect(try CLI.run(["fleet", "admit", device] + fleet).status == 0) }
        _ = try server.check("neighbour", version: "2", ["peer": "http://192.0.2.1:8081"])
        let stranger = try server.server.post("/v1/check", ["device": "stranger", "nonce": SchoolServerClient.newNonce(), "image": "olpc-ext3",
                                                            "version": "2", "peer": "http://192.0.2.66:8081"])
        #expect(stranger.status == 403)
        #expect(try server.check("asker").peers == ["http://192.0.2.1:8081"], "the admitted neighbour only")
        #expect(try CLI.run(["fleet", "reject", "neighbour"] + fleet).status == 0)
        #expect(try server.check("asker").peers == [], "a rejected device is no peer")
    }

    @Test("device-identity: end to end, upgrade signs its requests, exits 17 until admitted, then upgrades")
    func upgradeWaitsForAdmission() throws {
        let server = try School(self.school, policy: Self.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"], extra: ["--admission", "operator"])
        let laptop = try installedTree("waiting-laptop", version: "1")
        let keyFile = tmp.sub("waiting-laptop.key")
        let arguments = ["upgrade", "--root", laptop, "--server", server.server.url, "--keyring", samples.keyring,
                         "--decision-keyring", server.decisionKeyring, "--device", "waiting-laptop", "--device-key", keyFile]
        let first = try CLI.run(arguments)
        let key = try DeviceIdentity.key(at: keyFile)
        #expect(first.status == 17 && first.stderr.contains("pending") && first.stderr.contains(key.publicKey.keyID), "\(first.stderr)")
        #expect(try Sys.lstat(keyFile).st_mode & 0o777 == 0o600, "the device key is its owner's only")
        let json = try CLI.run(arguments + ["--json"])
        let error = (try JSONSerialization.jsonObject(with: Data(json.stderr.utf8)) as? [String: Any])?["error"] as? [String: Any]
        #expect(json.status == 17 && error?["code"] as? String == "not_admitted" && error?["status"] as? Int == 17, "\(json.stderr)")
        #expect(try CLI.run(["fleet", "admit", "waiting-laptop", "--server", server.server.url, "--token-file", try tokenFile(server)]).status == 0)
        let upgraded = try CLI.run(arguments)
        #expect(upgraded.status == 0, "\(upgraded.stderr)")
        #expect(try CLI.run(["fsck", "--tree", laptop, "--manifest", samples.manifest("olpc-ext3", "2")]).status == 0)
        let row = try #require(try server.fleet()["devices"] as? [[String: Any]]).first { $0["device"] as? String == "waiting-laptop" }
        #expect(row?["status"] as? String == "done" && row?["version"] as? String == "2", "the signed reports count: \(row ?? [:])")
    }
}
