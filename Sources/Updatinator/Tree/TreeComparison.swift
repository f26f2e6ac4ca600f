import Glibc

/// Compares a tree with a manifest as it walks the tree, so that its memory does not grow with
/// the image: it holds the directories still to visit, the files waiting to be hashed (at most
/// `batchFiles` of them, hashed on all cores), the names of inodes with several links, and a
/// flag for each manifest entry.
///
/// It finds what `TreeScanner` would describe differently from the manifest: an inode's first
/// name in path order is its file entry and its later names are hardlinks to that one.
struct TreeComparison {
    let root: String
    let fs: FileSystemPath
    let manifest: Manifest
    /// Files still as they were when verified by hash are not read again (`KnownContent`).
    let known: [ManifestPath: KnownContent]
    /// Paths left out with everything beneath them.
    let excluded: Set<ManifestPath>
    let workers: Int
    static let batchFiles = 4096

    private(set) var differences = [ManifestDiff.Change]()
    private(set) var unexpected = [ManifestEntry]()
    private var seen: [Bool]
    /// Regular files whose content is to be hashed, with what the tree says of them otherwise.
    private var toHash = [(entry: ManifestEntry, size: UInt64)]()
    /// Each inode with more than one link: its first name in path order so far (the manifest's
    /// copy of the path when it has one), and its other names. Each name is compared when it is
    /// met: the first as the file, a later one as a hardlink to it.
    private var multiplyLinked = [TreeScanner.InodeKey: Names]()
    /// The inodes a name came to that sorts before the first met, with their metadata: their
    /// other names were compared against another file, and are compared again at the end.
    private var reordered = [TreeScanner.InodeKey: Metadata]()

    private struct Names {
        var first: ManifestPath
        var others = [ManifestPath]()
    }

    init(root: String, manifest: Manifest, known: [ManifestPath: KnownContent], excluded: Set<ManifestPath>, workers: Int) {
        self.root = root
        fs = FileSystemPath(root: root)
        self.manifest = manifest
        self.known = known
        self.excluded = excluded
        self.workers = workers
        seen = [Bool](repeating: false, count: manifest.entries.count)
    }

    /// Walks the tree; then `differences`, `unexpected` and `missing` say how it differs.
    mutating func run() throws {
        try TreeScanner.walk(root: root, fs: fs, excluding: excluded) { try visit($0, $1, linkTarget: $2, xattrs: $3) }
        try hashPending()
        compareReordered()
    }

    /// The manifest's entries the tree lacks.
    var missing: [ManifestEntry] {
        manifest.entries.indices.filter { !seen[$0] }.map { manifest.entries[$0] }
    }

    private mutating func visit(_ path: ManifestPath, _ st: stat, linkTarget: [UInt8], xattrs: [ExtendedAttribute]) throws {
        let (metadata, special) = try TreeScanner.describe(path, st, linkTarget: linkTarget, xattrs: xattrs, fs: fs)
        if let special { return compare(ManifestEntry(path: path, kind: special, metadata: metadata)) }
        // A regular file: its hash, when not known, is the batch's to find.
        let knownHash = known[path].flatMap { $0.matches(st) ? $0.hash : nil }
        let entry = ManifestEntry(path: path, kind: .file(size: UInt64(st.st_size), hash: knownHash ?? .empty, blobSize: 0), metadata: metadata)
        if st.st_nlink > 1 {
            let key = TreeScanner.InodeKey(st)
            // (The manifest's copy of the path, when it has one, is the one held.)
            let held = manifest.index(of: path).map { manifest.entries[$0].path } ?? path
            guard let first = multiplyLinked[key]?.first else {
                multiplyLinked[key] = Names(first: held)
                return try compareFile(entry, hashed: knownHash != nil)
            }
            if path < first {
                // (The walk meets a directory's names before those beneath it, and takes the
                // directories last in, first out: not in path order.)
                multiplyLinked[key]!.others.append(first)
                multiplyLinked[key]!.first = held
                reordered[key] = metadata
                try compareFile(entry, hashed: knownHash != nil)
            } else {
                multiplyLinked[key]!.others.append(held)
                compare(ManifestEntry(path: path, kind: .hardlink(target: first), metadata: metadata))
            }
        } else {
            try compareFile(entry, hashed: knownHash != nil)
        }
    }

    /// Compares a file whose content is known, or hashes it first (in a batch with others).
    private mutating func compareFile(_ entry: ManifestEntry, hashed: Bool) throws {
        guard case .file(let size, _, _) = entry.kind, !hashed, size > 0 else { return compare(entry) }
        toHash.append((entry, size))
        if toHash.count >= Self.batchFiles { try hashPending() }
    }

    private mutating func hashPending() throws {
        guard !toHash.isEmpty else { return }
        let files = toHash
        toHash = []
        let hashes = UnsafeSendable(UnsafeMutableBufferPointer<ContentHash>.allocate(capacity: files.count))
        hashes.value.initialize(repeating: .empty)
        defer { hashes.value.deallocate() }
        // The largest first, so that no worker is left with a large file when the others are done.
        let order = files.indices.sorted { files[$0].size > files[$1].size }
        let fs = self.fs
        try Parallel.forEach(files.count, workers: workers, perWorker: { try BlobWorkspace(level: 1, libdeflate: false) }) { workspace, i in
            let (entry, size) = files[order[i]]
            hashes.value[order[i]] = try TreeScanner.hashFile(fs: fs, path: entry.path, expectedSize: size, batch: nil, workspace: workspace).hash
        }
        for (i, file) in files.enumerated() {
            compare(ManifestEntry(path: file.entry.path, kind: .file(size: file.size, hash: hashes.value[i], blobSize: 0),
                                  metadata: file.entry.metadata))
        }
    }

    /// The names of an inode a name came to that sorts before the first met: the first in path
    /// order is the file, each other name a hardlink to it (not to the file it was compared with).
    private mutating func compareReordered() {
        guard !reordered.isEmpty else { return }
        var again = [ManifestEntry]()
        for (key, metadata) in reordered {
            let names = multiplyLinked[key]!
            again += names.others.map { ManifestEntry(path: $0, kind: .hardlink(target: names.first), metadata: metadata) }
        }
        let paths = Set(again.map(\.path))
        differences.removeAll { paths.contains($0.new.path) }
        unexpected.removeAll { paths.contains($0.path) }
        again.forEach { compare($0) }
    }

    private mutating func compare(_ actual: ManifestEntry) {
        guard let i = manifest.index(of: actual.path) else { return unexpected.append(actual) }
        seen[i] = true
        let expected = manifest.entries[i]
        let aspects = ManifestDiff.compare(expected, actual)
        if !aspects.isEmpty { differences.append(ManifestDiff.Change(old: expected, new: actual, aspects: aspects)) }
    }
}
