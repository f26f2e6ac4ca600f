import Foundation
import Synchronization

/// Writes a repository's content-pair deltas for a move between two of its image versions, and
/// the signed index of the target version's deltas.
public struct DeltaBuilder: Sendable {
    public struct Report: Sendable, Equatable {
        /// Deltas written by this run, and their bytes.
        public var made = 0
        public var madeBytes: UInt64 = 0
        /// Deltas the repository already had.
        public var existing = 0
        /// New contents with no delta smaller than their blob (none written).
        public var notSmaller = 0
        /// Deltas against no base (zstd alone), among those made or kept.
        public var alone = 0
        /// New contents no rule found a base for.
        public var unmatched = 0
        /// New contents by the rule that found their base.
        public var byRule: [String: Int] = [:]
    }

    public let repository: Repository
    public var level: Int32 = ContentDelta.defaultLevel
    public var jobs = Parallel.defaultWorkers

    public init(repository: Repository) {
        self.repository = repository
    }

    /// The delta of `target` against `base`, written into the repository unless it exists or is
    /// not smaller than `blobSize`; its size when the repository has it afterwards.
    public func makeDelta(base: ContentHash, baseSize: UInt64, target: ContentHash, size: UInt64, blobSize: UInt64) throws -> (bytes: UInt64?, made: Bool) {
        let path = "\(repository.root)/\(ContentDelta.path(base: base, target: target))"
        if let st = try Sys.lstatIfExists(path) { return (UInt64(st.st_size), false) }
        let delta = try ContentDelta.encode(base: base == .empty ? [] : repository.blobs.readAll(base, size: baseSize),
                                            target: repository.blobs.readAll(target, size: size), level: level)
        guard UInt64(delta.count) < blobSize else { return (nil, false) }
        try Sys.mkdirs(Sys.parentDirectory(of: path))
        try Sys.writeFileAtomically(path, delta)
        return (UInt64(delta.count), true)
    }

    /// Makes the deltas of the move `from` → `to` and adds them to `to`'s signed index. A new
    /// content whose base gives no delta smaller than its blob, or that has no base, gets a
    /// delta against no base (`ContentHash.empty`: zstd alone) when that is smaller.
    public func build(from: Manifest, to: Manifest, key: SecretKey) throws -> Report {
        let matches = DeltaBases.match(from: from, to: to)
        let contents = to.contents
        let oldContents = from.contents
        let targets = contents.keys.filter { contents[$0]!.size > 0 && oldContents[$0] == nil }.sorted()
        let report = Locked(Report())
        let found = Locked([(target: ContentHash, base: ContentHash, bytes: UInt64)]())
        try Parallel.forEach(targets.count, workers: jobs) { i in
            let target = targets[i]
            let sizes = contents[target]!
            var result: (bytes: UInt64?, made: Bool) = (nil, false)
            var base = ContentHash.empty
            if let match = matches[target] {
                base = match.base
                result = try makeDelta(base: match.base, baseSize: match.baseSize, target: target, size: sizes.size, blobSize: sizes.blobSize)
            }
            if result.bytes == nil {
                base = .empty
                result = try makeDelta(base: .empty, baseSize: 0, target: target, size: sizes.size, blobSize: sizes.blobSize)
            }
            report.withLock { r in
                if let match = matches[target] { r.byRule[match.rule.rawValue, default: 0] += 1 } else { r.unmatched += 1 }
                if base == .empty && result.bytes != nil { r.alone += 1 }
                if result.made { r.made += 1; r.madeBytes += result.bytes! }
                else if result.bytes != nil { r.existing += 1 }
                else { r.notSmaller += 1 }
            }
            if let bytes = result.bytes { found.withLock { $0.append((target, base, bytes)) } }
        }
        var index = try readIndex(image: to.image, version: to.version)
        for d in found.withLock({ $0 }) { index.add(target: d.target, base: d.base, bytes: d.bytes) }
        try writeIndex(index, image: to.image, version: to.version, key: key)
        return report.withLock { $0 }
    }

    /// The version's index as the repository has it, or an empty one.
    public func readIndex(image: String, version: String) throws -> DeltaIndex {
        let path = "\(repository.root)/\(DeltaIndex.path(image: image, version: version))"
        guard (try Sys.lstatIfExists(path)) != nil else { return DeltaIndex() }
        return try DeltaIndex.parse(Sys.readFile(path, limit: DeltaIndex.maxBytes), source: path)
    }

    /// Writes the index and its signature, each atomically. A reader between the two writes sees
    /// a signature that does not match and uses no deltas, which costs bandwidth, nothing else.
    public func writeIndex(_ index: DeltaIndex, image: String, version: String, key: SecretKey) throws {
        let path = "\(repository.root)/\(DeltaIndex.path(image: image, version: version))"
        var named = index
        (named.image, named.version) = (image, version)
        let bytes = named.encoded()
        var signatures = SignatureFile()
        signatures.sign(bytes, with: key, purpose: .deltas)
        try Sys.writeFileAtomically(path + ".sig", signatures.encoded())
        try CompressedCopy.write(path, bytes)
    }
}
