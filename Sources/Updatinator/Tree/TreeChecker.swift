/// Compares a tree (and optionally a repository's blobs) against a manifest and lists every difference.
public struct TreeChecker {
    /// One difference, described for a person.
    public struct Finding: Sendable, CustomStringConvertible {
        public let path: String
        public let problem: String
        public var description: String { "\(path): \(problem)" }
    }

    public let manifest: Manifest
    public var workers = Parallel.defaultWorkers

    public init(manifest: Manifest) {
        self.manifest = manifest
    }

    /// Every difference between the tree at `root` and the manifest. Refused (`busy`) while an
    /// apply is moving the tree, whose half-moved state is no finding.
    /// For a running system's root (`machine`), its machine's paths and `/etc` are not checked.
    public func checkTree(root: String, machine: MachinePaths = .none) throws -> [Finding] {
        let lock = try StateDirectory(root: root).lockShared()
        defer { lock.map(Sys.close) }
        let (expected, excluded) = machine.imagePart(of: manifest)
        var checker = TreeChecker(manifest: expected)
        checker.workers = workers
        return try checker.checkTree(root: root, known: [:], excluding: excluded)
    }

    /// Every difference between the tree at `root` and the manifest, without the excluded
    /// paths (and what is beneath them). Files still as they were when `known` records them
    /// are not hashed again.
    func checkTree(root: String, known: [ManifestPath: KnownContent], excluding excluded: [ManifestPath] = []) throws -> [Finding] {
        var comparison = TreeComparison(root: root, manifest: manifest, known: known, excluded: Set(excluded), workers: workers)
        try comparison.run()
        var findings = [Finding]()
        for e in comparison.missing { findings.append(Finding(path: e.path.description, problem: "missing (\(e.kind.typeName) expected)")) }
        for e in comparison.unexpected { findings.append(Finding(path: e.path.description, problem: "unexpected \(e.kind.typeName)")) }
        for c in comparison.differences where !Self.differsOnlyInSymlinkMode(c) {
            findings.append(Finding(path: c.path.description, problem: Self.describe(c)))
        }
        return findings.sorted { $0.path < $1.path }
    }

    /// Every blob of the manifest that the store lacks, or that is corrupt or of the wrong size.
    public func checkBlobs(_ store: BlobStore) throws -> [Finding] {
        let contents = manifest.contents.sorted { $0.key < $1.key }
        let findings = Locked<[Finding]>([])
        try Parallel.forEach(contents.count, workers: workers) { i in
            let (hash, sizes) = contents[i]
            let problem: String?
            do {
                if let blobSize = try store.blobSize(of: hash) {
                    if blobSize != sizes.blobSize {
                        problem = "blob is \(blobSize) bytes, the manifest says \(sizes.blobSize)"
                    } else {
                        try store.verify(hash, size: sizes.size)
                        problem = nil
                    }
                } else {
                    problem = "blob missing"
                }
            } catch let error as UpdError where error.code == .corrupt {
                problem = "blob corrupt: \(error.message)"
            }
            if let problem { findings.withLock { $0.append(Finding(path: store.path(for: hash), problem: problem)) } }
        }
        return findings.withLock { $0 }.sorted { $0.path < $1.path }
    }

    /// Whether two entries are symlinks that differ in their mode alone: Linux gives every
    /// symlink mode 0777 and cannot change it, so apply does not set it and fsck does not compare it.
    static func differsOnlyInSymlinkMode(_ c: ManifestDiff.Change) -> Bool {
        guard c.aspects == .metadata, c.old.kind.letter == "l" else { return false }
        var new = c.new.metadata
        new.mode = c.old.metadata.mode
        return new == c.old.metadata
    }

    static func describe(_ c: ManifestDiff.Change) -> String {
        if c.aspects.contains(.type) {
            return "is a \(c.new.kind.typeName), expected a \(c.old.kind.typeName)"
        }
        var parts = [String]()
        if c.aspects.contains(.content) {
            switch (c.old.kind, c.new.kind) {
            case (.file(let s1, let h1, _), .file(let s2, let h2, _)):
                parts.append("content differs (\(s2) bytes \(h2.hex.prefix(12))…, expected \(s1) bytes \(h1.hex.prefix(12))…)")
            case (.symlink(let t1), .symlink(let t2)):
                parts.append("link target is \(ByteEscaping.escape(t2)), expected \(ByteEscaping.escape(t1))")
            case (.hardlink(let t1), .hardlink(let t2)):
                parts.append("hardlinked to \(t2), expected \(t1)")
            default:
                parts.append("device numbers differ")
            }
        }
        let a = c.old.metadata, b = c.new.metadata
        if a.mode != b.mode && c.old.kind.letter != "l" { parts.append("mode \(ManifestWriter.octal4(b.mode)), expected \(ManifestWriter.octal4(a.mode))") }
        if a.uid != b.uid { parts.append("uid \(b.uid), expected \(a.uid)") }
        if a.gid != b.gid { parts.append("gid \(b.gid), expected \(a.gid)") }
        if a.mtime != b.mtime { parts.append("mtime \(ManifestWriter.timestamp(b.mtime)), expected \(ManifestWriter.timestamp(a.mtime))") }
        if a.xattrs != b.xattrs { parts.append("extended attributes differ") }
        return parts.joined(separator: "; ")
    }
}
