import Glibc

/// Describes a failure with a stable code, a message a person can act on, and where it happened.
///
/// `message` is the whole line a person reads (it names the path); `path`, `errno` and `cause`
/// carry the same facts for programs: the Lua API and the reports return them as fields.
public struct UpdError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Stable failure classes, shared by every command and by the Lua API.
    public enum Code: String, Sendable, CaseIterable, Codable {
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
        /// Another process holds the lock of the tree or sysroot; trying again later will do.
        case busy
        /// A filesystem object the tool did not create stands where it must not go through: a
        /// symlink or another mount where a directory should be, a FIFO or device where a file
        /// should be, a file whose identity changed under it.
        case unsafe
        /// The process lacks the permission (root, usually) that the operation needs.
        case permission
        /// There was nothing to do.
        case nothingToDo = "nothing_to_do"
        /// The school server has not admitted this device (it is pending, rejected, or unknown
        /// to a server that admits only with an enrolment token): it gets no decision and no batch.
        case notAdmitted = "not_admitted"

        /// The process exit status for this code, as documented in docs/cli.md.
        public var exitStatus: Int32 {
            switch self {
            case .io: return 1
            case .verification: return 2
            case .noSpace: return 3
            case .network: return 4
            case .corrupt: return 5
            case .differences: return 6
            case .busy: return 7
            case .unsafe: return 8
            case .permission: return 9
            case .nothingToDo: return 10
            case .notAdmitted: return 17
            case .usage: return 64
            }
        }
    }

    public let code: Code
    public let message: String
    /// The file, directory or URL the failure concerns, when there is one.
    public let path: String?
    /// The system error behind the failure, when a system call failed.
    public let errno: Int32?
    /// The underlying failure's own message, when this error wraps another.
    public let cause: String?

    public init(_ code: Code, _ message: String, path: String? = nil, errno: Int32? = nil, cause: String? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.errno = errno
        self.cause = cause
    }

    public var description: String { message }

    /// Wraps a failed system call, naming the call and the path it concerned.
    public static func system(_ call: String, _ path: String, errno err: Int32 = Glibc.errno) -> UpdError {
        let text = String(cString: strerror(err))
        return UpdError(code(forErrno: err), "\(call) \(path): \(text)", path: path, errno: err)
    }

    /// The class of a system error: no space, no permission, or an unexpected I/O failure.
    public static func code(forErrno err: Int32) -> Code {
        switch err {
        case ENOSPC, EDQUOT: return .noSpace
        case EPERM, EACCES: return .permission
        default: return .io
        }
    }

    /// Wraps any error: an `UpdError` stays as it is; another becomes `io`, with its text as the cause.
    public static func wrapping(_ error: Error, _ what: String, path: String? = nil) -> UpdError {
        if let e = error as? UpdError { return e }
        let text = "\(error)"
        return UpdError(.io, "\(what): \(text)", path: path, cause: text)
    }
}
