internal import CLua
import Foundation
import Updatinator

extension UpdLibrary {
    /// A request table's fields (a missing table is an empty request).
    static func requestFields(_ call: LuaCall, _ index: Int32) throws -> [String: LuaValue] {
        if call.isNil(index) { return [:] }
        guard case .table(let fields, let array) = call.state.value(at: index, on: call.L), array.isEmpty else {
            throw call.argumentError(index, "table of named fields expected")
        }
        return fields
    }

    /// A request table as a message of the school server's protocol, checked as the server checks
    /// it: a field the message cannot carry is the script's mistake, raised naming the field.
    static func message<T: Decodable>(_ type: T.Type, _ fields: [String: LuaValue], _ call: LuaCall, _ index: Int32) throws -> T {
        do {
            return try WireCoding.decode(T.self, from: try WireCoding.encode(fields.compactMapValues { JSONValue($0) }))
        } catch let error as UpdError {
            throw call.argumentError(index, error.message)
        }
    }

    /// The device's signer: its id (the request's `device`) and its key, made on first use.
    static func signer(_ call: LuaCall, device: String) throws -> RequestSigner {
        RequestSigner(sender: device, key: try DeviceIdentity.key(at: call.state.options.deviceKey),
                      enrolmentToken: call.state.options.enrolmentToken)
    }

    /// What a policy needs beyond the primitives: its settings, its schedule, and channels.
    static func installPolicy(in state: LuaState) {
        state.setFunction("config") { call in
            guard lua_type(call.L, 1) == LUA_TTABLE, case .table(var settings, _) = call.state.value(at: 1, on: call.L) else {
                throw call.argumentError(1, "table of defaults expected")
            }
            // A settings file that cannot be used stops the script: a policy must not run on its
            // defaults because its configuration was mistyped.
            if let file = call.state.configFile {
                guard let data = FileManager.default.contents(atPath: file),
                      let stored = try? JSONDecoder().decode([String: StoredValue].self, from: data) else {
                    throw LuaError(message: "\(file): not a readable JSON object of settings")
                }
                if let unknown = stored.keys.sorted().first(where: { settings[$0] == nil }) {
                    throw LuaError(message: "\(file): unknown setting '\(unknown)' (the policy knows \(settings.keys.sorted().joined(separator: ", ")))")
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

        state.setFunction("check") { call in
            let server = try call.string(1)
            var request = try requestFields(call, 2)
            let keyring = try call.object(3, keyringType)
            if request["device"] == nil { request["device"] = .string(try call.state.deviceID()) }
            request["nonce"] = .string(SchoolServerClient.newNonce())
            request["agent_version"] = .string(UpdatinatorVersion.current)
            let checked = try message(CheckRequest.self, request, call, 2)
            let client = SchoolServerClient(server: server, signer: try signer(call, device: checked.device), caFile: call.state.options.caFile)
            let d = try call.state.untimed { try client.check(checked, keyring: keyring.keyring, now: Int64(call.state.now)) }
            // The decision's time only helps judge channel files later: a freshness state that
            // cannot be read (the channel check reports it) does not stop the decision.
            do {
                try call.state.updateFreshness { $0.vouch(d.time) }
            } catch let error as UpdError {
                call.state.log("warn", "the decision's time is not kept: \(error.message)")
            }
            if d.update, let image = d.image, let version = d.version, let hash = d.manifestHash {
                call.state.announce(image: image, version: version, hash: hash)
            }
            var answer: [String: LuaValue] = ["update": .boolean(d.update), "expires": .integer(d.expires),
                                              "peers": .array(d.peers.map { .string($0) })]
            answer["image"] = d.image.map { .string($0) }
            answer["version"] = d.version.map { .string($0) }
            answer["manifest_path"] = d.manifestPath.map { .string($0) }
            answer["manifest_hash"] = d.manifestHash.map { .string($0) }
            answer["manifest_size"] = d.manifestSize.map { .integer(Int64($0)) }
            answer["rate_limit"] = d.rateLimit.map { .integer(Int64($0)) }
            answer["not_before"] = d.notBefore.map { .integer($0) }
            answer["window"] = d.window.map { .string($0) }
            if !d.update {
                answer["reason"] = .string(d.noUpdateReason.rawValue)
                answer["message"] = d.message.map { .string($0) }
            }
            return call.results(.table(answer))
        }

        state.setFunction("report") { call in
            let server = try call.string(1)
            var status = try requestFields(call, 2)
            guard status["status"]?.stringValue != nil else { throw call.argumentError(2, "field 'status' is required") }
            if status["device"] == nil { status["device"] = .string(try call.state.deviceID()) }
            let report = try message(DeviceReport.self, status, call, 2)
            let client = SchoolServerClient(server: server, signer: try signer(call, device: report.device), caFile: call.state.options.caFile)
            try call.state.untimed { try client.report(report) }
            return call.results(.boolean(true))
        }

        state.setFunction("channel") { call in
            let mirrors = try call.strings(1)
            for mirror in mirrors { try call.state.checkLocation(mirror) }
            let name = try call.string(2)
            let keyring = try call.object(3, keyringType)
            // The serial accepted before and the verified time are the engine's, not upd.state's.
            let clock = Int64(call.state.now)
            let metadata = try call.state.untimed {
                try call.state.updateFreshness {
                    try ChannelFollower.check(name, mirrors: call.state.fetchOptions(mirrors), keyring: keyring.keyring, state: &$0, clock: clock)
                }
            }
            call.state.announce(image: metadata.image, version: metadata.version, hash: metadata.manifestHash)
            var answer: [String: LuaValue] = [
                "channel": .string(metadata.channel), "image": .string(metadata.image), "version": .string(metadata.version),
                "manifest_hash": .string(metadata.manifestHash), "serial": .integer(Int64(metadata.serial)),
                "expires": .integer(metadata.expires),
            ]
            answer["published"] = metadata.published.map { .integer($0) }
            answer["manifest_size"] = metadata.manifestSize.map { .integer(Int64($0)) }
            return call.results(.table(answer))
        }
    }
}
