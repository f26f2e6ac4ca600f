import CZstd
import Foundation
import Glibc
import Synchronization

/// Many contents in one download, compressed together: what a school server answers to a
/// batch request (`POST /v1/batch`), so that thousands of small contents cost one request and
/// similar new contents compress against each other.
///
/// Items keep the client's order (its plan's order of use). They are cut into chunks of
/// consecutive items; each chunk is one zstd frame of the items' raw contents, end to end,
/// compressed with a prefix of two parts, both contents the client holds:
/// - its history: the most recent whole contents before the chunk, at most `history` bytes
///   (contents the client decoded just before, from this batch or, named as `after` in the
///   request, from its previous batches), so that a stream of batches compresses almost as
///   one stream with a long window;
/// - its bases: the distinct bases its items name, in order of first use (old contents).
/// The file:
///
///     "UPDBATCH" 2 | per chunk: item count (u32 LE), frame bytes (u64 LE), frame | 0 (u32)
///
/// The client knows every item's size and base from its own request, so a chunk's item count
/// is all it needs to rebuild the prefix and split the output. Every item is checked by its
/// hash after decompression.
public enum ContentBatch {
    public static let magic = Array("UPDBATCH".utf8) + [2]
    public static let defaultLevel: Int32 = 19

    /// The memory a client needs to decode one chunk: its contents, its bases and its history.
    /// Together they fit zstd's window of 2^27 bytes (`--long=27`).
    public struct Limits: Sendable {
        /// A chunk closes once its items reach this many raw bytes (one larger item is a chunk
        /// of its own), or its bases this many.
        public var chunkContent: UInt64
        public var chunkBases: UInt64
        public var history: UInt64
        public static let standard = Limits()

        public init(chunkContent: UInt64 = 16 << 20, chunkBases: UInt64 = 48 << 20, history: UInt64 = 64 << 20) {
            self.chunkContent = chunkContent
            self.chunkBases = chunkBases
            self.history = history
        }
    }

    public struct Item: Sendable, Hashable {
        public let hash: ContentHash
        public let size: UInt64
        /// A content the client has, to compress this one against.
        public let base: ContentHash?
        public let baseSize: UInt64

        public init(hash: ContentHash, size: UInt64, base: ContentHash? = nil, baseSize: UInt64 = 0) {
            self.hash = hash
            self.size = size
            self.base = base
            self.baseSize = base == nil ? 0 : baseSize
        }
    }

    /// The chunks the encoder makes of `items`: consecutive ranges.
    public static func chunks(_ items: [Item], limits: Limits = .standard) -> [Range<Int>] {
        var result = [Range<Int>]()
        var start = 0, content: UInt64 = 0, bases: UInt64 = 0
        var seen = Set<ContentHash>()
        for (i, item) in items.enumerated() {
            let newBase = item.base.map { !seen.contains($0) } ?? false
            let addedBase = newBase ? item.baseSize : 0
            if i > start && (content + item.size > limits.chunkContent || bases + addedBase > limits.chunkBases) {
                result.append(start..<i)
                (start, content, bases) = (i, 0, 0)
                seen = []
            }
            content += item.size
            if let base = item.base, seen.insert(base).inserted { bases += item.baseSize }
        }
        if start < items.count { result.append(start..<items.count) }
        return result
    }

    /// Where the history before `end` starts among contents of `sizes`: the most recent whole
    /// contents that fit in `limit` bytes together.
    public static func historyStart<S: BidirectionalCollection<UInt64>>(_ sizes: S, limit: UInt64) -> S.Index {
        var start = sizes.endIndex, total: UInt64 = 0
        while start > sizes.startIndex {
            let before = sizes.index(before: start)
            guard total + sizes[before] <= limit else { break }
            total += sizes[before]
            start = before
        }
        return start
    }

    /// A chunk's distinct bases, in order of first use, with their sizes.
    static func bases(of chunk: ArraySlice<Item>) -> [(hash: ContentHash, size: UInt64)] {
        var seen = Set<ContentHash>()
        return chunk.compactMap { item in
            guard let base = item.base, seen.insert(base).inserted else { return nil }
            return (base, item.baseSize)
        }
    }

    /// Where `encode` writes the batch for `path` while it computes it: its frames appear there
    /// in order as each is ready (a server streams them from there), and the file is renamed to
    /// `path` once whole, or removed when the computation fails.
    public static func partialPath(_ path: String) -> String { path + ".part" }

    /// Compresses the chunks of `items` on `workers` threads, reading each content (and base)
    /// with `content`, and writes the batch to `path` (see `partialPath`); returns its size.
    /// `after` are the contents the client decoded just before these, in order (their bases do
    /// not matter).
    @discardableResult
    public static func encode(_ items: [Item], after: [Item] = [], to path: String, level: Int32 = defaultLevel,
                              limits: Limits = .standard, workers: Int = 2,
                              content: @Sendable (ContentHash, UInt64) throws -> [UInt8]) throws -> UInt64 {
        let ranges = chunks(items, limits: limits)
        let sequence = after + items
        let output = try PartialBatch(path: path, chunks: ranges.map(\.count))
        do {
            try Parallel.forEach(ranges.count, workers: workers) { c in
                let chunk = items[ranges[c]]
                let end = after.count + ranges[c].lowerBound
                let history = sequence[historyStart(sequence[..<end].lazy.map(\.size), limit: limits.history)..<end]
                let chunkBases = bases(of: chunk)
                // (Sized beforehand: grown by appending, the buffers would reach twice their size.)
                var prefix = [UInt8]()
                prefix.reserveCapacity(Int(history.reduce(0) { $0 + $1.size } + chunkBases.reduce(0) { $0 + $1.size }))
                for item in history { prefix += try content(item.hash, item.size) }
                for base in chunkBases { prefix += try content(base.hash, base.size) }
                var input = [UInt8]()
                input.reserveCapacity(Int(chunk.reduce(0) { $0 + $1.size }))
                for item in chunk { input += try content(item.hash, item.size) }
                try output.add(c, try ContentDelta.compress(input, prefix: prefix, level: level))
            }
            return try output.finish()
        } catch {
            output.abandon()
            throw error
        }
    }

    /// A batch file written as its frames are computed, in any order: each is appended once the
    /// ones before it are there (and dropped from memory).
    final class PartialBatch: @unchecked Sendable {
        let path: String
        let partial: String
        private let fd: Int32
        private let counts: [Int]
        private let lock = NSLock()
        private var ready = [Int: [UInt8]]()
        private var next = 0

        init(path: String, chunks counts: [Int]) throws {
            self.path = path
            partial = ContentBatch.partialPath(path)
            self.counts = counts
            fd = try Sys.open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
            try write(ContentBatch.magic)
        }

        deinit { Sys.close(fd) }

        func add(_ chunk: Int, _ frame: [UInt8]) throws {
            try lock.withLock {
                ready[chunk] = frame
                while let frame = ready.removeValue(forKey: next) {
                    try write(ContentBatch.le(UInt32(counts[next])) + ContentBatch.le(UInt64(frame.count)) + frame)
                    next += 1
                }
            }
        }

        /// Ends the file and gives it its name; its size.
        func finish() throws -> UInt64 {
            try write(ContentBatch.le(UInt32(0)))
            try Sys.fsync(fd, path: partial)
            try Sys.rename(partial, path)
            return UInt64(try Sys.fstat(fd, path: path).st_size)
        }

        func abandon() { Sys.unlink(partial) }

        private func write(_ bytes: [UInt8]) throws {
            try bytes.withUnsafeBytes { try Sys.writeAll(fd, $0, path: partial) }
        }
    }

    static func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}

/// Reads a downloaded batch chunk by chunk, in order: the items of one chunk are decoded
/// together (its bases read with `base`) and held in memory until a later chunk is asked for,
/// with the history the next chunk needs.
public final class ContentBatchReader {
    public typealias Content = (hash: ContentHash, bytes: [UInt8])
    private let path: String
    private let items: [ContentBatch.Item]
    private let limits: ContentBatch.Limits
    /// The batch's file (a streamed one grows while it is read).
    public let file: FileDescriptor
    /// Where the next read starts.
    private var offset: UInt64 = 0
    private var nextItem = 0
    /// The decoded chunk: its first item, and each item's bytes.
    private var chunkStart = 0
    private var chunk = [[UInt8]]()
    /// The chunks the encoder makes of these items: a batch cut otherwise is refused, so that a
    /// server cannot make the client hold more than one chunk's worth.
    private let expectedChunks: [Range<Int>]
    /// The most recent contents decoded, oldest first: at least the history of the next chunk.
    public private(set) var recent: [Content]

    /// Reads the batch of `items` at `path`, or from `file` (opened at its start) when given:
    /// `path` then names it in errors. `after` are the contents the request named as decoded
    /// just before them, in order.
    public init(path: String, file: FileDescriptor? = nil, items: [ContentBatch.Item], after: [Content] = [],
                limits: ContentBatch.Limits = .standard) throws {
        self.path = path
        self.items = items
        self.limits = limits
        expectedChunks = ContentBatch.chunks(items, limits: limits)
        recent = after
        self.file = try file ?? FileDescriptor(owning: Sys.open(path, O_RDONLY | O_NOFOLLOW))
    }

    /// The bytes of item `index`, not yet checked against its hash. Items are asked for in
    /// order (an item of the current chunk may be asked for again). `base` returns a base's
    /// verified bytes, or nil when it is not at hand (the chunk then cannot be decoded). For a
    /// batch still being downloaded, `more` is called when the file ends before a chunk does,
    /// with the bytes read so far: it returns once the file may hold more, true, or false when
    /// nothing more will come.
    public func content(at index: Int, base: (ContentHash) throws -> [UInt8]?, more: (UInt64) throws -> Bool = { _ in false }) throws -> [UInt8] {
        guard index >= chunkStart, index < items.count else {
            throw UpdError(.usage, "\(path): item \(index) was asked for after a later chunk, or is not in the batch")
        }
        if offset == 0 {
            guard try read(ContentBatch.magic.count, more: more) == ContentBatch.magic else {
                throw UpdError(.corrupt, "\(path): not a batch of this format")
            }
        }
        while index >= chunkStart + chunk.count { try decodeNextChunk(base: base, more: more) }
        return chunk[index - chunkStart]
    }

    private func decodeNextChunk(base: (ContentHash) throws -> [UInt8]?, more: (UInt64) throws -> Bool) throws {
        let count = Int(try integer(UInt32.self, more: more))
        guard let expected = expectedChunks.first(where: { $0.lowerBound == nextItem }), count == expected.count else {
            throw UpdError(.corrupt, "\(path): a chunk of \(count) items where the request makes another cut")
        }
        let frameBytes = try integer(UInt64.self, more: more)
        let slice = items[nextItem..<nextItem + count]
        let total = slice.reduce(UInt64(0)) { $0 + $1.size }
        guard frameBytes <= total + total / 64 + 4096, frameBytes <= 1 << 31 else {
            throw UpdError(.corrupt, "\(path): a chunk of \(frameBytes) bytes for \(total) bytes of content")
        }
        let frame = try read(Int(frameBytes), more: more)
        guard frame.count == Int(frameBytes) else { throw UpdError(.corrupt, "\(path): truncated") }
        recent.removeFirst(ContentBatch.historyStart(recent.lazy.map { UInt64($0.bytes.count) }, limit: limits.history))
        let chunkBases = ContentBatch.bases(of: slice)
        // (Sized beforehand: grown by appending, the prefix would reach twice its size.)
        var prefix = [UInt8]()
        prefix.reserveCapacity(recent.reduce(0) { $0 + $1.bytes.count } + Int(chunkBases.reduce(0) { $0 + $1.size }))
        for content in recent { prefix += content.bytes }
        for b in chunkBases {
            guard let bytes = try base(b.hash), bytes.count == Int(b.size) else {
                throw UpdError(.corrupt, "\(path): the base \(b.hash.hex) of a chunk is not intact")
            }
            prefix += bytes
        }
        var output = [UInt8](repeating: 0, count: Int(total))
        try decompress(frame, prefix: prefix, into: &output)
        chunk = []
        var offset = 0
        for item in slice {
            chunk.append(Array(output[offset..<offset + Int(item.size)]))
            recent.append((item.hash, chunk.last!))
            offset += Int(item.size)
        }
        chunkStart = nextItem
        nextItem += count
    }

    private func decompress(_ frame: [UInt8], prefix: [UInt8], into output: inout [UInt8]) throws {
        guard let dctx = ZSTD_createDCtx() else { throw UpdError(.io, "zstd: cannot create a decompression context") }
        defer { ZSTD_freeDCtx(dctx) }
        let window = try ContentDelta.windowLog(baseSize: prefix.count, targetSize: output.count)
        try ContentDelta.check(ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, window), "set the window limit")
        let size = try prefix.withUnsafeBytes { p in
            if !prefix.isEmpty { try ContentDelta.check(ZSTD_DCtx_refPrefix(dctx, p.baseAddress, p.count), "use the prefix") }
            return try frame.withUnsafeBytes { f in
                try output.withUnsafeMutableBytes { o in
                    let n = ZSTD_decompressDCtx(dctx, o.baseAddress, o.count, f.baseAddress, f.count)
                    if ZSTD_isError(n) != 0 {
                        throw UpdError(.corrupt, "\(path): a chunk does not decode (\(String(cString: ZSTD_getErrorName(n))))")
                    }
                    return n
                }
            }
        }
        guard size == output.count else { throw UpdError(.corrupt, "\(path): a chunk decodes to \(size) bytes, not \(output.count)") }
    }

    private func integer<T: FixedWidthInteger>(_: T.Type, more: (UInt64) throws -> Bool) throws -> T {
        let bytes = try read(MemoryLayout<T>.size, more: more)
        guard bytes.count == MemoryLayout<T>.size else { throw UpdError(.corrupt, "\(path): truncated") }
        return bytes.reversed().reduce(T(0)) { $0 << 8 | T($1) }
    }

    /// Up to `count` bytes at the reading position: fewer only where the file ends for good.
    private func read(_ count: Int, more: (UInt64) throws -> Bool) throws -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = try result.withUnsafeMutableBytes {
                try Sys.pread(file.rawValue, $0.baseAddress! + got, count - got, offset: offset, path: path)
            }
            offset += UInt64(n)
            got += n
            if n == 0 {
                guard try more(offset) else { break }
            }
        }
        result.removeLast(count - got)
        return result
    }
}
