import Foundation
import Updatinator
import UpdatinatorLua

/// One end of the socket between the server and a policy worker process (`PolicyWorker`).
///
/// A message is a list of Lua values, the first a string naming it, sent as a frame: its
/// length (4 bytes, big-endian) and the values in a small binary encoding. The server sends
/// `call NAME ARGS…`, and answers the worker's `view METHOD ARGS…` with `answer VALUE` or
/// `failure MESSAGE`; the worker sends `ready` or `unloadable MESSAGE` once the policy is
/// loaded, `log LEVEL MESSAGE` while it runs, and ends a call with `results VALUES…`,
/// `undefined` (the policy has no such function) or `error MESSAGE`.
final class PolicyChannel {
    /// The end of the channel: the peer closed it, died, or sent what is not a message.
    struct Closed: Error {
        let reason: String
    }

    /// A read that passed its deadline.
    struct TimedOut: Error {}

    /// The largest message either side sends (a decision is a few hundred bytes).
    static let maxFrame = 16 << 20

    let fd: Int32
    private var buffer = [UInt8]()

    init(fd: Int32) { self.fd = fd }

    func close() { _ = Glibc.close(fd) }

    /// Whether the peer closed its end or sent something unasked: an idle worker that died.
    var peerIsGone: Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&poller, 1, 0) != 0
    }

    func send(_ message: [LuaValue]) throws {
        var payload = [UInt8]()
        for value in message { Self.encode(value, into: &payload) }
        let length = UInt32(payload.count)
        var frame = [UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)]
        frame += payload
        var sent = 0
        while sent < frame.count {
            let n = frame[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Closed(reason: "cannot write to the channel: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    /// The next message; waits until `deadline` (nil: for ever) and then throws `TimedOut`.
    func receive(until deadline: DispatchTime? = nil) throws -> [LuaValue] {
        while true {
            if buffer.count >= 4 {
                let length = buffer[0..<4].reduce(0) { $0 << 8 | Int($1) }
                guard length <= Self.maxFrame else { throw Closed(reason: "a message of \(length) bytes") }
                if buffer.count >= 4 + length {
                    var reader = Reader(bytes: buffer[4..<4 + length])
                    buffer.removeFirst(4 + length)
                    var message = [LuaValue]()
                    while !reader.atEnd { message.append(try reader.value()) }
                    guard case .string = message.first else { throw Closed(reason: "a message without a name") }
                    return message
                }
            }
            if let deadline {
                let now = DispatchTime.now().uptimeNanoseconds
                guard deadline.uptimeNanoseconds > now else { throw TimedOut() }
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let milliseconds = Int32(min(UInt64(Int32.max), (deadline.uptimeNanoseconds - now + 999_999) / 1_000_000))
                let ready = poll(&poller, 1, milliseconds)
                if ready < 0 && errno != EINTR { throw Closed(reason: "poll: \(String(cString: strerror(errno)))") }
                if ready <= 0 { continue }
            }
            let n = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16 * 1024) { chunk in
                let n = read(fd, chunk.baseAddress, chunk.count)
                if n > 0 { buffer += chunk[0..<n] }
                return n
            }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Closed(reason: n == 0 ? "the other end closed the channel" : String(cString: strerror(errno))) }
        }
    }

    // MARK: Encoding

    private enum Tag: UInt8 {
        case `nil`, `false`, `true`, integer, number, string, table, opaque
    }

    static func encode(_ value: LuaValue, into bytes: inout [UInt8]) {
        func count(_ n: Int) { bytes += withUnsafeBytes(of: UInt32(n).bigEndian) { Array($0) } }
        func text(_ s: String) { count(s.utf8.count); bytes += s.utf8 }
        switch value {
        case .nil: bytes.append(Tag.nil.rawValue)
        case .boolean(let b): bytes.append(b ? Tag.true.rawValue : Tag.false.rawValue)
        case .integer(let i):
            bytes.append(Tag.integer.rawValue)
            bytes += withUnsafeBytes(of: i.bigEndian) { Array($0) }
        case .number(let d):
            bytes.append(Tag.number.rawValue)
            bytes += withUnsafeBytes(of: d.bitPattern.bigEndian) { Array($0) }
        case .string(let s):
            bytes.append(Tag.string.rawValue)
            text(s)
        case .table(let fields, let items):
            bytes.append(Tag.table.rawValue)
            count(fields.count)
            for (key, field) in fields {
                text(key)
                encode(field, into: &bytes)
            }
            count(items.count)
            for item in items { encode(item, into: &bytes) }
        case .opaque(let type):
            bytes.append(Tag.opaque.rawValue)
            text(type)
        }
    }

    private struct Reader {
        let bytes: ArraySlice<UInt8>
        var at: Int

        init(bytes: ArraySlice<UInt8>) {
            self.bytes = bytes
            at = bytes.startIndex
        }

        var atEnd: Bool { at == bytes.endIndex }

        mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard n >= 0, bytes.endIndex - at >= n else { throw Closed(reason: "a truncated message") }
            defer { at += n }
            return bytes[at..<at + n]
        }

        mutating func word(_ n: Int) throws -> UInt64 { try take(n).reduce(0) { $0 << 8 | UInt64($1) } }

        mutating func text() throws -> String { String(decoding: try take(Int(try word(4))), as: UTF8.self) }

        mutating func value() throws -> LuaValue {
            guard let tag = Tag(rawValue: try take(1).first!) else { throw Closed(reason: "an unknown value in a message") }
            switch tag {
            case .nil: return .nil
            case .false: return .boolean(false)
            case .true: return .boolean(true)
            case .integer: return .integer(Int64(bitPattern: try word(8)))
            case .number: return .number(Double(bitPattern: try word(8)))
            case .string: return .string(try text())
            case .opaque: return .opaque(try text())
            case .table:
                var fields = [String: LuaValue]()
                for _ in 0..<(try word(4)) { fields[try text()] = try value() }
                var items = [LuaValue]()
                for _ in 0..<(try word(4)) { items.append(try value()) }
                return .table(fields, array: items)
            }
        }
    }
}

extension SchoolView {
    /// The answer to a policy worker's `view METHOD ARGS…`: what `RemoteSchoolView` asked.
    func answer(_ method: String, _ arguments: [LuaValue]) throws -> LuaValue {
        func string(_ i: Int) throws -> String {
            guard i < arguments.count, let text = arguments[i].stringValue else { throw UpdError(.corrupt, "\(method): argument \(i + 1) is not a string") }
            return text
        }
        func optional(_ i: Int) throws -> String? { i < arguments.count && arguments[i] != .nil ? try string(i) : nil }
        switch method {
        case "images": return .array(try images().map { .string($0) })
        case "versions": return .array(try versions(of: try string(0)).map { .string($0) })
        case "latest": return try latest(image: try string(0), channel: try optional(1)).map { .string($0) } ?? .nil
        case "count":
            guard case .table(let fields, _) = arguments.first ?? .nil else { throw UpdError(.corrupt, "count: no filter") }
            return .integer(Int64(try count(fields.compactMapValues(\.stringValue))))
        case "peers":
            guard arguments.count == 5, let prefix = arguments[3].integerValue, let limit = arguments[4].integerValue else {
                throw UpdError(.corrupt, "peers: malformed arguments")
            }
            return .array(try peers(image: try string(0), version: try string(1), near: try optional(2), prefix: Int(prefix), limit: Int(limit))
                .map { .string($0) })
        case "rollout":
            let control = try rollout(image: try string(0))
            return .array([.string(control.state), control.reason.map { .string($0) } ?? .nil, .integer(Int64(control.stage)),
                           control.stageVersion.map { .string($0) } ?? .nil])
        default: throw UpdError(.corrupt, "no view method \(method)")
        }
    }
}

/// The server's view as a policy worker sees it: each call is a `view` message to the server,
/// which answers it from its repository index and inventory (`SchoolView.answer`).
final class RemoteSchoolView: SchoolView {
    let channel: PolicyChannel

    init(channel: PolicyChannel) { self.channel = channel }

    private func ask(_ method: String, _ arguments: [LuaValue]) throws -> LuaValue {
        try channel.send([.string("view"), .string(method)] + arguments)
        let reply = try channel.receive()
        switch (reply.first?.stringValue, reply.count) {
        case ("answer", 2): return reply[1]
        case ("failure", 2): throw UpdError(.io, reply[1].stringValue ?? "the server failed")
        default: throw PolicyChannel.Closed(reason: "an unexpected message")
        }
    }

    private func strings(_ value: LuaValue) -> [String] {
        guard case .table(_, let items) = value else { return [] }
        return items.compactMap(\.stringValue)
    }

    func images() throws -> [String] { strings(try ask("images", [])) }
    func versions(of image: String) throws -> [String] { strings(try ask("versions", [.string(image)])) }
    func latest(image: String, channel: String?) throws -> String? {
        try ask("latest", [.string(image), channel.map { .string($0) } ?? .nil]).stringValue
    }
    func count(_ filter: [String: String]) throws -> Int {
        Int(try ask("count", [.table(filter.mapValues { .string($0) })]).integerValue ?? 0)
    }
    func peers(image: String, version: String, near: String?, prefix: Int, limit: Int) throws -> [String] {
        strings(try ask("peers", [.string(image), .string(version), near.map { .string($0) } ?? .nil, .integer(Int64(prefix)), .integer(Int64(limit))]))
    }
    func rollout(image: String) throws -> RolloutControl {
        guard case .table(_, let items) = try ask("rollout", [.string(image)]), items.count == 4 else {
            throw PolicyChannel.Closed(reason: "a malformed rollout answer")
        }
        return RolloutControl(state: items[0].stringValue ?? "active", reason: items[1].stringValue, stage: Int(items[2].integerValue ?? 0),
                              stageVersion: items[3].stringValue)
    }
}
