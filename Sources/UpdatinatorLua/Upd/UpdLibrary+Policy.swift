internal import CLua
import Foundation
import Updatinator

extension UpdLibrary {
    /// What a policy needs beyond the primitives: its settings, its schedule, and channels.
    static func installPolicy(in state: LuaState) {
        state.setFunction("config") { call in
            guard lua_type(call.L, 1) == LUA_TTABLE, case .table(var settings, _) = call.state.value(at: 1, on: call.L) else {
                throw call.argumentError(1, "table of defaults expected")
            }
            if let file = call.state.configFile {
                guard let data = FileManager.default.contents(atPath: file),
                      let stored = try? JSONDecoder().decode([String: StoredValue].self, from: data) else {
                    throw UpdError(.corrupt, "\(file): not a JSON object of settings")
                }
                if let unknown = stored.keys.sorted().first(where: { settings[$0] == nil }) {
                    throw UpdError(.usage, "\(file): unknown setting '\(unknown)' (the policy knows \(settings.keys.sorted().joined(separator: ", ")))")
                }
                for (key, value) in stored { settings[key] = value.luaValue }
            }
            return call.results(.table(settings))
        }

        state.setFunction("schedule") { call in
            let options = try call.options(1, allowed: ["every", "jitter"])
            guard let every = try options.string("every") else { throw call.argumentError(1, "option 'every' is required") }
            do {
                let period = Double(try ChannelMetadata.parseDuration(every))
                let jitter = try options.string("jitter").map { Double(try ChannelMetadata.parseDuration($0)) } ?? 0
                call.state.schedule = (period, jitter)
            } catch let e as UpdError {
                throw call.argumentError(1, e.message)
            }
            return 0
        }

        state.setFunction("channel") { call in
            let mirrors = try call.strings(1)
            let name = try call.string(2)
            let keyring = try call.object(3, keyringType)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("updatinator-channel-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let fetcher = try CurlFetcher(options: FetchOptions(mirrors: mirrors))
            let remote = "channels/\(name).json"
            try fetcher.fetchFile(remote, to: "\(directory)/c.json", maxBytes: 64 * 1024)
            try fetcher.fetchFile(remote + ".sig", to: "\(directory)/c.json.sig", maxBytes: 64 * 1024)
            let bytes = [UInt8](FileManager.default.contents(atPath: "\(directory)/c.json") ?? Data())
            let signatures = try SignatureFile.parse([UInt8](FileManager.default.contents(atPath: "\(directory)/c.json.sig") ?? Data()),
                                                     source: remote + ".sig")
            // The highest serial accepted before, kept in upd.state, refuses a replayed channel.
            let key = "channel_serial." + name
            let policyState = try call.state.policyState()
            let seen = UInt64(max(0, policyState.get(key).integerValue ?? 0))
            let metadata = try ChannelMetadata.verify(bytes, signatures: signatures, keyring: keyring.keyring, source: remote,
                                                      now: Int64(call.state.now), minimumSerial: seen)
            if metadata.serial > seen { try policyState.set(key, .integer(Int64(metadata.serial))) }
            return call.results(.table([
                "channel": .string(metadata.channel), "image": .string(metadata.image), "version": .string(metadata.version),
                "manifest_hash": .string(metadata.manifestHash), "serial": .integer(Int64(metadata.serial)),
                "expires": .integer(metadata.expires),
            ]))
        }
    }
}
