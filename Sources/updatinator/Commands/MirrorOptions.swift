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

    @OptionGroup var tls: TLSOptions

    /// The transport's options for these mirrors; nil when none is given.
    var fetchOptions: FetchOptions? {
        guard !mirror.isEmpty else { return nil }
        var options = FetchOptions(mirrors: mirror)
        options.rateLimit = rateLimit
        options.concurrency = concurrency
        options.caFile = tls.caFile
        return options
    }

    /// A fetcher for these mirrors, showing its progress.
    func makeFetcher() throws -> CurlFetcher {
        let fetcher = try CurlFetcher(options: fetchOptions ?? FetchOptions(mirrors: []))
        fetcher.progress = ProgressDisplay.showFetch
        return fetcher
    }

    /// How the engine's side effects show: warnings on standard error, and the progress of the
    /// operation (`verb`: "applying", "deploying"), its downloads included.
    static func observer(_ verb: String) -> UpdateObserver {
        UpdateObserver(warn: { Console.warning($0) }, progress: { ProgressDisplay.showApply(verb, $0) })
    }
}
