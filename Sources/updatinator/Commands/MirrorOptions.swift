import ArgumentParser
import Foundation
import Updatinator

/// The options of every command that downloads from mirrors.
struct MirrorOptions: ParsableArguments {
    @Option(help: "A repository to download from (http://, https:// or file://); repeatable, tried in order.")
    var mirror: [String] = []

    @Option(help: "The most bytes per second to download, for all transfers together.")
    var rateLimit: UInt64?

    @Option(help: "How many downloads run at once.")
    var concurrency = 4

    /// A fetcher for these mirrors, with a progress bar on a terminal.
    func makeFetcher() throws -> CurlFetcher {
        var options = FetchOptions(mirrors: mirror)
        options.rateLimit = rateLimit
        options.concurrency = concurrency
        let fetcher = try CurlFetcher(options: options)
        fetcher.progress = Self.showProgress
        return fetcher
    }

    /// The mirrors' delta index into `manifest`'s contents, or nil with a warning on standard
    /// error (deltas only save bytes).
    static func deltaIndex(_ fetcher: CurlFetcher, for manifest: Manifest, keyring: Keyring?) -> DeltaIndex? {
        fetcher.usableDeltaIndex(for: manifest, keyring: keyring, warn: { Console.error("warning: \($0)") })
    }

    /// Shows a fetch's progress as a bar on a terminal.
    static func showProgress(_ p: FetchProgress) {
        let done = p.totalBytes > 0 ? min(1, Double(p.bytes) / Double(p.totalBytes)) : 1
        let bar = String(repeating: "#", count: Int(done * 24)).padding(toLength: 24, withPad: ".", startingAt: 0)
        var line = "[\(bar)] \(p.blobs)/\(p.totalBlobs) blobs, \(formatBytes(p.bytes)) of \(formatBytes(p.totalBytes)), "
            + "\(formatBytes(UInt64(p.rate)))/s"
        if let left = p.secondsLeft { line += String(format: ", %.0f s left", left) }
        Console.progress(line)
    }
}
