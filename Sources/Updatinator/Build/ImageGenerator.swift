import Foundation

/// Turns an image tree into a manifest and blobs in a repository, optionally signed: `generate`.
public struct ImageGenerator {
    /// What one generation produced.
    public struct Result: Sendable {
        public let manifest: Manifest
        public let manifestPath: String
        public let statistics: TreeScanner.Statistics
        public let signedBy: String?
    }

    public var tree: String
    public var repositoryRoot: String
    public var image: String
    public var version: String
    public var signingKey: SecretKey?
    /// The creation time to record (the CLI passes SOURCE_DATE_EPOCH); none by default, so that output is reproducible.
    public var created: Int64?
    public var compressionLevel: Int32?
    /// Whether blobs are written by libdeflate when the system has it (else by zlib): the same
    /// format either way, but other bytes and sizes, which a manifest records.
    public var libdeflate = true
    public var workers = Parallel.defaultWorkers
    public var progress: (@Sendable (TreeScanner.Progress) -> Void)?

    public init(tree: String, repository: String, image: String, version: String) {
        self.tree = tree
        self.repositoryRoot = repository
        self.image = image
        self.version = version
    }

    public func run() throws -> Result {
        try Manifest.checkName(image, what: "image name")
        try Manifest.checkName(version, what: "version")
        let repository = try Repository(creatingAt: repositoryRoot, compressionLevel: compressionLevel)
        var scanner = TreeScanner(root: tree, blobs: repository.blobs)
        scanner.workers = workers
        scanner.libdeflate = libdeflate
        scanner.progress = progress
        let (manifest, stats, batch) = try scanner.scanUncommitted(image: image, version: version, created: created)

        // The manifest is made while the blobs are flushed to disk, and written only after.
        let (path, tree) = (repository.manifestPath(image: image, version: version), self.tree)
        let prepared = Locked<(bytes: [UInt8], copy: [UInt8])?>(nil)
        try Parallel.forEach(2, workers: 2) { task in
            if task == 0 {
                try batch?.commit()
            } else {
                let file = try Self.manifestFile(manifest, path: path, tree: tree)
                prepared.withLock { $0 = file }
            }
        }
        let (bytes, copy) = prepared.withLock { $0! }
        if (try Sys.lstatIfExists(path)) != nil {
            // A published version is immutable: clients may hold its manifest and signatures.
            guard try Sys.readFile(path, limit: ManifestParser.maxManifestBytes) == bytes else {
                throw UpdError(.usage, "\(path) already exists with different content; publish a new version instead")
            }
        } else {
            try Sys.mkdirs(Sys.parentDirectory(of: path))
            try CompressedCopy.write(path, bytes, compressed: copy)
        }
        var signer: String? = nil
        if let key = signingKey {
            signer = try SignedDocument.signManifest(at: path, with: key)
        }
        return Result(manifest: manifest, manifestPath: path, statistics: stats, signedBy: signer)
    }

    /// The manifest's text, checked as a client would parse it, and its compressed copy.
    private static func manifestFile(_ manifest: Manifest, path: String, tree: String) throws -> (bytes: [UInt8], copy: [UInt8]) {
        let bytes = ManifestWriter.write(manifest)
        // Publish nothing a client would refuse (an xattr too large, too many of them, …).
        do {
            _ = try ManifestParser.parse(bytes, source: path)
        } catch let e as UpdError {
            throw UpdError(.usage, "\(tree) cannot be an image: its manifest would break the format's limits: \(e.message)")
        }
        return (bytes, try CompressedCopy.compressed(bytes))
    }
}
