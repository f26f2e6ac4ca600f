/// The blobs a target manifest needs that neither the current tree nor a local cache has.
public enum BlobFetchPlan {
    /// Contents of `target` missing from `present` (the tree's manifest) and from every store.
    public static func missing(target: Manifest, present: Manifest?, stores: [BlobStore]) throws -> [BlobRequest] {
        let have = Set(present?.contents.keys.map { $0 } ?? [])
        var requests = [BlobRequest]()
        for (hash, sizes) in target.contents.sorted(by: { $0.key < $1.key }) where sizes.size > 0 && !have.contains(hash) {
            if try stores.contains(where: { try $0.blobSize(of: hash) != nil }) { continue }
            requests.append(BlobRequest(hash: hash, size: sizes.size, blobSize: sizes.blobSize))
        }
        return requests
    }
}
