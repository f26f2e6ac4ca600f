/// The differences between two manifests: entries added, removed and changed, and what moving costs.
public struct ManifestDiff: Sendable {
    /// What changed about an entry present in both manifests.
    public struct Aspects: OptionSet, Hashable, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// The entry type differs (file, directory, symlink, …).
        public static let type = Aspects(rawValue: 1)
        /// Same type, other content: file bytes, link target, device numbers.
        public static let content = Aspects(rawValue: 2)
        /// Mode, owner, group, mtime or extended attributes.
        public static let metadata = Aspects(rawValue: 4)

        public var names: [String] {
            [(Aspects.type, "type"), (.content, "content"), (.metadata, "metadata")]
                .filter { contains($0.0) }.map(\.1)
        }
    }

    public struct Change: Sendable {
        public let old: ManifestEntry
        public let new: ManifestEntry
        public let aspects: Aspects
        public var path: ManifestPath { new.path }
    }

    public private(set) var added: [ManifestEntry] = []
    public private(set) var removed: [ManifestEntry] = []
    public private(set) var changed: [Change] = []
    /// Raw bytes of regular files only in the new manifest, or whose content changed.
    public private(set) var addedFileBytes: UInt64 = 0
    /// Raw bytes of regular files only in the old manifest, or whose content changed.
    public private(set) var removedFileBytes: UInt64 = 0
    /// Contents of the new manifest that the old one does not have anywhere.
    public private(set) var newContents = 0
    /// Their compressed (download) size.
    public private(set) var newContentBlobBytes: UInt64 = 0

    public var isEmpty: Bool { added.isEmpty && removed.isEmpty && changed.isEmpty }

    /// Compares two manifests. Blob sizes are ignored: they describe a repository, not a tree.
    public init(from old: Manifest, to new: Manifest) {
        Self.forEachDifference(from: old, to: new) { difference in
            switch difference {
            case .removed(let e):
                removed.append(e)
                removedFileBytes += Self.fileSize(e)
            case .added(let e):
                added.append(e)
                addedFileBytes += Self.fileSize(e)
            case .changed(let change):
                changed.append(change)
                if !change.aspects.isDisjoint(with: [.type, .content]) {
                    removedFileBytes += Self.fileSize(change.old)
                    addedFileBytes += Self.fileSize(change.new)
                }
            }
        }
        let oldContents = old.contents
        for (hash, sizes) in new.contents where oldContents[hash] == nil {
            newContents += 1
            newContentBlobBytes += sizes.blobSize
        }
    }

    /// What differs at one path.
    enum Difference {
        case removed(ManifestEntry)
        case added(ManifestEntry)
        case changed(Change)
    }

    /// Calls `body` for each path the manifests do not agree on, in path order. Nothing is kept.
    static func forEachDifference(from old: Manifest, to new: Manifest, _ body: (Difference) throws -> Void) rethrows {
        var i = 0, j = 0
        let a = old.entries, b = new.entries
        while i < a.count || j < b.count {
            if j == b.count || (i < a.count && a[i].path < b[j].path) {
                try body(.removed(a[i]))
                i += 1
            } else if i == a.count || b[j].path < a[i].path {
                try body(.added(b[j]))
                j += 1
            } else {
                let aspects = compare(a[i], b[j])
                if !aspects.isEmpty { try body(.changed(Change(old: a[i], new: b[j], aspects: aspects))) }
                i += 1
                j += 1
            }
        }
    }

    public static func fileSize(_ e: ManifestEntry) -> UInt64 {
        if case .file(let size, _, _) = e.kind { return size }
        return 0
    }

    /// Which aspects differ between two entries at the same path.
    public static func compare(_ a: ManifestEntry, _ b: ManifestEntry) -> Aspects {
        var aspects: Aspects = []
        if a.kind.letter != b.kind.letter {
            aspects.insert(.type)
        } else {
            switch (a.kind, b.kind) {
            case (.file(let s1, let h1, _), .file(let s2, let h2, _)):
                if s1 != s2 || h1 != h2 { aspects.insert(.content) }
            default:
                if a.kind != b.kind { aspects.insert(.content) }
            }
        }
        if a.metadata != b.metadata { aspects.insert(.metadata) }
        return aspects
    }
}
