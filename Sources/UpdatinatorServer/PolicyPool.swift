import Foundation
import Logging
import Updatinator
import UpdatinatorLua

/// The server policy, run in worker processes (`PolicyProcesses`, `PolicyWorker`), each with
/// one Lua state with the policy loaded. Every call has a wall-clock limit that holds inside C
/// functions too: a call past it gets its worker killed and answers an error, and the other
/// workers go on answering. A state whose call failed (an error, the instruction or memory
/// limit) is replaced by a fresh one in its worker. Its calls block until the answer or the
/// limit: the server makes them on its policy threads.
public final class PolicyPool: Sendable {
    public struct Settings: Sendable {
        public var script: String
        public var configFile: String?
        public var instructionLimit: Int? = 10_000_000
        public var memoryLimit: Int? = 64 << 20
        /// Seconds a call may take, Lua and C functions alike.
        public var timeLimit: Double = 1
        /// Worker processes, and so calls that may run at once.
        public var workers = max(4, 2 * ProcessInfo.processInfo.activeProcessorCount)
        /// The command that starts a worker (`updatinator policy-worker`): the front end knows
        /// where its executable is.
        public var workerCommand: [String]
        public init(script: String, configFile: String? = nil, workerCommand: [String]) {
            self.script = script
            self.configFile = configFile
            self.workerCommand = workerCommand
        }
    }

    /// What `decide(device)` answered: a target and its bandwidth rules, or no update and why.
    public enum Outcome: Sendable, Equatable {
        case update(Answer)
        case noUpdate(NoUpdateReason, String?)
    }

    /// A target and the bandwidth rules.
    public struct Answer: Sendable, Equatable {
        public var image: String
        public var version: String
        public var peers: [String]?
        public var rateLimit: UInt64?
        public var notBefore: Int64?
        public var window: String?
    }

    private let settings: Settings
    private let makeView: @Sendable () -> SchoolView
    private let processes: PolicyProcesses

    /// Starts the workers, each loading the policy, so a broken script is reported at start
    /// rather than per request.
    public init(settings: Settings, logger: Logger = Logger(label: "updatinator.policy"), view: @escaping @Sendable () -> SchoolView) throws {
        self.settings = settings
        self.makeView = view
        processes = try PolicyProcesses(settings: settings, logger: logger)
    }

    /// Ends the workers.
    public func stop() { processes.stop() }

    /// Runs `decide(device)`. A script error, a limit, the time limit or a malformed answer
    /// throws `UpdError`; the caller answers "no update" (`policy-error`).
    public func decide(_ device: [String: LuaValue]) throws -> Outcome {
        let results = try call("decide", [.table(device)]) ?? []
        return try Self.outcome(results.first ?? .nil)
    }

    /// Runs the policy's optional `rollout(image)`, which describes the image's rollout as the
    /// policy sees it (its version, stage, share of devices, why it halted): nil when the policy
    /// does not define it or answers nil.
    public func rolloutStatus(image: String) throws -> [String: LuaValue]? {
        guard let results = try call("rollout", [.string(image)]) else { return nil }
        switch results.first ?? .nil {
        case .nil: return nil
        case .table(let fields, let items) where items.isEmpty: return fields
        case let other: throw UpdError(.corrupt, "rollout returned a \(other), not a table or nil")
        }
    }

    /// Runs the policy's optional `school_rollout(school)` on a national server: for each image,
    /// what the school's devices may move to (`versions`, and `staged` for `percent` of devices
    /// by bucket of `salt`); nil when the policy does not define it.
    public func schoolRollout(_ school: [String: LuaValue]) throws -> [String: NationalRollout.Rule]? {
        guard let results = try call("school_rollout", [.table(school)]) else { return nil }
        guard case .table(let images, let items) = results.first ?? .nil, items.isEmpty else {
            throw UpdError(.corrupt, "school_rollout returned \(results.first ?? .nil), not a table of images")
        }
        return try images.mapValues { value in
            guard case .table(let fields, _) = value else { throw UpdError(.corrupt, "school_rollout returned a rule that is not a table") }
            if let unknown = fields.keys.sorted().first(where: { !["versions", "staged", "percent", "salt"].contains($0) }) {
                throw UpdError(.corrupt, "school_rollout returned a rule with the unknown field '\(unknown)'")
            }
            var rule = NationalRollout.Rule()
            if let versions = fields["versions"] {
                guard case .table(let f, let list) = versions, f.isEmpty, list.allSatisfy({ $0.stringValue != nil }) else {
                    throw UpdError(.corrupt, "school_rollout returned versions that are not a list of strings")
                }
                rule.versions = list.compactMap(\.stringValue)
            }
            rule.staged = fields["staged"]?.stringValue
            if let percent = fields["percent"] {
                guard let value = percent.integerValue, (0...100).contains(value) else {
                    throw UpdError(.corrupt, "school_rollout returned a percent that is not 0 to 100")
                }
                rule.percent = Int(value)
            }
            if let salt = fields["salt"]?.stringValue { rule.salt = salt }
            return rule
        }
    }

    /// Calls a global function of the policy in a worker, within the time limit; nil when it
    /// is not defined.
    private func call(_ name: String, _ arguments: [LuaValue]) throws -> [LuaValue]? {
        try processes.call(name, arguments, view: makeView(), deadline: .now() + settings.timeLimit)
    }

    /// Whether the policy's optional function `name(argument)` allows something: true when
    /// the policy does not define it. It must return a boolean.
    public func allows(_ name: String, _ argument: [String: LuaValue]) throws -> Bool {
        guard let results = try call(name, [.table(argument)]) else { return true }
        guard case .boolean(let allowed) = results.first ?? .nil else {
            throw UpdError(.corrupt, "\(name) returned \(results.first ?? .nil), not a boolean")
        }
        return allowed
    }

    /// A `decide` result: nil (up to date), `{reason = …, message = …}` (no update, and why),
    /// or a target with its rules.
    static func outcome(_ value: LuaValue) throws -> Outcome {
        guard case .table(let fields, _) = value else {
            if value == .nil { return .noUpdate(.upToDate, nil) }
            throw UpdError(.corrupt, "decide returned a \(value), not a table or nil")
        }
        if let reason = fields["reason"] {
            let allowed = NoUpdateReason.fromPolicy.map(\.rawValue)
            guard let text = reason.stringValue, let known = NoUpdateReason(rawValue: text), NoUpdateReason.fromPolicy.contains(known) else {
                throw UpdError(.corrupt, "decide returned a reason that is not one of \(allowed.joined(separator: ", "))")
            }
            if let extra = fields.keys.sorted().first(where: { $0 != "reason" && $0 != "message" }) {
                throw UpdError(.corrupt, "decide returned a reason with the field '\(extra)' (a reason takes only a message)")
            }
            if let message = fields["message"], message.stringValue == nil {
                throw UpdError(.corrupt, "decide returned a message that is not a string")
            }
            return .noUpdate(known, fields["message"]?.stringValue.map { String($0.prefix(500)) })
        }
        return .update(try answer(fields))
    }

    static func answer(_ fields: [String: LuaValue]) throws -> Answer {
        let known: Set<String> = ["image", "version", "peers", "rate_limit", "not_before", "window"]
        if let unknown = fields.keys.sorted().first(where: { !known.contains($0) }) {
            throw UpdError(.corrupt, "decide returned an unknown field '\(unknown)'")
        }
        guard let image = fields["image"]?.stringValue, let version = fields["version"]?.stringValue else {
            throw UpdError(.corrupt, "decide returned a table without image and version")
        }
        var answer = Answer(image: image, version: version)
        if let peers = fields["peers"] {
            guard case .table(let f, let items) = peers, f.isEmpty, items.allSatisfy({ $0.stringValue != nil }) else {
                throw UpdError(.corrupt, "decide returned peers that are not a list of URLs")
            }
            answer.peers = items.compactMap(\.stringValue)
        }
        if let rate = fields["rate_limit"] {
            guard let value = rate.integerValue, value > 0 else { throw UpdError(.corrupt, "decide returned a rate_limit that is not a positive integer") }
            answer.rateLimit = UInt64(value)
        }
        if let notBefore = fields["not_before"] {
            guard let value = notBefore.integerValue else { throw UpdError(.corrupt, "decide returned a not_before that is not an integer") }
            answer.notBefore = value
        }
        if let window = fields["window"] {
            guard let text = window.stringValue, TimeWindow(parsing: text) != nil else {
                throw UpdError(.corrupt, "decide returned a window that is not \"HH:MM-HH:MM\"")
            }
            answer.window = text
        }
        return answer
    }
}

extension Logger.Level {
    /// The level of a policy's `upd.log(level, ...)`: debug, info, warn or error.
    init(policyLevel: String) {
        switch policyLevel {
        case "debug": self = .debug
        case "warn": self = .warning
        case "error": self = .error
        default: self = .info
        }
    }
}
