import Glibc

/// Describes a failure with a stable code, a message a person can act on, and where it happened.
public struct UpdError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Stable failure classes, shared by every command and by the Lua API.
    public enum Code: String, Sendable, CaseIterable {
        /// An unexpected I/O or system failure.
        case io
        /// The command line or a call was used wrongly.
        case usage
        /// A signature, key, keyring or freshness check refused the input.
        case verification
        /// The filesystem ran out of space.
        case noSpace = "no_space"
        /// A mirror or peer could not be reached.
        case network
        /// Data is malformed or corrupt: a manifest, a blob, a key or signature file.
        case corrupt
        /// A check found differences (fsck).
        case differences
        /// There was nothing to do.
        case nothingToDo = "nothing_to_do"

        /// The process exit status for this code, as documented in docs/cli.md.
        public var exitStatus: Int32 {
            switch self {
            case .io: return 1
            case .verification: return 2
            case .noSpace: return 3
            case .network: return 4
            case .corrupt: return 5
            case .differences: return 6
            case .nothingToDo: return 10
            case .usage: return 64
            }
        }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// Wraps a failed system call, naming the call and the path it concerned.
    public static func system(_ call: String, _ path: String, errno err: Int32 = errno) -> UpdError {
        let text = String(cString: strerror(err))
        let code: Code = (err == ENOSPC || err == EDQUOT) ? .noSpace : .io
        return UpdError(code, "\(call) \(path): \(text)")
    }
}
