import Foundation
import Testing
@testable import Updatinator

/// The rate limiter over given times: what a transfer may receive in each stretch of time,
/// whatever the speed of the machine that runs the test.
@Suite struct TokenBucketTests {
    /// The most libcurl hands a write callback at once (CURL_MAX_WRITE_SIZE).
    static let largestChunk = 16 * 1024
    let start = Date(timeIntervalSinceReferenceDate: 0)
    let limit: UInt64 = 1_000_000

    /// Bytes a transfer that always has data waiting receives in `seconds`, when its loop
    /// refills the bucket every `step` seconds and takes chunks until one is refused.
    func received(seconds: Double, step: Double, chunk: Int = largestChunk, limit: UInt64? = 1_000_000,
                  change: (Double, UInt64?)? = nil) -> Double {
        var bucket = TokenBucket(limit: limit, now: start)
        var bytes = 0.0
        for i in 1...Int((seconds / step).rounded()) {
            let t = Double(i) * step
            if let change, t >= change.0 { bucket.limit = change.1 }
            guard bucket.refill(at: start.addingTimeInterval(t)) else { continue }
            var chunksThisStep = 0
            while chunksThisStep < 10_000, bucket.take(chunk) {
                bytes += Double(chunk)
                chunksThisStep += 1
            }
        }
        return bytes
    }

    @Test func aTransferReceivesTheLimitEachSecondAndNoMore() {
        let bucket = TokenBucket(limit: limit, now: start)
        let slack = bucket.depth + Double(Self.largestChunk)
        for step in [0.001, 0.01, 0.1] {
            let bytes = received(seconds: 10, step: step)
            #expect(abs(bytes - 10 * Double(limit)) <= slack, "refilled every \(step) s: \(bytes) bytes in 10 s at \(limit) B/s")
        }
    }

    @Test func aLoopSlowedByABusyMachineKeepsItsShare() {
        // A quarter second's depth: a loop that comes round every 0.2 s loses nothing.
        let bytes = received(seconds: 10, step: 0.2)
        #expect(bytes >= 10 * Double(limit) - Double(Self.largestChunk), "\(bytes) bytes in 10 s")
        // One that stalls for a second cannot make up for it with a burst.
        let stalled = received(seconds: 10, step: 1)
        #expect(stalled <= 10 * TokenBucket(limit: limit, now: start).depth + 10 * Double(Self.largestChunk), "\(stalled) bytes")
    }

    @Test func aChunkLargerThanTheBucketIsPaidForBeforeTheNext() {
        var bucket = TokenBucket(limit: limit, now: start)
        let refilled = bucket.refill(at: start.addingTimeInterval(1))
        #expect(refilled)
        let big = Int(bucket.depth) * 3
        let tookBig = bucket.take(big), tookMore = bucket.take(1)
        #expect(tookBig && !tookMore, "nothing more until the debt is paid")
        let wait = bucket.secondsUntilTokens ?? 0
        #expect(abs(wait - Double(big - Int(bucket.depth)) / Double(limit)) < 1e-9, "waits \(wait) s")
        let early = bucket.refill(at: start.addingTimeInterval(1 + wait * 0.99))
        let due = bucket.refill(at: start.addingTimeInterval(1 + wait * 1.01))
        #expect(!early && due)
    }

    @Test func noLimitLetsEverythingThroughAndZeroHoldsEverything() {
        #expect(received(seconds: 1, step: 0.1, limit: nil) == 10 * 10_000 * Double(Self.largestChunk))
        #expect(received(seconds: 10, step: 0.01, limit: 0) == 0)
        #expect(TokenBucket(limit: nil, now: start).secondsUntilTokens == nil)
    }

    @Test func aChangedLimitTakesEffectAtOnce() {
        // 1 MB/s for 5 s, then 100 kB/s for 5 s.
        let bytes = received(seconds: 10, step: 0.01, change: (5, 100_000))
        let expected = 5 * Double(limit) + 5 * 100_000.0
        #expect(abs(bytes - expected) <= TokenBucket(limit: limit, now: start).depth + 2 * Double(Self.largestChunk), "\(bytes) bytes, expected \(expected)")
    }
}
