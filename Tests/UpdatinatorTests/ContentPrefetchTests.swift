import Testing
@testable import Updatinator

/// Contents read ahead on other threads, taken in the order the writes need them.
@Suite struct ContentPrefetchTests {
    @Test("contents read ahead come in order, verified; a skipped one is dropped, and a damaged or absent one is nil, with room for two at a time")
    func contentsComeInOrderAndFailuresAreNil() throws {
        let tmp = TemporaryDirectory("prefetch")
        let store = BlobStore(directory: tmp.sub("blobs"))
        let contents = (0..<6).map { i in (0..<(50_000 + i * 1000)).map { UInt8(truncatingIfNeeded: $0 * (i + 3)) } }
        let hashes = try contents.map { try store.store(bytes: $0).hash }
        // The third blob holds another content; the fifth is gone.
        try Sys.writeFileAtomically(store.path(for: hashes[2]), Sys.readFile(store.path(for: hashes[0])))
        Sys.unlink(store.path(for: hashes[4]))
        let planned = zip(hashes, contents).map { (hash: $0, size: UInt64($1.count)) }
        // Room for two contents at a time: reading ahead must wait for the applying side.
        let prefetch = ContentPrefetch(planned: planned, blobDirectories: [store.directory], window: 110_000)
        defer { prefetch.finish() }

        #expect(prefetch.take(hashes[0]) == contents[0])
        #expect(prefetch.take(hashes[2]) == nil, "a damaged blob is left to the caller")
        #expect(prefetch.take(hashes[1]) == nil, "a content before the last taken is no longer there")
        #expect(prefetch.take(hashes[4]) == nil, "an absent blob is left to the caller")
        #expect(prefetch.take(hashes[5]) == contents[5])
    }
}
