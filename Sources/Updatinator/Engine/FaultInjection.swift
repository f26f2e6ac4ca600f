import Glibc

/// Test hooks that stop the process at a chosen filesystem operation, to prove crash safety.
///
/// The library never reads the environment: the CLI reads `UPDATINATOR_KILL_AFTER` and
/// `UPDATINATOR_STOP_AFTER` and passes them in as this value.
public struct FaultInjection: Sendable, Equatable {
    /// The process kills itself with SIGKILL once it has made this many operations.
    public var killAfterOperations: Int?
    /// The process stops itself (SIGSTOP) once, after this many operations, until it is continued.
    public var stopAfterOperations: Int?

    public init(killAfterOperations: Int? = nil, stopAfterOperations: Int? = nil) {
        self.killAfterOperations = killAfterOperations
        self.stopAfterOperations = stopAfterOperations
    }

    public static let none = FaultInjection()

    /// Acts on the count of operations made so far.
    func reached(_ operations: Int) {
        if let limit = killAfterOperations, operations >= limit { kill(getpid(), SIGKILL) }
        if operations == stopAfterOperations { kill(getpid(), SIGSTOP) }
    }
}
