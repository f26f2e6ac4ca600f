import Foundation
import Testing
@testable import Updatinator

/// Attacks on what signed documents say and what a device remembers of them: rollback of the
/// remembered serials, freshness with a wrong clock, mix-and-match of signed documents, and
/// signed JSON that reads two ways (docs/security.md).
@Suite struct SignedDocumentAttackTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("signed-attack")
    let build = SecretKey.generate()

    init() throws { samples = try SampleImages.shared }

    /// A keyring trusting the build key.
    func keyring() throws -> String {
        let keyring = tmp.sub("keyring")
        try Sys.mkdirs(keyring + "/revoked")
        try Sys.writeFileAtomically(keyring + "/build.pub", KeyFile.encode(build.publicKey))
        return keyring
    }

    /// Writes `channels/NAME.json` and its signature into `mirror`.
    func publish(_ mirror: String, _ channel: String = "stable", serial: UInt64, published: Int64? = nil, expires: Int64 = 4_000_000_000,
                 version: String = "2", manifestHash: ContentHash = Blake2b.hash([1])) throws {
        let metadata = ChannelMetadata(channel: channel, image: "olpc-ext3", version: version, manifestHash: manifestHash,
                                       serial: serial, expires: expires, published: published)
        try writeSigned(metadata.encoded(), to: "\(mirror)/channels/\(channel).json", purpose: .channel)
    }

    func writeSigned(_ bytes: [UInt8], to path: String, purpose: SignaturePurpose) throws {
        var signatures = SignatureFile()
        signatures.sign(bytes, with: build, purpose: purpose)
        try Sys.mkdirs(Sys.parentDirectory(of: path))
        try Sys.writeFileAtomically(path + ".sig", signatures.encoded())
        try Sys.writeFileAtomically(path, bytes)
    }

    /// Runs a Lua script as a device does, its upd.state in `device/policy-state.json` (and so the
    /// engine's freshness state in `device/freshness.json`); what it printed.
    func device(_ script: String, _ arguments: [String], time: Int64? = nil) throws -> String {
        let path = tmp.sub("script-\(UUID().uuidString).lua")
        try Sys.writeFileAtomically(path, Array(script.utf8))
        var environment = ["UPDATINATOR_DEVICE_ID": "laptop-1"]
        environment["UPDATINATOR_TIME"] = time.map(String.init)
        // The script may use the directories its arguments name, as a deployment would allow them.
        let allowed = [tmp.path] + arguments.compactMap { argument -> String? in
            let path = argument.hasPrefix("file://") ? String(argument.dropFirst(7)) : argument
            return path.hasPrefix("/") ? path : nil
        }
        let r = try CLI.run(["run", "--state", tmp.sub("device/policy-state.json")] + allowed.flatMap { ["--allow-path", $0] }
                            + [path, "--"] + arguments, environment: environment)
        #expect(r.status == 0, "\(r.stderr)")
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `upd.channel` on the stable channel of `mirror`: "serial N", or the error.
    func checkChannel(_ mirror: String, _ channel: String = "stable", time: Int64? = nil) throws -> String {
        try device("""
            local mirror, channel, keyring = ...
            local c, err = upd.channel({mirror}, channel, assert(upd.keyring(keyring)))
            print(c and ("serial " .. c.serial) or err)
            """, ["file://" + mirror, channel, try keyring()], time: time)
    }

    // MARK: Rollback

    @Test("rollback: the accepted serial is the engine's own: upd.state cannot lower it, and a lost file is reported, not reset")
    func theAcceptedSerialIsTheEnginesOwn() throws {
        let mirror = tmp.sub("mirror")
        try publish(mirror, serial: 5)
        #expect(try checkChannel(mirror) == "serial 5")
        let file = tmp.sub("device/freshness.json")
        let kept = try JSONDecoder().decode(FreshnessState.self, from: Data(try Sys.readFile(file)))
        #expect(kept.channels["stable"] == ChannelMemory(serial: 5, signers: [build.publicKey.keyID]))

        // A script lowers what upd.state holds, under the old keys and any other: nothing changes.
        _ = try device("""
            upd.state.set("channel_serial.stable", 0)
            upd.state.set("channel_signers.stable", "")
            """, [])
        try publish(mirror, serial: 4)
        #expect(try checkChannel(mirror).contains("serial 4 is older than the accepted serial 5"))

        // The file is lost: every check says so, in one line naming the file and the way out.
        Sys.unlink(file)
        let lost = try checkChannel(mirror)
        #expect(lost == "\(file): the channel serials and verified time this machine accepted are lost (\(file).kept says they were kept); "
            + "to start again from zero deliberately, remove \(file).kept")
        // The operator resets it deliberately.
        Sys.unlink(file + ".kept")
        #expect(try checkChannel(mirror) == "serial 4")
    }

    @Test("rollback: serials a device kept in upd.state before are moved into the engine's state once")
    func serialsKeptInPolicyStateAreMigrated() throws {
        let mirror = tmp.sub("mirror")
        try Sys.mkdirs(tmp.sub("device"))
        try Sys.writeFileAtomically(tmp.sub("device/policy-state.json"), Array("""
            {"channel_serial.stable":9,"channel_signers.stable":"\(build.publicKey.keyID)","school":"north"}
            """.utf8))
        try publish(mirror, serial: 8)
        #expect(try checkChannel(mirror).contains("serial 8 is older than the accepted serial 9"))
        let policyState = String(decoding: try Sys.readFile(tmp.sub("device/policy-state.json")), as: UTF8.self)
        #expect(policyState == #"{"school":"north"}"#, "the old keys are gone, the script's own kept")
        #expect(FileManager.default.fileExists(atPath: tmp.sub("device/freshness.json.kept")))
        try publish(mirror, serial: 10)
        #expect(try checkChannel(mirror) == "serial 10")
    }

    // MARK: Indefinite freeze

    @Test("indefinite-freeze: a clock stuck in the past does not make expired channel metadata fresh again")
    func aClockStuckInThePastStillRefusesExpiredMetadata() throws {
        let mirror = tmp.sub("mirror"), published: Int64 = 2_000_000_000
        try publish(mirror, serial: 3, published: published, expires: published + 3600)
        #expect(try checkChannel(mirror, time: published + 60) == "serial 3")
        // Another channel, published a day later, vouches that the time is at least then.
        try publish(mirror, "testing", serial: 1, published: published + 86400, expires: published + 10 * 86400)
        #expect(try checkChannel(mirror, "testing", time: published + 60) == "serial 1")
        // The clock is stuck a year before: stable's metadata expired a day ago all the same.
        let frozen = try checkChannel(mirror, time: published - 365 * 86400)
        #expect(frozen.contains("channels/stable.json: ") && frozen.contains(": expired at "), "\(frozen)")
    }

    @Test("indefinite-freeze: a decision is judged by its own time, whatever the laptop's clock, and vouches for that time")
    func aDecisionIsJudgedByItsOwnTime() throws {
        let host = try SchoolServerTests()
        let school = try SchoolServerTests.School(host, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"])
        let now = Int64(Date().timeIntervalSince1970)
        let mirror = tmp.sub("mirror")
        // Channel metadata that expired a day ago; the laptop's clock is stuck a month before.
        try publish(mirror, serial: 3, published: now - 30 * 86400, expires: now - 86400)
        let stuck = now - 30 * 86400 + 60
        #expect(try checkChannel(mirror, time: stuck) == "serial 3")

        let check = """
            local server, keyring = ...
            local d, err = upd.check(server, { image = "olpc-ext3", version = "1" }, assert(upd.keyring(keyring)))
            print(d and ("update " .. tostring(d.update)) or err)
            """
        // Clocks far behind and far ahead both take the decision, bound to its nonce.
        #expect(try device(check, [school.server.url, school.decisionKeyring], time: now + 10 * 365 * 86400) == "update true")
        #expect(try device(check, [school.server.url, school.decisionKeyring], time: stuck) == "update true")
        // The decision's time is now past the metadata's expiry, whatever the clock says.
        let frozen = try checkChannel(mirror, time: stuck)
        #expect(frozen.contains("channels/stable.json: ") && frozen.contains(": expired at "), "\(frozen)")

        // A decision whose lifetime is over when it is made is refused.
        let decisionKey = try KeyFile.readSecret(host.tmp.sub("decision.sec"))
        var decision = Decision(device: "laptop-1", nonce: "00", expires: now, update: false)
        decision.time = now
        #expect(throws: UpdError(.verification, "d: the decision expired at \(now)")) {
            try Decision.verify(envelope: try decision.signed(with: decisionKey), keyring: Keyring(directory: school.decisionKeyring),
                                device: "laptop-1", nonce: "00", now: 0, source: "d")
        }
    }

    @Test("indefinite-freeze: publish refuses an expiry beyond 366 days")
    func publishBoundsTheExpiry() throws {
        TreeBuilder(root: tmp.sub("tree")).file("/a", "a")
        var generator = ImageGenerator(tree: tmp.sub("tree"), repository: tmp.sub("repo"), image: "base", version: "1")
        generator.signingKey = build
        _ = try generator.run()
        try KeyFile.writeKeyPair(build, secretPath: tmp.sub("build.sec"), publicPath: tmp.sub("build.pub"))
        let arguments = ["publish", "--repo", tmp.sub("repo"), "--channel", "stable", "--image", "base", "--version", "1",
                         "--secret-key", tmp.sub("build.sec"), "--expires"]
        let tooLong = try CLI.run(arguments + ["367d"])
        #expect(tooLong.status == 64)
        #expect(tooLong.stderr.hasSuffix("channel metadata may expire at most 366d after it is published, not 31708800 seconds\n"), "\(tooLong.stderr)")
        #expect(tooLong.stderr.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: tmp.sub("repo/channels/stable.json")))
        let longest = try CLI.run(arguments + ["366d"])
        #expect(longest.status == 0, "\(longest.stderr)")
        let metadata = try ChannelMetadata.parse(try Sys.readFile(tmp.sub("repo/channels/stable.json")), source: "c")
        #expect(metadata.expires - metadata.published! == ChannelMetadata.maxValidity)
    }

    // MARK: Mix-and-match

    @Test("mix-and-match: a signed delta index of another version, or naming none, is refused")
    func anotherVersionsDeltaIndexIsRefused() throws {
        let mirror = tmp.sub("mirror")
        let fetcher = try CurlFetcher(options: FetchOptions(mirrors: ["file://" + mirror]))
        let ring = try Keyring(directory: try keyring())
        var index = DeltaIndex(image: "olpc-ext3", version: "2")
        index.add(target: Blake2b.hash([1]), base: Blake2b.hash([2]), bytes: 10)
        try writeSigned(index.encoded(), to: mirror + "/images/olpc-ext3/2.deltas", purpose: .deltas)
        #expect(try fetcher.downloadDeltaIndex(image: "olpc-ext3", version: "2", keyring: ring) == index)

        // Version 1's signed index, served as version 2's.
        (index.image, index.version) = ("olpc-ext3", "1")
        try writeSigned(index.encoded(), to: mirror + "/images/olpc-ext3/2.deltas", purpose: .deltas)
        expectUpdError(.verification, "the index is for olpc-ext3 1, not olpc-ext3 2") {
            try fetcher.downloadDeltaIndex(image: "olpc-ext3", version: "2", keyring: ring)
        }
        // An index of format 1 names no version, so it could be any version's.
        (index.image, index.version) = (nil, nil)
        try writeSigned(index.encoded(), to: mirror + "/images/olpc-ext3/2.deltas", purpose: .deltas)
        expectUpdError(.verification, "the index names no image and version (format 1)") {
            try fetcher.downloadDeltaIndex(image: "olpc-ext3", version: "2", keyring: ring)
        }
    }

    @Test("mix-and-match: upd.get_manifest holds to the hash the verified channel named, without being told")
    func getManifestHoldsToTheAnnouncedHash() throws {
        let mirror = tmp.sub("mirror")
        let version1 = Blake2b.hash(try Sys.readFile(samples.manifest("olpc-ext3", "1")))
        let version2 = Blake2b.hash(try Sys.readFile(samples.manifest("olpc-ext3", "2")))
        let script = """
            local mirror, repo, keyring, hash = ...
            local c = assert(upd.channel({mirror}, "stable", assert(upd.keyring(keyring))))
            local ok, m, err = pcall(upd.get_manifest, {repo}, c.image, c.version, { hash = hash ~= "" and hash or nil })
            print(ok and (m and m.hash or err) or m)
            """
        let arguments = { (hash: String) in ["file://" + mirror, "file://" + self.samples.repo, try self.keyring(), hash] }
        // The channel names version 2 with version 1's hash: the repository's version 2 is refused.
        try publish(mirror, serial: 1, manifestHash: version1)
        let refused = try device(script, try arguments(""))
        #expect(refused.contains("images/olpc-ext3/2.manifest: ") && refused.contains("its hash is not the \(version1.hex) that was announced"), "\(refused)")
        #expect(try device(script, try arguments(version2.hex))
            == "bad argument #4 to 'get_manifest' (hash \(version2.hex) is not the \(version1.hex) that a verified decision or channel named for olpc-ext3 2)")
        // Named with its own hash, it comes.
        try publish(mirror, serial: 2, manifestHash: version2)
        #expect(try device(script, try arguments("")) == version2.hex)
    }

    // MARK: Canonical JSON

    @Test("canonical-json: signed channel metadata and decisions with a repeated key, unsorted keys or other spacing are refused")
    func signedJSONMustBeCanonical() throws {
        let ring = try Keyring(directory: try keyring())
        let metadata = ChannelMetadata(channel: "stable", image: "olpc-ext3", version: "2", manifestHash: Blake2b.hash([1]),
                                       serial: 1, expires: 4_000_000_000, published: 1_000)
        func verifyChannel(_ text: String) throws {
            var signatures = SignatureFile()
            signatures.sign(Array(text.utf8), with: build, purpose: .channel)
            _ = try ChannelMetadata.verify(Array(text.utf8), signatures: signatures, keyring: ring, channel: "stable", source: "c", now: 2_000)
        }
        // What our encoder writes verifies.
        let canonical = String(decoding: metadata.encoded(), as: UTF8.self)
        try verifyChannel(canonical)
        let refused = UpdError(.corrupt, "c: not canonical JSON (sorted unique keys, as updatinator writes it)")
        for (name, text) in [
            ("a repeated key", canonical.replacingOccurrences(of: "\"channel\" : \"stable\",", with: "\"channel\" : \"stable\",\n  \"channel\" : \"testing\",")),
            ("unsorted keys", canonical.replacingOccurrences(of: "  \"channel\" : \"stable\",\n", with: "")
                .replacingOccurrences(of: "\"version\" : \"2\"", with: "\"version\" : \"2\",\n  \"channel\" : \"stable\"")),
            ("other spacing", canonical.replacingOccurrences(of: "\"serial\" : 1", with: "\"serial\":1")),
            ("no final newline", String(canonical.dropLast())),
        ] {
            #expect(text != canonical, "\(name)")
            #expect(throws: refused, "\(name)") { try verifyChannel(text) }
        }

        // A decision: the server's own encoding verifies, a repeated key does not.
        let decisionKeyring = tmp.sub("decision-keyring"), decisionKey = SecretKey.generate()
        try Sys.mkdirs(decisionKeyring)
        try Sys.writeFileAtomically(decisionKeyring + "/d.pub", KeyFile.encode(decisionKey.publicKey))
        var decision = Decision(device: "laptop-1", nonce: "00", expires: 2_000, update: false)
        decision.time = 1_000
        let envelope = try decision.signed(with: decisionKey)
        #expect(try Decision.verify(envelope: envelope, keyring: Keyring(directory: decisionKeyring), device: "laptop-1", nonce: "00",
                                    now: 0, source: "d") == decision)
        let content = String(decoding: CanonicalJSON.encode(decision, pretty: false), as: UTF8.self)
        let doubled = content.replacingOccurrences(of: "\"device\":\"laptop-1\",", with: "\"device\":\"laptop-1\",\"device\":\"laptop-2\",")
        #expect(doubled != content)
        var signatures = SignatureFile()
        signatures.sign(Array(doubled.utf8), with: decisionKey, purpose: .decision)
        let forged = CanonicalJSON.encode(Decision.Envelope(decision: doubled, signatures: String(decoding: signatures.encoded(), as: UTF8.self)),
                                          pretty: false)
        #expect(throws: UpdError(.corrupt, "d: not canonical JSON (sorted unique keys, as updatinator writes it)")) {
            try Decision.verify(envelope: forged, keyring: Keyring(directory: decisionKeyring), device: "laptop-1", nonce: "00", now: 0, source: "d")
        }
    }
}
