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
            let d = try SchoolServerClient(server: server, caFile: call.state.options.caFile).check(try message(CheckRequest.self, request, call, 2),
                                                                keyring: keyring.keyring, now: Int64(call.state.now))
            var answer: [String: LuaValue] = ["update": .boolean(d.update), "expires": .integer(d.expires),
                                              "peers": .array(d.peers.map { .string($0) })]
            answer["image"] = d.image.map { .string($0) }
            answer["version"] = d.version.map { .string($0) }
            answer["manifest_path"] = d.manifestPath.map { .string($0) }
            answer["manifest_hash"] = d.manifestHash.map { .string($0) }
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
            try SchoolServerClient(server: server, caFile: call.state.options.caFile).report(try message(DeviceReport.self, status, call, 2))
            return call.results(.boolean(true))
        }

        state.setFunction("channel") { call in
            let mirrors = try call.strings(1)
            let name = try call.string(2)
            let keyring = try call.object(3, keyringType)
            // The highest serial accepted before, kept in upd.state with the keys that signed it.
            let policyState = try call.state.policyState()
            let (serialKey, signersKey) = ("channel_serial." + name, "channel_signers." + name)
            let remembered = ChannelMemory(serial: UInt64(max(0, policyState.get(serialKey).integerValue ?? 0)),
                                           signers: (policyState.get(signersKey).stringValue ?? "").split(separator: ",").map(String.init))
            let (metadata, memory) = try ChannelFollower.check(name, mirrors: call.state.fetchOptions(mirrors), keyring: keyring.keyring,
                                                               remembered: remembered, now: Int64(call.state.now))
            if memory != remembered {
                try policyState.set(serialKey, .integer(Int64(memory.serial)))
                try policyState.set(signersKey, .string(memory.signers.joined(separator: ",")))
            }
            return call.results(.table([
                "channel": .string(metadata.channel), "image": .string(metadata.image), "version": .string(metadata.version),
                "manifest_hash": .string(metadata.manifestHash), "serial": .integer(Int64(metadata.serial)),
                "expires": .integer(metadata.expires),
            ]))
        }
    }
}
