/// Where an update's contents come from, as a front end describes it.
///
/// The engine resolves it once per operation (`ResolvedSources`): this is the one place that
/// chooses among the tree's own files, local blob directories, mirrors' blobs, their signed
/// deltas and pack, and a school server's batches.
public struct ContentSources: Sendable {
    /// Directories in repository layout (a USB stick, a cache) read before any download.
    public var blobDirectories: [String] = []
    /// The mirrors to download from, with the transport's limits; nil when nothing may be downloaded.
    public var mirrors: FetchOptions?
    /// Verifies the mirrors' delta index: deltas and the pack are used only when it is given and
    /// the index verifies (they only save bytes, so an unusable index is a warning).
    public var deltaKeyring: Keyring?
    /// A school server that compresses the contents in batches against the tree's files; when
    /// given, deltas and packs are not used.
    public var batchServer: String?
    /// This device's id and key, which sign batch requests (the server refuses unsigned ones).
    public var signer: RequestSigner?
    /// The most compressed bytes downloaded ahead of their use. When the filesystem lacks the
    /// space for that, an apply downloads one content at a time.
    public var downloadWindow: UInt64 = ContentSources.defaultDownloadWindow
    public static let defaultDownloadWindow: UInt64 = 32 << 20

    public init(blobDirectories: [String] = [], mirrors: FetchOptions? = nil, deltaKeyring: Keyring? = nil,
                batchServer: String? = nil, signer: RequestSigner? = nil) {
        self.blobDirectories = blobDirectories
        self.mirrors = mirrors
        self.deltaKeyring = deltaKeyring
        self.batchServer = batchServer
        self.signer = signer
    }
}

/// An operation's view of the engine's side effects that a front end shows: warnings that never
/// stop an update, progress, and the fetcher once made (for a progress bar or a script's rate rules).
public struct UpdateObserver {
    public var warn: (String) -> Void
    /// Called on the applying thread at most five times a second; throwing stops the operation
    /// at a resumable point.
    public var progress: ((ApplyProgress) throws -> Void)?
    public var fetcherMade: (CurlFetcher) -> Void

    public init(warn: @escaping (String) -> Void = { _ in }, progress: ((ApplyProgress) throws -> Void)? = nil,
                fetcherMade: @escaping (CurlFetcher) -> Void = { _ in }) {
        self.warn = warn
        self.progress = progress
        self.fetcherMade = fetcherMade
    }
}

/// The sources of one operation towards one target: the fetcher, and the delta index, pack or
/// batch server the contents to download come through.
final class ResolvedSources {
    let blobDirectories: [String]
    let fetcher: CurlFetcher?
    let deltaIndex: DeltaIndex?
    let pack: (mirror: String, index: PackIndex)?
    let batchServer: String?
    let signer: RequestSigner?
    let downloadWindow: UInt64

    init(_ sources: ContentSources, target: Manifest, observer: UpdateObserver) throws {
        blobDirectories = sources.blobDirectories
        signer = sources.signer
        downloadWindow = sources.downloadWindow
        guard let options = sources.mirrors else {
            (fetcher, deltaIndex, pack, batchServer) = (nil, nil, nil, nil)
            return
        }
        let fetcher = try CurlFetcher(options: options)
        observer.fetcherMade(fetcher)
        self.fetcher = fetcher
        batchServer = sources.batchServer
        if batchServer == nil, let keyring = sources.deltaKeyring {
            deltaIndex = fetcher.usableDeltaIndex(for: target, keyring: keyring, warn: observer.warn)
            pack = fetcher.announcedPack(for: target, deltas: deltaIndex)
        } else {
            (deltaIndex, pack) = (nil, nil)
        }
    }

    /// Downloads one content of the target from the mirrors into `directory` and streams it,
    /// verified, to the sink, removing its blob after, and returns the download's figures; nil
    /// without mirrors. The last resort of
    /// `ContentChain`, for a local copy that changed after it was planned.
    func fetchOne(target: Manifest, directory: String) -> ((ContentHash, UInt64, (UnsafeRawBufferPointer) throws -> Void) throws -> FetchReport)? {
        guard let fetcher else { return nil }
        let blobSizes = target.contents
        return { hash, size, sink in
            guard let blobSize = blobSizes[hash]?.blobSize else {
                throw UpdError(.corrupt, "content \(hash.hex) is not in \(target.image) \(target.version)")
            }
            try Sys.mkdirs(directory)
            let store = BlobStore(directory: directory)
            defer { Sys.unlink(store.path(for: hash)) }
            let fetched = try fetcher.fetch([BlobRequest(hash: hash, size: size, blobSize: blobSize, delta: nil)], into: store)
            try store.read(hash, size: size, sink: sink)
            return fetched
        }
    }

    /// Whether an apply plans its downloads in groups, for batches or the pack.
    var groupsDownloads: Bool { batchServer != nil || pack != nil }

    /// The stream the contents to download come through, in order of use; nil when there are
    /// none. With `batches` (a resumed apply decides from its journal), a school server's
    /// batches; else, for requests planned in `groups`, the pack when there is one; else blob
    /// (or delta) by blob.
    func downloads(_ requests: [BlobRequest], batches: Bool, groups: Bool, target: Manifest, baseSizes: [ContentHash: UInt64],
                   directory: String, window: UInt64) throws -> ContentDownloads? {
        guard !requests.isEmpty else { return nil }
        guard let fetcher else {
            throw UpdError(.usage, "\(requests.count) contents of \(target.image) \(target.version) are in no blob directory; give a mirror to download them from")
        }
        if batches, let batchServer {
            return try BatchStream(source: .server(batchServer), signer: signer, mirrors: fetcher, requests: requests,
                                   baseSizes: baseSizes, directory: directory, window: window)
        }
        if !batches, groups, let pack {
            let path = PackIndex.packPath(image: target.image, version: target.version)
            return try BatchStream(source: .pack(mirror: pack.mirror, path: path, index: pack.index), signer: signer,
                                   mirrors: fetcher, requests: requests, baseSizes: baseSizes, directory: directory, window: window)
        }
        // (A resumed batch apply without its server downloads the blobs.)
        return try BlobStream(fetcher: fetcher, requests: batches ? requests.map(\.withoutDelta) : requests,
                              directory: directory, window: window)
    }
}
