import Foundation

/// JSON as the repository publishes it: sorted keys, so the same value always gives the same bytes.
enum CanonicalJSON {
    static func encode<T: Encodable>(_ value: T, pretty: Bool = true) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
        return Array(try! encoder.encode(value)) + [10]
    }
}
