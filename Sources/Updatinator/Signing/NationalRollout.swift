import Foundation

/// What a national server allows one school's devices to run, signed with its decision key
/// (purpose `rollout`): for each image, its rollout state, the versions every device may move
/// to, and the version being rolled out with the share of devices (by stable bucket) it has
/// reached. A school fetches it (`POST /v1/rollout`), keeps the last one it verified, and
/// holds every answer of its own policy and operators to it: a school may narrow what the
/// national tier allows, never widen it. An image the document does not name may not be moved
/// to, and once the document expires nothing may be until a fresh one arrives.
public struct NationalRollout: Codable, Equatable, Sendable {
    public struct Rule: Codable, Equatable, Sendable {
        /// `active`, `paused` or `halted` (a national operator's pause or halt): not active, no
        /// device may move to any version of the image.
        public var state: String = "active"
        public var reason: String?
        /// Versions every device may move to.
        public var versions: [String] = []
        /// The version being rolled out: a device may move to it when its bucket (`RolloutBucket`,
        /// with `salt`) is below `percent`.
        public var staged: String?
        public var percent: Int = 0
        public var salt: String = "national"

        public init(versions: [String] = [], staged: String? = nil, percent: Int = 0) {
            self.versions = versions
            self.staged = staged
            self.percent = percent
        }
    }

    public var school: String
    /// The national server's clock when it signed, and when the document stops counting.
    public var time: Int64
    public var expires: Int64
    public var images: [String: Rule]

    public init(school: String, time: Int64, expires: Int64, images: [String: Rule]) {
        (self.school, self.time, self.expires, self.images) = (school, time, expires, images)
    }

    /// Whether `device` may move to `image` `version` under this document at `now`: nil when it
    /// may, else the reason it may not and the words for it.
    public func refusal(device: String, image: String, version: String, now: Int64) -> (NoUpdateReason, String)? {
        guard now < expires else {
            return (.held, "the national rollout this school holds expired; no moves until the school reaches its upstream")
        }
        guard let rule = images[image] else { return (.held, "the national rollout allows no version of \(image)") }
        switch rule.state {
        case "paused": return (.paused, "paused nationally" + (rule.reason.map { ": \($0)" } ?? ""))
        case "active": break
        default: return (.halted, "halted nationally" + (rule.reason.map { ": \($0)" } ?? ""))
        }
        if rule.versions.contains(version) { return nil }
        if rule.staged == version {
            if RolloutBucket.of(device: device, salt: rule.salt) < rule.percent { return nil }
            return (.held, "the national rollout of \(image) \(version) has reached \(rule.percent) % of devices, not this one yet")
        }
        return (.held, "the national rollout does not allow \(image) \(version)")
    }

    /// The envelope of this document, signed with a national decision key.
    public func signed(with key: SecretKey) -> [UInt8] {
        SignedEnvelope.seal(self, as: "rollout", key: key, purpose: .rollout)
    }

    /// Verifies an envelope: signed by the keyring's keys for this purpose, canonical, for this
    /// school, with valid names and percentages, and not older than `notBefore` (the time of the
    /// document held: an older one is a replay). An expired document verifies: it still says
    /// what was allowed, and `refusal` refuses every move under it.
    public static func verify(envelope bytes: [UInt8], keyring: Keyring, school: String, notBefore: Int64 = 0,
                              source: String) throws -> NationalRollout {
        let rollout = try SignedEnvelope.open(bytes, as: "rollout", NationalRollout.self, keyring: keyring, purpose: .rollout,
                                              maxBytes: 1 << 20, source: source)
        guard rollout.school == school else {
            throw UpdError(.verification, "\(source): the rollout is for school \(rollout.school), not \(school)")
        }
        guard rollout.time >= notBefore else {
            throw UpdError(.verification, "\(source): the rollout of \(rollout.time) is older than the one held (\(notBefore)); refusing a replay")
        }
        for (image, rule) in rollout.images {
            let names = [image, rule.salt] + rule.versions + (rule.staged.map { [$0] } ?? [])
            guard names.allSatisfy({ Manifest.problem(withName: $0) == nil }), (0...100).contains(rule.percent),
                  ["active", "paused", "halted"].contains(rule.state) else {
                throw UpdError(.corrupt, "\(source): the rule for \(image) names an invalid version, salt, state or percent")
            }
        }
        return rollout
    }
}

/// A school's copy of its national rollout: the envelope as it arrived, written atomically, so
/// that a restart goes on by the last one verified.
public struct NationalRolloutFile: Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// The document held, verified again; nil when there is none or it does not verify.
    public func load(keyring: Keyring, school: String) -> NationalRollout? {
        guard let bytes = try? Sys.readFile(path, limit: 1 << 20) else { return nil }
        return try? NationalRollout.verify(envelope: bytes, keyring: keyring, school: school, source: path)
    }

    public func save(_ envelope: [UInt8]) throws {
        try Sys.writeFileAtomically(path, envelope, mode: 0o600)
    }

    public func remove() {
        Sys.unlink(path)
    }
}
