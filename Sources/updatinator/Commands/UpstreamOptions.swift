import ArgumentParser
import Foundation
import Updatinator
import UpdatinatorServer

/// `serve`'s options for a school server that mirrors the tier above.
struct UpstreamOptions: ParsableArguments {
    @Option(help: "The upstream repository (the national server's URL) that --repo mirrors: files the school lacks are fetched from it when first asked for, verified, and kept.")
    var upstream: String?

    @Option(help: "With --upstream: the build keyring that upstream's manifests, delta indexes and channels must verify against.")
    var keyring = DefaultPaths.keyring

    @Option(help: "With --upstream: a channel whose versions are fetched ahead of the first laptop; repeatable.")
    var follow: [String] = []

    @Option(help: "With --upstream: the most bytes of contents kept; the least recently used go first, never those of a version laptops are moving to.")
    var upstreamCacheBytes: UInt64 = 16 << 30

    @Option(help: "With --upstream: seconds between checks of the followed channels (and the longest a channel file is served before it is checked again).")
    var upstreamInterval = 60.0

    @Option(help: "With --upstream: HH:MM-HH:MM, local time, when followed versions' contents may be fetched ahead; default: any time.")
    var prefetchWindow: String?

    @Option(help: "With --upstream: the most bytes per second that fetching ahead may use.")
    var prefetchRate: UInt64?

    @OptionGroup var tls: TLSOptions

    /// The settings, or nil without --upstream.
    func settings() throws -> UpstreamService.Settings? {
        guard let upstream else {
            guard follow.isEmpty, prefetchWindow == nil, prefetchRate == nil else {
                throw UpdError(.usage, "--follow, --prefetch-window and --prefetch-rate need --upstream")
            }
            return nil
        }
        var mirror = RepositoryMirror.Settings(upstream: upstream, keyring: try Keyring(directory: keyring))
        mirror.cacheBytes = upstreamCacheBytes
        mirror.caFile = tls.caFile
        guard upstreamInterval >= 1 else { throw UpdError(.usage, "--upstream-interval must be at least 1 second") }
        mirror.channelMaxAge = upstreamInterval
        var settings = UpstreamService.Settings(mirror: mirror)
        for channel in follow { try Manifest.checkName(channel, what: "channel name") }
        settings.channels = follow
        settings.interval = upstreamInterval
        if let prefetchWindow {
            guard let window = TimeWindow(parsing: prefetchWindow) else { throw UpdError(.usage, "--prefetch-window \(prefetchWindow): HH:MM-HH:MM expected") }
            settings.prefetchWindow = window
        }
        settings.prefetchRate = prefetchRate
        return settings
    }
}
