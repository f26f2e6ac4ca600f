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

    @Option(help: "With --upstream: the school's id, which its requests upstream carry; default: this machine's id.")
    var schoolID: String?

    @Option(help: "With --upstream: the school's Ed25519 key, which signs its requests upstream (made at first start, mode 0600).")
    var schoolKey = DefaultPaths.schoolKey

    @Option(help: "With --upstream: a file holding the enrolment token the tier above admits schools by (when it admits by token).")
    var schoolEnrolmentTokenFile: String?

    @Option(help: "With --upstream: the upstream server's decision keyring; with it the school follows the national rollout signed with those keys, and its own policy, pins and controls may narrow it but never widen it.")
    var upstreamKeyring: String?

    @Option(help: "With --upstream: seconds between sendings of the report outbox upstream while it holds reports.")
    var forwardInterval = 10.0

    @OptionGroup var tls: TLSOptions

    /// The settings, or nil without --upstream.
    func settings() throws -> UpstreamService.Settings? {
        guard let upstream else {
            guard follow.isEmpty, prefetchWindow == nil, prefetchRate == nil, upstreamKeyring == nil else {
                throw UpdError(.usage, "--follow, --prefetch-window, --prefetch-rate and --upstream-keyring need --upstream")
            }
            return nil
        }
        var mirror = RepositoryMirror.Settings(upstream: upstream, keyring: try Keyring(directory: keyring))
        mirror.cacheBytes = upstreamCacheBytes
        mirror.caFile = tls.caFile
        guard upstreamInterval >= 1 else { throw UpdError(.usage, "--upstream-interval must be at least 1 second") }
        mirror.channelMaxAge = upstreamInterval
        let token = try schoolEnrolmentTokenFile.map { Array(try ServeCommand.readToken($0, what: "enrolment token").utf8) }
        let signer = RequestSigner(sender: try DeviceIdentity.read(configured: schoolID), key: try DeviceIdentity.key(at: schoolKey),
                                   enrolmentToken: token)
        var settings = UpstreamService.Settings(mirror: mirror, signer: signer)
        for channel in follow { try Manifest.checkName(channel, what: "channel name") }
        settings.channels = follow
        settings.interval = upstreamInterval
        if let prefetchWindow {
            guard let window = TimeWindow(parsing: prefetchWindow) else { throw UpdError(.usage, "--prefetch-window \(prefetchWindow): HH:MM-HH:MM expected") }
            settings.prefetchWindow = window
        }
        settings.prefetchRate = prefetchRate
        guard forwardInterval > 0 else { throw UpdError(.usage, "--forward-interval must be more than 0 seconds") }
        settings.forwardInterval = forwardInterval
        settings.nationalKeyring = try upstreamKeyring.map { try Keyring(directory: $0) }
        return settings
    }
}
