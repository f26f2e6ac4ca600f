import Foundation
import Hummingbird
import Logging
import Updatinator

/// A laptop serving its neighbours: `GET /blobs/<hh>/<hash>` for every content of the image
/// it runs, read from its own tree through that image's manifest (see `TreeContents`): the
/// installed manifest of a tree, or in a sysroot the manifest of the deployment `current`
/// names. Nothing else is served. A new manifest (after an upgrade, a deploy or a rollback) is
/// picked up at the next request. The cache of compressed blobs is emptied at start, so that
/// nothing a crash left half-written is ever served.
public final class PeerServer: Sendable {
    /// Where the image served comes from.
    public enum Source: Sendable {
        /// A tree with its installed-manifest record (`ROOT/.updatinator/installed.manifest`).
        case tree(String)
        /// A sysroot's current deployment (`DIR/deployments/NAME`, `DIR/manifests/NAME.manifest`).
        case sysroot(String)
    }

    public let source: Source
    public let cache: BlobStore
    public let metrics = ServerMetrics()
    /// Where the server reports what goes wrong while it serves.
    public let logger: Logger
    private let contents = Locked<(stamp: Stamp, contents: TreeContents)?>(nil)
    /// Where the manifest is read, contents compressed and files served.
    let threads = WorkerThreads(name: "files", count: max(4, 2 * ProcessInfo.processInfo.activeProcessorCount))

    /// A manifest file as last read: its tree, and its inode, size and modification time.
    private struct Stamp: Equatable {
        let root: String
        let file: [Int]
    }

    public init(_ source: Source, cache: String? = nil, logger: Logger = Logger(label: "updatinator.peer")) throws {
        self.source = source
        self.logger = logger
        let defaultCache = switch source {
        case .tree(let root): StateDirectory(root: root).directory + "/peer-cache"
        case .sysroot(let path): path + "/peer-cache"
        }
        self.cache = BlobStore(directory: cache ?? defaultCache)
        _ = try current()
        try? FileManager.default.removeItem(atPath: self.cache.directory)
        try FileManager.default.createDirectory(atPath: self.cache.directory, withIntermediateDirectories: true)
    }

    /// The tree served now and its manifest's path.
    private func located() throws -> (root: String, manifest: String) {
        switch source {
        case .tree(let root):
            return (root, StateDirectory(root: root).installedManifest)
        case .sysroot(let path):
            let sysroot = try Sysroot(path: path, reading: true)
            guard let name = try sysroot.checkedLink("current") else {
                throw UpdError(.usage, "\(path) has no current deployment: nothing to serve")
            }
            return (sysroot.tree(of: name), sysroot.manifestPath(of: name))
        }
    }

    /// The contents of the manifest served, read again when it changed.
    func current() throws -> TreeContents {
        let (root, path) = try located()
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw UpdError(.usage, "\(root) has no installed manifest (\(path)): nothing to serve")
        }
        let stamp = Stamp(root: root, file: [Int(info.st_ino), Int(info.st_size), info.st_mtim.tv_sec, info.st_mtim.tv_nsec])
        if let saved = contents.withLock({ $0 }), saved.stamp == stamp { return saved.contents }
        let fresh = TreeContents(root: root, manifest: try ManifestParser.parse(contentsOf: path), cache: cache)
        contents.withLock { $0 = (stamp, fresh) }
        return fresh
    }

    public func router() -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        router.add(middleware: CountingMiddleware(metrics: metrics, logger: logger))
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
