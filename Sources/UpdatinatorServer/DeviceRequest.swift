import Foundation
import Updatinator
import UpdatinatorLua

/// A device's check (`POST /v1/check`): who it is, what it runs, its nonce, and whatever else
/// its client policy sent, all of which the server policy sees as the `device` table.
public struct DeviceRequest: Sendable {
    public let device: String
    public let nonce: String
    public let image: String?
    public let version: String?
    public let channel: String?
    /// The device's peer server, which serves the image it runs to its neighbours.
    public let peer: String?
    /// Every field, as the policy's `device` table (with `address`, the client's IP, added).
    public let fields: [String: LuaValue]

    /// Decodes and checks a request body.
    public static func parse(_ body: [UInt8], address: String?) throws -> DeviceRequest {
        guard let parsed = try? JSONSerialization.jsonObject(with: Data(body)), case .table(let object, _)? = try? luaValue(parsed) else {
            throw UpdError(.corrupt, "not a JSON object")
        }
        func text(_ name: String) throws -> String? {
            switch object[name] {
            case nil: return nil
            case .string(let s)?: return s
            default: throw UpdError(.corrupt, "\(name): a string expected")
            }
        }
        guard let device = try text("device"), let nonce = try text("nonce") else {
            throw UpdError(.corrupt, "'device' and 'nonce' are required")
        }
        try checkIdentifier(device, "device")
        guard (16...128).contains(nonce.utf8.count), nonce.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw UpdError(.corrupt, "nonce: 16 to 128 lowercase hex digits expected")
        }
        let image = try text("image"), version = try text("version")
        for (name, value) in [("image", image), ("version", version)] {
            if let value, let problem = Manifest.problem(withName: value) { throw UpdError(.corrupt, "\(name): \(problem)") }
        }
        let channel = try text("channel")
        if let channel { try checkIdentifier(channel, "channel") }
        let peer = try text("peer")
        if let peer { try checkPeerURL(peer) }
        var fields = object
        fields["address"] = address.map { .string($0) }
        return DeviceRequest(device: device, nonce: nonce, image: image, version: version, channel: channel, peer: peer, fields: fields)
    }

    /// Device ids, channels and codes: 1 to 128 printable ASCII characters without spaces.
    static func checkIdentifier(_ value: String, _ name: String) throws {
        guard (1...128).contains(value.utf8.count), value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw UpdError(.corrupt, "\(name): 1 to 128 printable characters without spaces expected")
        }
    }

    static func checkPeerURL(_ url: String) throws {
        guard url.utf8.count <= 300, url.hasPrefix("http://") || url.hasPrefix("https://"),
              !url.contains(where: { $0.isWhitespace || $0.isNewline }) else {
            throw UpdError(.corrupt, "peer: not an http(s) URL")
        }
    }

    /// A parsed JSON value as Lua sees it: objects as tables with named fields, arrays as
    /// sequences, null as absent; at most 16 levels deep.
    static func luaValue(_ value: Any, depth: Int = 0) throws -> LuaValue {
        guard depth < 16 else { throw UpdError(.corrupt, "nested more than 16 levels") }
        switch value {
        case let s as String: return .string(s)
        case let n as NSNumber:
            switch String(cString: n.objCType) {
            case "c", "B": return .boolean(n.boolValue)
            case "d", "f": return .number(n.doubleValue)
            default: return .integer(n.int64Value)
            }
        case let array as [Any]: return .array(try array.map { try luaValue($0, depth: depth + 1) })
        case let object as [String: Any]:
            return .table(try object.compactMapValues { $0 is NSNull ? nil : try luaValue($0, depth: depth + 1) })
        default: return .nil
        }
    }
}
