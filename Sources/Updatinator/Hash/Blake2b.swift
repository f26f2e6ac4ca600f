import CSodium

/// Computes BLAKE2b-256 digests through libsodium, incrementally.
public final class Blake2b {
    private let state: UnsafeMutableRawPointer

    public init() {
        Sodium.ensureInitialized()
        state = UnsafeMutableRawPointer.allocate(byteCount: crypto_generichash_statebytes(), alignment: 64)
        _ = CSodium_generichash_init(state, ContentHash.byteCount)
    }

    deinit { state.deallocate() }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        _ = CSodium_generichash_update(state, base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }

    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Finishes the digest; the hasher must not be used afterwards.
    public func finalize() -> ContentHash {
        var out = [UInt8](repeating: 0, count: ContentHash.byteCount)
        _ = out.withUnsafeMutableBufferPointer { CSodium_generichash_final(state, $0.baseAddress!, ContentHash.byteCount) }
        return ContentHash(bytes: out)!
    }

    /// Hashes bytes held in memory.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> ContentHash {
        let h = Blake2b()
        h.update(bytes)
        return h.finalize()
    }

    public static func hash(_ bytes: [UInt8]) -> ContentHash {
        bytes.withUnsafeBytes { hash($0) }
    }
}

enum Sodium {
    private static let initialized: Bool = sodium_init() >= 0

    static func ensureInitialized() {
        precondition(initialized, "libsodium failed to initialize")
    }
}
