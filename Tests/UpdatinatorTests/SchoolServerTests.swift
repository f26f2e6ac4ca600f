import Foundation
import Testing
@testable import Updatinator
import UpdatinatorLua
import UpdatinatorServer

/// The school server (`updatinator serve`) and the peer server over real loopback HTTP, driven
/// by `curl`, the project's libcurl client and `updatinator upgrade`.
@Suite struct SchoolServerTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("school")

    init() throws { samples = try SampleImages.shared }

    /// A repository with the sample images, a decision key, and the server with a policy.
    final class School {
        let repo: String
        let decisionKeyring: String
        let server: ServeProcess

        init(_ test: SchoolServerTests, policy: String, settings: [String: Any], extra: [String] = []) throws {
            repo = test.tmp.sub("repo")
            if !FileManager.default.fileExists(atPath: repo) { try Shell.run(["cp", "-al", test.samples.repo, repo]) }
            decisionKeyring = test.tmp.sub("decision-keyring")
            let secret = test.tmp.sub("decision.sec")
            if !FileManager.default.fileExists(atPath: secret) {
                try Sys.mkdirs(decisionKeyring)
                try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: secret, publicPath: decisionKeyring + "/decision.pub")
            }
            let config = test.tmp.sub("server-\(UUID().uuidString).json")
            try Sys.writeFileAtomically(config, Array(try JSONSerialization.data(withJSONObject: settings)))
            server = try ServeProcess(["--repo", repo, "--policy", policy, "--decision-key", secret, "--config", config,
                                       "--db", test.tmp.sub("fleet-\(UUID().uuidString).sqlite")] + extra)
        }

        /// A check as a device sends it; the decision, verified with the decision keyring.
        func check(_ device: String, image: String = "olpc-ext3", version: String = "1", _ more: [String: Any] = [:]) throws -> Decision {
            let nonce = SchoolServerClient.newNonce()
            var fields: [String: Any] = ["device": device, "nonce": nonce, "image": image, "version": version]
            fields.merge(more) { $1 }
            let response = try server.post("/v1/check", fields)
            try #require(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
            return try Decision.verify(envelope: response.body, keyring: Keyring(directory: decisionKeyring), device: device,
                                       nonce: nonce, now: Int64(Date().timeIntervalSince1970), source: "check")
        }

        func report(_ device: String, _ status: String, version: String = "2", _ more: [String: Any] = [:]) throws {
            var fields: [String: Any] = ["device": device, "status": status, "image": "olpc-ext3", "version": version]
            fields.merge(more) { $1 }
            let response = try server.post("/v1/report", fields)
            try #require(response.status == 204, "\(String(decoding: response.body, as: UTF8.self))")
        }

        func fleet() throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(try server.operatorGet("/v1/fleet").body.utf8)) as! [String: Any]
        }
    }

    static func serverPolicy(_ name: String) -> String {
        Scripts.repositoryRoot.appendingPathComponent("policies/server/\(name)").path
    }

    /// A tree at olpc-ext3 `version` with its installed-manifest record.
    func installedTree(_ name: String, version: String) throws -> String {
        let root = tmp.sub(name)
        try Shell.copyTree(samples.tree("olpc-ext3", version), root)
        try Sys.mkdirs("\(root)/.updatinator")
        try Sys.writeFileAtomically("\(root)/.updatinator/installed.manifest", Sys.readFile(samples.manifest("olpc-ext3", version)))
        try Shell.run(["touch", "-h", "-r", samples.tree("olpc-ext3", version), root])
        return root
    }

    @Test("malicious-peer: a blob a peer serves that is not the content it names is refused and fetched from the server")
    func aLaptopUpgradesFromItsPeerFirstAndTheServerForTheRest() throws {
        let school = try School(self, policy: Self.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"])
        // A neighbour at version 2 serves its tree; one content it was to serve was changed
        // locally, so the peer refuses it and the laptop gets that one from the server.
        let neighbour = try installedTree("neighbour", version: "2")
        let old = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "1"))
        let new = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "2"))
        let oldContents = Set(old.entries.compactMap(\.contentHash))
        let needed = Set(new.entries.compactMap(\.contentHash)).subtracting(oldContents)
        let changed = try #require(new.entries.first { $0.contentHash.map { needed.contains($0) } ?? false })
        try Sys.writeFileAtomically(neighbour + String(decoding: changed.path.bytes, as: UTF8.self), Array("changed here\n".utf8))
        let peer = try ServeProcess(["--peer", "--root", neighbour])
        try school.report("neighbour", "done", ["peer": peer.url])

        let laptop = try installedTree("laptop", version: "1")
        let upgrade = try CLI.run(["upgrade", "--root", laptop, "--server", school.server.url, "--keyring", samples.keyring,
                                   "--decision-keyring", school.decisionKeyring], environment: ["UPDATINATOR_DEVICE_ID": "laptop"])
        #expect(upgrade.status == 0, "\(upgrade.stderr)")
        let fsck = try CLI.run(["fsck", "--tree", laptop, "--manifest", samples.manifest("olpc-ext3", "2")])
        #expect(fsck.status == 0, "\(fsck.stdout)\(fsck.stderr)")

        #expect(try peer.metric("updatinator_requests_total", ["status=\"200\"", "blobs"]) == needed.count - 1)
        #expect(try school.server.metric("updatinator_requests_total", ["status=\"200\"", "blobs"]) == 1)
        let devices = try school.fleet()["devices"] as! [[String: Any]]
        let row = try #require(devices.first { $0["device"] as? String == "laptop" })
        #expect(row["version"] as? String == "2" && row["status"] as? String == "done", "\(row)")
        #expect(row["agent_version"] as? String == UpdatinatorVersion.current, "upgrade sends its version: \(row)")
        #expect(try school.server.metric("updatinator_build_info", ["version=\"\(UpdatinatorVersion.current)\""]) == 1)
    }

    @Test func filesCarryETagsAndRangesSoDownloadsResume() throws {
        let school = try School(self, policy: Self.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"])
        let new = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "2"))
        let hash = try #require(new.entries.lazy.compactMap(\.contentHash).first)
        let path = "/blobs/\(hash.hex.prefix(2))/\(hash.hex)"
        let blob = try Sys.readFile(school.repo + path)
        let url = school.server.url + path

        let whole = try Curl.get(url)
        #expect(whole.status == 200 && Array(whole.body.data(using: .isoLatin1)!) == blob)
        #expect(whole.header("Content-Length") == String(blob.count))
        #expect(whole.header("Cache-Control")?.contains("immutable") == true)
        let etag = try #require(whole.header("ETag"))
        #expect(try Curl.get(url, ["-H", "If-None-Match: \(etag)"]).status == 304)
        let part = try Curl.get(url, ["-r", "2-9"])
        #expect(part.status == 206 && part.header("Content-Range") == "bytes 2-9/\(blob.count)")
        #expect(Array(part.body.data(using: .isoLatin1)!) == Array(blob[2...9]))
        #expect(try Curl.get(url, ["-r", "-3"]).body.data(using: .isoLatin1).map(Array.init) == Array(blob.suffix(3)))
        #expect(try Curl.get(url, ["-r", "\(blob.count)-"]).status == 416)
        #expect(try Curl.get(url, ["-r", "2-9", "-H", "If-Range: \"stale\""]).status == 200, "a changed file is sent whole")
        let head = try Curl.get(url, ["-I"])
        #expect(head.status == 200 && head.header("Content-Length") == String(blob.count))
        #expect(head.body == head.headers, "HEAD sends headers only")
        #expect(try Curl.get(school.server.url + "/repo.json").header("Cache-Control") == "no-cache")

        // A download cut in the middle: the fetcher asks for the rest with Range, and the blob verifies.
        let partsBefore = try school.server.metric("updatinator_requests_total", ["status=\"206\"", "blobs"])
        let cache = tmp.sub("cache")
        try Sys.mkdirs("\(cache)/\(hash.hex.prefix(2))")
        try Sys.writeFileAtomically("\(cache)/\(hash.hex.prefix(2))/.partial-\(hash.hex)", Array(blob.prefix(blob.count / 2)))
        let fetch = try CLI.run(["fetch", "--to", samples.manifest("olpc-ext3", "2"), "--mirror", school.server.url, "--cache", cache])
        #expect(fetch.status == 0, "\(fetch.stderr)")
        #expect(try Sys.readFile("\(cache)\(path.dropFirst("/blobs".count))") == blob)
        #expect(try school.server.metric("updatinator_requests_total", ["status=\"206\"", "blobs"]) == partsBefore + 1, "the rest of the cut blob")
    }

    @Test func theClientRefusesDecisionsItCannotTrustAndKeysKeepTheirRoles() throws {
        let school = try School(self, policy: Self.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"])
        // The real server's answer, checked as the client checks it.
        let nonce = SchoolServerClient.newNonce()
        let response = try school.server.post("/v1/check", ["device": "d1", "nonce": nonce, "image": "olpc-ext3", "version": "1"])
        let keyring = try Keyring(directory: school.decisionKeyring)
        let now = Int64(Date().timeIntervalSince1970)
        let decision = try Decision.verify(envelope: response.body, keyring: keyring, device: "d1", nonce: nonce, now: now, source: "check")
        #expect(decision.update && decision.version == "2")
        expectUpdError(.verification, "check: the decision is for another request", "another nonce") {
            try Decision.verify(envelope: response.body, keyring: keyring, device: "d1", nonce: SchoolServerClient.newNonce(), now: now, source: "check")
        }
        // Bound to its nonce, it is judged by its own time, not by the device's clock (an expired
        // one is refused in SignedDocumentAttackTests).
        #expect(decision.time.map { decision.expires - $0 } == 900)
        #expect(try Decision.verify(envelope: response.body, keyring: keyring, device: "d1", nonce: nonce, now: decision.expires + 86400,
                                    source: "check") == decision)
        expectUpdError(.verification, "check: 0 of the 1 required trusted signatures verified", "a build key is not a decision key") {
            try Decision.verify(envelope: response.body, keyring: Keyring(directory: samples.keyring), device: "d1", nonce: nonce, now: now, source: "check")
        }
        // The decision key's signature does not pass as a manifest signature.
        let envelope = try JSONDecoder().decode(Decision.Envelope.self, from: Data(response.body))
        let signatures = try SignatureFile.parse(Array(envelope.signatures.utf8), source: "decision")
        expectUpdError(.verification, "decision: 0 of the 1 required trusted signatures verified") {
            try keyring.verify(Array(envelope.decision.utf8), signatures: signatures, purpose: .manifest, source: "decision")
        }

        // upgrade with a keyring that does not hold the server's key changes nothing.
        let laptop = try installedTree("laptop", version: "1")
        let stranger = tmp.sub("stranger")
        try Sys.mkdirs(stranger)
        try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: tmp.sub("stranger.sec"), publicPath: stranger + "/stranger.pub")
        let refused = try CLI.run(["upgrade", "--root", laptop, "--server", school.server.url, "--keyring", samples.keyring,
                                   "--decision-keyring", stranger], environment: ["UPDATINATOR_DEVICE_ID": "laptop"])
        #expect(refused.status == 2, "\(refused.stderr)")
        #expect(refused.stderr.contains("check"), "\(refused.stderr)")
        #expect(try CLI.run(["fsck", "--tree", laptop, "--manifest", samples.manifest("olpc-ext3", "1")]).status == 0)
    }

    @Test func stagedRolloutWithoutSettingsRollsOutTheImageEachDeviceRuns() throws {
        let school = try School(self, policy: Self.serverPolicy("staged-rollout.lua"), settings: [:])
        // A device in the first stage (5 % by bucket, of the default salt).
        let early = try #require((0..<1000).map { "device-\($0)" }.first { RolloutBucket.of(device: $0, salt: "rollout") < 5 })
        for (image, version) in [("olpc-ext3", "2"), ("olpc-devel-ext3", "2")] {
            let decision = try school.check(early, image: image, version: "1")
            #expect(decision.update && decision.image == image && decision.version == version, "\(decision)")
        }
    }

    @Test func stagedRolloutWidensByStageAndHaltsWhenFailuresClimb() throws {
        let school = try School(self, policy: Self.serverPolicy("staged-rollout.lua"),
                                settings: ["image": "olpc-ext3", "version": "2", "salt": "test"])
        let devices = (0..<1000).map { "device-\($0)" }
        func offered(_ among: [String]) throws -> [String] {
            try among.filter { try school.check($0).update }
        }
        // Stage 1: 5 % by bucket.
        let first = try offered(devices)
        #expect((30...70).contains(first.count), "\(first.count) of 1000 offered")
        #expect(first.allSatisfy { RolloutBucket.of(device: $0, salt: "test") < 5 })
        for device in first { try school.report(device, "done") }
        // Stage 2 opens once most of stage 1 is done: 25 %.
        let rest = devices.filter { !first.contains($0) }
        let second = try offered(rest)
        #expect((200...300).contains(first.count + second.count), "\(first.count + second.count) of 1000 offered")
        #expect(second.allSatisfy { RolloutBucket.of(device: $0, salt: "test") < 25 })
        // Failures pass 10 % of the reports: the rollout halts for everyone not yet there.
        let failing = Array(second.prefix(20))
        for device in failing { try school.report(device, "failed", ["code": "no_space"]) }
        #expect(try offered(rest).isEmpty, "halted")
        let told = try school.check(rest[0])
        #expect(told.reason == "halted" && told.message == "20 of \(first.count + 20) devices failed, more than 10 %", "\(told)")
        #expect(try school.check(first[0], version: "2").update == false, "devices already there stay")
        let fleet = try school.fleet()
        #expect((fleet["by_status"] as! [String: Int])["failed"] == failing.count)
    }

    @Test func hostileRequestsGetCleanErrorsAndTheServerKeepsServing() throws {
        let policy = tmp.sub("hostile.lua")
        try Sys.writeFileAtomically(policy, Array("""
            local upd = require "updatinator"
            local config = upd.config { image = "olpc-ext3" }
            function decide(device)
              if device.device == "loop" then while true do end end
              if device.device == "hog" then
                local t = {}
                while true do t[#t + 1] = string.rep("x", 1000000) .. #t end
              end
              if device.device == "error" then error("policy bug") end
              if device.device == "nonsense" then return { image = "olpc-ext3", version = "99" } end
              return { image = config.image, version = upd.repo.latest(config.image) }
            end
            """.utf8))
        let school = try School(self, policy: policy, settings: [:])
        let url = school.server.url
        for device in ["loop", "hog", "error", "nonsense"] {
            let decision = try school.check(device)
            #expect(decision.update == false && decision.reason == "policy-error", "\(device): no update, and why: \(decision)")
        }
        #expect(try school.server.metric("updatinator_policy_errors_total") == 3, "loop, hog and error; nonsense is a bad answer")
        #expect(try school.server.metric("updatinator_decisions_total", ["policy-error"]) == 4)

        // Signed by a device, so that what is refused is the body.
        func post(_ path: String, _ body: String) throws -> CurlFetcher.Response { try school.server.post(path, Array(body.utf8), as: "x") }
        #expect(try post("/v1/check", "{not json").status == 400)
        #expect(try post("/v1/check", "{\"device\": \"x\"}").status == 400, "no nonce")
        #expect(try post("/v1/check", "[1, 2, 3]").status == 400)
        #expect(try post("/v1/report", "{\"device\": \"x\", \"status\": \"hacked\"}").status == 400)
        let typo = try post("/v1/report", "{\"device\": \"x\", \"status\": \"done\", \"mesage\": \"m\"}")
        let typoBody = String(decoding: typo.body, as: UTF8.self)
        #expect(typo.status == 400 && typoBody.contains("report: mesage: unknown field"), "\(typoBody)")
        let deep = tmp.sub("deep.json")
        try Sys.writeFileAtomically(deep, Array(("{\"device\": \"d\", \"nonce\": \"00000000000000000000\", \"x\": "
            + String(repeating: "[", count: 30_000) + String(repeating: "]", count: 30_000) + "}").utf8))
        #expect(try school.server.post("/v1/check", try Sys.readFile(deep), as: "d").status == 400, "nested too deep")
        let huge = tmp.sub("huge.json")
        try Sys.writeFileAtomically(huge, Array(("{\"device\": \"" + String(repeating: "x", count: 1 << 20) + "\"}").utf8))
        #expect(try Curl.get(url + "/v1/check", ["--data-binary", "@" + huge]).status == 413)
        for path in ["/images/../repo.json", "/images/%2e%2e/%2e%2e/etc/passwd", "/blobs/..%2f..%2f/repo.json",
                     "/images/olpc-ext3/..%2f..%2frepo.json", "/blobs/.%2e/.%2e", "/images/olpc-ext3/%00.manifest",
                     "/fleet.sqlite", "/images/olpc-ext3/.hidden"] {
            let response = try Curl.get(url + path, ["--path-as-is"])
            #expect((400..<500).contains(response.status), "\(path): \(response.status)")
            #expect(!response.body.contains("root:") && !response.body.contains("algorithm"), "\(path)")
        }
        #expect(try school.check("good").update, "still serving")
    }

    @Test func aSpinningPolicyDelaysNeitherMetricsNorFiles() throws {
        // One check per core spins in the policy for 30 s, within its instruction limit; the
        // handlers must leave the policy to its threads and keep answering everything else.
        let policy = tmp.sub("spin.lua")
        try Sys.writeFileAtomically(policy, Array("""
            local upd = require "updatinator"
            function decide(device)
              if device.device:find("^spin") then
                upd.log.info("spinning for " .. device.device)
                local stop = upd.time.now() + 30
                while upd.time.now() < stop do end
              end
              return nil
            end
            """.utf8))
        let school = try School(self, policy: policy, settings: [:], extra: ["--instruction-limit", "4000000000"])
        defer { kill(school.server.process.pid, SIGKILL) }
        let spinners = ProcessInfo.processInfo.activeProcessorCount
        for n in 0..<spinners {
            let (url, fields) = (school.server.url, ["device": "spin-\(n)", "nonce": SchoolServerClient.newNonce()])
            let signer = try TestDevices.signer(fields["device"]!)
            Thread.detachNewThread {
                _ = try? signer.post("v1/check", to: url, body: Array(try! JSONSerialization.data(withJSONObject: fields)),
                                     via: CurlFetcher(options: FetchOptions(mirrors: [url])), deadlineSeconds: 120)
            }
        }
        try waitUntil(timeout: 60, "\(spinners) policy calls spin: \(school.server.process.stderr)") {
            school.server.process.stderr.components(separatedBy: "spinning for spin-").count - 1 == spinners
        }
        for path in ["/metrics", "/repo.json"] {
            let started = Date()
            let response = try school.server.operatorGet(path, ["--max-time", "15"])
            let seconds = Date().timeIntervalSince(started)
            #expect(response.status == 200 && seconds < 5, "\(path): HTTP \(response.status) after \(seconds) s while the policy spins")
        }
    }

    @Test func aRequestReachesThePolicyWithItsTypes() throws {
        let body = #"{"device": "d", "nonce": "0123456789abcdef", "agent_version": "0.16.0", "b": true, "n": 5, "f": 1.5, "s": "x", "a": [1, false], "o": {"k": "v"}, "z": null}"#
        let request = try WireCoding.decode(CheckRequest.self, from: Array(body.utf8))
        #expect(request.policyTable(address: "10.1.2.3") == [
            "device": .string("d"), "nonce": .string("0123456789abcdef"), "agent_version": .string("0.16.0"), "b": .boolean(true), "n": .integer(5),
            "f": .number(1.5), "s": .string("x"), "a": .array([.integer(1), .boolean(false)]), "o": .table(["k": .string("v")]),
            "address": .string("10.1.2.3"),
        ])
    }

    @Test func upgradeReportsItsOutcomeAsJSON() throws {
        let school = try School(self, policy: Self.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"])
        let laptop = try installedTree("json-laptop", version: "1")
        let arguments = ["upgrade", "--root", laptop, "--server", school.server.url, "--keyring", samples.keyring,
                         "--decision-keyring", school.decisionKeyring, "--json"]
        let applied = try CLI.run(arguments, environment: ["UPDATINATOR_DEVICE_ID": "json-laptop"])
        #expect(applied.status == 0, "\(applied.stderr)")
        let outcome = try #require(try JSONSerialization.jsonObject(with: Data(applied.stdout.utf8)) as? [String: Any], "\(applied.stdout)")
        let report = try #require(outcome["report"] as? [String: Any], "\(outcome)")
        #expect(outcome["outcome"] as? String == "applied" && outcome["version"] as? String == "2", "\(outcome)")
        #expect(report["version"] as? String == "2" && (report["blobs_downloaded"] as? Int ?? 0) > 0
                && (report["bytes_downloaded"] as? Int ?? 0) > 0, "\(report)")
        #expect(try CLI.run(["fsck", "--tree", laptop, "--manifest", samples.manifest("olpc-ext3", "2")]).status == 0)

        let again = try CLI.run(arguments, environment: ["UPDATINATOR_DEVICE_ID": "json-laptop"])
        #expect(again.status == 10, "\(again.stdout)\(again.stderr)")
        let upToDate = try #require(try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any], "\(again.stdout)")
        #expect(upToDate["outcome"] as? String == "no_update" && upToDate["reason"] as? String == "up-to-date"
                && upToDate["status"] as? Int == 10, "\(upToDate)")
    }

    @Test func anInventoryAnOlderServerCreatedGainsTheAgentVersionAndKeepsItsDevices() throws {
        let path = tmp.sub("old-fleet.sqlite")
        // The devices table as servers before agent_version created it, with one device.
        try Shell.run(["sqlite3", path, """
            CREATE TABLE devices (device TEXT PRIMARY KEY, image TEXT, version TEXT, channel TEXT, address TEXT,
                status TEXT, code TEXT, target_image TEXT, target_version TEXT, peer TEXT,
                first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, last_report INTEGER);
            INSERT INTO devices (device, image, version, first_seen, last_seen) VALUES ('old', 'olpc-ext3', '1', 1, 1);
            """])
        let inventory = try FleetInventory(path: path)
        try inventory.recordCheck(CheckRequest(device: "new", nonce: "0123456789abcdef", image: "olpc-ext3", version: "2",
                                               agentVersion: "9.8.7"), address: nil, decision: "update", now: 2)
        let devices = try inventory.summary()["devices"] as! [[String: Any]]
        #expect(devices.map { $0["device"] as? String } == ["new", "old"], "\(devices)")
        #expect(devices[0]["agent_version"] as? String == "9.8.7" && devices[1]["agent_version"] == nil, "\(devices)")
        // Opening it again finds the column there and adds nothing.
        #expect(try FleetInventory(path: path).summary()["device_count"] as? Int == 2)
    }

    @Test func aPeerServesOnlyTheContentsOfItsInstalledManifest() throws {
        let neighbour = try installedTree("neighbour", version: "2")
        let peer = try ServeProcess(["--peer", "--root", neighbour])
        let outside = Blake2b.hash(Array("root:x:0:0:root:/root:/bin/bash\n".utf8)).hex
        #expect(try Curl.get(peer.url + "/blobs/\(outside.prefix(2))/\(outside)").status == 404)
        for path in ["/repo.json", "/.updatinator/installed.manifest", "/images/olpc-ext3/2.manifest", "/blobs/../etc/passwd"] {
            #expect(try Curl.get(peer.url + path, ["--path-as-is"]).status == 404, "\(path)")
        }
        let new = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "2"))
        let hash = try #require(new.entries.lazy.compactMap(\.contentHash).first)
        let served = try Curl.get(peer.url + "/blobs/\(hash.hex.prefix(2))/\(hash.hex)")
        #expect(served.status == 200)
        #expect(Array(served.body.data(using: .isoLatin1)!) == (try Sys.readFile(samples.repo + "/blobs/\(hash.hex.prefix(2))/\(hash.hex)")),
                "the same blob as the repository's")
    }

    @Test func aStagedLaptopServesItsCurrentDeploymentAndFollowsARollback() throws {
        let sysroot = try stagedLaptop("staged-peer")
        let deployed = try CLI.run(["deploy", "--sysroot", sysroot, "--to", samples.manifest("olpc-ext3", "2"), "--keyring", samples.keyring,
                                    "--blobs", samples.repo + "/blobs"])
        try #require(deployed.status == 0, "\(deployed.stderr)")
        let peer = try ServeProcess(["--peer", "--sysroot", sysroot, "--cache", tmp.sub("staged-peer-cache")])
        let old = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "1"))
        let new = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "2"))
        let needed = Set(new.entries.compactMap(\.contentHash)).subtracting(old.entries.compactMap(\.contentHash))
        let fetched = try CLI.run(["fetch", "--to", samples.manifest("olpc-ext3", "2"), "--from", samples.manifest("olpc-ext3", "1"),
                                   "--mirror", peer.url, "--cache", tmp.sub("from-staged-peer"), "--json"])
        #expect(fetched.status == 0, "\(fetched.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(fetched.stdout.utf8)) as? [String: Any]
        #expect(report?["blobs"] as? Int == needed.count, "\(fetched.stdout)")
        #expect(try peer.metric("updatinator_requests_total", ["status=\"200\"", "blobs"]) == needed.count)

        // After a rollback, the peer serves image 1: a content only image 2 has is no longer there.
        try #require(try CLI.run(["rollback", "--sysroot", sysroot]).status == 0)
        let onlyNew = try #require(needed.first).hex
        #expect(try Curl.get(peer.url + "/blobs/\(onlyNew.prefix(2))/\(onlyNew)").status == 404)
        let kept = try #require(old.entries.lazy.compactMap(\.contentHash).first).hex
        #expect(try Curl.get(peer.url + "/blobs/\(kept.prefix(2))/\(kept)").status == 200)

        let neither = try CLI.run(["serve", "--peer", "--listen", "127.0.0.1:0"])
        #expect(neither.status == 64 && neither.stderr.contains("--sysroot"), "\(neither.stderr)")
    }

    // MARK: Server policies

    @Test func defaultPolicyPinsStableAndLetsTestingFollowTheNewest() throws {
        let school = try School(self, policy: Self.serverPolicy("default.lua"),
                                settings: ["image": "olpc-ext3", "pins": ["stable": "1"]])
        let back = try school.check("s2", version: "2", ["channel": "stable"])
        #expect(back.update && back.version == "1", "stable moves back to its pin")
        #expect(try school.check("s1", version: "1", ["channel": "stable"]).update == false)
        #expect(try school.check("none", version: "2").version == "1", "no channel is stable")
        let testing = try school.check("t1", version: "1", ["channel": "testing"])
        #expect(testing.update && testing.version == "2" && testing.manifestPath == "images/olpc-ext3/2.manifest")
        #expect(testing.manifestHash == Blake2b.hash(try Sys.readFile(samples.manifest("olpc-ext3", "2"))).hex)
    }

    @Test func schoolsPinVersionsAndSetWindowsAndRatesBySchoolOrAddress() throws {
        let school = try School(self, policy: Self.serverPolicy("schools.lua"), settings: [
            "image": "olpc-ext3",
            "schools": [
                "north": ["subnet": "10.1.", "pin": "1", "window": "18:00-06:00", "rate_limit": 2_000_000],
                "here": ["subnet": "127.", "pin": "", "window": "", "rate_limit": 500_000],
            ],
        ])
        let north = try school.check("n1", version: "2", ["school": "north"])
        #expect(north.version == "1" && north.window == "18:00-06:00" && north.rateLimit == 2_000_000, "\(north)")
        let here = try school.check("h1", version: "1")
        #expect(here.version == "2" && here.window == nil && here.rateLimit == 500_000, "found by its address: \(here)")
    }

    @Test func upgradeWaitsForTheDecisionsWindow() throws {
        // A window that opens in two hours.
        let minutes = Calendar.current.dateComponents([.hour, .minute], from: Date())
        let now = minutes.hour! * 60 + minutes.minute!
        func clock(_ m: Int) -> String { String(format: "%02d:%02d", (m / 60) % 24, m % 60) }
        let window = "\(clock(now + 120))-\(clock(now + 180))"
        let school = try School(self, policy: Self.serverPolicy("schools.lua"), settings: [
            "image": "olpc-ext3", "schools": ["here": ["subnet": "127.", "pin": "", "window": window, "rate_limit": 0]],
        ])
        let laptop = try installedTree("laptop", version: "1")
        let r = try CLI.run(["upgrade", "--root", laptop, "--server", school.server.url, "--keyring", samples.keyring,
                             "--decision-keyring", school.decisionKeyring], environment: ["UPDATINATOR_DEVICE_ID": "laptop"])
        #expect(r.status == 16 && r.stdout.contains("no update: the update is deferred (to olpc-ext3 2)") && r.stdout.contains(window),
                "\(r.stdout)\(r.stderr)")
        #expect(try CLI.run(["fsck", "--tree", laptop, "--manifest", samples.manifest("olpc-ext3", "1")]).status == 0)
    }

    @Test func theDefaultClientPolicyChecksAppliesAndReports() throws {
        let school = try School(self, policy: Self.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"])
        let laptop = try installedTree("laptop", version: "1")
        let config = tmp.sub("client.json")
        try Sys.writeFileAtomically(config, Array(try JSONSerialization.data(withJSONObject: [
            "root": laptop, "mirrors": [school.server.url], "keyring": samples.keyring, "server": school.server.url,
            "decision_keyring": school.decisionKeyring,
        ])))
        let environment = ["UPDATINATOR_DEVICE_ID": "laptop", "UPDATINATOR_POWER_SUPPLY": tmp.sub("no-power-supply")]
        let tick = try CLI.run(["agent", "--once", "--policy", Scripts.policy("default.lua"), "--config", config,
                                "--state", tmp.sub("state.json")], environment: environment)
        #expect(tick.status == 0 && tick.stdout.contains("tick: applied olpc-ext3 2"), "\(tick.stdout)\(tick.stderr)")
        #expect(try CLI.run(["fsck", "--tree", laptop, "--manifest", samples.manifest("olpc-ext3", "2")]).status == 0)
        let devices = try school.fleet()["devices"] as! [[String: Any]]
        let row = try #require(devices.first { $0["device"] as? String == "laptop" })
        #expect(row["version"] as? String == "2" && row["status"] as? String == "done", "\(row)")
        #expect(row["agent_version"] as? String == UpdatinatorVersion.current, "upd.check sends the agent's version: \(row)")
        let again = try CLI.run(["agent", "--once", "--policy", Scripts.policy("default.lua"), "--config", config,
                                 "--state", tmp.sub("state.json")], environment: environment)
        #expect(again.stdout.contains("tick: up to date"), "\(again.stdout)\(again.stderr)")
        // The server's reasons reach the policy, which says them: a laptop that says it runs 1
        // while the rollout is paused.
        let pause = try Curl.get(school.server.url + "/v1/rollouts/olpc-ext3/pause",
                                 ["-d", #"{"reason": "exams"}"#, "-H", "Authorization: Bearer \(school.server.operatorToken!)"])
        #expect(pause.status == 200, "\(pause.body)")
        try Shell.run(["cp", samples.manifest("olpc-ext3", "1"), laptop + "/.updatinator/installed.manifest"])
        let held = try CLI.run(["agent", "--once", "--policy", Scripts.policy("default.lua"), "--config", config,
                                "--state", tmp.sub("state.json")], environment: environment)
        #expect(held.stdout.contains("tick: paused: exams"), "\(held.stdout)\(held.stderr)")
    }
}

extension SchoolServerTests {
    /// A laptop with a sysroot whose current deployment is image 1, marked good.
    func stagedLaptop(_ name: String) throws -> String {
        let sysroot = tmp.sub(name)
        let r = try CLI.run(["deploy", "--sysroot", sysroot, "--to", samples.manifest("olpc-ext3", "1"), "--keyring", samples.keyring,
                             "--blobs", samples.repo + "/blobs"])
        try #require(r.status == 0, "\(r.stderr)")
        try #require(try CLI.run(["mark-good", "--sysroot", sysroot]).status == 0)
        return sysroot
    }

    /// One tick of the default client policy in staged mode, rebooting with a command that leaves a mark.
    func stagedTick(_ school: School, device: String, sysroot: String) throws -> (result: String, rebooted: Bool) {
        let config = tmp.sub("\(device).json")
        try Sys.writeFileAtomically(config, Array(try JSONSerialization.data(withJSONObject: [
            "mode": "staged", "sysroot": sysroot, "reboot": true, "mirrors": [school.server.url], "keyring": samples.keyring,
            "server": school.server.url, "decision_keyring": school.decisionKeyring,
        ])))
        let mark = tmp.sub("\(device).rebooted")
        unlink(mark)
        let r = try CLI.run(["agent", "--once", "--policy", Scripts.policy("default.lua"), "--config", config, "--state", tmp.sub("\(device).state")],
                            environment: ["UPDATINATOR_DEVICE_ID": device, "UPDATINATOR_POWER_SUPPLY": tmp.sub("no-power-supply"),
                                          "UPDATINATOR_REBOOT_COMMAND": "touch \(mark)"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        let result = r.stdout.split(separator: "\n").first { $0.hasPrefix("tick: ") }.map { String($0.dropFirst(6)) } ?? r.stdout
        return (result, FileManager.default.fileExists(atPath: mark))
    }

    func fleetRow(_ school: School, _ device: String) throws -> [String: Any] {
        let devices = try school.fleet()["devices"] as! [[String: Any]]
        return try #require(devices.first { $0["device"] as? String == device })
    }

    /// The boots of a deployment, as the initramfs counts them.
    func boot(_ sysroot: String, times: Int) throws {
        for _ in 0..<times {
            let child = try Subprocess(["busybox", "sh", BootTests.counter, "choose", sysroot, "", "3"])
            try #require(child.wait() == 0, "\(child.stderr)")
        }
    }

    @Test func aStagedLaptopRebootsIntoItsUpdateAndReportsItDoneOnlyOnceBootedAndMarkedGood() throws {
        let school = try School(self, policy: Self.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"])
        let sysroot = try stagedLaptop("good")
        let first = try stagedTick(school, device: "good", sysroot: sysroot)
        #expect(first.result == "deployed olpc-ext3 2; rebooting into it" && first.rebooted, "\(first)")
        var row = try fleetRow(school, "good")
        #expect(row["status"] as? String == "staged" && row["version"] as? String == "1", "still running 1: \(row)")

        try boot(sysroot, times: 1)
        #expect(try CLI.run(["mark-good", "--sysroot", sysroot]).status == 0)
        let second = try stagedTick(school, device: "good", sysroot: sysroot)
        #expect(second.result == "up to date" && !second.rebooted, "\(second)")
        row = try fleetRow(school, "good")
        #expect(row["status"] as? String == "done" && row["version"] as? String == "2", "\(row)")
    }

    @Test func aStagedUpdateThatNeverComesUpIsReportedFailedAndNotTriedAgain() throws {
        let school = try School(self, policy: Self.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"])
        let sysroot = try stagedLaptop("bad")
        let good = try FileManager.default.destinationOfSymbolicLink(atPath: sysroot + "/current")
        #expect(try stagedTick(school, device: "bad", sysroot: sysroot).rebooted)
        // Three boots that never reach mark-good, and the fourth rolls back.
        try boot(sysroot, times: 4)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: sysroot + "/current") == good)

        let after = try stagedTick(school, device: "bad", sysroot: sysroot)
        #expect(after.result == "held: olpc-ext3 2 was rolled back on this machine" && !after.rebooted, "\(after)")
        let row = try fleetRow(school, "bad")
        #expect(row["status"] as? String == "failed" && row["code"] as? String == "rolled-back" && row["version"] as? String == "1", "\(row)")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: sysroot + "/current") == good, "not deployed again")
    }
}
