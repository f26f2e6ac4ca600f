/// Stable rollout buckets: BLAKE2b-256 of the salt, a NUL and the device id; its first eight
/// bytes, big-endian, modulo 100. A salt per rollout gives each rollout its own order. The
/// server policies' `upd.rollout.bucket` and the national rollout's stages both use it.
public enum RolloutBucket {
    public static func of(device: String, salt: String) -> Int {
        let hash = Blake2b.hash(Array(salt.utf8) + [0] + Array(device.utf8))
        let head = hash.bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return Int(head % 100)
    }
}
