import Foundation

/// JSON as the repository publishes it: sorted keys, so the same value always gives the same bytes.
enum CanonicalJSON {
    static func encode<T: Encodable>(_ value: T, pretty: Bool = true) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
        return Array(try! encoder.encode(value)) + [10]
    }

    /// Refuses signed JSON that is not exactly what `encode` writes for its value: a repeated key
    /// (which two readers could resolve differently), unsorted keys, or other whitespace. So a
    /// signature covers one reading only, as a manifest's does.
    static func requireCanonical(_ bytes: [UInt8], pretty: Bool, source: String) throws {
        guard let value = try? JSONDecoder().decode([String: JSONValue].self, from: Data(bytes)),
              encode(value, pretty: pretty) == bytes else {
            throw UpdError(.corrupt, "\(source): not canonical JSON (sorted unique keys, as updatinator writes it)")
        }
    }
}
