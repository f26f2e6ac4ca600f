import Foundation
import Updatinator

/// Runs `work`, then again `seconds` after it ended, until the task is cancelled: the server's
/// background jobs (writing checks, reading a shared inventory again, looking upstream).
func repeatEvery(_ seconds: TimeInterval, _ work: () async -> Void) async {
    while !Task.isCancelled {
        await work()
        try? await Task.sleep(for: .seconds(seconds))
    }
}

/// Runs blocking work — a Lua policy call, SQLite, file I/O, a batch's computation — on threads
/// of its own, and resumes the waiting handler with the result, so that the threads that run
/// the server's async handlers (Swift's cooperative pool, one thread per core) only parse
/// requests and write answers.
///
/// Each kind of work gets its own instance: a policy spinning up to its instruction limit on
/// every policy thread then delays other checks, but no file, report or `/metrics` answer.
/// Jobs run in the order they were queued. The threads end once the instance is released and
/// the jobs queued before are done.
public final class WorkerThreads: Sendable {
    /// Queued jobs, first in first out; nil tells a thread to end.
    private let queue = Locked(JobQueue())
    private let ready = DispatchSemaphore(value: 0)
    public let count: Int

    private struct JobQueue {
        var jobs = [(@Sendable () -> Void)?]()
        var head = 0

        mutating func push(_ job: (@Sendable () -> Void)?) { jobs.append(job) }

        mutating func pop() -> (@Sendable () -> Void)? {
            let job = jobs[head]
            head += 1
            if head > 64 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            return job
        }
    }

    /// Starts `count` threads named "NAME 1", "NAME 2", …
    public init(name: String, count: Int) {
        self.count = max(1, count)
        for n in 1...self.count {
            let (queue, ready) = (self.queue, self.ready)
            let thread = Thread {
                while true {
                    ready.wait()
                    guard let job = queue.withLock({ $0.pop() }) else { return }
                    job()
                }
            }
            thread.name = "\(name) \(n)"
            thread.start()
        }
    }

    deinit {
        queue.withLock { for _ in 0..<count { $0.push(nil) } }
        for _ in 0..<count { ready.signal() }
    }

    /// Runs `work` on one of the threads; its result or error.
    public func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.withLock { $0.push { continuation.resume(with: Result(catching: work)) } }
            ready.signal()
        }
    }
}
