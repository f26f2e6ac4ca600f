import Foundation

/// The repository's `repo.json`: format version, hash algorithm and compression.
public struct RepoConfig: Codable, Equatable, Sendable {
    public static let defaultCompressionLevel: Int32 = 6
    public static let currentFormat = 1

    public var format: Int
    public var hash: String
    public var compression: String
    public var compressionLevel: Int32

    enum CodingKeys: String, CodingKey {
        case format, hash, compression
        case compressionLevel = "compression_level"
    }

    public init(compressionLevel: Int32 = RepoConfig.defaultCompressionLevel) {
        format = Self.currentFormat
        hash = ContentHash.algorithm
        compression = "zlib"
        self.compressionLevel = compressionLevel
    }

    /// Parses and checks `repo.json`; `source` names it in errors.
    public static func parse(_ bytes: [UInt8], source: String) throws -> RepoConfig {
        guard bytes.count <= 64 * 1024 else { throw UpdError(.corrupt, "\(source): larger than 64 KiB") }
        let config: RepoConfig
        do {
            config = try JSONDecoder().decode(RepoConfig.self, from: Data(bytes))
        } catch {
            throw UpdError(.corrupt, "\(source): not a valid repo.json (\(JSONErrors.describe(error)))")
        }
        guard config.format == currentFormat else {
            throw UpdError(.corrupt, "\(source): unsupported repository format \(config.format)")
        }
        guard config.hash == ContentHash.algorithm else {
            throw UpdError(.corrupt, "\(source): unsupported hash algorithm '\(config.hash)'")
        }
        guard config.compression == "zlib", (0...9).contains(config.compressionLevel) else {
            throw UpdError(.corrupt, "\(source): unsupported compression '\(config.compression)' level \(config.compressionLevel)")
        }
        return config
    }

    /// The canonical JSON text, with sorted keys.
    public func encoded() -> [UInt8] {
        CanonicalJSON.encode(self)
    }
}

public enum JSONErrors {
    /// A one-line description of a decoding error.
    public static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "missing field '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            return "wrong type at '\(c.codingPath.map(\.stringValue).joined(separator: "."))'"
        case DecodingError.dataCorrupted(let c):
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? "malformed JSON" : "invalid value at '\(path)'"
        default: return "malformed JSON"
        }
    }
}
