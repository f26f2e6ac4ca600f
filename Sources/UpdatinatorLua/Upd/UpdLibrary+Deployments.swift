internal import CLua
import Foundation
import Updatinator

extension UpdLibrary {
    /// Staged deployments: `upd.deploy`, `upd.rollback`, `upd.status`.
    static func installDeployments(in state: LuaState) {
        state.setFunction("deploy") { call in
            let p = try call.object(1, planType)
            let options = try call.options(2, allowed: ["sysroot", "mirrors", "blobs", "rate_limit", "concurrency", "keyring"])
            guard let path = try options.string("sysroot") else { throw call.argumentError(2, "option 'sysroot' is required") }
            try call.state.checkPath(path, for: .tree)
            // A script cannot install what no keyring verified.
            let request = UpdateEngine.DeployRequest(
                sysroot: path, target: try p.to.requireVerified(),
                sources: try contentSources(options, call, blobs: (try options.strings("blobs") ?? []) + p.blobs))
            let report = try call.state.untimed { try UpdateEngine.deploy(request, observer: observer(call)) }
            return call.results(try LuaValue(encoding: report))
        }

        state.setFunction("rollback") { call in
            let sysroot = try call.string(1)
            try call.state.checkPath(sysroot, for: .tree)
            let (from, to) = try Sysroot(path: sysroot).rollback()
            return call.results(.table(["from": .string(from), "to": .string(to)]))
        }

        state.setFunction("status") { call in
            let sysroot = try call.string(1)
            try call.state.checkPath(sysroot, for: .tree)
            let (deployments, boot) = try Sysroot(path: sysroot, reading: true).status()
            var result: [String: LuaValue] = ["tries": .integer(Int64(boot.tries))]
            result["pending"] = boot.pending.map { .string($0) }
            result["rolled_back"] = boot.rolledBack.map { .string($0) }
            var list = [LuaValue]()
            for d in deployments {
                let entry = LuaValue.table([
                    "name": .string(d.name), "image": .string(d.image), "version": .string(d.version),
                    "own_bytes": .integer(Int64(d.ownBytes)), "shared_bytes": .integer(Int64(d.sharedBytes)),
                    "current": .boolean(d.isCurrent), "previous": .boolean(d.isPrevious), "pending": .boolean(d.isPending),
                ])
                list.append(entry)
                if d.isCurrent { result["current"] = entry }
                if d.isPrevious { result["previous"] = entry }
            }
            result["deployments"] = .array(list)
            return call.results(.table(result))
        }
    }
}
