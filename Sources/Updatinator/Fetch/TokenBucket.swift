import Foundation

/// The rate limiter behind `FetchOptions.rateLimit`: a token bucket that every transfer of a
/// fetcher draws from. It is a value over times it is given, so that its arithmetic is tested
/// without a clock.
struct TokenBucket {
    /// Bytes per second; nil for no limit, and 0 holds every transfer.
    var limit: UInt64?
    /// Bytes that may be taken now; negative while a large chunk is being paid for.
    private(set) var tokens: Double = 0
    private var lastRefill: Date

    init(limit: UInt64?, now: Date) {
        self.limit = limit
        lastRefill = now
    }

    /// The most a bucket holds: a quarter second's worth keeps bursts short, and is deep enough
    /// that a loop slowed by a busy machine does not lose its share.
    var depth: Double { limit.map { Double($0) / 4 } ?? 0 }

    /// Adds what the time since the last refill earned; whether a paused transfer may resume.
    mutating func refill(at now: Date) -> Bool {
        let elapsed = max(0, now.timeIntervalSince(lastRefill))
        lastRefill = now
        guard let limit else {
            tokens = 0
            return true
        }
        tokens = min(depth, tokens + Double(limit) * elapsed)
        return tokens > 0
    }

    /// Takes a chunk that has arrived, if the bucket has any tokens; a chunk larger than what is
    /// left is taken whole and paid for by the refills after it.
    mutating func take(_ count: Int) -> Bool {
        guard limit != nil else { return true }
        guard tokens > 0 else { return false }
        tokens -= Double(count)
        return true
    }

    /// How long until the bucket has tokens again; nil when it has some now or has no limit.
    var secondsUntilTokens: Double? {
        guard let limit, limit > 0, tokens <= 0 else { return nil }
        return -tokens / Double(limit)
    }
}
