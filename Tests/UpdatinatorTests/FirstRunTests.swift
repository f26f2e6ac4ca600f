import Foundation
import Glibc
import Testing
@testable import Updatinator

/// What a new user meets first: a tree an installer put in place (adopting it), a missing
/// manifest named on the command line, a tree an apply is moving.
@Suite struct FirstRunTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("first-run")

    init() throws { samples = try SampleImages.shared }

    var one: String { samples.manifest("olpc-ext3", "1") }
    var two: String { samples.manifest("olpc-ext3", "2") }

    /// A copy of image 1's tree, as an installer leaves it: no installed-manifest record.
    func installedTree(_ name: String = "root") throws -> String {
        let root = tmp.sub(name)
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        return root
    }

    /// Expects the exit status and one line on stderr that says `text`.
    func expectFailure(_ args: [String], status: Int32, mentioning text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try CLI.run(args)
        #expect(r.status == status, "\(args.first!): \(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.hasPrefix("updatinator: ") && r.stderr.filter { $0 == "\n" }.count == 1, "\(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.contains(text), "\(args.first!): \(r.stderr)", sourceLocation: sourceLocation)
    }

    @Test func aTreeWithNothingInstalledNamesAdoptAndFromInEveryMove() throws {
        let root = try installedTree()
        let wayOut = "no image recorded as installed; run `updatinator adopt --root \(root) --manifest M` or pass --from M"
        for args in [["plan", "--root", root, "--to", two],
                     ["apply", "--root", root, "--to", two, "--keyring", samples.keyring, "--blobs", samples.repo + "/blobs"],
                     ["upgrade", "--root", root, "--server", "http://127.0.0.1:9", "--keyring", samples.keyring,
                      "--decision-keyring", samples.keyring],
                     ["fetch", "--to", two, "--root", root, "--mirror", "file://" + samples.repo, "--cache", tmp.sub("cache")]] {
            try expectFailure(args, status: 64, mentioning: wayOut)
        }
    }

    @Test func adoptRecordsAMatchingTreeAndMovesStartFromIt() throws {
        let root = try installedTree()
        let adopted = try CLI.run(["adopt", "--root", root, "--manifest", one, "--keyring", samples.keyring])
        #expect(adopted.status == 0, "\(adopted.stderr)")
        #expect(adopted.stdout.contains("recorded as running olpc-ext3 1"), "\(adopted.stdout)")
        #expect(try Sys.readFile(StateDirectory(root: root).installedManifest) == Sys.readFile(one))
        try expectFailure(["adopt", "--root", root, "--manifest", one, "--keyring", samples.keyring],
                          status: 10, mentioning: "already has olpc-ext3 1 recorded")

        let plan = try CLI.run(["plan", "--root", root, "--to", two])
        #expect(plan.status == 0 && plan.stdout.hasPrefix("olpc-ext3 1 → olpc-ext3 2"), "\(plan.stdout) \(plan.stderr)")
        let applied = try CLI.run(["apply", "--root", root, "--to", two, "--keyring", samples.keyring, "--blobs", samples.repo + "/blobs"])
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(try Shell.rsyncDifferences(expected: samples.tree("olpc-ext3", "2"), root: root) == [])
    }

    @Test func adoptRefusesATreeThatDiffersOrAManifestNoTrustedKeySigned() throws {
        let root = try installedTree()
        let changed = try #require(Self.firstRegularFile(in: root))
        let file = try #require(FileHandle(forWritingAtPath: "\(root)\(changed)"))
        try file.seekToEnd()
        try file.write(contentsOf: Data("local change\n".utf8))
        try file.close()
        try expectFailure(["adopt", "--root", root, "--manifest", one, "--keyring", samples.keyring],
                          status: 6, mentioning: "does not match olpc-ext3 1 (1 differences: \(changed):")
        #expect(try Sys.lstatIfExists(StateDirectory(root: root).installedManifest) == nil, "nothing is recorded")

        let stranger = tmp.sub("stranger")
        #expect(try CLI.run(["keygen", "--secret-key", tmp.sub("stranger.sec"), "--public-key", "\(stranger)/stranger.pub"]).status == 0)
        let clean = try installedTree("clean")
        try expectFailure(["adopt", "--root", clean, "--manifest", one, "--keyring", stranger], status: 2, mentioning: one)
        #expect(try Sys.lstatIfExists(StateDirectory(root: clean).installedManifest) == nil, "nothing is recorded")
    }

    /// The path (from the tree's root) of the first regular file of `root`, by name.
    static func firstRegularFile(in root: String) -> String? {
        let walker = FileManager.default.enumerator(atPath: root)
        var files = [String]()
        while let name = walker?.nextObject() as? String {
            if walker?.fileAttributes?[.type] as? FileAttributeType == .typeRegular { files.append("/" + name) }
        }
        return files.sorted().first
    }

    @Test func aMissingManifestNamedOnTheCommandLineIsAUsageErrorInEveryCommand() throws {
        let root = try installedTree()
        let missing = tmp.sub("missing.manifest")
        let blobs = ["--blobs", samples.repo + "/blobs"]
        for args in [["plan", "--root", root, "--to", missing, "--from", one],
                     ["plan", "--root", root, "--to", two, "--from", missing],
                     ["apply", "--root", root, "--to", missing, "--keyring", samples.keyring] + blobs,
                     ["apply", "--root", root, "--to", two, "--from", missing, "--keyring", samples.keyring] + blobs,
                     ["upgrade", "--root", root, "--from", missing, "--server", "http://127.0.0.1:9", "--keyring", samples.keyring,
                      "--decision-keyring", samples.keyring],
                     ["verify", missing, "--keyring", samples.keyring],
                     ["diff", missing, two], ["diff", one, missing],
                     ["fsck", "--tree", root, "--manifest", missing],
                     ["fetch", "--to", missing, "--mirror", "file://" + samples.repo, "--cache", tmp.sub("cache")],
                     ["deploy", "--sysroot", tmp.sub("sysroot"), "--to", missing, "--keyring", samples.keyring] + blobs,
                     ["adopt", "--root", root, "--manifest", missing, "--keyring", samples.keyring]] {
            try expectFailure(args, status: 64, mentioning: "\(missing): no such file")
        }
    }

    @Test func applyingATreeAlreadyAtTheTargetIsNothingToDo() throws {
        let root = try installedTree()
        #expect(try CLI.run(["adopt", "--root", root, "--manifest", one, "--keyring", samples.keyring]).status == 0)
        let again = try CLI.run(["apply", "--root", root, "--to", one, "--keyring", samples.keyring, "--blobs", samples.repo + "/blobs"])
        #expect(again.status == 10 && again.stdout.contains("is already at olpc-ext3 1"), "\(again.stdout) \(again.stderr)")
    }

    @Test func fsckWhileAnApplyHoldsTheTreeSaysItIsBusy() throws {
        let root = try installedTree()
        // The lock an apply holds while it moves the tree, taken as the apply takes it.
        let state = StateDirectory(root: root)
        let stateFD = try #require(try state.open(in: RootedTree(root: root), create: true))
        defer { Sys.close(stateFD) }
        let lock = try Sys.lockExclusively(in: stateFD, StateDirectory.lockName, display: "lock", busy: "busy")
        try expectFailure(["fsck", "--tree", root, "--manifest", one], status: 7,
                          mentioning: "\(root): an updatinator apply is changing this tree")
        Sys.close(lock)
        try Shell.run(["touch", "-h", "-r", samples.tree("olpc-ext3", "1"), root])   // as the apply leaves it
        let r = try CLI.run(["fsck", "--tree", root, "--manifest", one])
        #expect(r.status == 0 && r.stdout.contains("matches olpc-ext3 1"), "\(r.stdout) \(r.stderr)")
    }
}
