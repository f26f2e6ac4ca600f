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
        // The blob is a plain zlib stream of the raw content, named by the content's hash.
        #expect(try Sys.readFile(store.path(for: first.hash)) == zlib(content))
        // No temporary files are left behind.
        let dir = Sys.parentDirectory(of: store.path(for: first.hash))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == [first.hash.hex])
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

    @Test func refusesTruncatedAndTrailingData() throws {
        let tmp = TemporaryDirectory("blobs")
        let store = BlobStore(directory: tmp.sub("blobs"))
        let content = Array(String(repeating: "abc", count: 10000).utf8)
        let stored = try store.store(bytes: content)
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
