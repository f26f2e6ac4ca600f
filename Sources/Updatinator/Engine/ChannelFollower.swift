/// What a device remembers of a channel between checks: the highest serial it accepted, and
/// the keys that signed it.
public struct ChannelMemory: Codable, Sendable, Equatable {
    public var serial: UInt64
    public var signers: [String]

    public init(serial: UInt64 = 0, signers: [String] = []) {
        self.serial = serial
        self.signers = signers
    }
}

/// Follows a signed channel (`channels/NAME.json`): downloads it from the mirrors, verifies it
/// against the keyring, refuses it when expired or older than the serial accepted before
/// (replayed or frozen metadata), and updates what to remember for the next check.
public enum ChannelFollower {
    /// The channel's verified metadata. `state` keeps the serial accepted (raised only when the
    /// serial went up) and the verified time; expiry is judged by `clock` or, when that is behind,
    /// the verified time (`FreshnessState.now`).
    public static func check(_ channel: String, mirrors: FetchOptions, keyring: Keyring, state: inout FreshnessState,
                             clock: Int64) throws -> ChannelMetadata {
        let remote = "channels/\(channel).json"
        let remembered = state.channels[channel] ?? ChannelMemory()
        let floor = ChannelMetadata.replayFloor(serial: remembered.serial, signers: remembered.signers, keyring: keyring)
        let now = state.now(clock: clock)
        // A mirror whose metadata is refused (stale, replayed, another channel's) is passed over.
        let (metadata, signers) = try CurlFetcher(options: mirrors).fetchSigned(remote, maxBytes: 64 * 1024) { got in
            let signatures = try SignatureFile.parse(got.signature!, source: remote + ".sig")
            return try ChannelMetadata.verify(got.content, signatures: signatures, keyring: keyring, channel: channel, source: remote,
                                              now: now, minimumSerial: floor)
        }
        if metadata.serial > floor { state.channels[channel] = ChannelMemory(serial: metadata.serial, signers: signers) }
        state.vouch(metadata.published)
        return metadata
    }
}
