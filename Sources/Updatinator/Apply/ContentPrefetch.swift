import Foundation

/// Inflates and verifies, on threads of its own, the blobs of the contents a tree is about to
/// be written with, while the applying thread writes the ones before: the cores then share the
/// work of an apply from local blobs (inflating and hashing here, the filesystem's work there).
///
/// It works through `planned` (the contents the writes will take from the blob directories,
/// in the order they take them) with one thread per core, holding at most `window` bytes of
/// contents read or being read and not yet taken, each whole in memory, so none larger than
/// the window may be planned. The applying thread takes each content in turn (`take`); a
/// content that is not ready is waited for, and one that failed (a missing or damaged blob) is
/// nil, for the caller to read the usual way, which names the problem.
final class ContentPrefetch: @unchecked Sendable {
    /// The bytes of contents read ahead that an apply holds at most.
    static let defaultWindow: UInt64 = 8 << 20

    private let condition = NSCondition()
    private let planned: [(hash: ContentHash, size: UInt64)]
    private let blobDirectories: [String]
    private let window: UInt64
    private let threads: Int
    // Under the lock.
    /// Contents read (nil: failed), by their index in `planned`, not yet taken.
    private var ready = [Int: [UInt8]?]()
    /// The sizes of the contents read or being read and not yet taken or dropped.
    private var reserved: UInt64 = 0
    /// The index the next `take` starts looking at, and the next one a thread reads.
    private var nextTaken = 0
    private var nextRead = 0
    private var stopping = false
    private var threadsEnded = 0

    init(planned: [(hash: ContentHash, size: UInt64)], blobDirectories: [String], window: UInt64,
         threads: Int = Parallel.defaultWorkers) {
        self.planned = planned
        self.blobDirectories = blobDirectories
        self.window = window
        self.threads = threads
        for _ in 0..<threads {
            let thread = Thread { [self] in run() }
            thread.name = "prefetch"
            thread.start()
        }
    }

    /// The verified content `hash`, the first planned at or after the last one taken (those
    /// skipped are dropped); nil when it is not planned there or its blob failed.
    func take(_ hash: ContentHash) -> [UInt8]? {
        condition.withLock {
            guard let index = planned[nextTaken...].firstIndex(where: { $0.hash == hash }) else { return nil }
            for skipped in nextTaken..<index { drop(skipped) }
            nextTaken = index + 1
            nextRead = max(nextRead, index)
            condition.broadcast()
            while ready[index] == nil && threadsEnded < threads { condition.wait() }
            let content = ready[index] ?? nil
            drop(index)
            return content
        }
    }

    /// Stops the threads and waits for them to end.
    func finish() {
        condition.withLock {
            stopping = true
            condition.broadcast()
            while threadsEnded < threads { condition.wait() }
            ready.removeAll()
        }
    }

    /// Forgets a content read and not taken, if any.
    private func drop(_ index: Int) {
        if ready.removeValue(forKey: index) != nil { reserved -= planned[index].size }
    }

    private func run() {
        while let (index, item) = nextToRead() {
            // (A failure is the caller's to meet and name when it reads the content itself.)
            let content = blobDirectories.lazy.compactMap { directory in
                try? BlobStore.contentIfPresent(blobAt: BlobStore(directory: directory).path(for: item.hash), hash: item.hash, size: item.size)
            }.first
            condition.withLock {
                // A content skipped while it was read is not kept; the one taken last is
                // being waited for.
                if index >= nextTaken - 1 {
                    ready[index] = .some(content)
                } else {
                    reserved -= item.size
                }
                condition.broadcast()
            }
        }
        condition.withLock {
            threadsEnded += 1
            condition.broadcast()
        }
    }

    /// The next content to read, once the window has room for it; nil when stopping or done.
    private func nextToRead() -> (Int, (hash: ContentHash, size: UInt64))? {
        condition.withLock {
            while true {
                if stopping || nextRead >= planned.count { return nil }
                let item = planned[nextRead]
                if reserved == 0 || reserved + item.size <= window {
                    reserved += item.size
                    nextRead += 1
                    return (nextRead - 1, item)
                }
                condition.wait()
            }
        }
    }
}
