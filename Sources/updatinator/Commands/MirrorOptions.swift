import ArgumentParser
import Foundation
import Updatinator

/// The options of every command that downloads from mirrors.
struct MirrorOptions: ParsableArguments {
    @Option(help: "A repository to download from (http://, https:// or file://); repeatable, tried in order.")
    var mirror: [String] = []

    @Option(help: "The most bytes per second to download over the network, for all transfers together (file:// mirrors are read at full speed).")
    var rateLimit: UInt64?

    @Option(help: "How many downloads run at once.")
    var concurrency = 4

    /// The transport's options for these mirrors; nil when none is given.
    var fetchOptions: FetchOptions? {
        guard !mirror.isEmpty else { return nil }
        var options = FetchOptions(mirrors: mirror)
        options.rateLimit = rateLimit
        options.concurrency = concurrency
        return options
    }

    /// A fetcher for these mirrors, with a progress bar on a terminal.
    func makeFetcher() throws -> CurlFetcher {
        let fetcher = try CurlFetcher(options: fetchOptions ?? FetchOptions(mirrors: []))
        fetcher.progress = Self.showProgress
        return fetcher
    }

    /// How the engine's side effects show on a terminal: warnings on standard error, a progress bar.
    static var observer: UpdateObserver { UpdateObserver(warn: { Console.warning($0) }, fetcherMade: { $0.progress = showProgress }) }

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
