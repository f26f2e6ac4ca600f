import Dispatch
import Foundation
import Synchronization

/// Runs independent jobs on every core; the first error stops the remaining jobs and is rethrown.
enum Parallel {
    static var defaultWorkers: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    static func forEach(_ count: Int, workers: Int = defaultWorkers, _ body: @Sendable (Int) throws -> Void) throws {
        try forEach(count, workers: workers, perWorker: { () }, { _, i in try body(i) })
    }

    /// Like `forEach`, giving each worker its own scratch state made by `perWorker`.
    static func forEach<Scratch>(_ count: Int, workers: Int = defaultWorkers, perWorker: @Sendable () throws -> Scratch,
                                 _ body: @Sendable (Scratch, Int) throws -> Void) throws {
        let next = Atomic<Int>(0)
        let failure = Locked<Error?>(nil)
        DispatchQueue.concurrentPerform(iterations: max(1, min(workers, count))) { _ in
            let scratch: Scratch
            do {
                scratch = try perWorker()
            } catch {
                failure.withLock { if $0 == nil { $0 = error } }
                return
            }
            while true {
                let i = next.add(1, ordering: .relaxed).oldValue
                if i >= count || failure.withLock({ $0 != nil }) { return }
                do {
                    try body(scratch, i)
                } catch {
                    failure.withLock { if $0 == nil { $0 = error } }
                    return
                }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
    }
}
