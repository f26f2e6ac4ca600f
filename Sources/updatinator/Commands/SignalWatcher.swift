import CLinux
import Foundation

/// Signals handled by a thread of their own instead of by their default action. The handler
/// writes each signal's number to a pipe; a thread reads it and calls `handler`. (Dispatch
/// signal sources lose signals on Linux when another thread takes them first.)
final class SignalWatcher: @unchecked Sendable {
    private let signals: [Int32]
    private let readEnd: Int32
    private let writeEnd: Int32

    init(_ signals: [Int32], _ handler: @escaping @Sendable () -> Void) {
        var ends: [Int32] = [-1, -1]
        precondition(pipe(&ends) == 0, "pipe: \(String(cString: strerror(errno)))")
        (readEnd, writeEnd) = (ends[0], ends[1])
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        _ = fcntl(writeEnd, F_SETFL, O_NONBLOCK)
        self.signals = signals
        let source = readEnd
        Thread.detachNewThread {
            var byte: UInt8 = 0
            while true {
                let count = read(source, &byte, 1)
                if count == 1 { handler() } else if count == 0 || errno != EINTR { break }
            }
            close(source)
        }
        for number in signals { _ = CLinux_send_signal_to_pipe(number, writeEnd) }
    }

    deinit {
        for number in signals { signal(number, SIG_DFL) }
        close(writeEnd)
    }
}
