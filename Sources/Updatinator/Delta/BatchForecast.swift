/// The batch requests a device will make, known before it asks: a school server computes the
/// batches of the moves its fleet is about to make, so that the first device finds them ready.
extension ContentBatch {
    /// The batch requests an in-place apply makes, in order, to move a tree that holds `from`
    /// intact to `to` with a download window of `window` bytes: its plan's downloads, each with
    /// the base it keeps, in groups (`BatchStream.groups`), each compressed after the contents
    /// of the ones before. Their keys are those of the device's requests.
    public static func forecast(from: Manifest, to: Manifest, window: UInt64 = ContentSources.defaultDownloadWindow) throws -> [BatchRequest] {
        var planner = Planner(from: from, to: to)
        planner.batches = true
        planner.groupedDownloads = true
        planner.downloadWindow = window
        let sizes = from.contents.mapValues(\.size).merging(to.contents.mapValues(\.size)) { a, _ in a }
        let requests = try planner.plan().downloads().requests
        let items = requests.map { Item($0, baseSizes: sizes) }
        return BatchStream.groups(requests.map(\.downloadBytes), window: window).map { group in
            BatchRequest(items: Array(items[group]), after: history(before: items[..<group.lowerBound]))
        }
    }

    /// What a batch after `contents` is compressed after: the most recent of them, at most
    /// `Limits.history` bytes.
    static func history(before contents: ArraySlice<Item>) -> [Item] {
        let plain = contents.map { Item(hash: $0.hash, size: $0.size) }
        return Array(plain[historyStart(plain.lazy.map(\.size), limit: Limits.standard.history)...])
    }
}

extension ContentBatch.Item {
    /// A planned download as a batch item: with its base when the plan keeps one whose size is known.
    init(_ request: BlobRequest, baseSizes: [ContentHash: UInt64]) {
        if let base = request.delta?.base, let size = baseSizes[base] {
            self.init(hash: request.hash, size: request.size, base: base, baseSize: size)
        } else {
            self.init(hash: request.hash, size: request.size)
        }
    }
}
