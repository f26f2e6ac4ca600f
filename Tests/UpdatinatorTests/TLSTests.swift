import Foundation
import Testing
@testable import Updatinator

/// TLS where it is used: https mirrors and school servers are verified against the system's
/// store or a CA file (`--ca-file`), a certificate that does not verify is one clear `network`
/// error naming the URL and why, and `serve --tls-cert --tls-key` speaks HTTPS. The CA is made
/// by each test with `openssl`; nginx and `updatinator serve` listen on loopback.
@Suite struct TLSTests {
    let school: SchoolServerTests
    var samples: SampleImages { school.samples }
    var tmp: TemporaryDirectory { school.tmp }
    let ca: LocalCA

    init() throws {
        school = try SchoolServerTests()
        ca = try LocalCA()
    }

    /// An nginx mirror of the sample repository over HTTPS with a certificate of `ca` (see `LocalCA.issue`).
    func mirror(names: [String] = ["IP:127.0.0.1"], expired: Bool = false) throws -> NginxMirror {
        try NginxMirror(repo: samples.repo, tls: try ca.issue("mirror-\(UUID().uuidString)", names: names, expired: expired))
    }

    func getManifest(_ mirrors: [String], caFile: String?) throws -> CLI.Result {
        try CLI.run(["get-manifest"] + mirrors.flatMap { ["--mirror", $0] }
                    + ["olpc-ext3", "2", "--out", tmp.sub("got-\(UUID().uuidString)"), "--keyring", samples.keyring]
                    + (caFile.map { ["--ca-file", $0] } ?? []))
    }

    /// The command failed with exit status 4 (`network`) and one error line (after any progress
    /// lines) naming `url` and curl's `reason`.
    func expectRefused(_ r: CLI.Result, url: String, reason: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == 4, "\(r.stderr)", sourceLocation: sourceLocation)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("updatinator: ") }
        #expect(errors.count == 1, "one error line: \(r.stderr)", sourceLocation: sourceLocation)
        #expect(errors.first.map { $0.contains(url) && $0.contains(reason) } == true, "\(r.stderr)", sourceLocation: sourceLocation)
    }

    @Test("tls: a manifest comes from an https mirror whose certificate chains to --ca-file")
    func anHTTPSMirrorVerifiesAgainstTheCAFile() throws {
        let nginx = try mirror()
        #expect(nginx.url.hasPrefix("https://"))
        let r = try getManifest([nginx.url], caFile: ca.certificate)
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test("tls: without --ca-file a certificate from a CA the system does not trust is refused")
    func aCertificateTheSystemStoreDoesNotTrustIsRefused() throws {
        let nginx = try mirror()
        expectRefused(try getManifest([nginx.url], caFile: nil), url: nginx.url, reason: "unable to get local issuer certificate")
    }

    @Test("tls: a certificate for another host name is refused")
    func aCertificateForAnotherHostIsRefused() throws {
        let nginx = try mirror(names: ["DNS:updates.example.org"])
        expectRefused(try getManifest([nginx.url], caFile: ca.certificate), url: nginx.url,
                      reason: "no alternative certificate subject name matches target host name '127.0.0.1'")
    }

    @Test("tls: an expired certificate is refused")
    func anExpiredCertificateIsRefused() throws {
        let nginx = try mirror(expired: true)
        expectRefused(try getManifest([nginx.url], caFile: ca.certificate), url: nginx.url, reason: "certificate has expired")
    }

    @Test("tls: a mirror whose certificate does not verify is passed over for the next")
    func theNextMirrorIsTriedAfterACertificateThatDoesNotVerify() throws {
        let (expired, good) = (try mirror(expired: true), try mirror())
        let r = try getManifest([expired.url, good.url], caFile: ca.certificate)
        #expect(r.status == 0, "\(r.stderr)")
        // Nothing was taken from the mirror whose certificate expired: the manifest came from the next.
        #expect(!expired.requests.contains { $0.hasPrefix("GET /images/") }, "\(expired.requests)")
        #expect(good.requests.contains { $0.hasPrefix("GET /images/olpc-ext3/2.manifest") }, "\(good.requests)")
    }

    @Test("tls: a script's upd.get_manifest verifies an https mirror against the --ca-file of run")
    func scriptsVerifyHTTPSMirrorsAgainstTheCAFile() throws {
        let nginx = try mirror()
        let script = tmp.sub("get.lua")
        try Sys.writeFileAtomically(script, Array("""
            local mirror = ...
            local m, err = upd.get_manifest({mirror}, "olpc-ext3", "2")
            print(m and ("got " .. m.version) or err)
            """.utf8))
        func run(_ caFile: [String]) throws -> String {
            let r = try CLI.run(["run", "--state", tmp.sub("state.json")] + caFile + [script, "--", nginx.url])
            #expect(r.status == 0, "\(r.stderr)")
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try run(["--ca-file", ca.certificate]) == "got 2")
        let refused = try run([])
        #expect(refused.contains(nginx.url) && refused.contains("unable to get local issuer certificate"), "\(refused)")
    }

    @Test("tls: a CA file that does not exist is a usage error naming it")
    func aMissingCAFileIsAUsageError() throws {
        let missing = tmp.sub("no-such-ca.pem")
        let r = try getManifest(["https://127.0.0.1:9"], caFile: missing)
        #expect(r.status == 64, "\(r.stderr)")
        #expect(r.stderr.contains(missing), "\(r.stderr)")
    }

    /// A school server over HTTPS with a certificate of `ca` for 127.0.0.1.
    func httpsSchool() throws -> SchoolServerTests.School {
        let tls = try ca.issue("school-\(UUID().uuidString)")
        return try SchoolServerTests.School(school, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"],
                                            extra: ["--tls-cert", tls.certificate, "--tls-key", tls.key])
    }

    func upgrade(_ root: String, _ server: SchoolServerTests.School, caFile: String?) throws -> CLI.Result {
        try CLI.run(["upgrade", "--root", root, "--server", server.server.url, "--keyring", samples.keyring,
                     "--decision-keyring", server.decisionKeyring] + (caFile.map { ["--ca-file", $0] } ?? []),
                    environment: ["UPDATINATOR_DEVICE_ID": "tls-laptop"])
    }

    @Test("tls: the school server serves HTTPS, and a laptop checks and upgrades over it with --ca-file")
    func aLaptopUpgradesFromASchoolServerOverHTTPS() throws {
        let server = try httpsSchool()
        #expect(server.server.url.hasPrefix("https://"))
        let laptop = try school.installedTree("laptop", version: "1")
        let r = try upgrade(laptop, server, caFile: ca.certificate)
        #expect(r.status == 0, "\(r.stderr)")
        let fsck = try CLI.run(["fsck", "--tree", laptop, "--manifest", samples.manifest("olpc-ext3", "2")])
        #expect(fsck.status == 0, "\(fsck.stdout)\(fsck.stderr)")
    }

    @Test("tls: a school server whose certificate does not verify gets no check")
    func aCheckWithoutTheCAFileIsRefused() throws {
        let server = try httpsSchool()
        let laptop = try school.installedTree("untrusting", version: "1")
        expectRefused(try upgrade(laptop, server, caFile: nil), url: "\(server.server.url)/v1/check",
                      reason: "unable to get local issuer certificate")
        // The same request with the CA is answered: the refusal was the certificate's.
        let client = SchoolServerClient(server: server.server.url, signer: try TestDevices.signer("tls-laptop"), caFile: ca.certificate)
        let request = CheckRequest(device: "tls-laptop", nonce: SchoolServerClient.newNonce(), image: "olpc-ext3", version: "1")
        let decision = try client.check(request, keyring: try Keyring(directory: server.decisionKeyring), now: Int64(Date().timeIntervalSince1970))
        #expect(decision.update && decision.version == "2")
    }

    @Test("tls: serve refuses a TLS key that others may read")
    func serveRefusesAKeyReadableByOthers() throws {
        let tls = try ca.issue("loose")
        try Shell.run(["chmod", "644", tls.key])
        let r = try CLI.run(["serve", "--peer", "--root", tmp.path, "--listen", "127.0.0.1:0", "--tls-cert", tls.certificate, "--tls-key", tls.key])
        #expect(r.status == 9, "\(r.stderr)")
        #expect(r.stderr.contains(tls.key) && r.stderr.contains("read by others"), "\(r.stderr)")
    }
}
