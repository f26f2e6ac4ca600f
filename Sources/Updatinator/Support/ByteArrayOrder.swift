import Glibc

extension Array where Element == UInt8 {
    /// Whether these bytes sort before `other` (`lexicographicallyPrecedes`, through `memcmp`:
    /// manifests sort and look up thousands of paths and hashes).
    func bytesPrecede(_ other: [UInt8]) -> Bool {
        withUnsafeBufferPointer { a in
            other.withUnsafeBufferPointer { b in
                let common = Swift.min(a.count, b.count)
                let order = common == 0 ? 0 : memcmp(a.baseAddress!, b.baseAddress!, common)
                return order != 0 ? order < 0 : a.count < b.count
            }
        }
    }

    /// Feeds the bytes to `hasher` in one call (an array's own `hash(into:)` feeds them one by one).
    func hashBytes(into hasher: inout Hasher) {
        withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}
