/// Why a check ends without a move: the reason a school server's decision gives (and the
/// client's own, `deferred`), each with its own exit status (docs/cli.md), shown to the person,
/// returned to Lua and recorded in the fleet inventory.
public enum NoUpdateReason: String, Codable, Sendable, CaseIterable {
    /// The device runs what the policy wants it to run.
    case upToDate = "up-to-date"
    /// The policy holds the device back for now: its rollout stage has not reached it.
    case held
    /// An operator paused the image's rollout.
    case paused
    /// The rollout stopped: an operator halted it, or the policy's failure threshold did.
    case halted
    /// An operator pinned the device to the version it runs.
    case pinned
    /// The server's policy failed; the device keeps what it runs.
    case policyError = "policy-error"
    /// An update was offered, but its rules (earliest start, daily window) defer it.
    case deferred

    /// The reasons a server policy may give itself (the others are the server's and the client's).
    public static let fromPolicy: [NoUpdateReason] = [.upToDate, .held, .paused, .halted]

    /// The process exit status of an upgrade that ended for this reason.
    public var exitStatus: Int32 {
        switch self {
        case .upToDate: return 10
        case .held: return 11
        case .paused: return 12
        case .halted: return 13
        case .pinned: return 14
        case .policyError: return 15
        case .deferred: return 16
        }
    }

    /// The reason in a few words, for a person.
    public var summary: String {
        switch self {
        case .upToDate: return "up to date"
        case .held: return "held back by the rollout's stage"
        case .paused: return "the rollout is paused by an operator"
        case .halted: return "the rollout is halted"
        case .pinned: return "pinned by an operator to the version it runs"
        case .policyError: return "the school server's policy failed, so the device keeps what it runs"
        case .deferred: return "the update is deferred"
        }
    }

    /// A reason from a decision, or `held` for one this client does not know (a newer server's):
    /// the server held the device back, and its message says why.
    public init(decoding text: String) {
        self = NoUpdateReason(rawValue: text) ?? .held
    }
}
