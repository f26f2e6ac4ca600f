import Glibc

/// How a fetcher talks to its mirrors.
public struct FetchOptions: Sendable {
    /// Repository roots, tried in order for each blob: `http://`, `https://` or `file://` URLs.
    public var mirrors: [String]
    /// Transfers at once.
    public var concurrency = 4
    /// One limit in bytes per second for all transfers together; nil for none.
    public var rateLimit: UInt64?
    /// A transfer slower than `lowSpeedLimit` bytes per second for `lowSpeedSeconds` is abandoned.
    public var lowSpeedLimit = 1024
    public var lowSpeedSeconds = 20
    public var connectTimeoutSeconds = 15
    /// A download (what is left of it, on each mirror) must be done within
    /// `deadlineAllowanceSeconds` plus its bytes at `minimumAverageRate` bytes per second: a
    /// mirror that trickles just above the low-speed limit is left all the same (`deadline`).
    public var minimumAverageRate: UInt64 = 8 * 1024
    public var deadlineAllowanceSeconds = 60
    /// The mirrors that are peers (devices nearby holding the image): they are tried first, and
    /// get `peerStallSeconds` to connect and to stall instead of the mirrors' 15 and 20.
    public private(set) var peers = Set<String>()
    public var peerStallSeconds = 3
    /// Tries of one blob on one mirror before moving to the next, for errors that may pass.
    public var attemptsPerMirror = 3
    /// The first retry's delay; each later one doubles, with ±50 % jitter, up to 8 s.
    public var retryDelay = 0.25
    /// A PEM file of the certificate authorities that https servers' certificates must chain to,
    /// instead of the system's store; nil for the system's store.
    public var caFile: String?

    public init(mirrors: [String]) {
        self.mirrors = mirrors.map(Self.normalized)
    }

    /// Peers first, then the mirrors.
    public init(peers: [String], mirrors: [String]) {
        self.init(mirrors: peers + mirrors)
        self.peers = Set(peers.map(Self.normalized))
    }

    private static func normalized(_ url: String) -> String { url.hasSuffix("/") ? String(url.dropLast()) : url }

    /// The seconds a transfer of `bytes` may take in all: the allowance, plus the bytes at the
    /// minimum average rate, or at half a transfer's share of a rate limit when that is lower.
    public func deadline(bytes: UInt64, rateLimit: UInt64?) -> Double {
        var rate = Double(minimumAverageRate)
        if let rateLimit { rate = min(rate, Double(rateLimit) / Double(concurrency) / 2) }
        return Double(deadlineAllowanceSeconds) + Double(bytes) / max(rate, 1)
    }

    /// Checks that every mirror is a URL this fetcher can use.
    public func validate() throws {
        guard !mirrors.isEmpty else { throw UpdError(.usage, "no mirror given") }
        for m in mirrors where !(m.hasPrefix("http://") || m.hasPrefix("https://") || m.hasPrefix("file://")) {
            throw UpdError(.usage, "mirror \(m): only http://, https:// and file:// URLs are supported")
        }
        guard concurrency >= 1 else { throw UpdError(.usage, "concurrency must be at least 1") }
        if rateLimit == 0 { throw UpdError(.usage, "a rate limit must be at least 1 byte per second") }
        guard minimumAverageRate >= 1, deadlineAllowanceSeconds >= 1, peerStallSeconds >= 1 else {
            throw UpdError(.usage, "a minimum rate, a deadline allowance and a peer stall time must be at least 1")
        }
        if let caFile, access(caFile, R_OK) != 0 { throw UpdError(.usage, "CA file \(caFile): \(String(cString: strerror(errno)))") }
    }
}

/// Where a fetch stands, for progress displays.
public struct FetchProgress: Sendable {
    public var bytes: UInt64
    public var totalBytes: UInt64
    public var blobs: Int
    public var totalBlobs: Int
    /// Bytes per second since the start.
    public var rate: Double
    /// Seconds left at that rate, when known.
    public var secondsLeft: Double?
}

/// What a fetch did.
public struct FetchReport: Sendable {
    public var blobs = 0
    public var bytes: UInt64 = 0
    public var retries = 0
    public var failovers = 0
    public var seconds = 0.0
}

/// One content to fetch: its hash, raw size and compressed size (the most a mirror may send),
/// and the delta to fetch instead of the blob, when the plan chose one.
public struct BlobRequest: Sendable, Hashable {
    public let hash: ContentHash
    public let size: UInt64
    public let blobSize: UInt64
    public let delta: DeltaIndex.Delta?

    public init(hash: ContentHash, size: UInt64, blobSize: UInt64, delta: DeltaIndex.Delta? = nil) {
        self.hash = hash
        self.size = size
        self.blobSize = blobSize
        self.delta = delta
    }

    /// The bytes a mirror sends for it.
    public var downloadBytes: UInt64 { delta?.bytes ?? blobSize }

    /// The same content, as its whole blob.
    public var withoutDelta: BlobRequest { BlobRequest(hash: hash, size: size, blobSize: blobSize) }
}
