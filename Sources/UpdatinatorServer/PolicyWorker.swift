import CLinux
import Foundation
import Updatinator
import UpdatinatorLua

/// A policy worker process (`updatinator policy-worker`, started by `PolicyPool`): one Lua
/// state with the server policy loaded, whose calls the server sends over the socket `fd`.
/// Its `upd.repo`, `upd.fleet` and `upd.rollout` ask the server over the same socket. The
/// server kills it when a call passes the time limit; it ends by itself when the server does.
public enum PolicyWorker {
    /// Serves calls until the server closes the socket; returns the process's exit status.
    public static func serve(socket fd: Int32, settings: PolicyPool.Settings, server: pid_t) -> Int32 {
        // Killed with the server, even from inside a C function of the policy.
        guard CLinux_set_parent_death_signal(SIGKILL) == 0, getppid() == server else { return 1 }
        // Started as /proc/self/exe, it would show as "exe".
        _ = CLinux_set_process_name("policy-worker")
        let channel = PolicyChannel(fd: fd)
        let view = RemoteSchoolView(channel: channel)
        var lua: LuaState
        let source: String
        do {
            // The server's first message is the policy's text.
            let first = try channel.receive()
            guard first.count == 2, first[0] == .string("policy"), let text = first[1].stringValue else { return 1 }
            source = text
            lua = try load(source, settings, channel: channel, view: view)
            try channel.send([.string("ready")])
        } catch {
            try? channel.send([.string("unloadable"), .string((error as? UpdError)?.message ?? (error as? LuaError)?.message ?? "\(error)")])
            return 1
        }
        while true {
            do {
                let message = try channel.receive()
                guard message.count >= 2, message[0] == .string("call"), let name = message[1].stringValue else { return 1 }
                do {
                    if let results = try lua.callGlobal(name, Array(message.dropFirst(2))) {
                        try channel.send([.string("results")] + results)
                    } else {
                        try channel.send([.string("undefined")])
                    }
                } catch let error as PolicyChannel.Closed {
                    throw error
                } catch {
                    // As in-process before: a state whose call failed (an error, a limit) is
                    // not used again.
                    try channel.send([.string("error"), .string((error as? LuaError)?.message ?? "\(error)")])
                    lua = try load(source, settings, channel: channel, view: view)
                }
            } catch {
                return error is PolicyChannel.Closed ? 0 : 1
            }
        }
    }

    /// A Lua state with the policy `source` (the text of `settings.script`) loaded; a broken
    /// policy throws `UpdError` (usage).
    static func load(_ source: String, _ settings: PolicyPool.Settings, channel: PolicyChannel, view: SchoolView) throws -> LuaState {
        var options = LuaState.Options()
        options.instructionLimit = settings.instructionLimit
        options.memoryLimit = settings.memoryLimit
        let lua = try LuaState(options: options)
        lua.configFile = settings.configFile
        lua.stateFile = nil
        lua.installSchool(view)
        lua.log = { level, message in try? channel.send([.string("log"), .string(level), .string(message)]) }
        lua.output = { try? channel.send([.string("log"), .string("info"), .string($0.trimmingCharacters(in: .newlines))]) }
        do {
            try lua.runScript(Data(source.utf8), path: settings.script)
        } catch let error as LuaError {
            throw UpdError(.usage, "policy \(error.message)")
        }
        guard try lua.run("return type(decide)").first == .string("function") else {
            throw UpdError(.usage, "\(settings.script): the policy defines no function decide(device)")
        }
        return lua
    }
}
