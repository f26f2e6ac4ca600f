import Updatinator

/// What verified documents told this state: the engine's freshness state (channel serials and
/// the verified time), and the manifest hash each decision or channel named.
extension LuaState {
    /// Runs `change` on the engine's freshness state, and keeps the result (durably, when there
    /// is a `freshnessFile`) when it changed.
    func updateFreshness<T>(_ change: (inout FreshnessState) throws -> T) throws -> T {
        let before = try currentFreshness()
        var state = before
        let result = try change(&state)
        if state != before, let freshnessFile { try FreshnessStore(path: freshnessFile).save(state) }
        freshness = state
        return result
    }

    /// The state as kept now: read from its file each time, since another process (a `run`
    /// beside the agent) may have raised it since, or this state's own without a file.
    private func currentFreshness() throws -> FreshnessState {
        if let freshnessFile { return try FreshnessStore(path: freshnessFile).load() ?? migratedFreshness() }
        return try freshness ?? migratedFreshness()
    }

    /// The serials that `upd.channel` kept in `upd.state` before the engine kept its own
    /// (`channel_serial.NAME`, `channel_signers.NAME`), moved out of the scripts' reach once.
    private func migratedFreshness() throws -> FreshnessState {
        var state = FreshnessState()
        let policy = try policyState()
        let serialKeys = policy.keys.filter { $0.hasPrefix("channel_serial.") }
        guard !serialKeys.isEmpty else { return state }
        for key in serialKeys {
            let name = String(key.dropFirst("channel_serial.".count))
            let signers = policy.get("channel_signers." + name).stringValue ?? ""
            state.channels[name] = ChannelMemory(serial: UInt64(max(0, policy.get(key).integerValue ?? 0)),
                                                 signers: signers.split(separator: ",").map(String.init))
        }
        if let freshnessFile { try FreshnessStore(path: freshnessFile).save(state) }
        try policy.remove(serialKeys + serialKeys.map { "channel_signers." + $0.dropFirst("channel_serial.".count) })
        return state
    }

    /// Records that a verified decision or channel named `hash` for an image version.
    func announce(image: String, version: String, hash: String) {
        announcedManifests[image + " " + version] = hash
    }

    /// The hash the last verified decision or channel named for an image version, if any.
    func announcedHash(image: String, version: String) -> String? {
        announcedManifests[image + " " + version]
    }
}
