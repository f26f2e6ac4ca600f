import Foundation

/// An image version's pack, for clients of static mirrors: the version's blobs in path order,
/// then the deltas into its contents in the same order, end to end in one file
/// (`images/<image>/<version>.pack`), with a signed index of where each lies
/// (`.pack-index`, `.pack-index.sig`). A client fetches what its plan needs with a few
/// multi-range requests instead of one request per content; each piece is still checked as a
/// blob or a delta is. A mirror that ignores Range requests is used blob by blob.
///
///     updatinator-pack 1
///     <target hash> <base hash, or - for the blob> <offset> <bytes>     (by offset)
public struct PackIndex: Equatable, Sendable {
    public static let formatLine = "updatinator-pack 1"
    public static let maxBytes = 64 << 20

    public struct Entry: Equatable, Sendable {
        public let target: ContentHash
        public let base: ContentHash?
        public let offset: UInt64
        public let bytes: UInt64
    }

    public private(set) var entries: [Entry] = []
    private var positions = [String: Int]()

    public init() {}

    public static func packPath(image: String, version: String) -> String {
        Repository.manifestPath(image: image, version: version).dropLast(".manifest".count) + ".pack"
    }

    public static func indexPath(image: String, version: String) -> String { packPath(image: image, version: version) + "-index" }

    private static func key(_ target: ContentHash, _ base: ContentHash?) -> String { target.hex + (base?.hex ?? "") }

    mutating func append(target: ContentHash, base: ContentHash?, bytes: UInt64) {
        let offset = entries.last.map { $0.offset + $0.bytes } ?? 0
        positions[Self.key(target, base)] = entries.count
        entries.append(Entry(target: target, base: base, offset: offset, bytes: bytes))
    }

    /// Where the pack holds what `request` downloads: its delta, or its blob.
    public func entry(for request: BlobRequest) -> Entry? {
        positions[Self.key(request.hash, request.delta?.base)].map { entries[$0] }
    }

    public func encoded() -> [UInt8] {
        var text = Self.formatLine + "\n"
        for e in entries { text += "\(e.target.hex) \(e.base?.hex ?? "-") \(e.offset) \(e.bytes)\n" }
        return Array(text.utf8)
    }

    public static func parse(_ bytes: [UInt8], source: String) throws -> PackIndex {
        guard bytes.count <= maxBytes, bytes.last == UInt8(ascii: "\n") else {
            throw UpdError(.corrupt, "\(source): larger than \(maxBytes) bytes, or without a final newline")
        }
        var index = PackIndex()
        for (number, line) in bytes.dropLast().split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let at = "\(source):\(number + 1)"
            if number == 0 {
                guard line.elementsEqual(formatLine.utf8) else { throw UpdError(.corrupt, "\(at): expected '\(formatLine)'") }
                continue
            }
            let f = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            guard f.count == 4, let target = ContentHash(hex: f[0]), f[1] == "-" || ContentHash(hex: f[1]) != nil,
                  let offset = UInt64(f[2]), let size = UInt64(f[3]), size > 0, size <= 1 << 31 else {
                throw UpdError(.corrupt, "\(at): expected '<target hash> <base hash or -> <offset> <bytes>'")
            }
            // Pieces lie end to end, so a hostile index cannot make ranges overlap or leave holes.
            guard offset == (index.entries.last.map { $0.offset + $0.bytes } ?? 0) else {
                throw UpdError(.corrupt, "\(at): offset \(offset) does not follow the previous piece")
            }
            index.append(target: target, base: ContentHash(hex: f[1]), bytes: size)
        }
        return index
    }

    /// Writes the pack of `manifest` (its blobs, then `deltas`' deltas into its contents that the
    /// repository holds) and its index, signed with `key`; the index.
    @discardableResult
    public static func write(repository: Repository, manifest: Manifest, deltas: DeltaIndex, key: SecretKey) throws -> PackIndex {
        var order = [ContentHash]()
        var seen = Set<ContentHash>()
        for e in manifest.entries {
            if case .file(let size, let hash, _) = e.kind, size > 0, seen.insert(hash).inserted { order.append(hash) }
        }
        let packPath = "\(repository.root)/\(Self.packPath(image: manifest.image, version: manifest.version))"
        let temporary = packPath + ".tmp"
        FileManager.default.createFile(atPath: temporary, contents: nil)
        guard let out = FileHandle(forWritingAtPath: temporary) else { throw UpdError(.io, "\(temporary): cannot create") }
        var index = PackIndex()
        func add(_ path: String, target: ContentHash, base: ContentHash?) throws {
            let bytes = try Sys.readFile(path)
            try out.write(contentsOf: Data(bytes))
            index.append(target: target, base: base, bytes: UInt64(bytes.count))
        }
        do {
            for hash in order { try add(repository.blobs.path(for: hash), target: hash, base: nil) }
            for hash in order {
                for d in (deltas.deltas[hash] ?? []).sorted(by: { $0.base < $1.base }) {
                    let path = "\(repository.root)/\(ContentDelta.path(base: d.base, target: hash))"
                    if (try Sys.lstatIfExists(path)) != nil { try add(path, target: hash, base: d.base) }
                }
            }
            try out.synchronize()
            try out.close()
        } catch {
            try? out.close()
            Sys.unlink(temporary)
            throw error
        }
        let indexPath = "\(repository.root)/\(Self.indexPath(image: manifest.image, version: manifest.version))"
        var signatures = SignatureFile()
        signatures.sign(index.encoded(), with: key, purpose: .pack)
        // The pack first: an index never names pieces of a pack that is not there yet.
        try Sys.rename(temporary, packPath)
        try Sys.writeFileAtomically(indexPath + ".sig", signatures.encoded())
        try Sys.writeFileAtomically(indexPath, index.encoded())
        return index
    }
}
