import Testing
@testable import Updatinator

@Suite struct ManifestParserTests {
    static let hash = String(repeating: "ab", count: 32)
    static let header = "updatinator-manifest 1\nimage base\nversion 1\nhash blake2b-256\n"

    /// A manifest of the given entry lines, with a correct header.
    static func manifest(_ lines: [String]) -> String {
        header + "entries \(lines.count)\n" + lines.map { $0 + "\n" }.joined()
    }

    static let root = "/ d 0755 0 0 1.000000000"
    static let usr = "/usr d 0755 0 0 1.000000000"
    static let file = "/usr/f f 0644 0 0 1.000000000 5 \(hash) 13"

    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let text: String
        let line: Int
        let field: String
        var testDescription: String { name }
    }

    static let corpus: [Case] = [
        Case(name: "wrong format tag", text: "not-a-manifest 1\n", line: 1, field: "updatinator-manifest"),
        Case(name: "unknown format version", text: "updatinator-manifest 2\nimage a\n", line: 1, field: "format"),
        Case(name: "image name with a slash", text: "updatinator-manifest 1\nimage a/b\n", line: 2, field: "image"),
        Case(name: "version '..'", text: "updatinator-manifest 1\nimage a\nversion ..\n", line: 3, field: "version"),
        Case(name: "unknown hash", text: "updatinator-manifest 1\nimage a\nversion 1\nhash md5\n", line: 4, field: "hash"),
        Case(name: "header ends early", text: "updatinator-manifest 1\nimage a\n", line: 3, field: "version"),
        Case(name: "entry count missing", text: header + root + "\n", line: 5, field: "entries"),
        Case(name: "duplicate path", text: manifest([root, usr, usr]), line: 8, field: "path"),
        Case(name: "unsorted entries", text: manifest([root, "/z d 0755 0 0 1.000000000", usr]), line: 8, field: "path"),
        Case(name: "dot-dot component", text: manifest([root, "/usr/../etc d 0755 0 0 1.000000000"]), line: 7, field: "path"),
        Case(name: "dot component", text: manifest([root, "/. d 0755 0 0 1.000000000"]), line: 7, field: "path"),
        Case(name: "empty component", text: manifest([root, "//x d 0755 0 0 1.000000000"]), line: 7, field: "path"),
        Case(name: "relative path", text: manifest([root, "usr d 0755 0 0 1.000000000"]), line: 7, field: "path"),
        Case(name: "missing parent", text: manifest([root, "/usr/bin/ls f 0755 0 0 1.000000000 5 \(hash) 13"]), line: 7, field: "path"),
        Case(name: "parent is a file", text: manifest([root, usr, file, "/usr/f/x p 0644 0 0 1.000000000"]), line: 9, field: "path"),
        Case(name: "first entry is not the root", text: manifest([usr]), line: 6, field: "path"),
        Case(name: "apply's temporary name", text: manifest([root, "/.updatinator-0123456789abcdef.tmp p 0644 0 0 1.000000000"]), line: 7, field: "path"),
        Case(name: "state directory", text: manifest([root, "/.updatinator d 0700 0 0 1.000000000"]), line: 7, field: "path"),
        Case(name: "hardlink to a directory", text: manifest([root, usr, "/x h /usr"]), line: 8, field: "target"),
        Case(name: "hardlink to a later file", text: manifest([root, "/a h /usr/f", usr, file]), line: 7, field: "target"),
        Case(name: "oversize file", text: manifest([root, "/f f 0644 0 0 1.000000000 99999999999999999999 \(hash) 13"]), line: 7, field: "size"),
        Case(name: "blob larger than zlib allows", text: manifest([root, "/f f 0644 0 0 1.000000000 5 \(hash) 99999"]), line: 7, field: "blob size"),
        Case(name: "uid beyond 32 bits", text: manifest([root, "/p p 0644 4294967296 0 1.000000000"]), line: 7, field: "uid"),
        Case(name: "mode beyond 07777", text: manifest([root, "/p p 17777 0 0 1.000000000"]), line: 7, field: "mode"),
        Case(name: "non-octal mode", text: manifest([root, "/p p 0899 0 0 1.000000000"]), line: 7, field: "mode"),
        Case(name: "leading zero in a number", text: manifest([root, "/p p 0644 00 0 1.000000000"]), line: 7, field: "uid"),
        Case(name: "short nanoseconds", text: manifest([root, "/p p 0644 0 0 1.5"]), line: 7, field: "mtime"),
        Case(name: "uppercase hash", text: manifest([root, "/f f 0644 0 0 1.000000000 5 \(hash.uppercased()) 13"]), line: 7, field: "hash"),
        Case(name: "truncated entry", text: manifest([root, "/f f 0644 0 0 1.000000000 5"]), line: 7, field: "hash"),
        Case(name: "unknown type", text: manifest([root, "/s s 0644 0 0 1.000000000"]), line: 7, field: "type"),
        Case(name: "bad device numbers", text: manifest([root, "/null c 0644 0 0 1.000000000 1-3"]), line: 7, field: "device"),
        Case(name: "unsorted xattrs", text: manifest([root, "/p p 0644 0 0 1.000000000 x:user.b=1 x:user.a=2"]), line: 7, field: "xattr"),
        Case(name: "stray field", text: manifest([root, "/p p 0644 0 0 1.000000000 junk"]), line: 7, field: "xattr"),
        Case(name: "non-canonical escape", text: manifest([root, "/%41 p 0644 0 0 1.000000000"]), line: 7, field: "path"),
        Case(name: "double space", text: manifest([root, "/p  p 0644 0 0 1.000000000"]), line: 7, field: "line"),
        Case(name: "more entries than announced", text: header + "entries 1\n" + root + "\n" + usr + "\n", line: 7, field: "entries"),
        Case(name: "fewer entries than announced", text: header + "entries 3\n" + root + "\n" + usr + "\n", line: 8, field: "entries"),
        Case(name: "no final newline", text: String(manifest([root, usr]).dropLast()), line: 7, field: "line"),
        Case(name: "overlong line", text: manifest([root, "/" + String(repeating: "a", count: 300_000) + " p 0644 0 0 1.000000000"]), line: 7, field: "line"),
    ]

    @Test(arguments: corpus)
    func rejectsMalformedManifestNamingLineAndField(_ c: Case) {
        do {
            let m = try ManifestParser.parse(Array(c.text.utf8), source: "m")
            Issue.record("accepted: \(m.entries.count) entries")
        } catch let error as UpdError {
            #expect(error.code == .corrupt)
            #expect(error.message.hasPrefix("m line \(c.line), field \(c.field):"), "\(error.message)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func acceptsTheValidBaseOfTheCorpus() throws {
        let m = try ManifestParser.parse(Array(Self.manifest([Self.root, Self.usr, Self.file, "/usr/g h /usr/f"]).utf8))
        #expect(m.entries.count == 4)
        #expect(m.entries[3].kind == .hardlink(target: try ManifestPath("/usr/f")))
        #expect(m.entries[3].metadata == m.entries[2].metadata)
    }

    /// A manifest parsed beside another (an apply's old image beside its new one) takes the
    /// other's bytes for every path both have, and a hardlink its file's: each is held once.
    @Test func aManifestParsedBesideAnotherHoldsTheSharedPathsOnce() throws {
        let new = try ManifestParser.parse(Array(Self.manifest([Self.root, "/a d 0755 0 0 1.000000000", "/a/x d 0755 0 0 1.000000000", Self.usr, Self.file]).utf8))
        let text = Array(Self.manifest([Self.root, "/a d 0755 0 0 1.000000000", "/b d 0755 0 0 1.000000000", Self.usr,
                                        "/usr/e f 0644 0 0 2.000000000 5 \(Self.hash) 13", "/usr/f h /usr/e"]).utf8)
        let old = try ManifestParser.parse(text, sharingPathsWith: new)
        #expect(old == (try ManifestParser.parse(text)))
        func storage(_ path: ManifestPath) -> UnsafeRawPointer? { path.bytes.withUnsafeBytes { $0.baseAddress } }
        func inNew(_ path: String) -> ManifestPath { new.entry(at: try! ManifestPath(path))!.path }
        for shared in ["/", "/a", "/usr", "/usr/f"] {
            #expect(storage(old.entry(at: try ManifestPath(shared))!.path) == storage(inNew(shared)), "\(shared)")
        }
        let own = storage(old.entry(at: try ManifestPath("/b"))!.path)
        #expect(!new.entries.contains { storage($0.path) == own })
        guard case .hardlink(let target) = old.entries[5].kind else { Issue.record("not a hardlink"); return }
        #expect(storage(target) == storage(old.entries[4].path))
    }

    /// A symlink's target may start with "x:", as an extended attribute does: one without a
    /// literal '=' is the target. A tree with such a link is scanned into a manifest that parses.
    @Test func aSymlinkTargetStartingLikeAnExtendedAttributeIsTheTarget() throws {
        let text = Self.manifest([Self.root, Self.usr, "/usr/l l 0777 0 0 1.000000000 x:file%3Dname x:user.a=1"])
        let m = try ManifestParser.parse(Array(text.utf8))
        #expect(m.entries[2].kind == .symlink(target: Array("x:file=name".utf8)))
        #expect(m.entries[2].metadata.xattrs == [ExtendedAttribute(name: Array("user.a".utf8), value: Array("1".utf8))])
        #expect(ManifestWriter.write(m) == Array(text.utf8))
        // An attribute where the target should be is still a missing target.
        let missing = #expect(throws: UpdError.self) {
            try ManifestParser.parse(Array(Self.manifest([Self.root, "/l l 0777 0 0 1.000000000 x:user.a=1"]).utf8))
        }
        #expect(missing?.message.contains("field target: missing") == true, "\(String(describing: missing))")

        let tmp = TemporaryDirectory("x-colon-symlink")
        TreeBuilder(root: tmp.sub("tree")).symlink("/link", to: "x:not-an-attribute")
        let (scanned, _) = try TreeScanner(root: tmp.sub("tree")).scan(image: "links", version: "1")
        #expect(try ManifestParser.parse(ManifestWriter.write(scanned)) == scanned)
    }

    @Test func survivesEveryTruncationAndByteFlipOfAValidManifest() throws {
        let valid = Array(Self.manifest([Self.root, Self.usr, Self.file, "/usr/g h /usr/f",
                                         "/usr/l l 0777 0 0 1.000000000 f x:user.a=%00"]).utf8)
        var rng = SeededGenerator(seed: 7)
        for length in 0..<valid.count {
            _ = try? ManifestParser.parse(Array(valid[..<length]))
        }
        for _ in 0..<2000 {
            var mutated = valid
            mutated[Int.random(in: 0..<mutated.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            if let m = try? ManifestParser.parse(mutated) {
                // Whatever parses must be canonical: writing it back gives the same bytes.
                #expect(ManifestWriter.write(m) == mutated)
            }
        }
    }
}
