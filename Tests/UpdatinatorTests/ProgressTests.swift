import Foundation
import Testing
@testable import Updatinator

/// Progress of long operations when standard error is not a terminal (a log, the journal): plain
/// lines, a few per phase, never a line per blob and never a terminal's control characters.
@Suite struct ProgressTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("progress")

    init() throws { samples = try SampleImages.shared }

    /// The lines of `stderr` that start with `prefix`, after checking that it holds no terminal control.
    func lines(_ r: CLI.Result, startingWith prefix: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [Substring] {
        #expect(r.status == 0, "\(r.stderr)", sourceLocation: sourceLocation)
        #expect(!r.stderr.contains("\r") && !r.stderr.contains("\u{1b}"), "no terminal control: \(r.stderr)", sourceLocation: sourceLocation)
        let found = r.stderr.split(separator: "\n").filter { $0.hasPrefix(prefix) }
        try #require(!found.isEmpty, "a line '\(prefix)…' in: \(r.stderr)", sourceLocation: sourceLocation)
        return found
    }

    /// A copy of image 1 with its installed-manifest record.
    func installedCopy() throws -> String {
        let root = tmp.sub("root")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        try Sys.mkdirs("\(root)/.updatinator")
        try Sys.writeFileAtomically("\(root)/.updatinator/installed.manifest", Sys.readFile(samples.manifest("olpc-ext3", "1")))
        return root
    }

    @Test func generateShowsItsProgressAsPlainLines() throws {
        let r = try CLI.run(["generate", "--tree", samples.tree("olpc-ext3", "2"), "--repo", tmp.sub("repo"), "--image", "olpc-ext3",
                             "--version", "2"])
        let shown = try lines(r, startingWith: "hashing: ")
        #expect(shown[0].contains(/\d+\/\d+ files/), "\(shown)")
    }

    @Test func fetchShowsItsProgressAsPlainLinesAtMostEveryFewSeconds() throws {
        let mirror = try FlakyMirror(repo: samples.repo, mode: "ok")
        let needed = try samples.upgradeBlobs
        // Slowed to take about two seconds, in which a terminal's line would change ten times.
        let rate = needed.reduce(0) { $0 + $1.blobSize } / 2
        let started = Date()
        let r = try CLI.run(["fetch", "--to", samples.manifest("olpc-ext3", "2"), "--from", samples.manifest("olpc-ext3", "1"),
                             "--mirror", mirror.url, "--cache", tmp.sub("cache"), "--rate-limit", "\(rate)"])
        let seconds = Date().timeIntervalSince(started)
        let shown = try lines(r, startingWith: "downloading: ")
        #expect(shown[0].contains("/\(needed.count) blobs"), "\(shown)")
        #expect(shown.count <= 1 + Int(seconds / 5), "one line, then one every 5 s at most: \(shown.count) lines in \(seconds) s")
    }

    @Test func applyFromABlobDirectoryShowsItsProgressAsPlainLines() throws {
        let root = try installedCopy()
        let r = try CLI.run(["apply", "--root", root, "--to", samples.manifest("olpc-ext3", "2"), "--keyring", samples.keyring,
                             "--blobs", samples.repo + "/blobs"])
        let shown = try lines(r, startingWith: "applying: ")
        #expect(shown[0].contains(/\d+\/\d+ steps/), "\(shown)")
    }

    @Test func applyFromAMirrorShowsItsStepsWithItsDownloads() throws {
        let mirror = try FlakyMirror(repo: samples.repo, mode: "ok")
        let root = try installedCopy()
        let r = try CLI.run(["apply", "--root", root, "--to", samples.manifest("olpc-ext3", "2"), "--keyring", samples.keyring,
                             "--mirror", mirror.url])
        let shown = try lines(r, startingWith: "applying: ")
        let needed = try samples.upgradeBlobs.count
        #expect(shown.contains { $0.contains("; downloaded ") && $0.contains("/\(needed) blobs") }, "\(r.stderr)")
    }

    @Test func deployShowsItsProgressAsPlainLines() throws {
        let r = try CLI.run(["deploy", "--sysroot", tmp.sub("sysroot"), "--to", samples.manifest("olpc-ext3", "1"), "--keyring", samples.keyring,
                             "--blobs", samples.repo + "/blobs"])
        let shown = try lines(r, startingWith: "deploying: ")
        #expect(shown[0].contains(/\d+\/\d+ steps/), "\(shown)")
    }

    @Test func theObserverOfAnUpgradeIsToldOfEachBatchItWaitsFor() throws {
        let school = try SchoolServerTests()
        let server = try SchoolServerTests.School(school, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"])
        let laptop = try school.installedTree("laptop", version: "1")
        var upgrade = ServerUpgrade(root: laptop, server: server.server.url, keyring: try Keyring(directory: samples.keyring),
                                    decisionKeyring: try Keyring(directory: server.decisionKeyring), signer: try TestDevices.signer("laptop"))
        let seen = Locked([ApplyProgress]())
        upgrade.observer = UpdateObserver(progress: { p in seen.withLock { $0.append(p) } })
        let outcome = try upgrade.run()
        guard case .applied = outcome else {
            Issue.record("the upgrade did not apply: \(outcome)")
            return
        }
        let waits = seen.withLock { $0 }.compactMap(\.waitingForBatch)
        let needed = try samples.upgradeBlobs
        #expect(Set(waits.map(\.items)) == [needed.count], "one batch of every content: \(waits)")
        // The batch's bytes are at most the contents' own downloads, which the request offers as its limit.
        #expect(waits.allSatisfy { $0.bytes > 0 && $0.bytes <= needed.reduce(0) { $0 + $1.blobSize } }, "\(waits)")
        #expect(seen.withLock { $0.last }?.waitingForBatch == nil, "the wait is over by the end")
    }

    @Test func anUpgradeSaysWhatItWaitsForWhileTheServerPreparesABatch() throws {
        let school = try SchoolServerTests()
        let server = try SchoolServerTests.School(school, policy: SchoolServerTests.serverPolicy("default.lua"), settings: ["image": "olpc-ext3"])
        let laptop = try school.installedTree("laptop", version: "1")
        let r = try CLI.run(["upgrade", "--root", laptop, "--server", server.server.url, "--keyring", samples.keyring,
                             "--decision-keyring", server.decisionKeyring], environment: ["UPDATINATOR_DEVICE_ID": "laptop"])
        let shown = try lines(r, startingWith: "waiting for the server to prepare a batch of ")
        try #require(shown.count == 1, "one batch, one line: \(r.stderr)")
        let needed = try samples.upgradeBlobs.count
        #expect(shown[0].hasPrefix("waiting for the server to prepare a batch of \(needed) items (") && shown[0].hasSuffix(")…"), "\(shown)")
        #expect(try CLI.run(["fsck", "--tree", laptop, "--manifest", samples.manifest("olpc-ext3", "2")]).status == 0)
    }
}
