import Foundation
import Testing
@testable import Updatinator

/// `--json` on the commands that report something: each answer parses and carries the figures,
/// and a failure under `--json` is a JSON error on stderr with the documented exit status.
@Suite struct JSONOutputTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("json")
    var mirror: String { "file://" + samples.repo }

    init() throws { samples = try SampleImages.shared }

    /// Runs the command, expects `status`, and parses its stdout as one JSON object.
    func json(_ arguments: [String], status: Int32 = 0, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        let r = try CLI.run(arguments)
        #expect(r.status == status, "\(arguments.first!): \(r.stdout)\(r.stderr)", sourceLocation: sourceLocation)
        let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        return try #require(object, "\(arguments.first!) --json printed: \(r.stdout)", sourceLocation: sourceLocation)
    }

    @Test func verifyReportsTheDocumentAndItsSigners() throws {
        let verified = try json(["verify", samples.manifest("olpc-ext3", "2"), "--keyring", samples.keyring, "--json"])
        #expect(verified["kind"] as? String == "manifest" && verified["image"] as? String == "olpc-ext3"
                && verified["version"] as? String == "2", "\(verified)")
        let key = try Keyring(directory: samples.keyring)
        #expect(verified["signers"] as? [String] == (try key.verifyFile(samples.manifest("olpc-ext3", "2"), purpose: .manifest).1))
    }

    @Test func getManifestAndFetchReportWhatTheyWrote() throws {
        let got = try json(["get-manifest", "--mirror", mirror, "olpc-ext3", "2", "--out", tmp.sub("manifests"),
                            "--keyring", samples.keyring, "--json"])
        let manifest = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "2"))
        #expect(got["path"] as? String == tmp.sub("manifests") + "/2.manifest" && got["entries"] as? Int == manifest.entries.count
                && got["verified"] as? Bool == true, "\(got)")

        let fetched = try json(["fetch", "--to", samples.manifest("olpc-ext3", "2"), "--from", samples.manifest("olpc-ext3", "1"),
                                "--mirror", mirror, "--cache", tmp.sub("cache"), "--json"])
        let old = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "1"))
        let needed = Set(manifest.entries.compactMap(\.contentHash)).subtracting(old.entries.compactMap(\.contentHash))
        let onDisk = try needed.reduce(UInt64(0)) { sum, hash in
            sum + UInt64(try Sys.readFile(tmp.sub("cache") + "/\(hash.hex.prefix(2))/\(hash.hex)").count)
        }
        #expect(fetched["blobs"] as? Int == needed.count && (fetched["bytes"] as? NSNumber)?.uint64Value == onDisk, "\(fetched)")
    }

    @Test func deployRollbackAndGCReportTheirFigures() throws {
        let sysroot = tmp.sub("sysroot")
        let blobs = samples.repo + "/blobs"
        var names = [String]()
        for version in ["1", "2"] {
            let deployed = try json(["deploy", "--sysroot", sysroot, "--to", samples.manifest("olpc-ext3", version), "--keyring", samples.keyring,
                                     "--blobs", blobs, "--json"])
            names.append(try #require(deployed["name"] as? String, "\(deployed)"))
            #expect((deployed["files_written"] as? Int ?? 0) > 0, "\(deployed)")
        }
        let rolledBack = try json(["rollback", "--sysroot", sysroot, "--json"])
        #expect(rolledBack["current"] as? String == names[0] && rolledBack["previous"] as? String == names[1], "\(rolledBack)")
        let third = try json(["deploy", "--sysroot", sysroot, "--to", samples.manifest("olpc-devel-ext3", "2"), "--keyring", samples.keyring,
                              "--blobs", blobs, "--json"])
        let collected = try json(["gc", "--sysroot", sysroot, "--keep", "1", "--json"])
        // current (devel 2) and previous (olpc 1) stay; olpc 2 goes.
        #expect(third["name"] as? String != nil && collected["removed_deployments"] as? [String] == [names[1]], "\(collected)")
        #expect(collected["removed_blobs"] as? Int == 0 && collected["removed_blob_bytes"] as? Int == 0, "\(collected)")
    }

    @Test(arguments: [
        // An empty keyring, a sysroot without a previous deployment, no mirror reachable, a command line that does not parse.
        (["verify", "MANIFEST", "--keyring", "EMPTY"], "verification", Int32(2)),
        (["rollback", "--sysroot", "SYSROOT"], "nothing_to_do", Int32(10)),
        (["get-manifest", "--mirror", "http://127.0.0.1:9", "olpc-ext3", "2", "--out", "OUT"], "network", Int32(4)),
        (["gc", "--sysroot", "SYSROOT", "--keep", "no"], "usage", Int32(64)),
    ])
    func aFailureUnderJSONIsAJSONErrorWithItsExitStatus(arguments: [String], code: String, status: Int32) throws {
        try Sys.mkdirs(tmp.sub("empty"))
        try Sys.mkdirs(tmp.sub("sysroot/deployments"))
        let substituted = arguments.map { argument in
            switch argument {
            case "MANIFEST": samples.manifest("olpc-ext3", "2")
            case "EMPTY": tmp.sub("empty")
            case "SYSROOT": tmp.sub("sysroot")
            case "OUT": tmp.sub("out")
            default: argument
            }
        }
        let r = try CLI.run(substituted + ["--json"])
        #expect(r.status == status, "\(r.stdout)\(r.stderr)")
        #expect(r.stderr.hasSuffix("}\n") && r.stderr.filter { $0 == "\n" }.count == 1, "one line: \(r.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(r.stderr.utf8)) as? [String: Any]
        let error = try #require(object?["error"] as? [String: Any], "\(r.stdout)\(r.stderr)")
        #expect(error["code"] as? String == code && error["status"] as? Int == Int(status), "\(error)")
        let message = try #require(error["message"] as? String)
        #expect(!message.isEmpty && !message.contains("\n"), "\(message)")
        #expect(r.stdout.isEmpty, "standard output holds only reports: \(r.stdout)")
    }
}
