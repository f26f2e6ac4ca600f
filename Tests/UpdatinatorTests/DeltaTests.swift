import Foundation
import Testing
@testable import Updatinator

/// Content-pair deltas: the codec, base matching, the index, and upgrades that use them.
@Suite struct DeltaTests {
    let tmp = TemporaryDirectory("delta")

    /// Deterministic text of `lines` lines; `variant` changes every seventh line.
    static func text(lines: Int, variant: Int = 0) -> [UInt8] {
        var out = ""
        for i in 0..<lines {
            out += i % 7 == 3 && variant > 0 ? "line \(i) was changed in variant \(variant)\n" : "line \(i): the quick brown fox \(i * 31 % 97)\n"
        }
        return Array(out.utf8)
    }

    static func random(_ count: Int, seed: UInt64) -> [UInt8] {
        var generator = SeededGenerator(seed: seed)
        return (0..<count / 8).flatMap { _ in withUnsafeBytes(of: generator.next()) { Array($0) } }
    }

    static func gzip(_ bytes: [UInt8], in directory: String) throws -> [UInt8] {
        let path = "\(directory)/gz-\(UUID().uuidString)"
        try Sys.writeFileAtomically(path, bytes)
        try Shell.run(["gzip", "-n", "-6", path])
        return try Sys.readFile(path + ".gz")
    }

    enum Corpus: String, CaseIterable, CustomTestStringConvertible {
        case text, elf, compressed, emptyTarget, emptyBase, identical, large
        var testDescription: String { rawValue }
    }

    func pair(_ kind: Corpus) throws -> (base: [UInt8], target: [UInt8]) {
        switch kind {
        case .text: return (Self.text(lines: 3000), Self.text(lines: 3100, variant: 1))
        case .elf: return (try Sys.readFile("/usr/bin/ls"), try Sys.readFile("/usr/bin/dir"))
        case .compressed:
            return (try Self.gzip(Self.text(lines: 5000), in: tmp.path), try Self.gzip(Self.text(lines: 5000, variant: 2), in: tmp.path))
        case .emptyTarget: return (Self.text(lines: 10), [])
        case .emptyBase: return ([], Self.text(lines: 10))
        case .identical: return (Self.text(lines: 500), Self.text(lines: 500))
        case .large:
            // 32 MiB, changed in three places, with 1 MiB inserted in the middle.
            var base = Self.random(32 << 20, seed: 8)
            var target = base
            for offset in [1 << 20, 9 << 20, 30 << 20] { target.replaceSubrange(offset..<offset + 4096, with: Self.random(4096, seed: UInt64(offset))) }
            target.insert(contentsOf: Self.random(1 << 20, seed: 9), at: 16 << 20)
            base.append(contentsOf: [1, 2, 3])
            return (base, target)
        }
    }

    @Test(arguments: Corpus.allCases)
    func roundTrips(_ kind: Corpus) throws {
        let (base, target) = try pair(kind)
        let delta = try ContentDelta.encode(base: base, target: target, level: kind == .large ? 3 : ContentDelta.defaultLevel)
        let header = try ContentDelta.Header.parse(delta, source: "delta")
        #expect(header == ContentDelta.Header(base: Blake2b.hash(base), target: Blake2b.hash(target), targetSize: UInt64(target.count)))
        let decoded = try ContentDelta.decode(delta, base: base, target: Blake2b.hash(target), size: UInt64(target.count), source: "delta")
        #expect(decoded == target)
        // Streamed from a file, in 1 MiB reads.
        let path = tmp.sub("delta-\(kind)")
        try Sys.writeFileAtomically(path, delta)
        var streamed = [UInt8]()
        try ContentDelta.decode(deltaAt: path, base: base, target: Blake2b.hash(target), size: UInt64(target.count)) { streamed += $0 }
        #expect(streamed == target)
        switch kind {
        case .large, .identical:
            // The base does the work: what changed is 1 MiB and 12 KiB of random bytes.
            #expect(delta.count < target.count / 16 + (1 << 20) + 64 * 1024, "\(delta.count) bytes")
        case .text, .elf:
            #expect(delta.count < target.count / 4, "\(delta.count) bytes for \(target.count)")
        default:
            break
        }
    }

    @Test func aCorruptTruncatedOrMismatchedDeltaIsRefused() throws {
        let base = Self.text(lines: 2000), target = Self.text(lines: 2000, variant: 3)
        let hash = Blake2b.hash(target), size = UInt64(target.count)
        let delta = try ContentDelta.encode(base: base, target: target)
        /// Expects decoding to refuse `bytes` as corrupt, with a message that names the source and says `why`.
        func expectRefused(_ bytes: [UInt8], base: [UInt8] = base, target: ContentHash = hash, size: UInt64 = size,
                           because why: String, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try ContentDelta.decode(bytes, base: base, target: target, size: size, source: "d")
                Issue.record("accepted; expected: \(why)", sourceLocation: sourceLocation)
            } catch let e as UpdError {
                #expect(e.code == .corrupt, "\(e.code): \(e.message)", sourceLocation: sourceLocation)
                #expect(e.message.hasPrefix("d: \(why)"), "\(e.message)", sourceLocation: sourceLocation)
            } catch {
                Issue.record("not an UpdError: \(error)", sourceLocation: sourceLocation)
            }
        }
        var flipped = delta
        flipped[delta.count - 20] ^= 0x40
        expectRefused(flipped, because: "the delta does not decode")
        expectRefused(Array(delta.dropLast(9)), because: "the delta is truncated")
        expectRefused(delta + [0], because: "bytes follow the delta's frame")
        expectRefused(delta, base: Self.text(lines: 1999), because: "the delta is for another pair of contents")
        expectRefused(delta, target: Blake2b.hash([1]), because: "the delta is for another pair of contents")
        expectRefused(delta, size: size - 1, because: "the delta is for another pair of contents")
        expectRefused(Array(delta.prefix(40)), because: "not a content delta")
        var otherFormat = delta
        otherFormat[8] = 2
        expectRefused(otherFormat, because: "content delta format 2 is not supported")
        // A header that declares a size other than its frame's: the output is counted, not trusted.
        let frame = delta[ContentDelta.headerBytes...]
        let short = ContentDelta.Header(base: Blake2b.hash(base), target: hash, targetSize: size - 1).encoded + frame
        expectRefused(Array(short), size: size - 1, because: "the delta decodes to more than \(size - 1) bytes")
        let long = ContentDelta.Header(base: Blake2b.hash(base), target: hash, targetSize: size + 1).encoded + frame
        expectRefused(Array(long), size: size + 1, because: "the delta is truncated")
        // A header that names the right pair over a frame for another content: only the hash can tell.
        let other = try ContentDelta.encode(base: base, target: Self.text(lines: 2000, variant: 4))
        let forged = ContentDelta.Header(base: Blake2b.hash(base), target: hash, targetSize: size).encoded + other[ContentDelta.headerBytes...]
        expectRefused(Array(forged), because: "the patched content does not match its hash")
    }

    @Test func versionNumbersAreStrippedFromNamesAndPaths() {
        func v(_ s: String) -> String { String(decoding: DeltaBases.versionless(Array(s.utf8)), as: UTF8.self) }
        #expect(v("libssl.so.1.1") == v("libssl.so.3"))
        #expect(v("usr/lib/python3.11/os.py") == v("usr/lib/python3.12/os.py"))
        #expect(v("libc-2.36.so") == "libc-#.so")
        #expect(v("gcc-12") == v("gcc-14"))
        #expect(v("libssl.so") != v("libcrypto.so"))
        #expect(v("v1.") == "v#.", "a separator without a digit after it stays")
    }

    @Test func basesAreTheSamePathThenTheVersionlessPathThenTheName() throws {
        func file(_ path: String, _ content: String) throws -> ManifestEntry {
            let bytes = Array(content.utf8)
            return ManifestEntry(path: try ManifestPath(path), kind: .file(size: UInt64(bytes.count), hash: Blake2b.hash(bytes), blobSize: 10),
                                 metadata: Metadata(mode: 0o100644, uid: 0, gid: 0, mtime: Timestamp(seconds: 0, nanoseconds: 0)))
        }
        let old = Manifest(image: "a", version: "1", entries: [
            try file("/etc/motd", "hello 1"),
            try file("/lib/libssl.so.1.1", "ssl one one"),
            try file("/lib/libssl.so.1.1-extra", "extra"),
            try file("/usr/lib/python3.11/os.py", "os module"),
            try file("/usr/share/doc/a/copyright", "short"),
            try file("/usr/share/doc/b/copyright", "a much longer copyright text"),
        ].sorted { $0.path < $1.path })
        let new = Manifest(image: "a", version: "2", entries: [
            try file("/etc/motd", "hello 2"),
            try file("/lib/libssl.so.3", "ssl three"),
            try file("/usr/lib/python3.12/os.py", "os module 2"),
            try file("/usr/share/doc/c/copyright", "a much longer copyright text!"),
            try file("/usr/share/doc/c/unrelated", "nothing like it"),
            try file("/usr/share/doc/c/same", "short"),
        ].sorted { $0.path < $1.path })
        let matches = DeltaBases.match(from: old, to: new)
        func base(of content: String) -> (String, DeltaBases.Rule)? {
            guard let m = matches[Blake2b.hash(Array(content.utf8))] else { return nil }
            let path = old.entries.first { $0.contentHash == m.base }!.path.description
            return (path, m.rule)
        }
        #expect(base(of: "hello 2")! == ("/etc/motd", .samePath))
        #expect(base(of: "ssl three")! == ("/lib/libssl.so.1.1", .versionlessPath))
        #expect(base(of: "os module 2")! == ("/usr/lib/python3.11/os.py", .versionlessPath))
        #expect(base(of: "a much longer copyright text!")! == ("/usr/share/doc/b/copyright", .versionlessName), "the closest size")
        #expect(base(of: "nothing like it") == nil)
        #expect(base(of: "short") == nil, "a content the old image has needs no delta")
    }

    @Test func theIndexRoundTripsAndRefusesHostileText() throws {
        var index = DeltaIndex(image: "base", version: "2")
        let a = Blake2b.hash([1]), b = Blake2b.hash([2]), c = Blake2b.hash([3])
        index.add(target: a, base: b, bytes: 70)
        index.add(target: a, base: c, bytes: 50)
        index.add(target: b, base: c, bytes: 9)
        #expect(try DeltaIndex.parse(index.encoded(), source: "i") == index)
        #expect(String(decoding: index.encoded(), as: UTF8.self).hasPrefix(DeltaIndex.formatLine + "\nfor base 2\n"))
        // Format 1 names no version: it still parses (for `updatinator delta` to extend it).
        var unnamed = index
        (unnamed.image, unnamed.version) = (nil, nil)
        #expect(String(decoding: unnamed.encoded(), as: UTF8.self).hasPrefix("updatinator-deltas 1\n\(a < b ? a.hex : b.hex)"))
        #expect(try DeltaIndex.parse(unnamed.encoded(), source: "i") == unnamed)
        #expect(index.cheapest(into: a, from: { _ in true })?.base == c)
        #expect(index.cheapest(into: a, from: { $0 == b })?.bytes == 70, "only local bases count")
        #expect(index.cheapest(into: c, from: { _ in true }) == nil)
        let line = { (t: ContentHash, f: ContentHash, n: String) in "\(t.hex) \(f.hex) \(n)\n" }
        let (low, high) = a < b ? (a, b) : (b, a)
        let expectedLine = "expected '<target hash> <base hash> <bytes>'"
        let head = DeltaIndex.formatLine + "\nfor base 2\n"
        for (name, text, message) in [
            ("unsorted", head + line(high, c, "9") + line(low, c, "70"), "i:4: lines are not sorted, or repeat"),
            ("repeated", head + line(a, b, "70") + line(a, b, "70"), "i:4: lines are not sorted, or repeat"),
            ("to itself", head + line(a, a, "70"), "i:3: a delta from a content to itself"),
            ("zero bytes", head + line(a, b, "0"), "i:3: " + expectedLine),
            ("leading zero", head + line(a, b, "070"), "i:3: " + expectedLine),
            ("bad hash", head + "xyz \(b.hex) 5\n", "i:3: " + expectedLine),
            ("other format", "updatinator-deltas 3\n", "i:1: expected '\(DeltaIndex.formatLine)'"),
            ("no version named", DeltaIndex.formatLine + "\n", "i: no 'for <image> <version>' line"),
            ("a bad version line", DeltaIndex.formatLine + "\nfor base\n", "i:2: expected 'for <image> <version>'"),
            ("a bad version name", DeltaIndex.formatLine + "\nfor base ..\n", "i:2: expected 'for <image> <version>'"),
            ("no final newline", DeltaIndex.formatLine, "i: does not end with a newline"),
            ("a line after the pack's", head + "pack 10\n" + line(a, b, "70"), "i:4: a line after the pack's"),
            ("an empty pack", head + "pack 0\n", "i:3: expected 'pack <bytes>'"),
        ] {
            #expect(throws: UpdError(.corrupt, message), "\(name)") { try DeltaIndex.parse(Array(text.utf8), source: "i") }
        }
    }
}

/// Upgrades through a repository with deltas, against the same upgrades from blobs only.
@Suite struct DeltaUpgradeTests {
    let samples: SampleImages
    let tmp = TemporaryDirectory("delta-upgrade")

    init() throws { samples = try SampleImages.shared }

    /// A copy of the sample repository (hardlinked) with the deltas of the given moves.
    func repositoryWithDeltas(_ moves: [((String, String), (String, String))], name: String = "repo") throws -> String {
        let repo = tmp.sub(name)
        try Shell.run(["cp", "-al", samples.repo, repo])
        for ((fromImage, fromVersion), (toImage, toVersion)) in moves {
            let r = try CLI.run(["delta", "--repo", repo, "--from", "\(fromImage)/\(fromVersion)", "--to", "\(toImage)/\(toVersion)",
                                 "--secret-key", samples.secretKey])
            #expect(r.status == 0, "\(r.stderr)")
        }
        return repo
    }

    func apply(_ root: String, from: String, to: String, _ source: [String]) throws -> [String: Any] {
        let r = try CLI.run(["apply", "--root", root, "--from", from, "--to", to, "--keyring", samples.keyring, "--json"] + source)
        try #require(r.status == 0, "\(r.stderr)")
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
    }

    @Test func forwardBackwardAndAcrossGiveTheSameTreesAsBlobs() throws {
        let one = ("olpc-ext3", "1"), two = ("olpc-ext3", "2"), devel = ("olpc-devel-ext3", "2")
        let moves = [(one, two), (two, one), (one, devel)]
        let repo = try repositoryWithDeltas(moves)
        for (index, (from, to)) in moves.enumerated() {
            let viaDeltas = tmp.sub("deltas-\(index)"), viaBlobs = tmp.sub("blobs-\(index)")
            try Shell.copyTree(samples.tree(from.0, from.1), viaDeltas)
            try Shell.copyTree(samples.tree(from.0, from.1), viaBlobs)
            let target = samples.manifest(to.0, to.1)
            let d = try apply(viaDeltas, from: samples.manifest(from.0, from.1), to: target, ["--mirror", "file://" + repo])
            let b = try apply(viaBlobs, from: samples.manifest(from.0, from.1), to: target, ["--mirror", "file://" + samples.repo])
            let name = "\(from) → \(to)"
            #expect((d["deltas"] as! Int) > 0, "\(name): deltas were used")
            #expect((d["fallbacks"] as! [String]).isEmpty, "\(name)")
            #expect((b["deltas"] as! Int) == 0)
            #expect((d["bytes_downloaded"] as! Int) < (b["bytes_downloaded"] as! Int), "\(name): \(d["bytes_downloaded"]!) vs \(b["bytes_downloaded"]!)")
            #expect(try Shell.rsyncDifferences(expected: viaBlobs, root: viaDeltas).isEmpty, "\(name)")
            #expect(try CLI.run(["fsck", "--tree", viaDeltas, "--manifest", target]).status == 0, "\(name)")
        }
    }

    @Test func aCorruptDeltaOrOneAgainstAnotherBaseFallsBackToTheBlob() throws {
        let repo = try repositoryWithDeltas([(("olpc-ext3", "1"), ("olpc-ext3", "2"))])
        let files = try FileManager.default.subpathsOfDirectory(atPath: repo + "/deltas").filter { $0.contains("-") }.sorted()
        try #require(files.count >= 2)
        // One delta with a flipped byte in its frame (a copy: the repository's files are hardlinks).
        let corrupt = "\(repo)/deltas/\(files[0])"
        var bytes = try Sys.readFile(corrupt)
        bytes[bytes.count - 3] ^= 0x55
        Sys.unlink(corrupt)
        try Sys.writeFileAtomically(corrupt, bytes)
        // Another delta replaced by one for a different pair (its header names that pair).
        let swapped = "\(repo)/deltas/\(files[1])"
        let other = try ContentDelta.encode(base: Array("some base".utf8), target: Array("some target".utf8))
        Sys.unlink(swapped)
        try Sys.writeFileAtomically(swapped, other + [UInt8](repeating: 0, count: max(0, bytes.count - other.count)))
        let root = tmp.sub("tree")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        let target = samples.manifest("olpc-ext3", "2")
        let r = try apply(root, from: samples.manifest("olpc-ext3", "1"), to: target, ["--mirror", "file://" + repo])
        let fallbacks = r["fallbacks"] as! [String]
        #expect(fallbacks.count == 2, "\(fallbacks)")
        #expect(try CLI.run(["fsck", "--tree", root, "--manifest", target]).status == 0)
    }

    @Test func aDeltaIndexWithABadSignatureIsNotUsed() throws {
        let repo = try repositoryWithDeltas([(("olpc-ext3", "1"), ("olpc-ext3", "2"))])
        let index = repo + "/" + DeltaIndex.path(image: "olpc-ext3", version: "2")
        // A mirror that adds a line (to the index and its compressed copy): the signature no
        // longer covers the index.
        var text = try Sys.readFile(index)
        Sys.unlink(index)
        Sys.unlink(index + CompressedCopy.suffix)
        text += Array("\(Blake2b.hash([9]).hex) \(Blake2b.hash([8]).hex) 5\n".utf8)
        try CompressedCopy.write(index, text)
        let root = tmp.sub("tree")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        let r = try CLI.run(["apply", "--root", root, "--from", samples.manifest("olpc-ext3", "1"), "--to", samples.manifest("olpc-ext3", "2"),
                             "--keyring", samples.keyring, "--mirror", "file://" + repo, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("deltas not used") && r.stderr.contains(".deltas"), "\(r.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect(report["deltas"] as? Int == 0)
    }

    @Test func aStagedDeployUsesDeltasAgainstTheCurrentDeployment() throws {
        let repo = try repositoryWithDeltas([(("olpc-ext3", "1"), ("olpc-ext3", "2"))])
        let sysroot = tmp.sub("sysroot")
        for version in ["1", "2"] {
            let r = try CLI.run(["deploy", "--sysroot", sysroot, "--to", samples.manifest("olpc-ext3", version), "--keyring", samples.keyring,
                                 "--mirror", "file://" + repo])
            try #require(r.status == 0, "\(r.stderr)")
            if version == "2" {
                let deltas = try #require(r.stdout.firstMatch(of: /\((\d+) deltas\)/)?.1)
                #expect(Int(deltas)! > 0, "\(r.stdout)")
                // Each delta was patched against its base in the current deployment, none fetched whole instead.
                #expect(!r.stderr.contains("warning"), "\(r.stderr)")
            }
        }
        #expect(try CLI.run(["fsck", "--tree", sysroot + "/current/", "--manifest", samples.manifest("olpc-ext3", "2")]).status == 0)
    }

    /// A repository with the deltas of 1 → 2 and the pack of 2.
    func packedRepository() throws -> String {
        let repo = try repositoryWithDeltas([(("olpc-ext3", "1"), ("olpc-ext3", "2"))], name: "packed")
        let r = try CLI.run(["pack", "--repo", repo, "olpc-ext3/2", "--secret-key", samples.secretKey])
        try #require(r.status == 0, "\(r.stderr)")
        return repo
    }

    /// Applies 1 → 2 to a new copy from `mirror`; the report, after checking the tree.
    func applyOneToTwo(from mirror: String, _ name: String) throws -> (report: [String: Any], stderr: String) {
        let root = tmp.sub("tree-" + name)
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        let r = try CLI.run(["apply", "--root", root, "--from", samples.manifest("olpc-ext3", "1"), "--to", samples.manifest("olpc-ext3", "2"),
                             "--keyring", samples.keyring, "--mirror", mirror, "--json"])
        try #require(r.status == 0, "\(r.stderr)")
        #expect(try CLI.run(["fsck", "--tree", root, "--manifest", samples.manifest("olpc-ext3", "2")]).status == 0, "\(name)")
        return (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any], r.stderr)
    }

    @Test func aPackServedByNginxTakesAFewRequestsInsteadOfOnePerContent() throws {
        let nginx = try NginxMirror(repo: try packedRepository())
        let packed = try applyOneToTwo(from: nginx.url, "packed")
        let withPack = try String(contentsOfFile: "\(nginx.state)/access.log", encoding: .utf8).split(separator: "\n")
        // The same upgrade from a mirror with the same deltas and no pack.
        let plain = try NginxMirror(repo: try repositoryWithDeltas([(("olpc-ext3", "1"), ("olpc-ext3", "2"))]))
        let unpacked = try applyOneToTwo(from: plain.url, "unpacked")
        let without = try String(contentsOfFile: "\(plain.state)/access.log", encoding: .utf8).split(separator: "\n")
        let contents = packed.report["blobs_downloaded"] as! Int
        #expect(contents > 50 && (packed.report["deltas"] as! Int) > 0, "\(packed.report)")
        #expect(withPack.filter { $0.contains(".pack ") }.count >= 1)
        #expect(withPack.count <= 24, "\(withPack.count) requests for \(contents) contents:\n\(withPack.joined(separator: "\n"))")
        #expect(without.count > contents, "one request per content without the pack: \(without.count)")
        #expect(packed.report["bytes_downloaded"] as! Int == unpacked.report["bytes_downloaded"] as! Int, "the same pieces either way")
        #expect(!packed.stderr.contains("warning"), "\(packed.stderr)")
    }

    @Test func aMirrorWithoutRangeSupportIsUsedBlobByBlob() throws {
        let repo = try packedRepository()
        let mirror = try FlakyMirror(repo: repo, mode: "norange")
        let r = try applyOneToTwo(from: mirror.url, "norange")
        #expect(r.stderr.contains("downloading one by one"), "\(r.stderr)")
        #expect((r.report["deltas"] as! Int) > 0)
    }

    @Test func aPackIsAnnouncedOnlyWhileItMatchesTheDeltaIndex() throws {
        let repo = try packedRepository()
        let manifest = try ManifestParser.parse(contentsOf: samples.manifest("olpc-ext3", "2"))
        let builder = DeltaBuilder(repository: try Repository(opening: repo))
        var index = try builder.readIndex(image: "olpc-ext3", version: "2")
        let layout = try #require(PackIndex.announced(for: manifest, in: index))
        let pack = try Sys.readFile(repo + "/" + PackIndex.packPath(image: "olpc-ext3", version: "2"))
        #expect(UInt64(pack.count) == layout.bytes)
        // Every piece is where the layout says: a blob that inflates to its content.
        for e in layout.entries where e.base == nil {
            let blob = try Sys.readFile(try Repository(opening: repo).blobs.path(for: e.target))
            #expect(Array(pack[Int(e.offset)..<Int(e.offset + e.bytes)]) == blob)
        }
        // A delta added after the pack was written: the index no longer announces it.
        index.add(target: Blake2b.hash([1]), base: Blake2b.hash([2]), bytes: 9)
        #expect(index.packBytes == nil && PackIndex.announced(for: manifest, in: index) == nil)
        // An index whose pack size does not add up announces nothing.
        index.packBytes = layout.bytes + 1
        #expect(PackIndex.announced(for: manifest, in: try DeltaIndex.parse(index.encoded(), source: "i")) == nil)
    }

    @Test func manifestsComeCompressedAndAnUndecodableCopyFallsBackToThePlainFile() throws {
        let repo = tmp.sub("copies")
        try Shell.run(["cp", "-al", samples.repo, repo])
        let nginx = try NginxMirror(repo: repo)
        func getManifest() throws -> [Substring] {
            #expect(truncate("\(nginx.state)/access.log", 0) == 0)
            let r = try CLI.run(["get-manifest", "--mirror", nginx.url, "olpc-ext3", "2", "--out", tmp.sub("got-\(UUID().uuidString)"),
                                 "--keyring", samples.keyring])
            #expect(r.status == 0, "\(r.stderr)")
            return try String(contentsOfFile: "\(nginx.state)/access.log", encoding: .utf8).split(separator: "\n")
        }
        let compressed = try getManifest()
        #expect(compressed.contains { $0.contains("GET /images/olpc-ext3/2.manifest.zst ") && $0.contains(" 200 ") }, "\(compressed)")
        #expect(!compressed.contains { $0.contains("GET /images/olpc-ext3/2.manifest ") }, "\(compressed)")
        let copy = repo + "/images/olpc-ext3/2.manifest.zst"
        let size = try Sys.lstat(copy).st_size
        #expect(Int(size) * 2 < (try Sys.readFile(samples.manifest("olpc-ext3", "2"))).count, "the copy is smaller")
        Sys.unlink(copy)
        try Sys.writeFileAtomically(copy, Array("not zstd".utf8))
        let plain = try getManifest()
        #expect(plain.contains { $0.contains("GET /images/olpc-ext3/2.manifest ") && $0.contains(" 200 ") }, "\(plain)")
    }

    @Test func thePlanCountsDeltasInItsDownload() throws {
        let repo = try repositoryWithDeltas([(("olpc-ext3", "1"), ("olpc-ext3", "2"))])
        let root = tmp.sub("tree")
        try Shell.copyTree(samples.tree("olpc-ext3", "1"), root)
        func plan(_ mirror: String) throws -> [String: Any] {
            let r = try CLI.run(["plan", "--root", root, "--from", samples.manifest("olpc-ext3", "1"), "--to", samples.manifest("olpc-ext3", "2"),
                                 "--mirror", mirror, "--keyring", samples.keyring, "--json"])
            try #require(r.status == 0, "\(r.stderr)")
            return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        }
        let withDeltas = try plan("file://" + repo), without = try plan("file://" + samples.repo)
        #expect((withDeltas["deltas"] as! Int) > 0)
        #expect((withDeltas["download_bytes"] as! Int) + (withDeltas["delta_saved_bytes"] as! Int) == (without["download_bytes"] as! Int))
        #expect((withDeltas["contents_to_obtain"] as! Int) == (without["contents_to_obtain"] as! Int))
    }
}
