import Foundation
import Updatinator

/// Values kept by key for a short time, all dropped at once when the data behind them changes:
/// what a policy asks of the inventory for every device, computed once a second at most.
final class ShortLivedCache<Value: Sendable>: Sendable {
    private let entries = Locked<[String: (taken: Date, value: Value)]>([:])
    let lifetime: TimeInterval
    let capacity: Int

    init(lifetime: TimeInterval, capacity: Int) {
        self.lifetime = lifetime
        self.capacity = capacity
    }

    /// The kept value, or a new one from `make`, kept from now.
    func value(_ key: String, make: () throws -> Value) rethrows -> Value {
        let now = Date()
        if let saved = entries.withLock({ $0[key] }), now.timeIntervalSince(saved.taken) < lifetime { return saved.value }
        let value = try make()
        entries.withLock { saved in
            if saved.count >= capacity { saved.removeAll() }
            saved[key] = (now, value)
        }
        return value
    }

    func removeAll() {
        entries.withLock { $0.removeAll() }
    }
}
