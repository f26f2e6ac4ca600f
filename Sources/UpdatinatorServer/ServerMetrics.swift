import Foundation
import Updatinator

/// Counters for `GET /metrics`, in Prometheus's text format.
public final class ServerMetrics: Sendable {
    private struct Counts {
        var requests = [String: Int]()      // "route status" → count
        var decisions = [String: Int]()     // outcome → count
        var bytesServed = 0
        var policyErrors = 0
        var policySeconds = 0.0
        var policyCalls = 0
        var batches = [String: Int]()      // outcome → count
        var batchSeconds = 0.0
        var refusals = [String: Int]()     // why → count
        var upstreamFiles = [String: Int]()  // document or content → count
        var upstreamBytes = 0
        var upstreamFailures = 0
        var forwarded = 0
    }
    private let counts = Locked(Counts())

    public init() {}

    func request(route: String, status: Int) {
        counts.withLock { $0.requests["\(route) \(status)", default: 0] += 1 }
    }

    func decision(_ outcome: String) {
        counts.withLock { $0.decisions[outcome, default: 0] += 1 }
    }

    func served(bytes: Int) {
        counts.withLock { $0.bytesServed += bytes }
    }

    func policyCall(seconds: Double, failed: Bool) {
        counts.withLock {
            $0.policyCalls += 1
            $0.policySeconds += seconds
            if failed { $0.policyErrors += 1 }
        }
    }

    /// A batch request's outcome: computed, cached, busy, refused (by the policy) or invalid.
    func batch(_ outcome: String, seconds: Double = 0) {
        counts.withLock {
            $0.batches[outcome, default: 0] += 1
            $0.batchSeconds += seconds
        }
    }

    /// A device's request refused: `signature`, `replay`, `clock`, or the device's state (`pending`,
    /// `rejected`, `unknown`).
    func refusal(_ why: String) {
        counts.withLock { $0.refusals[why, default: 0] += 1 }
    }

    /// Files fetched from upstream (`kind`: document or content).
    func upstream(files: Int, bytes: UInt64, kind: String) {
        counts.withLock {
            $0.upstreamFiles[kind, default: 0] += files
            $0.upstreamBytes += Int(bytes)
        }
    }

    func forwarded(_ reports: Int) {
        counts.withLock { $0.forwarded += reports }
    }

    func upstreamFailure() {
        counts.withLock { $0.upstreamFailures += 1 }
    }

    /// How many batch requests had this outcome.
    public func batches(_ outcome: String) -> Int { counts.withLock { $0.batches[outcome] ?? 0 } }

    /// The exposition text.
    public func text() -> String {
        let c = counts.withLock { $0 }
        var lines = [
            "# HELP updatinator_build_info The server's updatinator version, as a label; always 1.",
            "# TYPE updatinator_build_info gauge",
            "updatinator_build_info{version=\"\(UpdatinatorVersion.current)\"} 1",
            "# HELP updatinator_requests_total HTTP requests by route and status.",
            "# TYPE updatinator_requests_total counter",
        ]
        for (key, count) in c.requests.sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: " ")
            lines.append("updatinator_requests_total{route=\"\(parts[0])\",status=\"\(parts[1])\"} \(count)")
        }
        lines += ["# HELP updatinator_decisions_total Check answers by outcome (update, or the reason there is none).",
                  "# TYPE updatinator_decisions_total counter"]
        for outcome in ["update"] + NoUpdateReason.allCases.filter({ $0 != .deferred }).map(\.rawValue) {
            lines.append("updatinator_decisions_total{outcome=\"\(outcome)\"} \(c.decisions[outcome] ?? 0)")
        }
        lines += [
            "# HELP updatinator_bytes_served_total Bytes of files sent.",
            "# TYPE updatinator_bytes_served_total counter",
            "updatinator_bytes_served_total \(c.bytesServed)",
            "# HELP updatinator_policy_errors_total Policy calls that failed (errors, limits, bad answers).",
            "# TYPE updatinator_policy_errors_total counter",
            "updatinator_policy_errors_total \(c.policyErrors)",
            "# HELP updatinator_policy_seconds Time spent in the policy's decide.",
            "# TYPE updatinator_policy_seconds summary",
            "updatinator_policy_seconds_sum \(c.policySeconds)",
            "updatinator_policy_seconds_count \(c.policyCalls)",
            "# HELP updatinator_batches_total Batch requests by outcome (computed, cached, busy, refused, invalid).",
            "# TYPE updatinator_batches_total counter",
        ]
        for outcome in ["computed", "cached", "busy", "refused", "invalid"] {
            lines.append("updatinator_batches_total{outcome=\"\(outcome)\"} \(c.batches[outcome] ?? 0)")
        }
        lines += [
            "# HELP updatinator_batch_seconds_total Time devices waited for the answers to their batch requests (a batch computed, or made of cached frames, or found cached).",
            "# TYPE updatinator_batch_seconds_total counter",
            "updatinator_batch_seconds_total \(c.batchSeconds)",
            "# HELP updatinator_device_refusals_total Device requests refused, by why (signature, replay, clock, pending, rejected, unknown).",
            "# TYPE updatinator_device_refusals_total counter",
        ]
        for why in ["signature", "replay", "clock", "pending", "rejected", "unknown"] {
            lines.append("updatinator_device_refusals_total{why=\"\(why)\"} \(c.refusals[why] ?? 0)")
        }
        lines += [
            "# HELP updatinator_upstream_files_total Files fetched from upstream (serve --upstream), by kind (document, content).",
            "# TYPE updatinator_upstream_files_total counter",
            "updatinator_upstream_files_total{kind=\"document\"} \(c.upstreamFiles["document"] ?? 0)",
            "updatinator_upstream_files_total{kind=\"content\"} \(c.upstreamFiles["content"] ?? 0)",
            "# HELP updatinator_upstream_bytes_total Bytes fetched from upstream.",
            "# TYPE updatinator_upstream_bytes_total counter",
            "updatinator_upstream_bytes_total \(c.upstreamBytes)",
            "# HELP updatinator_upstream_failures_total Fetches from upstream that failed (unreachable, missing or refused).",
            "# TYPE updatinator_upstream_failures_total counter",
            "updatinator_upstream_failures_total \(c.upstreamFailures)",
            "# HELP updatinator_reports_forwarded_total Reports sent upstream and recorded there.",
            "# TYPE updatinator_reports_forwarded_total counter",
            "updatinator_reports_forwarded_total \(c.forwarded)",
        ]
        return lines.joined(separator: "\n") + "\n"
    }
}
