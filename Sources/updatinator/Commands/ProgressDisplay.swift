import Foundation
import Updatinator

/// Shows a long operation's progress on standard error: on a terminal, one line with a bar,
/// rewritten in place; otherwise (a log, the journal, a pipe) a plain line when the phase
/// changes and then at most every few seconds, so that a log keeps a trace of a long operation
/// without a line per blob.
enum ProgressDisplay {
    /// The least time between two lines of one phase: on a terminal, and in plain lines.
    static let terminalInterval: TimeInterval = 0.1
    static let plainInterval: TimeInterval = 5
    private static let last = Locked<(phase: String, at: Date)?>(nil)

    /// Shows `line`, a moment of `phase`; `done` (0 to 1) fills a terminal's bar.
    static func show(_ phase: String, _ line: String, done: Double? = nil) {
        let now = Date()
        let interval = Console.isInteractive ? terminalInterval : plainInterval
        let due = last.withLock { last in
            guard last == nil || last!.phase != phase || now.timeIntervalSince(last!.at) >= interval else { return false }
            last = (phase, now)
            return true
        }
        guard due else { return }
        if Console.isInteractive {
            let bar = done.map { "[" + String(repeating: "#", count: Int(min(1, max(0, $0)) * 24)).padding(toLength: 24, withPad: ".", startingAt: 0) + "] " }
            Console.progress((bar ?? "") + line)
        } else if !plainLinesOff.withLock({ $0 }) {
            Console.log(.info, line)
        }
    }

    /// Off under `--json`, where standard error carries only the JSON error, if any.
    static let plainLinesOff = Locked(false)

    /// Shows an apply's or a deployment's progress: its steps and downloads, or the batch it waits for.
    static func showApply(_ verb: String, _ p: ApplyProgress) {
        if let wait = p.waitingForBatch {
            return show("waiting", "waiting for the server to prepare a batch of \(wait.items) items (\(formatBytes(wait.bytes)))…")
        }
        var line = "\(verb): \(p.stepsDone)/\(p.totalSteps) steps"
        if let d = p.download { line += "; downloaded " + describe(d) }
        show(verb, line, done: p.totalSteps > 0 ? Double(p.stepsDone) / Double(p.totalSteps) : nil)
    }

    /// Shows a fetch's progress.
    static func showFetch(_ p: FetchProgress) {
        show("downloading", "downloading: " + describe(p), done: p.totalBytes > 0 ? Double(p.bytes) / Double(p.totalBytes) : 1)
    }

    /// "3/10 blobs, 1.2 MiB of 4.0 MiB, 300.0 KiB/s, 9 s left".
    private static func describe(_ p: FetchProgress) -> String {
        "\(p.blobs)/\(p.totalBlobs) blobs, \(formatBytes(p.bytes)) of \(formatBytes(p.totalBytes)), \(formatBytes(UInt64(p.rate)))/s"
            + (p.secondsLeft.map { String(format: ", %.0f s left", $0) } ?? "")
    }
}
