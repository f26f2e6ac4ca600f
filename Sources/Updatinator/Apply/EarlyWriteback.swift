import CLinux
import Foundation

/// Starts the filesystem writing out what an apply wrote while the apply goes on, on a thread of
/// its own: a checkpoint's syncfs then finds most of it on disk already, instead of the applying
/// thread waiting for all of it there. Nothing depends on it for durability; the checkpoints do
/// that, as before.
final class EarlyWriteback: @unchecked Sendable {
    /// Bytes written between two flushes started here.
    static let interval: UInt64 = 8 << 20

    private let condition = NSCondition()
    private let fd: Int32
    // Under the lock.
    private var requested = false
    private var stopping = false
    private var ended = false
    /// On the applying thread: bytes written since the last request.
    private var pending: UInt64 = 0

    /// Flushes the filesystem of the directory `fd` when asked, through a descriptor of its own:
    /// syncfs reports a write error once to each open file, so the checkpoints' syncfs on `fd`
    /// still sees an error that a flush here met (and ignored).
    init(filesystemOf fd: Int32) {
        self.fd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        let thread = Thread { [self] in run() }
        thread.name = "writeback"
        thread.start()
    }

    /// Counts bytes the apply wrote, starting a flush every `interval`.
    func wrote(_ bytes: UInt64) {
        pending += bytes
        guard pending >= Self.interval else { return }
        pending = 0
        condition.withLock {
            requested = true
            condition.broadcast()
        }
    }

    /// Stops the thread (after a flush it is in) and waits for it.
    func finish() {
        condition.withLock {
            stopping = true
            condition.broadcast()
            while !ended { condition.wait() }
        }
        if fd >= 0 { Sys.close(fd) }
    }

    private func run() {
        while true {
            let go: Bool = condition.withLock {
                while !requested && !stopping { condition.wait() }
                requested = false
                return !stopping
            }
            guard go, fd >= 0 else { break }
            // (A failure shows at the next checkpoint's own syncfs: see `init`.)
            _ = CLinux_syncfs(fd)
        }
        condition.withLock {
            ended = true
            condition.broadcast()
        }
    }
}
