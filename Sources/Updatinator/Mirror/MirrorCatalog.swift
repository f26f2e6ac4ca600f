/// What a mirror knows of the repository from the documents it verified: each content's size
/// and compressed size (from manifests), each delta's size (from delta indexes), each version's
/// contents and pack layout. A content no verified document names is not fetched: a mirror
/// passes on nothing its upstream's keys did not vouch for, and cannot be made to fetch
/// arbitrary paths.
struct MirrorCatalog {
    struct Content {
        let size: UInt64
        let blobSize: UInt64
    }

    private(set) var contents = [ContentHash: Content]()
    private(set) var deltas = [String: UInt64]()
    /// Each version's manifest ("image/version" → manifest): its contents are the pins of upgrades in progress.
    private(set) var manifests = [String: Manifest]()
    private(set) var packs = [String: PackIndex]()
    private var indexes = [String: DeltaIndex]()

    static func key(_ image: String, _ version: String) -> String { "\(image)/\(version)" }
    static func deltaKey(_ base: ContentHash, _ target: ContentHash) -> String { base.hex + target.hex }

    mutating func add(_ manifest: Manifest) {
        let key = Self.key(manifest.image, manifest.version)
        for (hash, facts) in manifest.contents { contents[hash] = Content(size: facts.size, blobSize: facts.blobSize) }
        manifests[key] = manifest
        layOutPack(key)
    }

    mutating func add(_ index: DeltaIndex, image: String, version: String) {
        let key = Self.key(image, version)
        for (target, list) in index.deltas {
            for delta in list { deltas[Self.deltaKey(delta.base, target)] = delta.bytes }
        }
        indexes[key] = index
        layOutPack(key)
    }

    /// The pack's layout once both the manifest and a delta index announcing a pack are known.
    private mutating func layOutPack(_ key: String) {
        guard let manifest = manifests[key], let index = indexes[key] else { return }
        packs[key] = PackIndex.announced(for: manifest, in: index)
    }
}
