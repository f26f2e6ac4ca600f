import Foundation
import Glibc

/// A verifying pull-through copy of an upstream repository (a school server's copy of the
/// national one): a file it lacks is fetched from upstream when first asked for, checked, and
/// kept, so that a content crosses the upstream link once however many clients ask.
///
/// - Channels are verified against the build keyring, for their own name, unexpired, and never
///   older than the copy held (a replayed channel is refused); they are asked for again once
///   `channelMaxAge` has passed, and the copy held is served while upstream cannot be reached.
/// - Manifests and delta indexes are verified against the build keyring for the image and
///   version their path names, and kept with their signatures and a compressed copy made here.
/// - Blobs are fetched only when a verified manifest names them, checked by hash and size;
///   deltas only when a verified delta index names them, at its exact size, and patched against
///   their base to check the result when the base is held; packs only when a verified delta
///   index announces them, at their exact size, every blob in them checked by hash.
/// - Contents are kept within `cacheBytes` (`MirrorCache`), never evicting the contents of a
///   version marked in use (`markInUse`: a version a laptop was told to move to, or a followed
///   channel's).
///
/// Every method blocks on the network or the disk: the caller runs it on a thread of its own,
/// and makes concurrent requests for one file wait for one fetch.
public final class RepositoryMirror: Sendable {
    public struct Settings: Sendable {
        /// The upstream repository's URL.
        public var upstream: String
        /// The build keyring that manifests, delta indexes and channels must verify against.
        public var keyring: Keyring
        /// The most bytes of contents kept.
        public var cacheBytes: UInt64 = 16 << 30
        /// How long a channel file is served before upstream is asked for it again.
        public var channelMaxAge: TimeInterval = 60
        /// How long a version stays pinned after it was last marked in use.
        public var inUseSeconds: TimeInterval = 3600
        /// After upstream could not be reached, how long before it is tried again; meanwhile a
        /// file the mirror lacks fails at once.
        public var retryAfter: TimeInterval = 15
        public var caFile: String?

        public init(upstream: String, keyring: Keyring) {
            self.upstream = upstream
            self.keyring = keyring
        }

        /// How every transfer from upstream is made: the one mirror, the CA file, and a connect
        /// timeout shorter than a laptop's, so that an outage is noticed sooner.
        public var fetchOptions: FetchOptions {
            var options = FetchOptions(mirrors: [upstream])
            options.caFile = caFile
            options.connectTimeoutSeconds = 10
            return options
        }
    }

    /// What a fetch from upstream did.
    public struct Fetched: Sendable {
        public var files = 0
        public var bytes: UInt64 = 0
    }

    public let root: String
    public let settings: Settings
    let fetcher: CurlFetcher
    let cache: MirrorCache
    private let catalog = Locked(MirrorCatalog())
    private struct Freshness {
        var channelsChecked = [String: Date]()
        var unreachableUntil = Date.distantPast
        var inUse = [String: Date]()
    }
    private let freshness = Locked(Freshness())

    /// Opens the mirror's directory, creating it, and takes stock of what it holds: the
    /// manifests and delta indexes whose signatures verify, and the contents.
    public init(root: String, settings: Settings) throws {
        self.root = root
        self.settings = settings
        try Sys.mkdirs(root)
        fetcher = try CurlFetcher(options: settings.fetchOptions)
        cache = MirrorCache(root: root, bound: settings.cacheBytes)
        let files = FileManager.default
        for image in (try? files.contentsOfDirectory(atPath: "\(root)/images")) ?? [] where Manifest.problem(withName: image) == nil {
            for name in (try? files.contentsOfDirectory(atPath: "\(root)/images/\(image)")) ?? [] {
                let path = "\(root)/images/\(image)/\(name)"
                if name.hasSuffix(".manifest"), let verified = try? settings.keyring.verifiedManifest(at: path) {
                    catalog.withLock { $0.add(verified.manifest) }
                } else if name.hasSuffix(".deltas"), let (bytes, _) = try? settings.keyring.verifyFile(path, purpose: .deltas),
                          let index = try? DeltaIndex.parse(bytes, source: path), let named = index.image, let version = index.version,
                          named == image, name == "\(version).deltas" {
                    catalog.withLock { $0.add(index, image: image, version: version) }
                }
            }
        }
    }

    /// The bytes of contents held.
    public var cachedBytes: UInt64 { cache.totalBytes }

    /// Whether upstream answered the last time it was asked (or has not been asked since it failed
    /// to, for `retryAfter`).
    public var isReachable: Bool { freshness.withLock { $0.unreachableUntil <= Date() } }

    /// Whether `file` must be fetched before it is served: it is missing, or it is a channel or the
    /// config not checked for `channelMaxAge` (and upstream is not known to be unreachable).
    public func needsFetch(_ file: RepositoryFile) -> Bool {
        let present = (try? Sys.lstatIfExists("\(root)/\(file.path)")) != nil
        guard file.isMutable else { return !present }
        return freshness.withLock { state in
            if !present { return true }
            if state.unreachableUntil > Date() { return false }
            guard let checked = state.channelsChecked[file.path] else { return true }
            return Date().timeIntervalSince(checked) >= settings.channelMaxAge
        }
    }

    /// A content was served: it becomes the most recently used.
    public func used(_ file: RepositoryFile) {
        if file.isContent { cache.used(file.path) }
    }

    /// Pins the contents of a version for `inUseSeconds` from now: a laptop was told to move to
    /// it, or a followed channel names it.
    public func markInUse(image: String, version: String) {
        freshness.withLock { $0.inUse[MirrorCatalog.key(image, version)] = Date().addingTimeInterval(settings.inUseSeconds) }
    }

    /// Whether a verified manifest of the version is held.
    public func hasManifest(image: String, version: String) -> Bool {
        catalog.withLock { $0.manifests[MirrorCatalog.key(image, version)] != nil }
    }

    /// The contents of the version's manifest, when it is held.
    public func contents(image: String, version: String) -> [ContentHash]? {
        catalog.withLock { $0.manifests[MirrorCatalog.key(image, version)].map { Array($0.contents.keys) } }
    }

    /// Of `hashes`, those a verified manifest names and the mirror does not hold.
    public func missingContents(_ hashes: some Sequence<ContentHash>) -> [ContentHash] {
        let known = catalog.withLock { catalog in Set(hashes.filter { catalog.contents[$0] != nil }) }
        return known.filter { needsFetch(.blob($0)) }.sorted()
    }

    /// Fetches the files from upstream, verifies and stores them (contents in one transfer run,
    /// so several download at once), then trims the cache. Documents a channel or manifest needs
    /// come with it. Throws `network` when upstream lacks one or cannot be reached, `usage` for a
    /// content no verified document names, and `verification` or `corrupt` when what upstream
    /// sent is refused; what verified is kept either way.
    @discardableResult
    public func fetch(_ files: [RepositoryFile], via fetcher: CurlFetcher? = nil) throws -> Fetched {
        let fetcher = fetcher ?? self.fetcher
        let until = freshness.withLock { $0.unreachableUntil }
        if until > Date() {
            throw UpdError(.network, "upstream \(settings.upstream) is unreachable; trying again after \(Int(until.timeIntervalSinceNow.rounded(.up))) s")
        }
        var fetched = Fetched()
        do {
            var contents = [BlobRequest]()
            var deltas = [BlobRequest]()
            for file in files {
                switch file {
                case .config: fetched.bytes += try fetchConfig(fetcher)
                case .channel(let name): fetched.bytes += try fetchChannel(name, fetcher)
                case .manifest(let image, let version): fetched.bytes += try fetchManifest(image, version, fetcher)
                case .deltaIndex(let image, let version): fetched.bytes += try fetchDeltaIndex(image, version, fetcher)
                case .pack(let image, let version): fetched.bytes += try fetchPack(image, version, fetcher)
                case .blob(let hash): contents.append(try blobRequest(hash)); continue
                case .delta(let base, let target): deltas.append(try deltaRequest(base: base, target: target)); continue
                }
                fetched.files += 1
            }
            if !contents.isEmpty {
                let report = try fetcher.fetch(contents, into: BlobStore(directory: "\(root)/blobs"))
                for request in contents { cache.added(RepositoryFile.blob(request.hash).path, bytes: request.blobSize) }
                fetched.files += contents.count
                fetched.bytes += report.bytes
            }
            if !deltas.isEmpty {
                let report = try fetcher.fetch(deltas, into: BlobStore(directory: "\(root)/deltas"))
                for request in deltas { try checkDelta(request) }
                fetched.files += deltas.count
                fetched.bytes += report.bytes
            }
        } catch let error as UpdError where error.code == .network {
            // What failed, asked of upstream once more, on a connection of its own: no answer is
            // an outage; an answer but 200 means it lacks the file; 200 means what it sent was refused.
            // (A HEAD has no body, but its Content-Length must not trip the cap on answers' sizes.)
            switch try? CurlFetcher(options: settings.fetchOptions).call("HEAD", files[0].path, to: settings.upstream, body: nil, headers: [],
                                                            maxResponseBytes: 1 << 40, deadlineSeconds: 10).status {
            case nil:
                freshness.withLock { $0.unreachableUntil = Date().addingTimeInterval(settings.retryAfter) }
                throw UpdError(.network, "upstream \(settings.upstream) is unreachable: \(error.message)")
            case 200?:
                throw UpdError(.corrupt, error.message)
            default:
                throw error
            }
        }
        // What was fetched for this call stays until its caller has served it.
        trim(keeping: Set(files.filter(\.isContent).map(\.path)))
        return fetched
    }

    /// Removes least recently used contents over the bound, keeping those of versions in use
    /// and `kept`.
    public func trim(keeping kept: Set<String> = []) {
        guard cache.isOverBound else { return }
        let now = Date()
        let inUse = freshness.withLock { state in
            state.inUse = state.inUse.filter { $0.value > now }
            return Array(state.inUse.keys)
        }
        let hashes: Set<String> = catalog.withLock { catalog in
            Set(inUse.flatMap { catalog.manifests[$0]?.contents.keys.map(\.hex) ?? [] })
        }
        let packs = Set(inUse.map { "images/\($0).pack" })
        cache.trim { path in
            if kept.contains(path) || packs.contains(path) { return true }
            // A pinned content's blob, and a delta into one (`deltas/HH/BASE-TARGET`), are pinned.
            guard let name = path.split(separator: "/").last else { return false }
            if path.hasPrefix("blobs/") { return hashes.contains(String(name)) }
            if path.hasPrefix("deltas/"), let target = name.split(separator: "-").last { return hashes.contains(String(target)) }
            return false
        }
    }

    // MARK: Documents

    private func writeAtomically(_ path: String, _ bytes: [UInt8]) throws {
        try Sys.mkdirs(Sys.parentDirectory(of: "\(root)/\(path)"))
        try Sys.writeFileAtomically("\(root)/\(path)", bytes)
    }

    private func fetchConfig(_ fetcher: CurlFetcher) throws -> UInt64 {
        let download = "\(root)/.repo.json.download"
        defer { Sys.unlink(download) }
        try fetcher.fetchFile(RepositoryFile.config.path, to: download, maxBytes: 64 * 1024)
        let bytes = try Sys.readFile(download, limit: 64 * 1024)
        _ = try RepoConfig.parse(bytes, source: "\(settings.upstream)/repo.json")
        try writeAtomically(RepositoryFile.config.path, bytes)
        freshness.withLock { $0.channelsChecked[RepositoryFile.config.path] = Date() }
        return UInt64(bytes.count)
    }

    private func fetchChannel(_ name: String, _ fetcher: CurlFetcher) throws -> UInt64 {
        let path = RepositoryFile.channel(name).path
        let held = try? ChannelMetadata.parse(Sys.readFile("\(root)/\(path)", limit: 64 * 1024), source: path)
        let now = Int64(Date().timeIntervalSince1970)
        let got = try fetcher.fetchSigned(path, maxBytes: 64 * 1024) { got in
            _ = try ChannelMetadata.verify(got.content, signatures: SignatureFile.parse(got.signature!, source: path + ".sig"),
                                           keyring: settings.keyring, channel: name, source: "\(settings.upstream)/\(path)",
                                           now: now, minimumSerial: held?.serial ?? 0)
            return got
        }
        // The signature first, as `publish` writes them: a new channel file never sits beside an old signature that verifies it.
        try writeAtomically(path + ".sig", got.signature!)
        try writeAtomically(path, got.content)
        freshness.withLock { $0.channelsChecked[path] = Date() }
        return UInt64(got.content.count + got.signature!.count)
    }

    private func fetchManifest(_ image: String, _ version: String, _ fetcher: CurlFetcher) throws -> UInt64 {
        let downloaded = try fetcher.downloadManifest(image: image, version: version, into: nil, keyring: settings.keyring)
        let path = Repository.manifestPath(image: image, version: version)
        try writeAtomically(path + ".sig", downloaded.download.signature!)
        try Sys.mkdirs(Sys.parentDirectory(of: "\(root)/\(path)"))
        try CompressedCopy.write("\(root)/\(path)", downloaded.download.content)
        catalog.withLock { $0.add(downloaded.manifest) }
        return UInt64(downloaded.download.content.count + downloaded.download.signature!.count)
    }

    private func fetchDeltaIndex(_ image: String, _ version: String, _ fetcher: CurlFetcher) throws -> UInt64 {
        let (index, download) = try fetcher.downloadSignedDeltaIndex(image: image, version: version, keyring: settings.keyring)
        let path = DeltaIndex.path(image: image, version: version)
        try writeAtomically(path + ".sig", download.signature!)
        try CompressedCopy.write("\(root)/\(path)", download.content)
        catalog.withLock { $0.add(index, image: image, version: version) }
        return UInt64(download.content.count + download.signature!.count)
    }

    // MARK: Contents

    private func blobRequest(_ hash: ContentHash) throws -> BlobRequest {
        guard let content = catalog.withLock({ $0.contents[hash] }) else {
            throw UpdError(.usage, "content \(hash.hex) is named by no manifest this mirror holds")
        }
        return BlobRequest(hash: hash, size: content.size, blobSize: content.blobSize)
    }

    private func deltaRequest(base: ContentHash, target: ContentHash) throws -> BlobRequest {
        let (content, bytes) = catalog.withLock { ($0.contents[target], $0.deltas[MirrorCatalog.deltaKey(base, target)]) }
        guard let content, let bytes else {
            throw UpdError(.usage, "delta \(base.hex)-\(target.hex) is named by no delta index and manifest this mirror holds")
        }
        return BlobRequest(hash: target, size: content.size, blobSize: content.blobSize,
                           delta: DeltaIndex.Delta(base: base, bytes: bytes))
    }

    /// A delta arrived at its exact size; patched against its base when the mirror holds that,
    /// it must give its target. A delta that does not is removed.
    private func checkDelta(_ request: BlobRequest) throws {
        let delta = request.delta!
        let path = ContentDelta.path(base: delta.base, target: request.hash)
        cache.added(path, bytes: delta.bytes)
        guard delta.base != .empty, let base = catalog.withLock({ $0.contents[delta.base] }),
              (try? Sys.lstatIfExists("\(root)/\(RepositoryFile.blob(delta.base).path)")) != nil else { return }
        do {
            let baseBytes = try BlobStore(directory: "\(root)/blobs").readAll(delta.base, size: base.size)
            try ContentDelta.decode(deltaAt: "\(root)/\(path)", base: baseBytes, target: request.hash, size: request.size) { _ in }
        } catch {
            Sys.unlink("\(root)/\(path)")
            throw UpdError(.corrupt, "\(settings.upstream)/\(path): \(error)")
        }
    }

    /// The version's pack, whole, at the size its verified delta index announces, every blob in
    /// it checked by hash before it gets its name.
    private func fetchPack(_ image: String, _ version: String, _ fetcher: CurlFetcher) throws -> UInt64 {
        let key = MirrorCatalog.key(image, version)
        if catalog.withLock({ $0.manifests[key] == nil }) { _ = try fetchManifest(image, version, fetcher) }
        if catalog.withLock({ $0.packs[key] == nil }) { _ = try fetchDeltaIndex(image, version, fetcher) }
        guard let layout = catalog.withLock({ $0.packs[key] }) else {
            throw UpdError(.network, "\(PackIndex.packPath(image: image, version: version)): its delta index announces no pack")
        }
        let path = PackIndex.packPath(image: image, version: version)
        let partial = "\(root)/\(path).partial"
        let report = try fetcher.fetchFile(path, to: partial, maxBytes: layout.bytes)
        do {
            try Self.checkPack(at: partial, layout: layout, contents: catalog.withLock { $0.contents })
        } catch {
            Sys.unlink(partial)
            throw error
        }
        guard rename(partial, "\(root)/\(path)") == 0 else { throw UpdError.system("rename", partial) }
        cache.added(path, bytes: layout.bytes)
        return report.bytes
    }

    /// Checks a pack's size and each blob in it (inflated, hashed); its deltas are checked by
    /// whoever patches them.
    static func checkPack(at path: String, layout: PackIndex, contents: [ContentHash: MirrorCatalog.Content]) throws {
        let file = try Sys.openRegularFile(path)
        let st = try Sys.fstat(file.rawValue, path: path)
        guard UInt64(st.st_size) == layout.bytes else {
            throw UpdError(.corrupt, "\(path): \(st.st_size) bytes, not the \(layout.bytes) its delta index announces")
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        for entry in layout.entries where entry.base == nil {
            guard let content = contents[entry.target] else { continue }
            let hasher = Blake2b()
            let inflater = try ZlibInflater(expectedSize: content.size, source: path)
            var offset = entry.offset
            while offset < entry.offset + entry.bytes {
                let want = Int(min(UInt64(buffer.count), entry.offset + entry.bytes - offset))
                let n = buffer.withUnsafeMutableBytes { pread(file.rawValue, $0.baseAddress, want, off_t(offset)) }
                guard n == want else { throw UpdError.system("pread", path) }
                try buffer.withUnsafeBytes { try inflater.inflate(UnsafeRawBufferPointer(rebasing: $0[0..<n])) { hasher.update($0) } }
                offset += UInt64(n)
            }
            try inflater.finish()
            guard hasher.finalize() == entry.target else {
                throw UpdError(.corrupt, "\(path): the blob at byte \(entry.offset) is not content \(entry.target.hex)")
            }
        }
    }
}
