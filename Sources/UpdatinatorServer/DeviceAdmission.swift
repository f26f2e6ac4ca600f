import Foundation
import Hummingbird
import NIOCore
import Updatinator

/// How a school server admits a device the first time it signs a request (`serve --admission`).
public enum AdmissionRule: Sendable, Equatable {
    /// The device waits, pending, until an operator admits it (`fleet admit`): the default, since
    /// a school's network is open to anyone's laptop and only its own should move its counts.
    case byOperator
    /// A device that proves it knows the deployment's enrolment token is admitted; one that does
    /// not is refused and not recorded.
    case byToken([UInt8])
    /// Every device is admitted on first use (a lab, a test bench).
    case automatic

    public var name: String {
        switch self {
        case .byOperator: return "operator"
        case .byToken: return "token"
        case .automatic: return "auto"
        }
    }
}

/// Checks that a device's request is signed by the device it names, fresh and not replayed,
/// and that the device is admitted; enrols a device on its first signed request by the
/// deployment's rule. The keys and admission of enrolled devices are kept in memory (loaded from
/// the inventory at start, written through to it), so a request costs no SQLite query.
public final class DeviceAdmission: Sendable {
    public let rule: AdmissionRule
    /// Seconds a request's time may be off the server's clock, either way.
    public let window: Int64
    let inventory: FleetInventory
    private let enrolled: Locked<[String: Enrolment]>
    private let nonces = NonceMemory()

    /// Who enrols here: devices, or the school servers of a tier above them.
    public let kind: Enrollee

    public init(rule: AdmissionRule, inventory: FleetInventory, kind: Enrollee = .device, window: Int64 = 300) throws {
        self.rule = rule
        self.window = window
        self.inventory = inventory
        self.kind = kind
        enrolled = Locked(try inventory.enrolments(of: kind))
    }

    /// Reads the enrolments again, for what other server processes sharing the inventory
    /// enrolled, admitted or rejected.
    public func reload() throws {
        let fresh = try inventory.enrolments(of: kind)
        enrolled.withLock { $0 = fresh }
    }

    /// A device's enrolment, if it has one.
    public func enrolment(_ device: String) -> Enrolment? {
        enrolled.withLock { $0[device] }
    }

    /// The sender of a request signed by an admitted device: the signature must be valid for the
    /// method, path and body as received, by the key the device enrolled with (or, at enrolment,
    /// the key it sends), its time within `window` of `now`, its nonce unseen. Anything else is a
    /// `DeviceRefusal`. A first request is enrolled by the rule. What blocks (an enrolment, and
    /// the nonce's record in an inventory other processes share) runs on `threads`.
    func authenticate(_ request: Request, bodyHash: ContentHash, address: String?, now: Int64,
                      threads: WorkerThreads) async throws -> String {
        let signature: RequestSignature
        do {
            let headers = request.headers
            let lookup: (String) -> String? = { name in
                let lowercased = name.lowercased()
                return headers.first { $0.name.canonicalName == lowercased }?.value
            }
            guard let parsed = try RequestSignature.parse(header: lookup) else {
                throw ServerRefusal(.unauthorized, DeviceRefusal.signature,
                                    "the request is not signed: every check, report and batch must carry the device's signature (\(RequestSignature.Header.device), …)")
            }
            signature = parsed
        } catch let error as UpdError {
            throw ServerRefusal(.unauthorized, DeviceRefusal.signature, error.message)
        }
        guard abs(signature.time - now) <= window else {
            throw ServerRefusal(.unauthorized, DeviceRefusal.clock,
                                "the request's time \(signature.time) is more than \(window) s from the server's (\(now)); check the device's clock",
                                serverTime: now)
        }
        let device = signature.sender
        let method = request.method.rawValue, path = request.uri.path
        let known = enrolment(device)
        if let known, known.key != signature.key {
            throw ServerRefusal(.forbidden, DeviceRefusal.signature,
                                "\(kind.rawValue) \(device) is enrolled under another key (\(known.key.keyID)); this request's key is \(signature.key.keyID)")
        }
        guard signature.isValid(method: method, path: path, bodyHash: bodyHash, key: known?.key ?? signature.key) else {
            throw ServerRefusal(.unauthorized, DeviceRefusal.signature, "the signature of device \(device) does not verify for this request")
        }
        var unseen = nonces.firstUse(signature.nonce, now: now, window: window)
        if unseen && inventory.isShared {
            // A replay may go to another server process that shares the inventory.
            let (inventory, nonce, window) = (self.inventory, signature.nonce, self.window)
            unseen = try await threads.run { try inventory.firstUse(ofNonce: nonce, now: now, window: window) }
        }
        guard unseen else {
            throw ServerRefusal(.unauthorized, DeviceRefusal.replay, "the request of device \(device) was sent before (nonce \(signature.nonce)); refusing a replay")
        }
        var state = known?.state
        if state == nil {
            guard let first = try firstState(signature) else {
                throw ServerRefusal(.forbidden, DeviceRefusal.notAdmitted,
                                    "\(kind.rawValue) \(device) is unknown: this server admits devices by enrolment token, and the request's is missing or wrong",
                                    state: "unknown")
            }
            state = try await threads.run { try self.enrol(device, Enrolment(key: signature.key, state: first), address: address, now: now) }.state
        }
        switch state! {
        case .admitted: return device
        case .pending:
            throw ServerRefusal(.forbidden, DeviceRefusal.notAdmitted,
                                "\(kind.rawValue) \(device) is pending: an operator must admit it (key \(signature.key.keyID))", state: "pending")
        case .rejected:
            throw ServerRefusal(.forbidden, DeviceRefusal.notAdmitted, "\(kind.rawValue) \(device) was rejected by an operator", state: "rejected")
        }
    }

    /// The admission a device gets by the rule at its first request; nil when it is not enrolled at all.
    private func firstState(_ signature: RequestSignature) throws -> AdmissionState? {
        switch rule {
        case .automatic: return .admitted
        case .byOperator: return .pending
        case .byToken(let token):
            guard let proof = signature.enrolment,
                  RequestSignature.sameProof(proof, RequestSignature.enrolmentProof(token: token, key: signature.key)) else { return nil }
            return .admitted
        }
    }

    /// Records a first enrolment (a race between two first requests keeps the first). Blocks.
    private func enrol(_ device: String, _ enrolment: Enrolment, address: String?, now: Int64) throws -> Enrolment {
        try enrolled.withLock { enrolled in
            if let existing = enrolled[device] {
                guard existing.key == enrolment.key else {
                    throw ServerRefusal(.forbidden, DeviceRefusal.signature, "\(kind.rawValue) \(device) is enrolled under another key (\(existing.key.keyID))")
                }
                return existing
            }
            // Another process sharing the inventory may have enrolled this id meanwhile: its key stands.
            let stored = try inventory.enrol(device, enrolment, address: address, now: now, kind: kind)
            guard stored.key == enrolment.key else {
                throw ServerRefusal(.forbidden, DeviceRefusal.signature, "\(kind.rawValue) \(device) is enrolled under another key (\(stored.key.keyID))")
            }
            enrolled[device] = stored
            return stored
        }
    }

    /// An operator's admit or reject of an enrolled device. Blocks. Unknown: `usage`; already so: `nothing_to_do`.
    public func set(_ device: String, _ state: AdmissionState) throws {
        try enrolled.withLock { enrolled in
            guard var enrolment = enrolled[device] else {
                throw UpdError(.usage, "\(kind.rawValue) \(device) has not enrolled (it has sent no signed request)")
            }
            guard enrolment.state != state else { throw UpdError(.nothingToDo, "\(kind.rawValue) \(device) is \(state.rawValue) already") }
            try inventory.setAdmission(device, state, kind: kind)
            enrolment.state = state
            enrolled[device] = enrolment
        }
    }
}

/// The nonces of the requests accepted lately, so that none is accepted twice: two
/// generations, each kept for twice the window (a request's time may be `window` either side of
/// the clock), so a nonce is remembered for as long as its request could be accepted.
final class NonceMemory: Sendable {
    private let generations = Locked<(current: Set<String>, previous: Set<String>, started: Int64)>(([], [], 0))

    /// Whether `nonce` is new; it is remembered from now on.
    func firstUse(_ nonce: String, now: Int64, window: Int64) -> Bool {
        generations.withLock { g in
            if now - g.started >= 2 * window {
                g.previous = now - g.started >= 4 * window ? [] : g.current
                g.current = []
                g.started = now
            }
            guard !g.previous.contains(nonce) else { return false }
            return g.current.insert(nonce).inserted
        }
    }
}

/// A refusal of a device's request: its HTTP status and a JSON error naming why (`code`), with
/// the device's admission `state` or the server's time where they apply (see `DeviceRefusal`).
struct ServerRefusal: HTTPResponseError {
    let status: HTTPResponse.Status
    let code: String
    let message: String
    var state: String?
    var serverTime: Int64?

    init(_ status: HTTPResponse.Status, _ code: String, _ message: String, state: String? = nil, serverTime: Int64? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.state = state
        self.serverTime = serverTime
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var error: [String: Any] = ["code": code, "message": message]
        error["state"] = state
        error["server_time"] = serverTime
        let body = try JSONSerialization.data(withJSONObject: ["error": error], options: [.sortedKeys])
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}
