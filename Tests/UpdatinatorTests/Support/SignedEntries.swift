@testable import Updatinator

/// Manifest entries made in memory (their contents stored as blobs in `blobs`) and the signed
/// manifests of them, for tests that need exact images rather than generated ones.
struct SignedEntries {
    let directory: String
    let key: SecretKey
    let blobs: String
    let image: String
    let meta = Metadata(mode: 0o755, uid: 0, gid: 0, mtime: Timestamp(seconds: 1_600_000_000, nanoseconds: 0))

    /// Entries whose manifests are written in `directory` and whose blobs go to `blobs`.
    init(directory: String, key: SecretKey, blobs: String, image: String) {
        self.directory = directory
        self.key = key
        self.blobs = blobs
        self.image = image
    }

    func dir(_ path: String) throws -> ManifestEntry {
        ManifestEntry(path: try ManifestPath(path), kind: .directory, metadata: meta)
    }

    func file(_ path: String, _ content: String, mode: UInt32 = 0o755) throws -> ManifestEntry {
        let stored = try BlobStore(directory: blobs).store(bytes: Array(content.utf8))
        var m = meta
        m.mode = mode
        return ManifestEntry(path: try ManifestPath(path),
                             kind: .file(size: UInt64(content.utf8.count), hash: stored.hash, blobSize: stored.blobSize), metadata: m)
    }

    /// Writes and signs the manifest of version `version` with `entries` (sorted here); its path.
    func signed(_ version: String, _ entries: [ManifestEntry]) throws -> String {
        try signed(version, text: ManifestWriter.write(Manifest(image: image, version: version, entries: entries.sorted { $0.path < $1.path })))
    }

    /// Writes and signs manifest text as it is; its path.
    func signed(_ version: String, text: [UInt8]) throws -> String {
        let path = "\(directory)/\(version).manifest"
        try Sys.writeFileAtomically(path, text)
        try SignedDocument.signManifest(at: path, with: key)
        return path
    }
}
