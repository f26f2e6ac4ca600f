import Foundation
import Testing
@testable import Updatinator

/// One test per attack class of The Update Framework's list, and the classes this project adds;
/// each display name starts with its class. Other suites hold more tests of a class under the
/// same prefix (`swift test --filter` matches function names; the classes are listed in
/// docs/security.md).
@Suite struct AttackTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("attack")

    init() throws { samples = try SampleImages.shared }

    // MARK: Channels

    /// Writes `channels/stable.json` and its signature into `mirror`, signed by `key`.
    func publishChannel(_ mirror: String, serial: UInt64, expires: Int64 = 4_000_000_000, key: SecretKey, channel: String = "stable") throws {
        var metadata = ChannelMetadata(channel: channel, image: "olpc-ext3", version: "2", manifestHash: Blake2b.hash([1]),
                                       serial: 1, expires: expires)
        metadata.serial = serial
        let bytes = metadata.encoded()
        var signatures = SignatureFile()
        signatures.sign(bytes, with: key, purpose: .channel)
        try Sys.mkdirs(mirror + "/channels")
        try Sys.writeFileAtomically("\(mirror)/channels/stable.json.sig", signatures.encoded())
        try Sys.writeFileAtomically("\(mirror)/channels/stable.json", bytes)
    }

    /// A keyring (`keyring/`, with an empty `revoked/`) trusting each key as NAME.pub.
    func keyring(trusting keys: [String: SecretKey]) throws -> String {
        let keyring = tmp.sub("keyring")
        try Sys.mkdirs(keyring + "/revoked")
        for (name, key) in keys { try Sys.writeFileAtomically("\(keyring)/\(name).pub", KeyFile.encode(key.publicKey)) }
        return keyring
    }

    /// Checks the stable channel from `mirror` with `upd.channel`, keeping its state in one file
    /// as a device does; the serial accepted, or the error.
    func checkChannel(_ mirror: String, keyring: String, environment: [String: String] = [:]) throws -> String {
        let script = tmp.sub("channel.lua")
        try Sys.writeFileAtomically(script, Array("""
            local mirror, keyring = ...
            local c, err = upd.channel({mirror}, "stable", assert(upd.keyring(keyring)))
            print(c and ("serial " .. c.serial) or err)
            """.utf8))
        let r = try CLI.run(["run", "--state", tmp.sub("device-state.json"), "--allow-path", tmp.path, script, "--", "file://" + mirror, keyring],
                            environment: environment)
        #expect(r.status == 0, "\(r.stderr)")
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("fast-forward: a serial far ahead, signed with a key since revoked, does not lock the device out")
    func aSerialFarAheadDoesNotLockTheDeviceOut() throws {
        let (build, stolen) = (SecretKey.generate(), SecretKey.generate())
        let keyring = try keyring(trusting: ["build": build, "stolen": stolen]), mirror = tmp.sub("mirror")

        try publishChannel(mirror, serial: 5, key: build)
        #expect(try checkChannel(mirror, keyring: keyring) == "serial 5")
        // A compromised mirror serves metadata signed with the stolen key, far ahead.
        try publishChannel(mirror, serial: 1_000_000_000, key: stolen)
        #expect(try checkChannel(mirror, keyring: keyring) == "serial 1000000000")
        // Beyond 2^53 a serial is refused outright, even when it is signed.
        try publishChannel(mirror, serial: 1 << 60, key: build)
        #expect(try checkChannel(mirror, keyring: keyring).contains("is not from 1 to 2^53"))

        // The stolen key is revoked, and the next publication takes serial 6: accepted.
        try FileManager.default.moveItem(atPath: keyring + "/stolen.pub", toPath: keyring + "/revoked/stolen.pub")
        try publishChannel(mirror, serial: 6, key: build)
        #expect(try checkChannel(mirror, keyring: keyring) == "serial 6")
        // And replay protection holds again from there.
        try publishChannel(mirror, serial: 5, key: build)
        #expect(try checkChannel(mirror, keyring: keyring).contains("older than the accepted serial 6"))
    }

    @Test("indefinite-freeze: channel metadata past its expiry is refused, however well signed")
    func expiredChannelMetadataIsRefused() throws {
        let build = SecretKey.generate()
        let keyring = try keyring(trusting: ["build": build]), mirror = tmp.sub("mirror")
        try publishChannel(mirror, serial: 3, expires: 2_000_000_000, key: build)
        #expect(try checkChannel(mirror, keyring: keyring, environment: ["UPDATINATOR_TIME": "1999999999"]) == "serial 3")
        let frozen = try checkChannel(mirror, keyring: keyring, environment: ["UPDATINATOR_TIME": "2000000001"])
        #expect(frozen.contains("expired"), "\(frozen)")
    }

    @Test("mix-and-match: another channel's metadata, and a manifest whose hash is not the one announced, are refused")
    func anotherChannelOrAnotherManifestIsRefused() throws {
        let build = SecretKey.generate()
        let keyring = try keyring(trusting: ["build": build]), mirror = tmp.sub("mirror")
        // The signed metadata of channel testing, served as stable.
        try publishChannel(mirror, serial: 500, key: build, channel: "testing")
        #expect(try checkChannel(mirror, keyring: keyring).contains("is for channel 'testing', not 'stable'"))
        try publishChannel(mirror, serial: 7, key: build)
        #expect(try checkChannel(mirror, keyring: keyring) == "serial 7", "the served testing serial was not kept")

        // A decision or channel names version 2 by the hash of version 1's manifest.
        let fetcher = try CurlFetcher(options: FetchOptions(mirrors: ["file://" + samples.repo]))
        let announced = Blake2b.hash(try Sys.readFile(samples.manifest("olpc-ext3", "1"))).hex
        #expect(throws: UpdError(.verification, "images/olpc-ext3/2.manifest: no mirror had an acceptable copy (file://\(samples.repo): "
                                              + "its hash is not the \(announced) that was announced)")) {
            try fetcher.downloadManifest(image: "olpc-ext3", version: "2", into: nil, keyring: try Keyring(directory: samples.keyring),
                                         hash: announced)
        }
    }

    // MARK: Mirrors

    @Test("slow-retrieval: a mirror that stalls, or trickles a byte every two seconds, trips the low-speed timeout and the fetch fails over",
          arguments: ["stall", "trickle"])
    func aSlowMirrorIsLeft(mode: String) throws {
        try FetchTests().failsOverToTheSecondMirror(mode: mode)
    }

    @Test("endless-data: a mirror that never stops sending is cut at the blob's size and the fetch fails over")
    func anEndlessMirrorIsCut() throws {
        try FetchTests().failsOverToTheSecondMirror(mode: "endless")
    }

    @Test("malicious-mirror: corrupt blobs are refused by hash and fetched from the next mirror")
    func corruptBlobsAreRefused() throws {
        try FetchTests().failsOverToTheSecondMirror(mode: "corrupt")
    }

    @Test("malicious-mirror: a corrupt pack is refused piece by piece and each content fetched as its blob")
    func aCorruptPackFallsBackToBlobs() throws {
        let upgrades = try DeltaUpgradeTests()
        let repo = try upgrades.packedRepository()
        let pack = repo + "/images/olpc-ext3/2.pack"
        var bytes = try Sys.readFile(pack)
        for offset in stride(from: 100, to: bytes.count, by: 1024) { bytes[offset] ^= 0x55 }
        try Sys.writeFileAtomically(pack, bytes)
        let nginx = try NginxMirror(repo: repo)
        let r = try upgrades.applyOneToTwo(from: nginx.url, "corrupt-pack")
        let fallbacks = r.report["fallbacks"] as? [String] ?? []
        #expect(fallbacks.count > 10, "\(fallbacks.count) fallbacks: \(r.stderr)")
        #expect(r.stderr.contains("warning"), "\(r.stderr)")
    }

    @Test("malicious-mirror: a mirror serving a tampered or another version's manifest is passed over for the next mirror")
    func aMirrorWithABadManifestIsPassedOver() throws {
        let bad = tmp.sub("bad-mirror")
        try Sys.mkdirs(bad + "/images/olpc-ext3")
        let theirs = samples.repo + "/images/olpc-ext3"
        // One bad mirror serves version 1's signed manifest as version 2; another a tampered one.
        for name in ["2.manifest", "2.manifest.sig"] {
            try Sys.writeFileAtomically("\(bad)/images/olpc-ext3/\(name)", Sys.readFile("\(theirs)/\(name.replacingOccurrences(of: "2.", with: "1."))"))
        }
        let tampered = tmp.sub("tampered-mirror")
        try Sys.mkdirs(tampered + "/images/olpc-ext3")
        var bytes = try Sys.readFile(theirs + "/2.manifest")
        bytes[bytes.count - 2] ^= 1
        try Sys.writeFileAtomically(tampered + "/images/olpc-ext3/2.manifest", bytes)
        try Sys.writeFileAtomically(tampered + "/images/olpc-ext3/2.manifest.sig", Sys.readFile(theirs + "/2.manifest.sig"))
        let keyring = try Keyring(directory: samples.keyring)
        let mirrors = ["file://" + bad, "file://" + tampered, "file://" + samples.repo]
        let got = try CurlFetcher(options: FetchOptions(mirrors: mirrors)).downloadManifest(image: "olpc-ext3", version: "2", into: nil, keyring: keyring)
        #expect(got.download.content == (try Sys.readFile(theirs + "/2.manifest")))
        // With only bad mirrors, one line names each one and what was wrong with it.
        #expect(throws: UpdError(.verification, "images/olpc-ext3/2.manifest: no mirror had an acceptable copy (file://\(bad): the mirror sent the "
                                              + "manifest of olpc-ext3 1; file://\(tampered): 0 of the 1 required trusted signatures verified "
                                              + "(signature by key \(try KeyFile.readSecret(samples.secretKey).publicKey.keyID) does not match the content))")) {
            try CurlFetcher(options: FetchOptions(mirrors: Array(mirrors.prefix(2)))).downloadManifest(image: "olpc-ext3", version: "2", into: nil,
                                                                                                    keyring: keyring)
        }
    }

    // MARK: Manifests

    @Test("hostile-manifest: two paths that differ only in their escaping are refused")
    func pathsThatDifferOnlyInEscapingAreRefused() throws {
        let text = ManifestParserTests.manifest([ManifestParserTests.root, ManifestParserTests.usr, ManifestParserTests.file,
                                                 "/usr/%66 f 0644 0 0 1.000000000 5 \(ManifestParserTests.hash) 13"])
        // `/usr/%66` would be `/usr/f` again: only the canonical spelling of a path parses.
        #expect(throws: UpdError(.corrupt, "manifest line 9, field path: invalid escaping in '/usr/%66'")) {
            try ManifestParser.parse(Array(text.utf8))
        }
    }
}
