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
            // A script cannot install what no keyring verified: `insecure` is the CLI's, for tests.
            guard p.to.verified else {
                throw UpdError(.verification, "\(p.to.source): not verified; verify it with a keyring (kr:verify) first")
            }
            let deployer = Deployer(sysroot: try Sysroot(path: path, create: true), target: p.to.manifest, targetBytes: p.to.bytes)
            deployer.blobDirectories = (try options.strings("blobs") ?? []) + p.blobs
            if try options.strings("mirrors") != nil {
                let fetcher = try makeFetcher(options, call)
                deployer.fetcher = fetcher
                if let keyring = try keyringOption(options, call)?.keyring {
                    deployer.deltaIndex = fetcher.usableDeltaIndex(for: p.to.manifest, keyring: keyring, warn: warn)
                }
            }
            let r = try deployer.run()
            return call.results(.table([
                "name": .string(r.name), "already_current": .boolean(r.alreadyCurrent),
                "files_linked": .integer(Int64(r.filesLinked)), "bytes_linked": .integer(Int64(r.bytesLinked)),
                "files_written": .integer(Int64(r.filesWritten)), "bytes_written": .integer(Int64(r.bytesWritten)),
                "blobs_downloaded": .integer(Int64(r.download.blobs)), "bytes_downloaded": .integer(Int64(r.download.bytes)),
                "seconds": .number(r.seconds), "deltas": .integer(Int64(r.deltas)),
                "fallbacks": .table([:], array: r.fallbacks.map { .string($0) }),
            ]))
        }

        state.setFunction("rollback") { call in
            let (from, to) = try Sysroot(path: try call.string(1)).rollback()
            return call.results(.table(["from": .string(from), "to": .string(to)]))
        }

        state.setFunction("status") { call in
            let (deployments, boot) = try Sysroot(path: try call.string(1), reading: true).status()
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
