import Testing
@testable import Updatinator

/// Builds random, valid manifests whose names use every hostile byte.
struct RandomManifests {
    var rng: SeededGenerator

    mutating func name() -> [UInt8] {
        switch Int.random(in: 0..<10, using: &rng) {
        case 0: return [UInt8](repeating: UInt8(ascii: "n"), count: 255)
        case 1: return Array("with space".utf8)
        case 2: return Array("new\nline".utf8)
        case 3: return Array("100%=sure".utf8)
        case 4: return [0x63, 0x61, 0x66, 0xe9]  // "caf\xe9", not UTF-8
        default:
            let length = Int.random(in: 1...12, using: &rng)
            return (0..<length).map { _ in
                var b: UInt8
                repeat { b = UInt8.random(in: 1...255, using: &rng) } while b == UInt8(ascii: "/")
                return b
            }
        }
    }

    mutating func metadata() -> Metadata {
        var xattrs = [ExtendedAttribute]()
        if Bool.random(using: &rng) {
            xattrs = [ExtendedAttribute(name: Array("security.capability".utf8), value: netRawCapability),
                      ExtendedAttribute(name: Array("user.k=v %".utf8), value: [0, 10, 32, 255, 61])]
        }
        return Metadata(mode: UInt32.random(in: 0...0o7777, using: &rng), uid: UInt32.random(in: 0...UInt32.max, using: &rng),
                        gid: UInt32.random(in: 0...70000, using: &rng),
                        mtime: Timestamp(seconds: Int64.random(in: -1_000_000...4_000_000_000, using: &rng),
                                         nanoseconds: UInt32.random(in: 0..<1_000_000_000, using: &rng)),
                        xattrs: xattrs)
    }

    mutating func manifest(entries count: Int) -> Manifest {
        var directories = [ManifestPath.root]
        var paths = Set<ManifestPath>([.root])
        var kinds = [ManifestPath: EntryKind]()
        while paths.count < count {
            let parent = directories.randomElement(using: &rng)!
            let component = name()
            if component == [46] || component == [46, 46] { continue }
            let path = parent.appending(component)
            guard path.bytes.count <= ManifestPath.maxLength, paths.insert(path).inserted else { continue }
            if Int.random(in: 0..<4, using: &rng) == 0 { directories.append(path); kinds[path] = .directory }
        }
        var entries = [ManifestEntry]()
        var files = [ManifestPath: Metadata]()
        for path in paths.sorted() {
            var kind = kinds[path] ?? .directory
            if !path.isRoot && kinds[path] == nil {
                switch Int.random(in: 0..<6, using: &rng) {
                case 0 where !files.isEmpty:
                    let target = files.keys.randomElement(using: &rng)!
                    entries.append(ManifestEntry(path: path, kind: .hardlink(target: target), metadata: files[target]!))
                    continue
                case 1: kind = .symlink(target: name() + [UInt8(ascii: "/")] + name())
                case 2: kind = .characterDevice(major: UInt32.random(in: 0...4095, using: &rng), minor: UInt32.random(in: 0...UInt32.max, using: &rng))
                case 3: kind = .fifo
                default:
                    let size = UInt64.random(in: 0...(1 << 30), using: &rng)
                    let hash = ContentHash(bytes: (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) })!
                    kind = .file(size: size, hash: hash, blobSize: size / 2 + 8)
                }
            }
            let m = metadata()
            if case .file = kind { files[path] = m }
            entries.append(ManifestEntry(path: path, kind: kind, metadata: m))
        }
        return Manifest(image: "hostile-image", version: "1.0~rc1+b2", created: Bool.random(using: &rng) ? 1_700_000_000 : nil,
                        entries: entries)
    }
}

@Suite struct ManifestRoundTripTests {
    @Test(arguments: 0..<20)
    func parsingWhatWasWrittenGivesTheSameManifest(seed: Int) throws {
        var random = RandomManifests(rng: SeededGenerator(seed: UInt64(seed)))
        let manifest = random.manifest(entries: 200)
        let text = ManifestWriter.write(manifest)
        let parsed = try ManifestParser.parse(text)
        #expect(parsed == manifest)
        #expect(ManifestWriter.write(parsed) == text)
    }

    @Test func aLargeManifestIsWrittenInBoundedPieces() throws {
        var random = RandomManifests(rng: SeededGenerator(seed: 7))
        let manifest = random.manifest(entries: 3000)
        var pieces = [[UInt8]]()
        ManifestWriter.write(manifest) { pieces.append(Array($0)) }
        let text = pieces.flatMap { $0 }
        #expect(text.count > 3 * ManifestWriter.pieceSize)
        #expect(pieces.count > 3)
        // A piece ends after the entry that reaches the piece size: never more than one entry beyond.
        let longestLine = text.split(separator: 10).map(\.count).max()!
        #expect(pieces.allSatisfy { $0.count < ManifestWriter.pieceSize + longestLine + 1 })
        #expect(try ManifestParser.parse(text) == manifest)
        let measured = ManifestWriter.measure(manifest)
        #expect(measured.byteCount == text.count)
        #expect(measured.hash == Blake2b.hash(text))
    }

    @Test func everyByteOfAPathSurvivesEscaping() throws {
        let all = (1...255).map(UInt8.init).filter { $0 != UInt8(ascii: "/") }
        let escaped = ByteEscaping.escape(all)
        #expect(!escaped.utf8.contains(where: { $0 <= 32 || $0 >= 127 }))
        #expect(ByteEscaping.unescape(Array(escaped.utf8)) == all)
    }

    @Test func escapingIsCanonical() {
        #expect(ByteEscaping.unescape(Array("%41".utf8)) == nil, "an escaped printable byte is refused")
        #expect(ByteEscaping.unescape(Array("%2f".utf8)) == nil, "lowercase hex is refused")
        #expect(ByteEscaping.unescape(Array("a%2".utf8)) == nil, "a truncated escape is refused")
        #expect(ByteEscaping.unescape(Array("%20".utf8)) == [32])
    }

    @Test func diffSeesTypeContentAndMetadataChanges() throws {
        var random = RandomManifests(rng: SeededGenerator(seed: 99))
        let old = random.manifest(entries: 100)
        var new = old
        let fileIndex = new.entries.firstIndex { if case .file = $0.kind { return true } else { return false } }!
        let fifoIndex = new.entries.firstIndex { $0.kind == .fifo }!
        new.entries[fileIndex].metadata.mode ^= 0o100
        new.entries[fifoIndex].kind = .characterDevice(major: 1, minor: 3)
        let removed = new.entries.remove(at: new.entries.count - 1)
        let diff = ManifestDiff(from: old, to: new)
        #expect(diff.removed.map(\.path) == [removed.path] || removed.kind == .directory)
        #expect(diff.changed.contains { $0.path == new.entries[fileIndex].path && $0.aspects == .metadata })
        #expect(diff.changed.contains { $0.path == new.entries[fifoIndex].path && $0.aspects.contains(.type) })
        #expect(ManifestDiff(from: old, to: old).isEmpty)
    }
}
