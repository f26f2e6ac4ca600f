import Foundation
import Hummingbird
import Logging
import Updatinator

/// A laptop serving its neighbours: `GET /blobs/<hh>/<hash>` for every content of its
/// installed image, read from its own tree through the installed manifest (see
/// `TreeContents`). Nothing else is served. A new installed manifest (after an upgrade) is
/// picked up at the next request. The cache of compressed blobs is emptied at start, so that
/// nothing a crash left half-written is ever served.
public final class PeerServer: Sendable {
    public let root: String
    public let cache: BlobStore
    public let metrics = ServerMetrics()
    /// Where the server reports what goes wrong while it serves.
    public let logger: Logger
    private let contents = Locked<(stamp: [Int], contents: TreeContents)?>(nil)
    /// Where the installed manifest is read, contents compressed and files served.
    let threads = WorkerThreads(name: "files", count: max(4, 2 * ProcessInfo.processInfo.activeProcessorCount))

    public init(root: String, cache: String? = nil, logger: Logger = Logger(label: "updatinator.peer")) throws {
        self.root = root
        self.logger = logger
        self.cache = BlobStore(directory: cache ?? StateDirectory(root: root).directory + "/peer-cache")
        _ = try current()
        try? FileManager.default.removeItem(atPath: self.cache.directory)
        try FileManager.default.createDirectory(atPath: self.cache.directory, withIntermediateDirectories: true)
    }

    /// The contents of the installed manifest, read again when the file changed.
    func current() throws -> TreeContents {
        let path = StateDirectory(root: root).installedManifest
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw UpdError(.usage, "\(root) has no installed manifest (\(path)): nothing to serve")
        }
        let stamp = [Int(info.st_ino), Int(info.st_size), info.st_mtim.tv_sec, info.st_mtim.tv_nsec]
        if let saved = contents.withLock({ $0 }), saved.stamp == stamp { return saved.contents }
        let fresh = TreeContents(root: root, manifest: try ManifestParser.parse(contentsOf: path), cache: cache)
        contents.withLock { $0 = (stamp, fresh) }
        return fresh
    }

    public func router() -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        router.add(middleware: CountingMiddleware(metrics: metrics))
        let files = FileResponder(root: cache.directory, metrics: metrics, threads: threads)
        router.files("/blobs/:prefix/:name") { request, context in
            let name = try context.parameters.require("name")
            guard let hash = ContentHash(hex: name), try context.parameters.require("prefix") == String(name.prefix(2)) else {
                throw HTTPError(.notFound)
            }
            let blob: String?
            do {
                // Reads the manifest when it changed, and reads, hashes and compresses the content.
                blob = try await self.threads.run { try self.current().blob(for: hash) }
            } catch let error as UpdError {
                self.logger.error("\(error.message)")
                throw HTTPError(.notFound)
            }
            guard blob != nil else { throw HTTPError(.notFound) }
            return try await files.respond(to: request, path: "\(name.prefix(2))/\(name)", immutable: true)
        }
        router.metrics(metrics)
        return router
    }
}
