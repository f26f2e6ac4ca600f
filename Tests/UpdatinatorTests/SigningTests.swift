import Foundation
import Glibc
import Testing
@testable import Updatinator

@Suite struct SigningTests {
    /// A signed manifest and a keyring directory, with helpers to change either.
    struct Setup {
        let tmp = TemporaryDirectory("sign")
        let key = SecretKey.generate()
        var manifestPath: String { tmp.sub("base.manifest") }
        var keyring: String { tmp.sub("keyring") }

        init() throws {
            let m = Manifest(image: "base", version: "1", entries: [
                ManifestEntry(path: .root, kind: .directory,
                              metadata: Metadata(mode: 0o755, uid: 0, gid: 0, mtime: Timestamp(seconds: 1, nanoseconds: 0)))])
            try Sys.writeFileAtomically(manifestPath, ManifestWriter.write(m))
            try SignedDocument.signManifest(at: manifestPath, with: key)
            try trust(key.publicKey, as: "build.pub")
        }

        func trust(_ key: PublicKey, as name: String, in sub: String = "") throws {
            try Sys.mkdirs(keyring + sub)
            try Sys.writeFileAtomically("\(keyring)\(sub)/\(name)", KeyFile.encode(key))
        }

        func verify() throws {
            let ring = try Keyring(directory: keyring)
            try ring.verifyFile(manifestPath, purpose: .manifest)
        }

        /// Expects verification to be refused with a message containing `text`.
        func expectRefused(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                try verify()
                Issue.record("verification passed", sourceLocation: sourceLocation)
            } catch let e as UpdError {
                #expect(e.code == .verification, sourceLocation: sourceLocation)
                #expect(e.message.contains(text), "\(e.message)", sourceLocation: sourceLocation)
            } catch {
                Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func acceptsAGoodSignature() throws {
        let s = try Setup()
        try s.verify()
    }

    @Test func refusesAManifestWithOneFlippedByte() throws {
        let s = try Setup()
        var bytes = try Sys.readFile(s.manifestPath)
        bytes[bytes.count - 3] ^= 0x01
        try Sys.writeFileAtomically(s.manifestPath, bytes)
        s.expectRefused("does not match the content")
    }

    @Test func refusesASignatureByAnUntrustedKey() throws {
        let s = try Setup()
        unlink(s.keyring + "/build.pub")
        try s.trust(SecretKey.generate().publicKey, as: "other.pub")
        s.expectRefused("is not in the keyring")
    }

    @Test("key-compromise: a revoked key's signature never counts")
    func refusesARevokedKey() throws {
        let s = try Setup()
        try s.trust(SecretKey.generate().publicKey, as: "other.pub")
        try s.trust(s.key.publicKey, as: "build.pub", in: "/revoked")
        s.expectRefused("is revoked")
    }

    @Test("key-compromise: k of n distinct trusted keys must sign, and one key signing twice counts once")
    func requiresTheThresholdOfDistinctTrustedKeys() throws {
        let s = try Setup()
        let second = SecretKey.generate()
        try s.trust(second.publicKey, as: "second.pub")
        try Sys.writeFileAtomically(s.keyring + "/threshold", Array("2\n".utf8))
        s.expectRefused("1 of the 2 required")
        // Signing twice with the same key does not count twice.
        try SignedDocument.signManifest(at: s.manifestPath, with: s.key)
        s.expectRefused("1 of the 2 required")
        try SignedDocument.signManifest(at: s.manifestPath, with: second)
        try s.verify()
        #expect(try SignatureFile.parse(Sys.readFile(s.manifestPath + ".sig"), source: "sig").signatures.count == 2)
    }

    @Test func refusesAnEmptyOrMissingKeyring() throws {
        let s = try Setup()
        unlink(s.keyring + "/build.pub")
        s.expectRefused("holds no trusted")
        rmdir(s.keyring)
        s.expectRefused("does not exist")
    }

    @Test("key-compromise: zero signatures, or no signature file, never verify")
    func refusesAMissingOrEmptySignatureFile() throws {
        let s = try Setup()
        try Sys.writeFileAtomically(s.manifestPath + ".sig", Array("updatinator-signature 1\n".utf8))
        s.expectRefused("holds no signatures")
        unlink(s.manifestPath + ".sig")
        s.expectRefused("no signature file")
    }

    @Test func aManifestSignatureIsNotAChannelSignature() throws {
        let key = SecretKey.generate()
        let content = Array("{}".utf8)
        let signature = key.sign(content, purpose: .manifest)
        #expect(key.publicKey.isValidSignature(signature, over: content, purpose: .manifest))
        #expect(!key.publicKey.isValidSignature(signature, over: content, purpose: .channel))
    }

    @Test func secretKeyFilesAreCreatedPrivateAndNeverOverwritten() throws {
        let tmp = TemporaryDirectory("keys")
        let key = SecretKey.generate()
        try KeyFile.writeKeyPair(key, secretPath: tmp.sub("k.sec"), publicPath: tmp.sub("k.pub"))
        let st = try Sys.lstat(tmp.sub("k.sec"))
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(try KeyFile.readSecret(tmp.sub("k.sec")).bytes == key.bytes)
        #expect(try KeyFile.readPublic(tmp.sub("k.pub")) == key.publicKey)
        expectUpdError(.usage, "k.sec already exists; refusing to overwrite a key") {
            try KeyFile.writeKeyPair(SecretKey.generate(), secretPath: tmp.sub("k.sec"), publicPath: tmp.sub("x.pub"))
        }
        #expect(try KeyFile.readSecret(tmp.sub("k.sec")).bytes == key.bytes)
    }

    @Test("rollback: channel metadata older than the accepted serial, or for another channel, is refused")
    func channelMetadataRefusesReplayedAndExpiredPublications() throws {
        let tmp = TemporaryDirectory("channel")
        TreeBuilder(root: tmp.sub("tree")).file("/a", "a")
        let key = SecretKey.generate()
        var generator = ImageGenerator(tree: tmp.sub("tree"), repository: tmp.sub("repo"), image: "base", version: "1")
        generator.signingKey = key
        _ = try generator.run()
        let repo = try Repository(opening: tmp.sub("repo"))
        try Sys.mkdirs(tmp.sub("keyring"))
        try Sys.writeFileAtomically(tmp.sub("keyring/k.pub"), KeyFile.encode(key.publicKey))
        let ring = try Keyring(directory: tmp.sub("keyring"))
        let path = repo.channelPath("stable")

        let first = try ChannelMetadata.publish(repository: repo, channel: "stable", image: "base", version: "1",
                                                validFor: 3600, key: key, now: 1000)
        let firstBytes = try Sys.readFile(path), firstSig = try Sys.readFile(path + ".sig")
        let second = try ChannelMetadata.publish(repository: repo, channel: "stable", image: "base", version: "1",
                                                 validFor: 3600, key: key, now: 2000)
        #expect(first.serial == 1)
        #expect(second.serial == 2)
        #expect(first.manifestHash == Blake2b.hash(try Sys.readFile(repo.manifestPath(image: "base", version: "1"))).hex)

        let sig = try SignatureFile.parse(firstSig, source: "sig")
        // Fresh and new enough: accepted.
        #expect(try ChannelMetadata.verify(firstBytes, signatures: sig, keyring: ring, channel: "stable", source: "c", now: 1500, minimumSerial: 1).metadata == first)
        // Replayed after the client accepted serial 2.
        #expect(throws: UpdError(.verification, "c: serial 1 is older than the accepted serial 2 (replayed metadata)")) {
            try ChannelMetadata.verify(firstBytes, signatures: sig, keyring: ring, channel: "stable", source: "c", now: 1500, minimumSerial: 2)
        }
        // Another channel's metadata served under this name.
        #expect(throws: UpdError(.verification, "c: the metadata is for channel 'stable', not 'testing'")) {
            try ChannelMetadata.verify(firstBytes, signatures: sig, keyring: ring, channel: "testing", source: "c", now: 1500)
        }
        // Expired.
        expectUpdError(.verification, "c: expired at ") {
            try ChannelMetadata.verify(firstBytes, signatures: sig, keyring: ring, channel: "stable", source: "c", now: 4600)
        }
        // Tampered: the version changed after signing.
        var tampered = String(decoding: firstBytes, as: UTF8.self)
        tampered = tampered.replacingOccurrences(of: "\"serial\" : 1", with: "\"serial\" : 9")
        expectUpdError(.verification, "c: 0 of the 1 required trusted signatures verified") {
            try ChannelMetadata.verify(Array(tampered.utf8), signatures: sig, keyring: ring, channel: "stable", source: "c", now: 1500)
        }
    }
}

/// A school server's decisions: signed with a decision key, bound to one request, short-lived.
@Suite struct DecisionTests {
    let tmp = TemporaryDirectory("decision")
    let key = SecretKey.generate()

    func keyring() throws -> Keyring {
        try Sys.mkdirs(tmp.sub("trusted"))
        try KeyFile.writeKeyPair(key, secretPath: tmp.sub("d.sec"), publicPath: tmp.sub("trusted/d.pub"))
        return try Keyring(directory: tmp.sub("trusted"))
    }

    var update: Decision {
        var d = Decision(device: "laptop-7", nonce: "n1", expires: 2_000_000_000, update: true)
        d.image = "olpc-ext3"
        d.version = "2"
        d.manifestHash = String(repeating: "ab", count: 32)
        d.peers = ["http://10.0.0.5:8080"]
        d.rateLimit = 32768
        return d
    }

    @Test func aSignedDecisionVerifiesForItsRequest() throws {
        let envelope = try update.signed(with: key)
        let d = try Decision.verify(envelope: envelope, keyring: keyring(), device: "laptop-7", nonce: "n1",
                                    now: 1_900_000_000, source: "check")
        #expect(d == update)
    }

    @Test("mix-and-match: a decision for another device or nonce, expired, or signed by another key is refused")
    func refusesAnotherNonceAnotherDeviceAnExpiredOrAnUntrustedDecision() throws {
        let kr = try keyring()
        let envelope = try update.signed(with: key)
        let anotherRequest = "check: the decision is for another request (device or nonce differs)"
        for (device, nonce, now, message) in [("laptop-7", "n2", Int64(1_900_000_000), anotherRequest), ("laptop-8", "n1", 1_900_000_000, anotherRequest),
                                              ("laptop-7", "n1", 2_000_000_001, "check: the decision expired at ")] {
            expectUpdError(.verification, message, "\(device) \(nonce) at \(now)") {
                try Decision.verify(envelope: envelope, keyring: kr, device: device, nonce: nonce, now: now, source: "check")
            }
        }
        let stranger = try update.signed(with: SecretKey.generate())
        expectUpdError(.verification, "0 of the 1 required trusted signatures verified (key ") {
            try Decision.verify(envelope: stranger, keyring: kr, device: "laptop-7", nonce: "n1", now: 1_900_000_000, source: "check")
        }
        // A manifest signature by the same key is not a decision signature, and the reverse.
        var signatures = SignatureFile()
        signatures.sign(Array("x".utf8), with: key, purpose: .manifest)
        expectUpdError(.verification, "x: 0 of the 1 required trusted signatures verified") {
            try kr.verify(Array("x".utf8), signatures: signatures, purpose: .decision, source: "x")
        }
    }
}
