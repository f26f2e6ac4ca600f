import Foundation
import Glibc
import Testing
@testable import Updatinator

/// The build-server commands, run as a user runs them: exit codes and one-line errors.
@Suite struct CommandLineTests {
    let tmp = TemporaryDirectory("cli")
    var repo: String { tmp.sub("repo") }
    var manifest: String { "\(repo)/images/base/1.manifest" }

    init() throws {
        TreeScannerTests.buildFixture(at: tmp.sub("tree"))
        try Sys.mkdirs(tmp.sub("keyring"))
        try expectSuccess(["keygen", "--secret-key", tmp.sub("build.sec"), "--public-key", tmp.sub("keyring/build.pub")])
        try expectSuccess(["generate", "--tree", tmp.sub("tree"), "--repo", repo, "--image", "base", "--version", "1",
                           "--sign-key", tmp.sub("build.sec")])
    }

    @discardableResult
    func expectSuccess(_ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> CLI.Result {
        let r = try CLI.run(args)
        #expect(r.status == 0, "\(args.first!): \(r.stderr)", sourceLocation: sourceLocation)
        return r
    }

    /// Expects the documented exit status and exactly one line on stderr.
    func expectFailure(_ args: [String], status: Int32, mentioning text: String,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try CLI.run(args)
        #expect(r.status == status, "\(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.hasPrefix("updatinator: "), "\(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.filter { $0 == "\n" }.count == 1, "\(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.contains(text), "\(r.stderr)", sourceLocation: sourceLocation)
    }

    @Test func generateVerifyAndFsckSucceedOnAFreshRepository() throws {
        let generated = try CLI.run(["generate", "--tree", tmp.sub("tree"), "--repo", repo, "--image", "base", "--version", "1"])
        #expect(generated.status == 0)
        #expect(generated.stdout.contains("0 new blobs"), "regenerating reuses every blob: \(generated.stdout)")
        try expectSuccess(["verify", manifest, "--keyring", tmp.sub("keyring")])
        let fsck = try expectSuccess(["fsck", "--tree", tmp.sub("tree"), "--manifest", manifest, "--repo", repo])
        #expect(fsck.stdout.contains("matches base 1"))
        #expect(try Sys.lstat(tmp.sub("build.sec")).st_mode & 0o777 == 0o600)
    }

    @Test func keygenMakesTheKeyringDirectoryAndWritesBothHalvesOrNeither() throws {
        // The README's first command: a keyring directory that does not exist yet.
        try expectSuccess(["keygen", "--secret-key", tmp.sub("new/build.sec"), "--public-key", tmp.sub("new/keyring/build.pub")])
        #expect(try Keyring(directory: tmp.sub("new/keyring")).trusted.count == 1)
        // A public half that cannot be written takes the secret half with it, and the error
        // names the file being written, not a temporary file beside it.
        let r = try CLI.run(["keygen", "--secret-key", tmp.sub("lone.sec"), "--public-key", "/proc/self/build.pub"])
        #expect(r.status != 0 && r.stderr.contains("/proc/self/build.pub:") && !r.stderr.contains(".tmp"), "\(r.stderr)")
        #expect(try Sys.lstatIfExists(tmp.sub("lone.sec")) == nil, "the secret half is removed")
        try expectSuccess(["keygen", "--secret-key", tmp.sub("lone.sec"), "--public-key", tmp.sub("lone.pub")])
    }

    @Test func verifyExitsWithTwoOnATamperedManifest() throws {
        var bytes = try Sys.readFile(manifest)
        bytes[bytes.count - 2] ^= 1
        try Sys.writeFileAtomically(manifest, bytes)
        try expectFailure(["verify", manifest, "--keyring", tmp.sub("keyring")], status: 2, mentioning: "does not match")
        try expectFailure(["verify", manifest, "--keyring", tmp.sub("none")], status: 2, mentioning: "does not exist")
    }

    @Test func signAppendsASecondSignature() throws {
        try expectSuccess(["keygen", "--secret-key", tmp.sub("second.sec"), "--public-key", tmp.sub("keyring/second.pub")])
        try Sys.writeFileAtomically(tmp.sub("keyring/threshold"), Array("2\n".utf8))
        try expectFailure(["verify", manifest, "--keyring", tmp.sub("keyring")], status: 2, mentioning: "1 of the 2 required")
        try expectSuccess(["sign", manifest, "--secret-key", tmp.sub("second.sec")])
        try expectSuccess(["verify", manifest, "--keyring", tmp.sub("keyring")])
    }

    @Test func fsckExitsWithSixAndListsDifferences() throws {
        chmod(tmp.sub("tree/etc/shadow"), 0o644)
        let blob = try Repository(opening: repo).blobs.path(for: Blake2b.hash(Array("school-laptop\n".utf8)))
        unlink(blob)
        let r = try CLI.run(["fsck", "--tree", tmp.sub("tree"), "--manifest", manifest, "--repo", repo])
        #expect(r.status == 6)
        #expect(r.stdout.contains("/etc/shadow: mode 0644, expected 0640"), "\(r.stdout)")
        #expect(r.stdout.contains("blob missing"), "\(r.stdout)")
    }

    @Test func malformedInputExitsWithFiveNamingTheLine() throws {
        var text = String(decoding: try Sys.readFile(manifest), as: UTF8.self)
        text = text.replacingOccurrences(of: "/etc/empty f 0644", with: "/etc/empty f 0944")
        try Sys.writeFileAtomically(tmp.sub("bad.manifest"), Array(text.utf8))
        let line = text.split(separator: "\n").firstIndex { $0.hasPrefix("/etc/empty ") }! + 1
        try expectFailure(["diff", manifest, tmp.sub("bad.manifest")], status: 5, mentioning: "line \(line), field mode")
    }

    @Test func diffReportsChangesAsJSON() throws {
        TreeBuilder(root: tmp.sub("tree")).file("/etc/hostname", "renamed-laptop\n")
        unlink(tmp.sub("tree/usr/bin/sh"))
        TreeBuilder(root: tmp.sub("tree")).file("/usr/bin/sh", "now a file\n")
        try expectSuccess(["generate", "--tree", tmp.sub("tree"), "--repo", repo, "--image", "base", "--version", "2"])
        let r = try expectSuccess(["diff", manifest, "\(repo)/images/base/2.manifest", "--json"])
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        let changed = json["changed"] as! [[String: Any]]
        let byPath = Dictionary(uniqueKeysWithValues: changed.map { ($0["path"] as! String, $0["changes"] as! [String]) })
        #expect(byPath["/usr/bin/sh"] == ["type", "metadata"])
        #expect(byPath["/etc/hostname"]?.contains("content") == true)
        let summary = json["summary"] as! [String: Any]
        #expect(summary["new_contents"] as? Int == 2)
    }

    @Test func aPublishedVersionIsImmutable() throws {
        TreeBuilder(root: tmp.sub("tree")).file("/etc/hostname", "changed\n")
        try expectFailure(["generate", "--tree", tmp.sub("tree"), "--repo", repo, "--image", "base", "--version", "1"],
                          status: 64, mentioning: "already exists with different content")
    }

    @Test func publishIncrementsTheSerialAndSignsTheChannel() throws {
        let args = ["publish", "--repo", repo, "--channel", "stable", "--image", "base", "--version", "1",
                    "--expires", "7d", "--secret-key", tmp.sub("build.sec")]
        #expect(try expectSuccess(args).stdout.contains("serial 1"))
        #expect(try expectSuccess(args).stdout.contains("serial 2"))
        let r = try expectSuccess(["verify", "\(repo)/channels/stable.json", "--keyring", tmp.sub("keyring")])
        #expect(r.stdout.contains("channel stable → base 1, serial 2"))
        try expectFailure(args.dropLast(4) + ["--expires", "soon", "--secret-key", tmp.sub("build.sec")],
                          status: 64, mentioning: "invalid duration")
        try expectFailure(["publish", "--repo", repo, "--channel", "stable", "--image", "base", "--version", "9",
                           "--expires", "1d", "--secret-key", tmp.sub("build.sec")], status: 64, mentioning: "does not exist")
    }

    @Test func applyNeedsASourceForContents() throws {
        try expectFailure(["apply", "--root", tmp.sub("tree"), "--to", "\(repo)/images/base/1.manifest",
                           "--keyring", tmp.sub("keyring")], status: 64, mentioning: "give --blobs DIR or --mirror URL")
        try expectFailure(["fetch", "--to", "\(repo)/images/base/1.manifest", "--cache", tmp.sub("cache"),
                           "--mirror", "ftp://example.org/repo"], status: 64, mentioning: "only http://, https:// and file://")
    }

    @Test(.enabled(if: !FileManager.default.fileExists(atPath: "/etc/updatinator")),
          arguments: [(["agent", "--once"], "/etc/updatinator/policy.lua"),
                      (["serve", "--listen", "127.0.0.1:0"], "/etc/updatinator/decision.sec"),
                      (["upgrade", "--root", "/nonexistent", "--server", "http://127.0.0.1:9"], "/etc/updatinator/keyring")])
    func commandsUseTheDefaultLayoutUnlessTold(arguments: [String], path: String) throws {
        let r = try CLI.run(arguments)
        #expect(r.status != 0 && r.stderr.contains(path), "\(r.stderr)")
    }

    /// Text with every run of white space made one space: help wraps lines at the terminal's width.
    static func words(_ text: String) -> String {
        text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    @Test func versionPrintsThePackagesVersion() throws {
        let r = try expectSuccess(["--version"])
        #expect(r.stdout == UpdatinatorVersion.current + "\n", "\(r.stdout)")
    }

    @Test func theRootHelpListsEveryCommandWithItsAbstract() throws {
        let commands = try CommandDescription.all()
        let names = commands.map(\.name)
        #expect(names.contains("pack") && names.contains("delta") && names.contains("apply"), "\(names)")
        #expect(names.count >= 23, "\(names)")
        let r = try CLI.run(["--help"])
        #expect(r.status == 0, "\(r.stderr)")
        let listed = try #require(r.stdout.components(separatedBy: "SUBCOMMANDS:").last, "\(r.stdout)")
        for command in commands {
            #expect(listed.contains("\n  \(command.name) "), "\(command.name) is listed: \(r.stdout)")
            #expect(Self.words(listed).contains(Self.words(command.abstract)), "\(command.name)'s abstract: \(r.stdout)")
        }
    }

    @Test(arguments: try CommandDescription.all())
    func everyCommandExplainsItselfInWholeSentences(command: CommandDescription) throws {
        let r = try CLI.run([command.name, "--help"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("OVERVIEW: "), "\(r.stdout)")
        // The overview paragraph runs from "OVERVIEW:" to the first blank line.
        let overview = r.stdout.components(separatedBy: "\n\n").first { $0.hasPrefix("OVERVIEW: ") } ?? ""
        #expect(overview.hasSuffix("."), "\(r.stdout)")
        #expect(Self.words(overview) == "OVERVIEW: " + Self.words(command.abstract), "\(r.stdout)")
        #expect(r.stdout.contains("USAGE: updatinator \(command.name)"), "\(r.stdout)")
        // Every argument, option and flag is named, with its help sentence.
        let text = Self.words(r.stdout)
        for argument in command.arguments {
            #expect(r.stdout.contains(argument.name), "\(command.name) \(argument.name): \(r.stdout)")
            if let abstract = argument.abstract, !abstract.isEmpty {
                #expect(text.contains(Self.words(abstract)), "\(command.name) \(argument.name): \(r.stdout)")
                #expect(abstract.hasSuffix(".") || abstract.hasSuffix(".)"), "\(command.name) \(argument.name): '\(abstract)' is a whole sentence")
            }
        }
    }
}
