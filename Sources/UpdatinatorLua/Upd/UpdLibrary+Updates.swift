internal import CLua
import Foundation
import Updatinator

/// A plan a script holds, with what it was made from.
final class LuaPlan {
    let plan: ApplyPlan
    let from: LuaManifest
    let to: LuaManifest
    let root: String
    let blobs: [String]

    init(plan: ApplyPlan, from: LuaManifest, to: LuaManifest, root: String, blobs: [String]) {
        self.plan = plan
        self.from = from
        self.to = to
        self.root = root
        self.blobs = blobs
    }
}

extension UpdLibrary {
    static let planType = LuaObjectType<LuaPlan>(name: "upd.Plan")

    static func installUpdates(in state: LuaState) {
        state.defineType(planType, methods: [:], fields: [
            "root": { .string($0.root) },
            "blobs": { .integer(Int64($0.plan.contentsToObtain)) },
            "download_bytes": { .integer(Int64($0.plan.bytesToObtain)) },
            "reused_bytes": { .integer(Int64($0.plan.bytesReused)) },
            "write_bytes": { .integer(Int64($0.plan.bytesToWrite)) },
            "peak_disk_bytes": { .integer(Int64($0.plan.peakExtraDisk)) },
            "required_free_bytes": { .integer(Int64($0.plan.requiredFreeSpace)) },
            "steps": { .integer(Int64($0.plan.steps.count)) },
            "changes": { p in
                let c = p.plan.changes
                return .table(["created": .integer(Int64(c.created)), "replaced": .integer(Int64(c.replaced)),
                               "removed": .integer(Int64(c.removed)), "reowned": .integer(Int64(c.reowned)),
                               "remoded": .integer(Int64(c.remoded)), "retimed": .integer(Int64(c.retimed)),
                               "xattrs_changed": .integer(Int64(c.xattrsChanged))])
            },
        ], describe: { p in
            "Plan \(p.from.manifest.image) \(p.from.manifest.version) → \(p.to.manifest.image) \(p.to.manifest.version): "
                + "\(p.plan.contentsToObtain) blobs, \(p.plan.bytesToObtain) bytes to download, peak \(p.plan.peakExtraDisk) bytes"
        })

        state.setFunction("plan") { call in
            let from = try call.object(1, manifestType), to = try call.object(2, manifestType)
            let options = try call.options(3, allowed: ["root", "blobs", "mirrors"])
            let root = try root(options, call)
            let blobs = try options.strings("blobs") ?? []
            let mirrors = try options.strings("mirrors") ?? []
            let plan = try InPlaceApplier.plan(root: root, from: from.manifest, fromBytes: from.bytes.count, to: to.manifest,
                                               toBytes: to.bytes.count, blobDirectories: blobs,
                                               downloadWindow: mirrors.isEmpty ? nil : InPlaceApplier.defaultDownloadWindow)
            call.push(LuaPlan(plan: plan, from: from, to: to, root: root, blobs: blobs), as: planType)
            return 1
        }

        state.setFunction("get_manifest") { call in
            let mirrors = try call.strings(1)
            let image = try call.string(2), version = try call.string(3)
            let options = try call.options(4, allowed: ["dir", "keyring", "hash"])
            let keyring = try options.index == 0 ? nil : keyringOption(options, call)
            let got = try CurlFetcher(options: FetchOptions(mirrors: mirrors))
                .downloadManifest(image: image, version: version, into: try options.string("dir"), keyring: keyring?.keyring,
                                  hash: try options.string("hash"))
            let m = LuaManifest(manifest: got.manifest, bytes: got.download.content, signatures: got.download.signature,
                                source: got.path ?? Repository.manifestPath(image: image, version: version))
            m.verified = keyring != nil
            call.push(m, as: manifestType)
            return 1
        }

        state.setFunction("fetch") { call in
            let p = try call.object(1, planType)
            let options = try call.options(2, allowed: ["mirrors", "cache", "rate_limit", "concurrency", "on_progress"])
            guard let cache = try options.string("cache") else { throw call.argumentError(2, "option 'cache' is required") }
            let fetcher = try makeFetcher(options, call)
            let progress = try ProgressCallback(options, call, fetcher: fetcher)
            fetcher.progress = { progress.report(download: $0, steps: nil) }
            // The plan's own contents to obtain; the fetch skips those the cache has already.
            let requests = p.plan.downloads().requests
            let report: FetchReport
            do {
                report = try fetcher.fetch(requests, into: BlobStore(directory: cache))
            } catch {
                try progress.rethrow()
                throw error
            }
            return call.results(.table([
                "blobs": .integer(Int64(report.blobs)), "bytes": .integer(Int64(report.bytes)),
                "retries": .integer(Int64(report.retries)), "failovers": .integer(Int64(report.failovers)),
                "seconds": .number(report.seconds),
            ]))
        }

        state.setFunction("apply") { call in
            let p = try call.object(1, planType)
            let options = try call.options(2, allowed: ["root", "mirrors", "blobs", "rate_limit", "concurrency", "resume",
                                                        "on_progress", "keyring"])
            // A script cannot install what no keyring verified: `insecure` is the CLI's, for tests.
            guard p.to.verified else {
                throw UpdError(.verification, "\(p.to.source): not verified; verify it with a keyring (kr:verify) first")
            }
            let applier = InPlaceApplier(root: try options.string("root") ?? p.root, target: p.to.manifest, targetBytes: p.to.bytes)
            applier.from = (p.from.manifest, p.from.bytes)
            applier.blobDirectories = (try options.strings("blobs") ?? []) + p.blobs
            var progress: ProgressCallback?
            if try options.strings("mirrors") != nil {
                let fetcher = try makeFetcher(options, call)
                applier.fetcher = fetcher
                if let keyring = try keyringOption(options, call)?.keyring {
                    applier.deltaIndex = fetcher.usableDeltaIndex(for: p.to.manifest, keyring: keyring, warn: warn)
                    applier.pack = fetcher.announcedPack(for: p.to.manifest, deltas: applier.deltaIndex)
                }
                progress = try ProgressCallback(options, call, fetcher: fetcher)
            } else if try options.function("on_progress") != nil {
                progress = try ProgressCallback(options, call, fetcher: nil)
            }
            let state = call.state
            applier.onProgress = { a in
                progress?.report(download: a.download, steps: (a.stepsDone, a.totalSteps))
                try progress?.rethrow()
                if state.takeInterrupt() { throw LuaError(message: "interrupted; the apply stopped at a resumable point") }
            }
            let r = try applier.run()
            return call.results(.table([
                "already_current": .boolean(r.alreadyCurrent), "resumed": .boolean(r.resumed),
                "bytes_written": .integer(Int64(r.bytesWritten)), "bytes_reused": .integer(Int64(r.bytesReused)),
                "bytes_downloaded": .integer(Int64(r.download.bytes)), "blobs_downloaded": .integer(Int64(r.download.blobs)),
                "planned_peak_extra_disk": .integer(Int64(r.plannedPeakExtraDisk)),
                "observed_peak_extra_disk": .integer(Int64(r.observedPeakExtraDisk)), "seconds": .number(r.seconds),
                "deltas": .integer(Int64(r.deltas)), "fallbacks": .table([:], array: r.fallbacks.map { .string($0) }),
            ]))
        }

        state.setFunction("fsck") { call in
            let root = try call.string(1)
            let m = try call.object(2, manifestType)
            let findings = try TreeChecker(manifest: m.manifest).checkTree(root: root)
            guard findings.isEmpty else {
                return call.results(.nil, .string("\(findings.count) differences, the first: \(findings[0])"),
                                    .string(UpdError.Code.differences.rawValue), .array(findings.map { .string($0.description) }))
            }
            return call.results(.boolean(true))
        }
    }

    static func root(_ options: LuaOptions, _ call: LuaCall) throws -> String {
        guard let root = try options.string("root") ?? call.state.root else {
            throw call.argumentError(options.index == 0 ? 3 : options.index, "option 'root' is required (or run with --root)")
        }
        return root
    }

    /// Where problems that never stop an update go (a delta index or pack not used).
    static func warn(_ message: String) {
        FileHandle.standardError.write(Data("updatinator: warning: \(message)\n".utf8))
    }

    static func keyringOption(_ options: LuaOptions, _ call: LuaCall) throws -> LuaKeyring? {
        guard options["keyring"] != .nil else { return nil }
        call.state.push("keyring", on: call.L)
        lua_rawget(call.L, options.index)
        defer { CLua_pop(call.L, 1) }
        return try call.object(-1, keyringType)
    }

    static func makeFetcher(_ options: LuaOptions, _ call: LuaCall) throws -> CurlFetcher {
        guard let mirrors = try options.strings("mirrors"), !mirrors.isEmpty else {
            throw call.argumentError(options.index, "option 'mirrors' is required")
        }
        var fetchOptions = FetchOptions(mirrors: mirrors)
        if let limit = try options.integer("rate_limit") { fetchOptions.rateLimit = UInt64(max(0, limit)) }
        if let concurrency = try options.integer("concurrency") { fetchOptions.concurrency = Int(concurrency) }
        do {
            return try CurlFetcher(options: fetchOptions)
        } catch let e as UpdError {
            throw call.argumentError(options.index, e.message)
        }
    }
}

/// A script's `on_progress` function, called on the script's thread. It receives bytes, blobs,
/// rate and ETA (and steps, for an apply); returning a number sets a new rate limit, `true`
/// removes the limit, `false` pauses the downloads until the next call, and nothing keeps (or
/// after a pause, restores) the limit.
final class ProgressCallback {
    let call: LuaCall
    let function: Int32?
    // Weak: the fetcher's progress closure holds this callback.
    weak var fetcher: CurlFetcher?
    private var limit: UInt64?
    private var failure: Error?

    init(_ options: LuaOptions, _ call: LuaCall, fetcher: CurlFetcher?) throws {
        self.call = call
        self.fetcher = fetcher
        function = try options.function("on_progress")
        limit = fetcher?.options.rateLimit
    }

    func report(download: FetchProgress?, steps: (Int, Int)?) {
        guard let function, failure == nil else { return }
        var fields: [String: LuaValue] = [:]
        if let d = download {
            fields["bytes"] = .integer(Int64(d.bytes))
            fields["total_bytes"] = .integer(Int64(d.totalBytes))
            fields["blobs"] = .integer(Int64(d.blobs))
            fields["total_blobs"] = .integer(Int64(d.totalBlobs))
            fields["rate"] = .number(d.rate)
            if let left = d.secondsLeft { fields["eta"] = .number(left) }
        }
        if let (done, total) = steps {
            fields["steps_done"] = .integer(Int64(done))
            fields["total_steps"] = .integer(Int64(total))
        }
        do {
            let result = try call.state.callFunction(at: function, on: call.L, [.table(fields)]).first ?? .nil
            switch result {
            case .boolean(false): fetcher?.setRateLimit(0)
            case .boolean(true):
                limit = nil
                fetcher?.setRateLimit(nil)
            case let v where v.integerValue != nil:
                limit = UInt64(max(0, v.integerValue!))
                fetcher?.setRateLimit(limit)
            default: fetcher?.setRateLimit(limit)
            }
        } catch {
            failure = error
            fetcher?.cancel()
        }
    }

    /// Throws the callback's error, if it raised one.
    func rethrow() throws {
        if let failure { throw failure }
    }
}
