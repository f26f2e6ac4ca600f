import Foundation

/// The JSON of the school server's messages (`CheckRequest`, `DeviceReport`, `BatchRequest`,
/// `BatchAnswer`): one decoder, whose every refusal is one `corrupt` line naming the field
/// ("items[3].size: a size from 1 to 2^30 expected"), and one encoder, with sorted keys.
public enum WireCoding {
    /// Decodes and checks a message body; `userInfo` carries a receiver's limits (`BatchRequest.maxItemsKey`).
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], userInfo: [CodingUserInfoKey: any Sendable] = [:]) throws -> T {
        let decoder = JSONDecoder()
        decoder.userInfo = userInfo
        do {
            return try decoder.decode(T.self, from: Data(bytes))
        } catch let error as UpdError {
            throw error
        } catch DecodingError.keyNotFound(let key, let context) {
            throw UpdError(.corrupt, "\(name(context.codingPath + [key])): required")
        } catch DecodingError.typeMismatch(_, let context) where !context.codingPath.isEmpty {
            throw UpdError(.corrupt, "\(name(context.codingPath)): wrong type")
        } catch {
            // Malformed JSON, nested too deep for the parser, or not an object.
            throw UpdError(.corrupt, "not a JSON object")
        }
    }

    /// A message's JSON text.
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }

    /// A field's name for messages, "items[3].hash", at most 60 printable characters (the
    /// name of an unknown field is the sender's text).
    static func name(_ path: [CodingKey]) -> String {
        var text = ""
        for key in path {
            if let index = key.intValue { text += "[\(index)]" } else { text += (text.isEmpty ? "" : ".") + key.stringValue }
        }
        let printable = text.unicodeScalars.map { $0.value >= 0x20 && $0.value < 0x7f ? Character($0) : "?" }
        return String(printable.prefix(60))
    }

    /// Device ids, channels and codes: 1 to 128 printable ASCII characters without spaces.
    public static let identifierExpected = "1 to 128 printable characters without spaces expected"

    public static func isIdentifier(_ value: String) -> Bool {
        (1...128).contains(value.utf8.count) && value.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f }
    }

    /// A device's peer server: an http(s) URL of at most 300 bytes without white space.
    public static func isPeerURL(_ url: String) -> Bool {
        url.utf8.count <= 300 && (url.hasPrefix("http://") || url.hasPrefix("https://"))
            && !url.contains(where: { $0.isWhitespace || $0.isNewline })
    }
}

/// Any field name of a JSON object.
struct WireKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// One JSON object of a message being decoded: each field read by name and checked, each
/// refusal naming the field.
struct WireObject {
    let container: KeyedDecodingContainer<WireKey>
    /// Whether a field set to null counts as absent; otherwise null is the wrong type.
    let nullIsAbsent: Bool

    init(_ decoder: Decoder, nullIsAbsent: Bool = true) throws {
        do {
            container = try decoder.container(keyedBy: WireKey.self)
        } catch {
            throw UpdError(.corrupt, decoder.codingPath.isEmpty ? "not a JSON object" : "\(WireCoding.name(decoder.codingPath)): an object expected")
        }
        self.nullIsAbsent = nullIsAbsent
    }

    func name(_ field: String) -> String { WireCoding.name(container.codingPath + [WireKey(field)]) }

    /// The fields not in `known`, in order.
    func unknownFields(_ known: Set<String>) -> [String] {
        container.allKeys.map(\.stringValue).filter { !known.contains($0) }.sorted()
    }

    /// Refuses any field not in `known`.
    func refuseUnknown(_ known: Set<String>) throws {
        if let unknown = unknownFields(known).first { throw UpdError(.corrupt, "\(name(unknown)): unknown field") }
    }

    /// A field's value, or nil when it is absent; `expected` says what it must be.
    func optional<T: Decodable>(_ field: String, _ type: T.Type, _ expected: String, where valid: (T) -> Bool = { _ in true }) throws -> T? {
        let key = WireKey(field)
        guard container.contains(key) else { return nil }
        if nullIsAbsent, (try? container.decodeNil(forKey: key)) == true { return nil }
        let value: T
        do {
            value = try container.decode(T.self, forKey: key)
        } catch let error as UpdError {
            throw error
        } catch {
            throw UpdError(.corrupt, "\(name(field)): \(expected)")
        }
        guard valid(value) else { throw UpdError(.corrupt, "\(name(field)): \(expected)") }
        return value
    }

    /// A field that must be present.
    func required<T: Decodable>(_ field: String, _ type: T.Type, _ expected: String, where valid: (T) -> Bool = { _ in true }) throws -> T {
        guard let value = try optional(field, type, expected, where: valid) else { throw UpdError(.corrupt, "\(name(field)): required") }
        return value
    }

    /// An image or version name (the rules of a manifest's header).
    func imageName(_ field: String) throws -> String? {
        guard let value = try optional(field, String.self, "a string expected") else { return nil }
        if let problem = Manifest.problem(withName: value) { throw UpdError(.corrupt, "\(name(field)): \(problem)") }
        return value
    }
}

extension KeyedEncodingContainer where Key == WireKey {
    /// Encodes a field unless it is nil.
    mutating func encode(_ value: (some Encodable)?, _ field: String) throws {
        if let value { try encode(value, forKey: WireKey(field)) }
    }
}
