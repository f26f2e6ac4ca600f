/// A file of a published repository, by what it is: what a mirror must fetch together, how it
/// is checked, and whether it may change. Every path a client asks of a repository is one of
/// these or none.
public enum RepositoryFile: Hashable, Sendable {
    /// `repo.json`.
    case config
    /// `channels/NAME.json` and its signature: signed, replaced by each publication.
    case channel(String)
    /// `images/IMAGE/VERSION.manifest`, its signature and its compressed copy.
    case manifest(image: String, version: String)
    /// `images/IMAGE/VERSION.deltas`, its signature and its compressed copy.
    case deltaIndex(image: String, version: String)
    /// `images/IMAGE/VERSION.pack`.
    case pack(image: String, version: String)
    /// `blobs/HH/HASH`.
    case blob(ContentHash)
    /// `deltas/HH/BASE-TARGET`.
    case delta(base: ContentHash, target: ContentHash)

    /// What the path below a repository's root names, or nil when it names nothing a repository
    /// publishes. Every component must be a valid name (no `..`, no hidden files).
    public init?(path components: [String]) {
        guard !components.isEmpty, components.allSatisfy({ Manifest.problem(withName: $0) == nil }) else { return nil }
        switch components.count {
        case 1 where components[0] == "repo.json":
            self = .config
        case 2 where components[0] == "channels":
            guard let name = Self.strip(components[1], [".json", ".json.sig"]) else { return nil }
            self = .channel(name)
        case 3 where components[0] == "images":
            let (image, name) = (components[1], components[2])
            if let version = Self.strip(name, [".manifest", ".manifest.sig", ".manifest" + CompressedCopy.suffix]) {
                self = .manifest(image: image, version: version)
            } else if let version = Self.strip(name, [".deltas", ".deltas.sig", ".deltas" + CompressedCopy.suffix]) {
                self = .deltaIndex(image: image, version: version)
            } else if let version = Self.strip(name, [".pack"]) {
                self = .pack(image: image, version: version)
            } else {
                return nil
            }
        case 3 where components[0] == "blobs":
            guard let hash = ContentHash(hex: components[2]), hash.hex.prefix(2) == components[1] else { return nil }
            self = .blob(hash)
        case 3 where components[0] == "deltas":
            let pair = components[2].split(separator: "-")
            guard pair.count == 2, let base = ContentHash(hex: String(pair[0])), let target = ContentHash(hex: String(pair[1])),
                  target.hex.prefix(2) == components[1] else { return nil }
            self = .delta(base: base, target: target)
        default:
            return nil
        }
    }

    /// The name without the first of `suffixes` it ends with, when what is left is a valid name.
    private static func strip(_ name: String, _ suffixes: [String]) -> String? {
        for suffix in suffixes.sorted(by: { $0.count > $1.count }) where name.hasSuffix(suffix) {
            let stem = String(name.dropLast(suffix.count))
            return Manifest.problem(withName: stem) == nil ? stem : nil
        }
        return nil
    }

    /// The main file's path below the root (the one its signature and compressed copy go with).
    public var path: String {
        switch self {
        case .config: return "repo.json"
        case .channel(let name): return "channels/\(name).json"
        case .manifest(let image, let version): return Repository.manifestPath(image: image, version: version)
        case .deltaIndex(let image, let version): return DeltaIndex.path(image: image, version: version)
        case .pack(let image, let version): return PackIndex.packPath(image: image, version: version)
        case .blob(let hash): return "blobs/\(hash.hex.prefix(2))/\(hash.hex)"
        case .delta(let base, let target): return ContentDelta.path(base: base, target: target)
        }
    }

    /// Whether the file may be replaced by a newer one at the same path (a channel, the config);
    /// everything else is named by what it holds.
    public var isMutable: Bool {
        switch self {
        case .config, .channel: return true
        default: return false
        }
    }

    /// Whether it is content (blob, delta, pack), which a mirror's cache bound evicts, rather than
    /// a document, which it keeps.
    public var isContent: Bool {
        switch self {
        case .blob, .delta, .pack: return true
        default: return false
        }
    }
}
