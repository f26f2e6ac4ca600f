import Glibc

/// A repository directory as a build server publishes it: repo.json, images/, blobs/, channels/, keys/.
public struct Repository: Sendable {
    public let root: String
    public let config: RepoConfig
    public let blobs: BlobStore

    public var configPath: String { "\(root)/repo.json" }

    /// Opens an existing repository.
    public init(opening root: String) throws {
        let path = "\(root)/repo.json"
        guard (try Sys.lstatIfExists(path)) != nil else {
            throw UpdError(.usage, "\(root) is not a repository: it has no repo.json")
        }
        let config = try RepoConfig.parse(Sys.readFile(path, limit: 64 * 1024), source: path)
        self.init(root: root, config: config)
    }

    /// Opens a repository, creating it with `compressionLevel` when it does not exist yet.
    /// An existing repository must use the same level, since manifests record blob sizes.
    public init(creatingAt root: String, compressionLevel: Int32? = nil) throws {
        if (try Sys.lstatIfExists("\(root)/repo.json")) != nil {
            try self.init(opening: root)
            if let level = compressionLevel, level != config.compressionLevel {
                throw UpdError(.usage, "\(root) uses compression level \(config.compressionLevel), not \(level)")
            }
            return
        }
        let config = RepoConfig(compressionLevel: compressionLevel ?? RepoConfig.defaultCompressionLevel)
        try Sys.mkdirs(root)
        try Sys.mkdirs("\(root)/blobs")
        try Sys.writeFileAtomically("\(root)/repo.json", config.encoded())
        self.init(root: root, config: config)
    }

    private init(root: String, config: RepoConfig) {
        self.root = root
        self.config = config
        blobs = BlobStore(directory: "\(root)/blobs", compressionLevel: config.compressionLevel)
    }

    /// Where an image version's manifest lives, relative to the repository root.
    public static func manifestPath(image: String, version: String) -> String {
        versionPath(image: image, version: version, suffix: ".manifest")
    }

    /// Where a file of an image version lives (its manifest, delta index, pack), relative to the root.
    public static func versionPath(image: String, version: String, suffix: String) -> String {
        "images/\(image)/\(version)\(suffix)"
    }

    public func manifestPath(image: String, version: String) -> String {
        "\(root)/\(Self.manifestPath(image: image, version: version))"
    }

    public func channelPath(_ channel: String) -> String {
        "\(root)/channels/\(channel).json"
    }
}
