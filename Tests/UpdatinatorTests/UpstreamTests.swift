import Foundation
import Testing
@testable import Updatinator

/// A school server that mirrors the tier above (`serve --upstream`): the national repository
/// on nginx, whose access log shows every request that crossed the national link.
@Suite struct UpstreamTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("upstream")

    init() throws { samples = try SampleImages.shared }

    /// The national repository: the samples with a signed `stable` channel at olpc-ext3 2.
    func nationalRepository() throws -> String {
        let repo = tmp.sub("national")
        try Shell.run(["cp", "-a", samples.repo, repo])
        let published = try CLI.run(["publish", "--repo", repo, "--channel", "stable", "--image", "olpc-ext3", "--version", "2",
                                     "--expires", "1d", "--secret-key", samples.secretKey])
        try #require(published.status == 0, "\(published.stderr)")
        return repo
    }

    /// A school server whose repository mirrors `upstream`, deciding with the default policy.
    func school(_ upstream: String, _ extra: [String] = []) throws -> (server: ServeProcess, repo: String, decisionKeyring: String) {
        let repo = tmp.sub("school-\(UUID().uuidString)")
        let decisionKeyring = tmp.sub("decision-keyring")
        let secret = tmp.sub("decision.sec")
        if !FileManager.default.fileExists(atPath: secret) {
            try Sys.mkdirs(decisionKeyring)
            try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: secret, publicPath: decisionKeyring + "/decision.pub")
        }
        let config = tmp.sub("policy.json")
        try Sys.writeFileAtomically(config, Array(#"{"image": "olpc-ext3"}"#.utf8))
        let server = try ServeProcess(["--repo", repo, "--policy", SchoolServerTests.serverPolicy("default.lua"), "--decision-key", secret,
                                       "--config", config, "--upstream", upstream, "--keyring", samples.keyring] + extra)
        return (server, repo, decisionKeyring)
    }

    /// A tree at olpc-ext3 `version` with its installed-manifest record.
    func installedTree(_ name: String, version: String) throws -> String {
        let root = tmp.sub(name)
        try Shell.copyTree(samples.tree("olpc-ext3", version), root)
        try Sys.mkdirs("\(root)/.updatinator")
        try Sys.writeFileAtomically("\(root)/.updatinator/installed.manifest", Sys.readFile(samples.manifest("olpc-ext3", version)))
        return root
    }

    /// The paths nginx answered with `status`, each as often as it was asked.
    func answered(_ national: NginxMirror, _ status: Int = 200) -> [String] {
        national.requests.compactMap { line in
            let parts = line.split(separator: " ")
            return parts.count >= 4 && parts[3] == String(status) ? String(parts[1]) : nil
        }
    }

    @Test("a content many laptops of one school fetch crosses the national link once")
    func contentsCrossUpstreamOnce() throws {
        let national = try NginxMirror(repo: try nationalRepository())
        // The followed channel's contents are not fetched ahead now: the window is hours away.
        let hour = Calendar.current.component(.hour, from: Date())
        let school = try school(national.url, ["--follow", "stable", "--prefetch-window", "\((hour + 2) % 24):00-\((hour + 3) % 24):00"])
        let laptops = try (0..<4).map { try installedTree("laptop-\($0)", version: "1") }
        // Four laptops upgrade at once: the first batch's contents are fetched while the others wait for them.
        let upgrades = try laptops.enumerated().map { n, root in
            try Subprocess([CLI.binary, "upgrade", "--root", root, "--server", school.server.url, "--keyring", samples.keyring,
                            "--decision-keyring", school.decisionKeyring], environment: ["UPDATINATOR_DEVICE_ID": "laptop-\(n)"])
        }
        for upgrade in upgrades { #expect(upgrade.wait() == 0, "\(upgrade.stderr)") }
        for root in laptops { #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root) == []) }

        let blobs = answered(national).filter { $0.hasPrefix("/blobs/") }
        #expect(!blobs.isEmpty)
        #expect(blobs.count == Set(blobs).count, "a blob crossed twice: \(blobs.count) requests for \(Set(blobs).count) blobs")
        #expect(try school.server.metric("updatinator_upstream_files_total", ["content"]) == blobs.count)
        // What the school holds is what crossed, each verified by its hash.
        let held = try FileManager.default.subpathsOfDirectory(atPath: school.repo + "/blobs").filter { $0.count == 67 }
        #expect(Set(held.map { "/blobs/" + $0 }) == Set(blobs))
        let manifests = answered(national).filter { $0.hasPrefix("/images/") && $0.contains(".manifest") }
        #expect(manifests.count == Set(manifests).count, "\(manifests)")
        // A second school's laptops cost the national link again; this school's second round does not.
        let again = try installedTree("laptop-late", version: "1")
        let late = try CLI.run(["upgrade", "--root", again, "--server", school.server.url, "--keyring", samples.keyring,
                                "--decision-keyring", school.decisionKeyring], environment: ["UPDATINATOR_DEVICE_ID": "laptop-late"])
        #expect(late.status == 0, "\(late.stderr)")
        #expect(answered(national).filter { $0.hasPrefix("/blobs/") }.count == blobs.count)
    }

    @Test("hostile-upstream: a blob that is not its content, or a manifest not signed by the build key, is refused and not kept")
    func whatUpstreamSendsIsVerified() throws {
        let repo = try nationalRepository()
        let national = try NginxMirror(repo: repo)
        let school = try school(national.url)
        let manifest = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "2"))
        // The largest content: the check of what upstream holds must not trip on its size.
        let (hash, facts) = try #require(manifest.contents.max { $0.value.blobSize < $1.value.blobSize })
        let path = "blobs/\(hash.hex.prefix(2))/\(hash.hex)"
        // Before the school holds the manifest, a blob is named by nothing it verified.
        #expect(try Curl.get("\(school.server.url)/\(path)").status == 404)
        #expect(answered(national).filter { $0.hasPrefix("/blobs/") }.isEmpty, "an unnamed content is not asked for upstream")
        #expect(try Curl.get("\(school.server.url)/images/olpc-ext3/2.manifest").status == 200)

        // Another content's blob of the same compressed size, under this one's name.
        let other = try #require(manifest.contents.first { $0.key != hash && $0.value.blobSize == facts.blobSize }?.key
                                 ?? manifest.contents.first { $0.key != hash }?.key)
        try Sys.writeFileAtomically("\(repo)/\(path)", Sys.readFile("\(repo)/blobs/\(other.hex.prefix(2))/\(other.hex)"))
        let refused = try Curl.get("\(school.server.url)/\(path)")
        #expect(refused.status == 502, "\(refused.status) \(refused.body)")
        #expect(!FileManager.default.fileExists(atPath: "\(school.repo)/\(path)"))

        // A manifest signed by another key.
        let stranger = SecretKey.generate()
        let text = try Sys.readFile("\(repo)/images/olpc-ext3/1.manifest")
        var signatures = SignatureFile()
        signatures.sign(text, with: stranger, purpose: .manifest)
        try Sys.writeFileAtomically("\(repo)/images/olpc-ext3/1.manifest.sig", signatures.encoded())
        let forged = try Curl.get("\(school.server.url)/images/olpc-ext3/1.manifest")
        #expect(forged.status == 502, "\(forged.status) \(forged.body)")
        #expect(!FileManager.default.fileExists(atPath: "\(school.repo)/images/olpc-ext3/1.manifest"))
        #expect(try school.server.metric("updatinator_upstream_failures_total") == 2)
    }

    @Test("a school serves what it holds through an upstream outage, and answers 503 at once for what it lacks")
    func aSchoolServesThroughAnOutage() throws {
        var national: NginxMirror? = try NginxMirror(repo: try nationalRepository())
        let school = try school(national!.url, ["--follow", "stable"])
        // The followed channel's version is fetched ahead: manifest and every content.
        let needed = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "2")).contents.count
        try waitUntil(timeout: 60, "the school holds olpc-ext3 2's contents") {
            try school.server.metric("updatinator_upstream_files_total", ["content"]) >= needed
        }
        national = nil
        let laptop = try installedTree("laptop", version: "1")
        let upgrade = try CLI.run(["upgrade", "--root", laptop, "--server", school.server.url, "--keyring", samples.keyring,
                                   "--decision-keyring", school.decisionKeyring], environment: ["UPDATINATOR_DEVICE_ID": "laptop"])
        #expect(upgrade.status == 0, "\(upgrade.stderr)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: laptop) == [])
        // The channel keeps being served from the copy held.
        #expect(try Curl.get(school.server.url + "/channels/stable.json").status == 200)
        // A manifest the school never fetched: 503, with when to ask again.
        let lacking = try Curl.get(school.server.url + "/images/olpc-devel-ext3/2.manifest")
        #expect(lacking.status == 503 && lacking.header("Retry-After") != nil, "\(lacking.status) \(lacking.body)")
    }

    @Test("the cache keeps to its bound, the least recently used first, never evicting the version laptops move to")
    func theCacheKeepsToItsBound() throws {
        let national = try NginxMirror(repo: try nationalRepository())
        let target = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "2")).contents
        let other = try ManifestParser.parse(contentsOf: samples.manifest("olpc-devel-ext3", "2")).contents
        let pinnedBytes = target.values.reduce(0) { $0 + $1.blobSize }
        // Four contents of another version, the second the largest and the fourth the smallest.
        let extras = other.filter { target[$0.key] == nil }.sorted { $0.value.blobSize > $1.value.blobSize }
        try #require(extras.count >= 4)
        let (e2, e1, e3, e4) = (extras[0], extras[1], extras[2], extras[extras.count - 1])
        let bound = pinnedBytes + e1.value.blobSize + e2.value.blobSize + e3.value.blobSize
        let school = try school(national.url, ["--follow", "stable", "--upstream-cache-bytes", String(bound)])
        func held(_ hash: ContentHash) -> Bool { FileManager.default.fileExists(atPath: "\(school.repo)/blobs/\(hash.hex.prefix(2))/\(hash.hex)") }
        func ask(_ hash: ContentHash) throws -> Int { try Curl.get("\(school.server.url)/blobs/\(hash.hex.prefix(2))/\(hash.hex)").status }
        try waitUntil(timeout: 60, "the followed version's contents are fetched ahead") { target.keys.allSatisfy(held) }

        #expect(try Curl.get(school.server.url + "/images/olpc-devel-ext3/2.manifest").status == 200)
        for hash in [e1.key, e2.key, e3.key] { #expect(try ask(hash) == 200) }
        #expect([e1.key, e2.key, e3.key].allSatisfy(held), "the bound holds all three")
        #expect(try ask(e1.key) == 200, "e1 used again")
        #expect(try ask(e4.key) == 200)
        #expect(!held(e2.key), "the least recently used went first")
        #expect([e1.key, e3.key, e4.key].allSatisfy(held))
        #expect(target.keys.filter { !held($0) }.count == 0, "the version laptops move to is pinned")
        #expect(try school.server.metric("updatinator_mirror_cached_bytes") <= Int(bound))

        // Under a bound smaller than the pinned version, the pinned contents all stay and the others go.
        let tight = try self.school(national.url, ["--follow", "stable", "--upstream-cache-bytes", String(pinnedBytes / 2)])
        func heldTight(_ hash: ContentHash) -> Bool { FileManager.default.fileExists(atPath: "\(tight.repo)/blobs/\(hash.hex.prefix(2))/\(hash.hex)") }
        try waitUntil(timeout: 60, "the followed version's contents are fetched ahead") { target.keys.allSatisfy(heldTight) }
        #expect(try Curl.get(tight.server.url + "/images/olpc-devel-ext3/2.manifest").status == 200)
        for hash in [e1.key, e2.key] { #expect(try Curl.get("\(tight.server.url)/blobs/\(hash.hex.prefix(2))/\(hash.hex)").status == 200) }
        #expect(!heldTight(e1.key) && heldTight(e2.key), "only the content just asked for is kept beyond the pinned ones")
        #expect(target.keys.filter { !heldTight($0) }.count == 0)
    }

    /// A national server (`serve`) over the national repository, on `port` (0: a free one), with
    /// its inventory at `database`.
    func nationalServer(_ repo: String, database: String, port: Int = 0) throws -> ServeProcess {
        let secret = tmp.sub("national-decision.sec")
        if !FileManager.default.fileExists(atPath: secret) {
            try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: secret, publicPath: tmp.sub("national-decision.pub"))
        }
        return try ServeProcess(["--repo", repo, "--policy", SchoolServerTests.serverPolicy("default.lua"), "--decision-key", secret,
                                 "--db", database, "--listen", "127.0.0.1:\(port)"])
    }

    /// A device's row and its reports in the inventory of `server`; empty when it has none.
    func device(_ id: String, on server: ServeProcess) throws -> [String: Any] {
        let response = try server.operatorGet("/v1/fleet/devices/\(id)")
        guard response.status != 404 else { return [:] }
        try #require(response.status == 200, "\(response.status) \(response.body)")
        return try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as! [String: Any]
    }

    @Test("a school records through an upstream outage and a restart, then forwards every report once")
    func reportsReachTheNationalInventoryOnce() throws {
        let repo = try nationalRepository()
        let nationalDatabase = tmp.sub("national.sqlite")
        var national: ServeProcess? = try nationalServer(repo, database: nationalDatabase)
        let nationalURL = national!.url
        let port = Int(nationalURL.split(separator: ":").last!)!
        let schoolKey = tmp.sub("school.key")
        let schoolRepo = tmp.sub("school-repo")
        let schoolDatabase = tmp.sub("school.sqlite")
        let decisionKeyring = tmp.sub("decision-keyring")
        try Sys.mkdirs(decisionKeyring)
        try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: tmp.sub("decision.sec"), publicPath: decisionKeyring + "/decision.pub")
        try Sys.writeFileAtomically(tmp.sub("policy.json"), Array(#"{"image": "olpc-ext3"}"#.utf8))
        func startSchool() throws -> ServeProcess {
            try ServeProcess(["--repo", schoolRepo, "--db", schoolDatabase, "--policy", SchoolServerTests.serverPolicy("default.lua"),
                              "--decision-key", tmp.sub("decision.sec"), "--config", tmp.sub("policy.json"),
                              "--upstream", nationalURL, "--keyring", samples.keyring, "--follow", "stable",
                              "--school-id", "school-1", "--school-key", schoolKey, "--forward-interval", "0.2"])
        }
        var school = try startSchool()
        func upgrade(_ name: String) throws {
            let root = try installedTree(name, version: "1")
            let run = try CLI.run(["upgrade", "--root", root, "--server", school.url, "--keyring", samples.keyring,
                                   "--decision-keyring", decisionKeyring], environment: ["UPDATINATOR_DEVICE_ID": name])
            #expect(run.status == 0, "\(run.stderr)")
        }
        func reports(_ id: String, on server: ServeProcess) throws -> [String] {
            (try device(id, on: server)["history"] as? [[String: Any]] ?? []).compactMap { $0["status"] as? String }
        }

        try upgrade("laptop-1")
        try waitUntil(timeout: 30, "laptop-1's reports reach the national inventory") {
            try reports("laptop-1", on: national!).contains("done")
        }
        #expect(try device("laptop-1", on: national!)["school"] as? String == "school-1")

        // The national server goes away: the school serves, decides and records; the reports wait.
        national = nil
        try upgrade("laptop-2")
        try upgrade("laptop-3")
        // The school restarts during the outage; its outbox is on disk.
        school = try { school.process.stop(); return try startSchool() }()
        try upgrade("laptop-4")
        #expect(try school.metric("updatinator_reports_forwarded_total") == 0)

        national = try nationalServer(repo, database: nationalDatabase, port: port)
        for laptop in ["laptop-2", "laptop-3", "laptop-4"] {
            try waitUntil(timeout: 30, "\(laptop)'s reports reach the national inventory") { try reports(laptop, on: national!).contains("done") }
        }
        for laptop in ["laptop-1", "laptop-2", "laptop-3", "laptop-4"] {
            #expect(try reports(laptop, on: national!) == reports(laptop, on: school), "\(laptop): the same reports, each once")
        }

        // A batch sent again (its answer lost) is recorded once: the school's own signed request, twice.
        let signer = RequestSigner(sender: "school-1", key: try DeviceIdentity.key(at: schoolKey))
        let report = DeviceReport(device: "laptop-5", status: .failed, image: "olpc-ext3", version: "2", code: "io", message: "disk")
        let body = try WireCoding.encode(ForwardedReports(epoch: "resent", reports: [.init(seq: 1, time: 1_800_000_000, address: nil, report: report)]))
        let fetcher = try CurlFetcher(options: FetchOptions(mirrors: [national!.url]))
        for expected in [1, 0] {
            let answer = try signer.post("v1/reports", to: national!.url, body: body, via: fetcher)
            #expect(answer.status == 200 && String(decoding: answer.body, as: UTF8.self).contains("\"recorded\":\(expected)"),
                    "\(answer.status) \(String(decoding: answer.body, as: UTF8.self))")
        }
        #expect(try reports("laptop-5", on: national!) == ["failed"])
        // Nobody else speaks for the school: another key under its id is refused.
        let impostor = RequestSigner(sender: "school-1", key: SecretKey.generate())
        #expect(try impostor.post("v1/reports", to: national!.url, body: body, via: fetcher).status == 403)
    }

    @Test("a school narrows the national rollout but cannot widen it, follows a national halt, and holds the last rollout until it expires")
    func aSchoolCannotWidenTheNationalRollout() throws {
        let repo = try nationalRepository()
        let nationalKeyring = tmp.sub("national-keyring")
        try Sys.mkdirs(nationalKeyring)
        try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: tmp.sub("national.sec"), publicPath: nationalKeyring + "/national.pub")
        // Nationally: olpc-ext3 2 has reached half of each school's devices, and version 1 is open to all.
        try Sys.writeFileAtomically(tmp.sub("national.json"), Array(#"{"image": "olpc-ext3", "versions": ["1"], "staged": "2", "percent": 50}"#.utf8))
        var national: ServeProcess? = try ServeProcess(["--repo", repo, "--policy", SchoolServerTests.serverPolicy("national.lua"),
                                                        "--decision-key", tmp.sub("national.sec"), "--config", tmp.sub("national.json"),
                                                        "--db", tmp.sub("national.sqlite"), "--rollout-lifetime", "8s"])
        // The school's own policy would move every device to the newest version.
        let school = try school(national!.url, ["--upstream-keyring", nationalKeyring, "--school-id", "school-9",
                                                "--school-key", tmp.sub("school-9.key"), "--upstream-interval", "1", "--follow", "stable"])
        let keyring = try Keyring(directory: school.decisionKeyring)
        func check(_ device: String) throws -> Decision {
            let nonce = SchoolServerClient.newNonce()
            let response = try school.server.post("/v1/check", ["device": device, "nonce": nonce, "image": "olpc-ext3", "version": "1"])
            try #require(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
            return try Decision.verify(envelope: response.body, keyring: keyring, device: device, nonce: nonce,
                                       now: Int64(Date().timeIntervalSince1970), source: "check")
        }
        let devices = (0..<40).map { "device-\($0)" }
        let inStage = Set(devices.filter { RolloutBucket.of(device: $0, salt: "national") < 50 })
        try #require(!inStage.isEmpty && inStage.count < devices.count)
        try waitUntil(timeout: 30, "the school holds its national rollout") { try check(inStage.first!).update }
        for device in devices {
            let decision = try check(device)
            #expect(decision.update == inStage.contains(device), "\(device): \(decision)")
            if !decision.update { #expect(decision.reason == "held" && decision.message?.contains("national") == true, "\(decision)") }
        }
        // An operator's pin at the school cannot widen it either.
        let outside = try #require(devices.first { !inStage.contains($0) })
        let pinned = try Curl.get(school.server.url + "/v1/fleet/devices/\(outside)/pin",
                                  ["-X", "POST", "-H", "Authorization: Bearer \(school.server.operatorToken!)", "-H", "Content-Type: application/json",
                                   "--data", #"{"image": "olpc-ext3", "version": "2"}"#])
        #expect(pinned.status == 200, "\(pinned.body)")
        #expect(try check(outside).reason == "held")

        // A national halt reaches the school at its next look upstream.
        let halted = try Curl.get(national!.url + "/v1/rollouts/olpc-ext3/halt",
                                  ["-X", "POST", "-H", "Authorization: Bearer \(national!.operatorToken!)", "-H", "Content-Type: application/json",
                                   "--data", #"{"reason": "bad kernel"}"#])
        #expect(halted.status == 200, "\(halted.body)")
        try waitUntil(timeout: 30, "the national halt reaches the school") { try check(inStage.first!).reason == "halted" }
        #expect(try check(inStage.first!).message == "halted nationally: bad kernel")
        let resumed = try Curl.get(national!.url + "/v1/rollouts/olpc-ext3/resume",
                                   ["-X", "POST", "-H", "Authorization: Bearer \(national!.operatorToken!)"])
        #expect(resumed.status == 200, "\(resumed.body)")
        try waitUntil(timeout: 30, "the resume reaches the school") { try check(inStage.first!).update }

        // Cut off from national, the school goes on by the last rollout it verified, until it expires.
        national = nil
        #expect(try check(inStage.first!).update)
        #expect(try check(outside).reason == "held")
        try waitUntil(timeout: 30, "the rollout held expires") { try check(inStage.first!).message?.contains("expired") == true }
        #expect(try check(inStage.first!).update == false)
    }

    @Test("the repository on a static origin behind a caching proxy: contents cached for ever, channels a minute, each fetched from the origin once")
    func aCachingProxyInFrontOfAStaticOrigin() throws {
        let origin = try NginxMirror(repo: try nationalRepository())
        let proxy = try NginxProxy(origin: origin.url)
        let manifest = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "2"))
        let hash = try #require(manifest.contents.keys.first)
        let forever = "public, max-age=31536000, immutable"
        #expect(try Curl.get("\(proxy.url)/blobs/\(hash.hex.prefix(2))/\(hash.hex)").header("Cache-Control") == forever)
        #expect(try Curl.get(proxy.url + "/images/olpc-ext3/2.manifest").header("Cache-Control") == forever)
        #expect(try Curl.get(proxy.url + "/channels/stable.json").header("Cache-Control") == "public, max-age=60")
        #expect(try Curl.get(proxy.url + "/images/olpc-ext3/2.manifest.sig").header("Cache-Control") == "public, max-age=300")

        // Two laptops apply from the proxy as from any mirror; the second one's contents come from its cache.
        for n in 0..<2 {
            let root = try installedTree("cdn-laptop-\(n)", version: "1")
            let apply = try CLI.run(["apply", "--root", root, "--to", samples.manifest("olpc-ext3", "2"), "--keyring", samples.keyring,
                                     "--mirror", proxy.url])
            #expect(apply.status == 0, "\(apply.stderr)")
            #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root) == [])
        }
        let fromOrigin = answered(origin).filter { $0.hasPrefix("/blobs/") || $0.hasSuffix(".pack") }
        #expect(!fromOrigin.isEmpty)
        #expect(fromOrigin.count == Set(fromOrigin).count, "the origin sent a content twice: \(fromOrigin.count) for \(Set(fromOrigin).count)")
        #expect(proxy.requests.contains { $0.hasSuffix(" HIT") }, "the second laptop was served from the proxy's cache")

        // A school server may follow the proxy instead of the origin: what it fetches is verified the same way.
        let school = try school(proxy.url, ["--follow", "stable"])
        let laptop = try installedTree("cdn-school-laptop", version: "1")
        let upgrade = try CLI.run(["upgrade", "--root", laptop, "--server", school.server.url, "--keyring", samples.keyring,
                                   "--decision-keyring", school.decisionKeyring], environment: ["UPDATINATOR_DEVICE_ID": "cdn-school-laptop"])
        #expect(upgrade.status == 0, "\(upgrade.stderr)")
    }

    @Test("hostile-upstream: a school fetches a version's pack whole, at the size its signed delta index announces, each blob in it checked")
    func aPackIsFetchedWholeAndChecked() throws {
        let repo = try nationalRepository()
        for arguments in [["delta", "--repo", repo, "--from", "olpc-ext3/1", "--to", "olpc-ext3/2", "--secret-key", samples.secretKey],
                          ["pack", "--repo", repo, "olpc-ext3/2", "--secret-key", samples.secretKey]] {
            let run = try CLI.run(arguments)
            try #require(run.status == 0, "\(run.stderr)")
        }
        let national = try NginxMirror(repo: repo)
        let school = try school(national.url)
        let pack = try Sys.readFile("\(repo)/images/olpc-ext3/2.pack")
        let served = try Curl.get(school.server.url + "/images/olpc-ext3/2.pack")
        #expect(served.status == 200 && Array(served.body.data(using: .isoLatin1)!) == pack)
        #expect(answered(national).filter { $0.hasSuffix(".pack") }.count == 1)

        // The same pack with one byte of its first blob changed, for another version named alike.
        let tampered = try nationalRepository()
        for arguments in [["delta", "--repo", tampered, "--from", "olpc-ext3/1", "--to", "olpc-ext3/2", "--secret-key", samples.secretKey],
                          ["pack", "--repo", tampered, "olpc-ext3/2", "--secret-key", samples.secretKey]] {
            #expect(try CLI.run(arguments).status == 0)
        }
        var bytes = try Sys.readFile("\(tampered)/images/olpc-ext3/2.pack")
        bytes[bytes.count / 3] ^= 0xff
        try Sys.writeFileAtomically("\(tampered)/images/olpc-ext3/2.pack", bytes)
        let hostile = try NginxMirror(repo: tampered)
        let other = try self.school(hostile.url)
        let refused = try Curl.get(other.server.url + "/images/olpc-ext3/2.pack")
        #expect(refused.status == 502, "\(refused.status) \(refused.body)")
        #expect(!FileManager.default.fileExists(atPath: "\(other.repo)/images/olpc-ext3/2.pack"))
    }
}
