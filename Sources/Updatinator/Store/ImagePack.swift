import Foundation

/// An image version's pack, for clients of static mirrors: the version's blobs in path order,
/// then the deltas of its delta index in the same order, end to end in one file
/// (`images/<image>/<version>.pack`). A client fetches what its plan needs with a few
/// multi-range requests instead of one request per content; each piece is still checked as a
/// blob or a delta is. A mirror that ignores Range requests is used blob by blob.
///
/// Where each piece lies follows from the signed manifest (blob sizes) and the signed delta
/// index (delta sizes), so a pack needs no index of its own: the delta index records the
/// pack's size (`pack N`) when the pack was written from it, and a client uses the pack only
/// when its layout adds up to that size.
public struct PackIndex: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public let target: ContentHash
        public let base: ContentHash?
        public let offset: UInt64
        public let bytes: UInt64
    }

    public private(set) var entries: [Entry] = []
    private var positions = [String: Int]()

    public var bytes: UInt64 { entries.last.map { $0.offset + $0.bytes } ?? 0 }

    public static func packPath(image: String, version: String) -> String {
        Repository.versionPath(image: image, version: version, suffix: ".pack")
    }

    private static func key(_ target: ContentHash, _ base: ContentHash?) -> String { target.hex + (base?.hex ?? "") }

    private mutating func append(target: ContentHash, base: ContentHash?, bytes: UInt64) {
        positions[Self.key(target, base)] = entries.count
        entries.append(Entry(target: target, base: base, offset: self.bytes, bytes: bytes))
    }

    /// The layout of the pack of `manifest` with the deltas of `deltas`.
    public init(manifest: Manifest, deltas: DeltaIndex) {
        var order = [(ContentHash, UInt64)]()
        var seen = Set<ContentHash>()
        for e in manifest.entries {
            if case .file(let size, let hash, let blobSize) = e.kind, size > 0, seen.insert(hash).inserted { order.append((hash, blobSize)) }
        }
        for (hash, blobSize) in order { append(target: hash, base: nil, bytes: blobSize) }
        for (hash, _) in order {
            for d in (deltas.deltas[hash] ?? []).sorted(by: { $0.base < $1.base }) { append(target: hash, base: d.base, bytes: d.bytes) }
        }
    }

    /// Where the pack holds what `request` downloads: its delta, or its blob.
    public func entry(for request: BlobRequest) -> Entry? {
        positions[Self.key(request.hash, request.delta?.base)].map { entries[$0] }
    }

    /// The layout of the pack a mirror's delta index announces for `manifest`, when the index
    /// records one and the layout adds up to it.
    public static func announced(for manifest: Manifest, in deltas: DeltaIndex) -> PackIndex? {
        guard let size = deltas.packBytes else { return nil }
        let layout = PackIndex(manifest: manifest, deltas: deltas)
        return layout.bytes == size ? layout : nil
    }

    /// Writes the pack of `manifest` from the repository's blobs and the deltas of its delta
    /// index, then the index again, signed with `key` and recording the pack's size.
    @discardableResult
    public static func write(repository: Repository, manifest: Manifest, key: SecretKey) throws -> PackIndex {
        let builder = DeltaBuilder(repository: repository)
        var deltas = try builder.readIndex(image: manifest.image, version: manifest.version)
        let layout = PackIndex(manifest: manifest, deltas: deltas)
        let packPath = "\(repository.root)/\(Self.packPath(image: manifest.image, version: manifest.version))"
        let temporary = packPath + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: nil), let out = FileHandle(forWritingAtPath: temporary) else {
            throw UpdError.system("writing", packPath)
        }
        do {
            for e in layout.entries {
                let path = e.base.map { "\(repository.root)/\(ContentDelta.path(base: $0, target: e.target))" } ?? repository.blobs.path(for: e.target)
                let bytes = try Sys.readFile(path)
                guard UInt64(bytes.count) == e.bytes else {
                    throw UpdError(.corrupt, "\(path): \(bytes.count) bytes, where the manifest or the delta index says \(e.bytes)")
                }
                try out.write(contentsOf: Data(bytes))
            }
            try out.synchronize()
            try out.close()
        } catch {
            try? out.close()
            Sys.unlink(temporary)
            throw error
        }
        // The pack first: an index never announces a pack that is not there yet.
        try Sys.rename(temporary, packPath)
        deltas.packBytes = layout.bytes
        try builder.writeIndex(deltas, image: manifest.image, version: manifest.version, key: key)
        return layout
    }
}
