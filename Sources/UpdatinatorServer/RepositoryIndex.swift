import Foundation
import Updatinator

/// What the school server knows of the repository it serves: its images and versions, the
/// channels, and each manifest's hash. Read from the directory and kept for a second, so that
/// thousands of checks a second cost no directory scans while a new publication is still seen
/// at once.
public final class RepositoryIndex: Sendable {
    public let root: String
    private struct Snapshot {
        var taken: Date
        var versions: [String: [String]]
        var channels: [String: ChannelMetadata]
        var hashes: [String: ManifestFacts]
    }
    /// A manifest's hash and size.
    private struct ManifestFacts {
        var hash: ContentHash
        var size: UInt64
    }
    private let snapshot = Locked<Snapshot?>(nil)
    private let maxAge: TimeInterval

    public init(root: String, maxAge: TimeInterval = 1) {
        self.root = root
        self.maxAge = maxAge
    }

    public func images() -> [String] { current().versions.keys.sorted() }

    /// An image's versions, oldest first by natural order (numbers compared as numbers).
    public func versions(of image: String) -> [String] { current().versions[image] ?? [] }

    /// The version that channel metadata names for the image, else the image's newest version.
    public func latest(image: String, channel: String?) -> String? {
        let now = current()
        if let channel, let metadata = now.channels[channel], metadata.image == image { return metadata.version }
        return now.versions[image]?.last
    }

    /// The versions an image's devices are sent to, as far as the repository says: those its
    /// channels name, and its newest.
    public func targets(of image: String) -> Set<String> {
        let now = current()
        return Set(now.channels.values.filter { $0.image == image }.map(\.version) + (now.versions[image]?.last.map { [$0] } ?? []))
    }

    /// The manifest's repository path, the hash of its bytes and its size, when the repository has it.
    public func manifest(image: String, version: String) -> (path: String, hash: ContentHash, size: UInt64)? {
        let now = current()
        let path = "images/\(image)/\(version).manifest"
        return now.hashes[path].map { (path, $0.hash, $0.size) }
    }

    /// Scans the directory again at the next question (a mirror stored a manifest).
    public func invalidate() {
        snapshot.withLock { $0?.taken.addTimeInterval(-maxAge) }
    }

    private func current() -> Snapshot {
        snapshot.withLock { saved in
            if let saved, Date().timeIntervalSince(saved.taken) < maxAge { return saved }
            let fresh = scan(previous: saved)
            saved = fresh
            return fresh
        }
    }

    /// Lists `images/*/*.manifest` and `channels/*.json`; a manifest's hash is computed again
    /// only when its size or modification time changed.
    private func scan(previous: Snapshot?) -> Snapshot {
        let files = FileManager.default
        var versions = [String: [String]]()
        var hashes = [String: ManifestFacts]()
        for image in (try? files.contentsOfDirectory(atPath: root + "/images")) ?? [] where Manifest.problem(withName: image) == nil {
            let names = (try? files.contentsOfDirectory(atPath: "\(root)/images/\(image)")) ?? []
            let found = names.filter { $0.hasSuffix(".manifest") }.map { String($0.dropLast(".manifest".count)) }
                .filter { Manifest.problem(withName: $0) == nil }
            // A version counts only when its manifest is a regular file that can be read.
            let readable = found.filter { version in
                let path = "images/\(image)/\(version).manifest"
                hashes[path] = hashOf(path, previous: previous)
                return hashes[path] != nil
            }
            guard !readable.isEmpty else { continue }
            versions[image] = readable.sorted { $0.compare($1, options: .numeric) == .orderedAscending }
        }
        var channels = [String: ChannelMetadata]()
        for name in (try? files.contentsOfDirectory(atPath: root + "/channels")) ?? [] where name.hasSuffix(".json") {
            if let bytes = try? FileDescriptor.readRegularFile(beneath: root, components: ["channels", name], limit: 64 * 1024),
               let metadata = try? JSONDecoder().decode(ChannelMetadata.self, from: Data(bytes)) {
                channels[String(name.dropLast(".json".count))] = metadata
            }
        }
        return Snapshot(taken: Date(), versions: versions, channels: channels, hashes: hashes)
    }

    private func hashOf(_ path: String, previous: Snapshot?) -> ManifestFacts? {
        var info = stat()
        guard stat(root + "/" + path, &info) == 0 else { return nil }
        let modified = Date(timeIntervalSince1970: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9)
        // A file modified before the previous scan began (with a second's margin) is unchanged.
        if let previous, let hash = previous.hashes[path], modified < previous.taken.addingTimeInterval(-1) { return hash }
        // A repository kept by `rsync -a` from an upstream may hold a symlink or FIFO there.
        let components = path.split(separator: "/").map(String.init)
        guard let bytes = try? FileDescriptor.readRegularFile(beneath: root, components: components,
                                                             limit: ManifestParser.maxManifestBytes) else { return nil }
        return ManifestFacts(hash: Blake2b.hash(bytes), size: UInt64(bytes.count))
    }
}
