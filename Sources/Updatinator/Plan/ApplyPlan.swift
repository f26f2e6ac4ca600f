/// An ordered in-place apply from one manifest to another, with its exact costs.
public struct ApplyPlan: Sendable {
    /// How many paths each kind of change touches.
    public struct Changes: Sendable, Equatable {
        public var created = 0
        public var replaced = 0
        public var removed = 0
        public var reowned = 0
        public var remoded = 0
        public var retimed = 0
        public var xattrsChanged = 0
    }

    public let from: Manifest
    public let to: Manifest
    public let steps: [ApplyStep]
    public let changes: Changes

    /// Contents that neither the tree nor a blob directory has, and the bytes to download for
    /// them (each content's delta or compressed blob).
    public var contentsToObtain: Int { missing.count }
    public var bytesToObtain: UInt64 { missing.values.reduce(0, +) }
    /// Contents read from local blob directories, and their raw size.
    public internal(set) var contentsFromBlobs = 0
    public internal(set) var bytesFromBlobs: UInt64 = 0
    /// Raw bytes of the new image that come from the old tree: kept files and copies of old contents.
    public internal(set) var bytesReused: UInt64 = 0
    /// Raw bytes the apply writes.
    public internal(set) var bytesToWrite: UInt64 = 0
    /// The largest excess, at any moment, of allocated bytes over the larger of the two trees.
    public internal(set) var peakExtraDisk: UInt64 = 0
    /// The free space the apply needs: its largest growth over what is allocated before it starts.
    public internal(set) var requiredFreeSpace: UInt64 = 0
    /// The allocated size of the old and of the new tree, in whole allocation units.
    public internal(set) var oldTreeBytes: UInt64 = 0
    public internal(set) var newTreeBytes: UInt64 = 0

    /// The download window the disk figures allow for, when the apply downloads as it goes.
    public internal(set) var downloadWindow: UInt64?

    /// Contents the planner found in no local source, by hash, with the bytes to download.
    public internal(set) var missing: [ContentHash: UInt64] = [:]
    /// The missing contents that come as a delta against a content of the old tree.
    public internal(set) var deltas: [ContentHash: DeltaIndex.Delta] = [:]
    /// What the chosen deltas save against downloading those contents' blobs.
    public var bytesSavedByDeltas: UInt64 {
        let blobs = to.contents
        return deltas.reduce(0) { $0 + (blobs[$1.key]!.blobSize - $1.value.bytes) }
    }

    /// The missing contents the steps from `start` on write, in order of first use, and the
    /// index of the step after which each is no longer needed: what an apply downloads.
    public func downloads(from start: Int = 0) -> (requests: [BlobRequest], lastUse: [ContentHash: Int]) {
        var requests = [BlobRequest]()
        var lastUse = [ContentHash: Int]()
        for index in start..<steps.count {
            guard case .writeFile(let e) = steps[index], case .file(let size, let hash, let blobSize) = e.kind,
                  missing[hash] != nil else { continue }
            if lastUse[hash] == nil { requests.append(BlobRequest(hash: hash, size: size, blobSize: blobSize, delta: deltas[hash])) }
            // Downloads are released in the order they are fetched: each content's writes are together.
            assert(lastUse[hash] == nil || requests.last?.hash == hash, "content \(hash.hex) is written in two places")
            lastUse[hash] = index
        }
        return (requests, lastUse)
    }

    /// A digest of the steps, which an interrupted apply must find unchanged when it resumes.
    public var fingerprint: String {
        // (Hashed a step at a time: the encoding of a large image's steps is tens of megabytes.)
        let hasher = Blake2b()
        var bytes = [UInt8]()
        for step in steps {
            bytes.removeAll(keepingCapacity: true)
            step.appendEncoding(to: &bytes)
            hasher.update(bytes)
        }
        return hasher.finalize().hex
    }
}
