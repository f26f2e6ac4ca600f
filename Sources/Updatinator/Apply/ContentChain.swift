import Glibc

/// Where a file's content comes from while a tree is written, in one order for the in-place
/// apply and for a deployment being built: an intact local copy (the old tree's, preserved in
/// the work area; or the current deployment's), else the download stream when it carries the
/// content, else the first local blob directory whose blob verifies (read ahead on another
/// thread when it could be: `ContentPrefetch`), else — when a planned local
/// copy turned out changed (a machine's own /etc, a file edited since) — the content's blob
/// downloaded from the mirrors there and then. Every source is verified by its hash as it is
/// copied; one that fails is skipped, and named if nothing else serves.
struct ContentChain {
    /// What a local copy gave.
    enum LocalCopy {
        /// It was intact and was copied.
        case copied
        /// There is none.
        case absent
        /// There is one, but it does not match its hash (the sink may have had part of it).
        case damaged
    }

    /// Streams the local copy of a content (hash, size) to the sink, reading no more than its size.
    let local: (ContentHash, UInt64, (UnsafeRawBufferPointer) throws -> Void) throws -> LocalCopy
    /// The raw size of every content a local copy may have: the bases of deltas are read by it.
    let localSizes: [ContentHash: UInt64]
    let downloads: ContentDownloads?
    let blobDirectories: [String]
    /// Called while a content is awaited from the download stream (progress, cancellation).
    let whileWaiting: () throws -> Void
    /// Downloads one content from the mirrors and streams it, verified, to the sink; nil
    /// without mirrors (`ResolvedSources.fetchOne`).
    let fetchOne: ((ContentHash, UInt64, (UnsafeRawBufferPointer) throws -> Void) throws -> FetchReport)?
    /// Told of each content that came from the mirrors after all: why, and the download.
    let onFallback: (String, FetchReport) -> Void
    /// The blob directories' contents read ahead (`ContentPrefetch`), taken before reading them here.
    var prefetched: ContentPrefetch? = nil

    /// Writes the content into `fd`, an empty file.
    func write(_ hash: ContentHash, size: UInt64, into fd: Int32, display: String) throws {
        guard size > 0 else { return try VerifiedContent.requireEmpty(hash, display: display) }
        var problems = [String]()
        switch try local(hash, size, { try Sys.writeAll(fd, $0, path: display) }) {
        case .copied: return
        case .absent: break
        case .damaged:
            problems.append("the local copy does not match its hash")
            try restart(fd, display: display)
        }
        if let downloads, downloads.isExpected(hash) {
            return try downloads.write(hash, into: fd, display: display, base: localBytes, whileWaiting: whileWaiting)
        }
        if let content = prefetched?.take(hash) {
            return try content.withUnsafeBytes { try Sys.writeAll(fd, $0, path: display) }
        }
        for directory in blobDirectories {
            do {
                if try BlobStore.readIfPresent(blobAt: BlobStore(directory: directory).path(for: hash), hash: hash, size: size, sink: {
                    try Sys.writeAll(fd, $0, path: display)
                }) { return }
            } catch let e as UpdError where e.code == .corrupt {
                problems.append(e.message)
                try restart(fd, display: display)
            }
        }
        if let fetchOne, !problems.isEmpty {
            let fetched = try fetchOne(hash, size) { try Sys.writeAll(fd, $0, path: display) }
            onFallback("\(display): downloaded content \(hash.hex) from the mirrors (\(problems.joined(separator: "; ")))", fetched)
            return
        }
        throw UpdError(.corrupt, "\(display): no intact source for content \(hash.hex)"
            + (problems.isEmpty ? "" : " (" + problems.joined(separator: "; ") + ")"), path: display)
    }

    /// A delta's base, from its intact local copy; nil when there is none.
    private func localBytes(_ hash: ContentHash) throws -> [UInt8]? {
        guard let size = localSizes[hash] else { return nil }
        var bytes = [UInt8]()
        return try local(hash, size) { bytes += $0 } == .copied ? bytes : nil
    }

    private func restart(_ fd: Int32, display: String) throws {
        guard ftruncate(fd, 0) == 0, lseek(fd, 0, SEEK_SET) == 0 else { throw UpdError.system("ftruncate", display) }
    }
}

extension RootedTree {
    /// Gives every directory of the manifest its metadata, deepest first: a directory's time
    /// changes while entries are made in it, so directories come after everything else.
    func finishDirectories(of manifest: Manifest) throws {
        let dirs = DirectoryCursor(self)
        for e in manifest.entries.reversed() where e.kind == .directory {
            if e.path.isRoot {
                try setMetadata(rootFD, [UInt8(ascii: ".")], expecting: .directory, links: nil, e.metadata, display: root)
            } else {
                let (fd, name) = try dirs.parent(of: e.path)
                try setMetadata(fd, name, expecting: .directory, links: nil, e.metadata, display: display(e.path))
            }
        }
    }
}
