import CZlib
import Foundation
import Glibc
import Testing
@testable import Updatinator

@Suite struct BlobStoreTests {
    func zlib(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        let d = try! ZlibDeflater(level: 6)
        bytes.withUnsafeBytes { input in
            try! d.compress(input, finish: true) { out.append(contentsOf: $0) }
        }
        return out
    }

    @Test func storesOnceAndReadsBackVerified() throws {
        let tmp = TemporaryDirectory("blobs")
        let store = BlobStore(directory: tmp.sub("blobs"))
        let content = Array(String(repeating: "updatinator ", count: 1000).utf8)
        let first = try store.store(bytes: content)
        let second = try store.store(bytes: content)
        #expect(first.isNew && !second.isNew)
        #expect(first.blobSize < UInt64(content.count))
        #expect(try store.blobSize(of: first.hash) == first.blobSize)
        #expect(store.path(for: first.hash).hasSuffix("/blobs/\(first.hash.hex.prefix(2))/\(first.hash.hex)"))
        #expect(try store.readAll(first.hash, size: UInt64(content.count)) == content)
        // The blob is a plain zlib stream of the raw content (whichever encoder wrote it: zlib's
        // own uncompress reads it), named by the content's hash.
        let blob = try Sys.readFile(store.path(for: first.hash))
        var inflated = [UInt8](repeating: 0, count: content.count + 1)
        var length = uLongf(inflated.count)
        #expect(uncompress(&inflated, &length, blob, uLong(blob.count)) == Z_OK)
        #expect(Array(inflated.prefix(Int(length))) == content)
        // No temporary files are left behind.
        let dir = Sys.parentDirectory(of: store.path(for: first.hash))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == [first.hash.hex])
    }

    /// Contents of `count` bytes that compress, different for each seed.
    func compressible(_ count: Int, seed: UInt64) -> [UInt8] {
        var generator = SeededGenerator(seed: seed)
        let words = (0..<64).map { _ in Array("w\(UInt32.random(in: 0...99_999, using: &generator)) ".utf8) }
        var bytes = [UInt8]()
        bytes.reserveCapacity(count + 16)
        while bytes.count < count { bytes += words[Int.random(in: 0..<64, using: &generator)] }
        return Array(bytes.prefix(count))
    }

    @Test("libdeflate writes blobs in zlib's format: zlib reads them, a content past its limit streams through zlib, and without it zlib writes them")
    func blobsWrittenByLibdeflateAreZlibStreams() throws {
        let library = try #require(LibDeflate.shared, "libdeflate0 is installed by scripts/setup")
        _ = library
        let tmp = TemporaryDirectory("libdeflate")
        let small = compressible(300_000, seed: 1), large = compressible(3_000_000, seed: 2)
        var sizes = [String: [UInt64]]()
        for (name, workspace) in [("libdeflate", try BlobWorkspace(level: 6, wholeLimit: 1 << 20)),
                                  ("zlib", try BlobWorkspace(level: 6, libdeflate: false))] {
            let store = BlobStore(directory: tmp.sub(name))
            let batch = BlobBatch(store: store)
            for content in [small, large] {
                let (hash, blobSize, _) = try batch.store(bytes: content, workspace: workspace)
                try batch.commit(durable: false)
                #expect(try inflateWithZlib(store.path(for: hash), size: content.count) == content, "\(name): read back through zlib")
                sizes[name, default: []].append(blobSize)
            }
        }
        // The small content went through libdeflate (another encoder, other bytes); the large one,
        // past the limit, through zlib as without the library: the same bytes.
        #expect(sizes["libdeflate"]![0] != sizes["zlib"]![0])
        #expect(sizes["libdeflate"]![1] == sizes["zlib"]![1])
    }

    @Test func detectsABlobWhoseContentDoesNotMatchItsName() throws {
        let tmp = TemporaryDirectory("blobs")
        let store = BlobStore(directory: tmp.sub("blobs"))
        let good = try store.store(bytes: Array("good content".utf8))
        try Sys.writeFileAtomically(store.path(for: good.hash), zlib(Array("evil content".utf8)))
        expectUpdError(.corrupt, "not the blob's name") { try store.verify(good.hash, size: 12) }
    }

    @Test("endless-data: a decompression bomb stops at the declared size, and an oversized blob file is refused unread")
    func refusesAStreamThatInflatesPastTheDeclaredSize() throws {
        let tmp = TemporaryDirectory("blobs")
        let store = BlobStore(directory: tmp.sub("blobs"))
        // 64 MiB of zeros compress to about 64 KiB: a decompression bomb for a 1 MiB content.
        let bomb = zlib([UInt8](repeating: 0, count: 64 << 20))
        let hash = Blake2b.hash([UInt8](repeating: 1, count: 1 << 20))
        try Sys.mkdirs(Sys.parentDirectory(of: store.path(for: hash)))
        try Sys.writeFileAtomically(store.path(for: hash), bomb)
        var delivered = 0
        do {
            try store.read(hash, size: 1 << 20) { delivered += $0.count }
            Issue.record("a bomb was accepted")
        } catch let e as UpdError {
            #expect(e.code == .corrupt)
            #expect(e.message.contains("more than its declared 1048576 bytes"), "\(e.message)")
        }
        // Inflating stopped at once: never more than the declared size was passed on.
        #expect(delivered <= 1 << 20)
        // A blob larger than zlib could ever make of the content is refused without inflating.
        expectUpdError(.corrupt, "larger than the 1064 bytes its content can compress to") { try store.read(hash, size: 1000) { _ in Issue.record("inflated") } }
    }

    /// The content of a zlib stream, inflated by zlib itself.
    func inflateWithZlib(_ path: String, size: Int) throws -> [UInt8] {
        let inflater = try ZlibInflater(expectedSize: UInt64(size), source: path)
        var content = [UInt8]()
        try Sys.readFile(path).withUnsafeBytes { try inflater.inflate($0) { content += $0 } }
        try inflater.finish()
        return content
    }

    @Test("a blob is refused when truncated, when data follows its stream, or when it inflates past its size, both when inflated whole (libdeflate) and when streamed through zlib past the limit",
          arguments: [30_000, Int(BlobStore.wholeLimit) + 1])
    func refusesTruncatedAndTrailingData(size: Int) throws {
        let tmp = TemporaryDirectory("blobs")
        let store = BlobStore(directory: tmp.sub("blobs"))
        let content = Array(String(repeating: "abc", count: size / 3 + 1).utf8.prefix(size))
        let stored = try store.store(bytes: content)
        #expect(try store.readAll(stored.hash, size: UInt64(size)) == content)
        let blob = try Sys.readFile(store.path(for: stored.hash))
        try Sys.writeFileAtomically(store.path(for: stored.hash), Array(blob.dropLast(4)))
        expectUpdError(.corrupt, "truncated zlib stream") { try store.verify(stored.hash, size: UInt64(content.count)) }
        try Sys.writeFileAtomically(store.path(for: stored.hash), blob + [1, 2, 3])
        expectUpdError(.corrupt, "data after the end of the zlib stream") { try store.verify(stored.hash, size: UInt64(content.count)) }
        try Sys.writeFileAtomically(store.path(for: stored.hash), blob)
        expectUpdError(.corrupt, "inflates to more than its declared \(content.count - 1) bytes") {
            try store.verify(stored.hash, size: UInt64(content.count) - 1)
        }
        try store.verify(stored.hash, size: UInt64(content.count))
    }
}
