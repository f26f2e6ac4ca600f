import Foundation
import Testing
@testable import Updatinator

/// National server processes side by side on one PostgreSQL inventory, behind nginx: none has
/// state of its own, so whichever a request reaches, the answer is the same.
@Suite struct NationalReplicaTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("replicas")

    init() throws { samples = try SampleImages.shared }

    @Test("two national replicas on one PostgreSQL give the same answers")
    func replicasOnOnePostgresAnswerTheSame() throws {
        let postgres = try PostgresServer()
        let repo = tmp.sub("national")
        try Shell.run(["cp", "-a", samples.repo, repo])
        #expect(try CLI.run(["publish", "--repo", repo, "--channel", "stable", "--image", "olpc-ext3", "--version", "2", "--expires", "1d",
                             "--secret-key", samples.secretKey]).status == 0)
        let nationalKeyring = tmp.sub("national-keyring")
        try Sys.mkdirs(nationalKeyring)
        try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: tmp.sub("national.sec"), publicPath: nationalKeyring + "/national.pub")
        // The national policy: every device may move to 2; a laptop asking a replica itself is
        // told how many devices are done at 2, from upd.fleet.
        try Sys.writeFileAtomically(tmp.sub("national.lua"), Array("""
            local upd = require "updatinator"
            function school_rollout(school) return { ["olpc-ext3"] = { versions = { "2" } } } end
            function decide(device)
              return { reason = "held", message = "done: " .. upd.fleet.count { image = "olpc-ext3", version = "2", status = "done" } }
            end
            """.utf8))
        let replicas = try (0..<2).map { _ in
            try ServeProcess(["--repo", repo, "--policy", tmp.sub("national.lua"), "--decision-key", tmp.sub("national.sec"),
                              "--db", postgres.url])
        }
        let balancer = try NginxBalancer(replicas.map(\.url))

        let decisionKeyring = tmp.sub("decision-keyring")
        try Sys.mkdirs(decisionKeyring)
        try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: tmp.sub("decision.sec"), publicPath: decisionKeyring + "/decision.pub")
        try Sys.writeFileAtomically(tmp.sub("school.json"), Array(#"{"image": "olpc-ext3"}"#.utf8))
        let school = try ServeProcess(["--repo", tmp.sub("school-repo"), "--db", tmp.sub("school.sqlite"),
                                       "--policy", SchoolServerTests.serverPolicy("default.lua"), "--decision-key", tmp.sub("decision.sec"),
                                       "--config", tmp.sub("school.json"), "--upstream", balancer.url, "--keyring", samples.keyring,
                                       "--upstream-keyring", nationalKeyring, "--follow", "stable", "--upstream-interval", "1",
                                       "--school-id", "school-7", "--school-key", tmp.sub("school-7.key"), "--forward-interval", "0.2"])
        let laptops = ["laptop-a", "laptop-b", "laptop-c"]
        for laptop in laptops {
            let root = tmp.sub(laptop)
            try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
            try Sys.mkdirs("\(root)/.updatinator")
            try Sys.writeFileAtomically("\(root)/.updatinator/installed.manifest", Sys.readFile(samples.manifest("olpc-ext3", "1")))
            try waitUntil(timeout: 30, "\(laptop) upgrades through the school") {
                let run = try CLI.run(["upgrade", "--root", root, "--server", school.url, "--keyring", samples.keyring,
                                       "--decision-keyring", decisionKeyring], environment: ["UPDATINATOR_DEVICE_ID": laptop])
                return run.status == 0
            }
        }
        func fleet(_ replica: ServeProcess) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(try replica.operatorGet("/v1/fleet").body.utf8)) as! [String: Any]
        }
        func devices(_ replica: ServeProcess) throws -> [String] {
            (try fleet(replica)["devices"] as? [[String: Any]] ?? []).map { "\($0["device"]!) \($0["version"] ?? "-") \($0["status"] ?? "-") \($0["school"] ?? "-")" }
        }
        try waitUntil(timeout: 30, "every laptop's done report reaches the national inventory") {
            try devices(replicas[0]).filter { $0.hasSuffix("2 done school-7") }.count == laptops.count
        }
        #expect(try devices(replicas[0]) == devices(replicas[1]))
        #expect(Set(balancer.replicasAnswering).count == 2, "the balancer sent requests to both replicas")
        // upd.fleet counts the same on either replica.
        for replica in replicas {
            let nonce = SchoolServerClient.newNonce()
            let answer = try replica.post("/v1/check", ["device": "asking", "nonce": nonce, "image": "olpc-ext3", "version": "1"])
            let decision = try Decision.verify(envelope: answer.body, keyring: Keyring(directory: nationalKeyring), device: "asking",
                                               nonce: nonce, now: Int64(Date().timeIntervalSince1970), source: "check")
            #expect(decision.message == "done: \(laptops.count)", "\(decision)")
        }

        // An operator's halt on one replica is the other's too, and reaches the school.
        let halted = try Curl.get(replicas[0].url + "/v1/rollouts/olpc-ext3/halt",
                                  ["-X", "POST", "-H", "Authorization: Bearer \(replicas[0].operatorToken!)", "-H", "Content-Type: application/json",
                                   "--data", #"{"reason": "replica test"}"#])
        #expect(halted.status == 200, "\(halted.body)")
        try waitUntil(timeout: 30, "the other replica sees the halt") {
            try replicas[1].operatorGet("/v1/rollouts/olpc-ext3").body.contains("\"halted\"")
        }
        try waitUntil(timeout: 30, "the school holds its devices to the national halt") {
            let nonce = SchoolServerClient.newNonce()
            let answer = try school.post("/v1/check", ["device": "laptop-d", "nonce": nonce, "image": "olpc-ext3", "version": "1"])
            return try Decision.verify(envelope: answer.body, keyring: Keyring(directory: decisionKeyring), device: "laptop-d", nonce: nonce,
                                       now: Int64(Date().timeIntervalSince1970), source: "check").message == "halted nationally: replica test"
        }

        // A forwarded batch sent to one replica and again to the other is recorded once.
        let signer = RequestSigner(sender: "school-7", key: try DeviceIdentity.key(at: tmp.sub("school-7.key")))
        let report = DeviceReport(device: "laptop-z", status: .failed, image: "olpc-ext3", version: "2", code: "io", message: "disk")
        let body = try WireCoding.encode(ForwardedReports(epoch: "again", reports: [.init(seq: 1, time: 1_800_000_000, address: nil, report: report)]))
        for (replica, expected) in [(replicas[0], 1), (replicas[1], 0)] {
            let answer = try signer.post("v1/reports", to: replica.url, body: body, via: CurlFetcher(options: FetchOptions(mirrors: [replica.url])))
            #expect(String(decoding: answer.body, as: UTF8.self).contains("\"recorded\":\(expected)"), "\(String(decoding: answer.body, as: UTF8.self))")
        }
        // The school enrolled through either replica; another key under its id is refused by both.
        let impostor = RequestSigner(sender: "school-7", key: SecretKey.generate())
        for replica in replicas {
            #expect(try impostor.post("v1/reports", to: replica.url, body: body, via: CurlFetcher(options: FetchOptions(mirrors: [replica.url]))).status == 403)
        }
        // A request replayed to the other replica is refused: the nonces are shared.
        let headers = signer.headers(method: "POST", path: "/v1/reports", body: body, time: Int64(Date().timeIntervalSince1970))
        let first = try CurlFetcher(options: FetchOptions(mirrors: [replicas[0].url])).call("POST", "v1/reports", to: replicas[0].url, body: body, headers: headers)
        let replayed = try CurlFetcher(options: FetchOptions(mirrors: [replicas[1].url])).call("POST", "v1/reports", to: replicas[1].url, body: body, headers: headers)
        #expect(first.status == 200 && replayed.status == 401, "\(first.status) then \(replayed.status)")
    }
}
