import Foundation
import Glibc
import Testing
@testable import Updatinator

/// An apply from a mirror killed in the middle of its downloads, and resumed: what the first run
/// downloaded and verified is kept, so the two runs together download what the plan said.
@Suite struct ResumeTests {
    let tmp = TemporaryDirectory("resume")

    /// Two signed images, A and B (A with eight new files of random bytes), and a tree at A.
    struct Images {
        let repo: String
        let keyring: String
        let treeB: String
        let manifestB: String
        let root: String
        /// The blobs the move downloads, in the order the apply uses them: their repository
        /// paths, their sizes, and their contents' sizes.
        let downloads: [(path: String, bytes: Int, contentBytes: Int)]
        var downloadsDirectory: String { "\(root)/.updatinator/apply/downloads" }
    }

    func makeImages() throws -> Images {
        let repo = tmp.sub("repo"), keyring = tmp.sub("keyring")
        try Sys.mkdirs(keyring)
        let key = SecretKey.generate()
        try KeyFile.writeKeyPair(key, secretPath: tmp.sub("test.sec"), publicPath: "\(keyring)/test.pub")
        var random = SeededGenerator(seed: 16)
        for version in ["1", "2"] {
            let tree = TreeBuilder(root: tmp.sub("tree-\(version)"))
            tree.dir("/etc").file("/etc/hostname", "laptop\n").dir("/usr").dir("/usr/lib").file("/usr/lib/kept", "the same in both\n")
            if version == "2" {
                // Random bytes: zlib stores them, so a blob is about as large as its file.
                for i in 0..<8 {
                    tree.file("/usr/lib/new-\(i)", bytes: (0..<(60_000 + 7_000 * i)).map { _ in UInt8.random(in: 0...255, using: &random) })
                }
            }
            tree.fixTimes()
            var generator = ImageGenerator(tree: tree.root, repository: repo, image: "laptop", version: version)
            generator.signingKey = key
            _ = try generator.run()
        }
        let root = tmp.sub("root")
        try Shell.copyTree(tmp.sub("tree-1"), root)
        try Sys.mkdirs("\(root)/.updatinator")
        let manifestA = "\(repo)/images/laptop/1.manifest", manifestB = "\(repo)/images/laptop/2.manifest"
        try Sys.writeFileAtomically("\(root)/.updatinator/installed.manifest", Sys.readFile(manifestA))
        // The order of use, as the apply plans it.
        let from = try Sys.readFile(manifestA), to = try Sys.readFile(manifestB)
        let plan = try UpdateEngine.plan(root: root, from: (try ManifestParser.parse(from, source: manifestA), from),
                                         to: (try ManifestParser.parse(to, source: manifestB), to),
                                         sources: ContentSources(mirrors: FetchOptions(mirrors: ["http://127.0.0.1:9"])))
        let downloads = plan.downloads().requests.map { ("blobs/\($0.hash.hex.prefix(2))/\($0.hash.hex)", Int($0.blobSize), Int($0.size)) }
        return Images(repo: repo, keyring: keyring, treeB: tmp.sub("tree-2"), manifestB: manifestB, root: root, downloads: downloads)
    }

    func applyArguments(_ images: Images, mirror: String) -> [String] {
        ["apply", "--root", images.root, "--to", images.manifestB, "--keyring", images.keyring, "--mirror", mirror, "--concurrency", "2"]
    }

    /// The blob bytes a flaky-mirror reported sending: each answer's path, first byte and count.
    func sent(_ mirror: FlakyMirror) -> [(path: String, first: Int, count: Int)] {
        mirror.output.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            guard words.count == 4, words[0] == "sent", let first = Int(words[2]), let count = Int(words[3]) else { return nil }
            return (String(words[1]), first, count)
        }
    }

    /// The files in the apply's downloads directory, by name, with their sizes.
    func downloadedFiles(_ images: Images) -> [String: Int] {
        var files = [String: Int]()
        let directory = images.downloadsDirectory
        for prefix in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: "\(directory)/\(prefix)")) ?? [] {
                if let st = try? Sys.lstatIfExists("\(directory)/\(prefix)/\(name)"), st.st_mode & S_IFMT == S_IFREG {
                    files[name] = Int(st.st_size)
                }
            }
        }
        return files
    }

    /// Runs the apply against a mirror that serves the first two blobs in the order of use
    /// whole, half of the third (then holds it), the fourth and fifth whole, and nothing more;
    /// waits until the apply has everything the mirror sent (the first two written into the
    /// tree and released, the next two complete on disk, half of the third in its partial
    /// file), and kills it. The blob bytes sent, and the partial file's path.
    func killMidDownload(_ images: Images) throws -> (sent: Int, partial: String) {
        let cut = images.downloads[2]
        let mirror = try FlakyMirror(repo: images.repo, mode: "hold", arguments: ["--cut", cut.path, "--whole", "4"])
        let apply = try Subprocess([CLI.binary] + applyArguments(images, mirror: mirror.url))
        let name = String(cut.path.split(separator: "/").last!)
        let complete = Set(images.downloads[3...4].map { String($0.path.split(separator: "/").last!) })
        try waitUntil("the apply has what the mirror sent: \(downloadedFiles(images)), mirror: \(mirror.output), apply: \(apply.stderr)") {
            let files = downloadedFiles(images)
            return files[".partial-\(name)"] == cut.bytes / 2 && Set(files.keys.filter { !$0.hasPrefix(".") }) == complete
        }
        kill(apply.pid, SIGKILL)
        #expect(apply.wait() == 128 + SIGKILL)
        let sentBytes = sent(mirror).reduce(0) { $0 + $1.count }
        #expect(sentBytes == images.downloads[0...4].reduce(0) { $0 + $1.bytes } - (cut.bytes - cut.bytes / 2), "\(mirror.output)")
        return (sentBytes, "\(images.downloadsDirectory)/\(cut.path.split(separator: "/")[1])/.partial-\(name)")
    }

    func plannedDownloadBytes(_ images: Images, mirror: String) throws -> Int {
        let r = try CLI.run(["plan", "--root", images.root, "--to", images.manifestB, "--mirror", mirror, "--keyring", images.keyring, "--json"])
        try #require(r.status == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        return try #require(json["download_bytes"] as? Int)
    }

    @Test func aResumedApplyDownloadsInTotalWhatThePlanSaid() throws {
        let images = try makeImages()
        let mirror = try FlakyMirror(repo: images.repo, mode: "ok")
        let planned = try plannedDownloadBytes(images, mirror: mirror.url)
        #expect(planned == images.downloads.reduce(0) { $0 + $1.bytes })
        let first = try killMidDownload(images)

        let resumed = try CLI.run(applyArguments(images, mirror: mirror.url))
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("(resumed)"), "\(resumed.stdout)")
        #expect(try Shell.rsyncDifferences(expected: images.treeB, root: images.root) == [])
        let second = sent(mirror)
        #expect(first.sent + second.reduce(0) { $0 + $1.count } == planned, "resumed: \(second)")
        // The cut blob went on from where it stopped; the blobs already written or complete were not asked for again.
        let cut = images.downloads[2]
        #expect(second.filter { $0.path == cut.path }.map { [$0.first, $0.count] } == [[cut.bytes / 2, cut.bytes - cut.bytes / 2]])
        #expect(Set(second.map(\.path)) == Set(([images.downloads[2]] + images.downloads[5...]).map(\.path)))
        #expect((try Sys.lstatIfExists("\(images.root)/.updatinator/apply")) == nil, "no download is left")
    }

    /// How a test damages the partial download between the kill and the resume.
    enum Damage: String, CaseIterable, Sendable {
        /// Its first bytes: no zlib stream starts so, which the resume sees before it asks for the rest.
        case start
        /// A byte of the data, where the start still inflates: only the whole blob's hash shows it.
        case middle
    }

    @Test(arguments: Damage.allCases)
    func aDamagedPartialDownloadIsThrownAwayAndTheBlobDownloadedAgain(damage: Damage) throws {
        let images = try makeImages()
        let mirror = try FlakyMirror(repo: images.repo, mode: "ok")
        let planned = try plannedDownloadBytes(images, mirror: mirror.url)
        let first = try killMidDownload(images)
        let cut = images.downloads[2]
        var bytes = try Sys.readFile(first.partial)
        switch damage {
        case .start:
            for i in 0..<8 { bytes[i] = 0 }
            try Sys.writeFileAtomically(first.partial, bytes)
            #expect(throws: UpdError.self) { try BlobStore.checkPrefix(blobAt: first.partial, size: UInt64(cut.contentBytes)) }
        case .middle:
            // A byte whose change the start of the stream does not show (zlib stores random bytes as they are).
            let original = bytes
            var offset = bytes.count / 2
            while true {
                bytes = original
                bytes[offset] ^= 0xFF
                try Sys.writeFileAtomically(first.partial, bytes)
                if (try? BlobStore.checkPrefix(blobAt: first.partial, size: UInt64(cut.contentBytes))) != nil { break }
                offset += 1
            }
        }

        let resumed = try CLI.run(applyArguments(images, mirror: mirror.url))
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try Shell.rsyncDifferences(expected: images.treeB, root: images.root) == [])
        let second = sent(mirror)
        let again = second.filter { $0.path == cut.path }.map { [$0.first, $0.count] }
        switch damage {
        case .start:
            // Thrown away before the resume: the blob comes again whole, once.
            #expect(again == [[0, cut.bytes]])
            #expect(first.sent + second.reduce(0) { $0 + $1.count } == planned + cut.bytes / 2)
        case .middle:
            // Resumed, refused as a whole, and downloaded again from its first byte.
            #expect(again == [[cut.bytes / 2, cut.bytes - cut.bytes / 2], [0, cut.bytes]])
            #expect(first.sent + second.reduce(0) { $0 + $1.count } == planned + cut.bytes)
        }
    }
}
