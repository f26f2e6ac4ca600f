internal import CLua
import Foundation
import Updatinator

/// A plan a script holds, with what it was made from.
final class LuaPlan {
    let plan: ApplyPlan
    let summary: LuaValue
    let from: LuaManifest
    let to: LuaManifest
    let root: String
    let blobs: [String]
    /// What of the tree is the machine's (`live = true`: the running system's root).
    let machine: MachinePaths

    init(plan: ApplyPlan, from: LuaManifest, to: LuaManifest, root: String, blobs: [String], machine: MachinePaths) throws {
        self.plan = plan
        summary = try LuaValue(encoding: PlanSummary(plan))
        self.from = from
        self.to = to
        self.root = root
        self.blobs = blobs
        self.machine = machine
    }
}

extension UpdLibrary {
    static let planType = LuaObjectType<LuaPlan>(name: "upd.Plan")

    static func installUpdates(in state: LuaState) {
        // A Plan's fields are `plan --json`'s (PlanSummary), and its root.
        var planFields: [String: (LuaPlan) -> LuaValue] = ["root": { .string($0.root) }]
        for key in PlanSummary.fieldNames { planFields[key] = { $0.summary[key] } }
        state.defineType(planType, methods: [:], fields: planFields, describe: { p in
            "Plan \(p.from.manifest.image) \(p.from.manifest.version) → \(p.to.manifest.image) \(p.to.manifest.version): "
                + "\(p.plan.contentsToObtain) contents, \(p.plan.bytesToObtain) bytes to download, peak \(p.plan.peakExtraDisk) bytes"
        })

        state.setFunction("plan") { call in
            let from = try call.object(1, manifestType), to = try call.object(2, manifestType)
            let options = try call.options(3, allowed: ["root", "blobs", "mirrors", "keyring", "live"])
            let root = try root(options, call)
            try call.state.checkPath(root, for: .tree)
            let blobs = try options.strings("blobs") ?? []
            let sources = try contentSources(options, call, blobs: blobs)
            let machine = try MachinePaths.of(root: root, live: try options.boolean("live") == true)
            let plan = try call.state.untimed {
                try UpdateEngine.plan(root: root, from: (from.manifest, from.bytes), to: (to.manifest, to.bytes),
                                      sources: sources, machine: machine, observer: observer(call))
            }
            try call.push(try LuaPlan(plan: plan, from: from, to: to, root: root, blobs: blobs, machine: machine), as: planType)
            return 1
        }

        state.setFunction("get_manifest") { call in
            let mirrors = try call.strings(1)
            for mirror in mirrors { try call.state.checkLocation(mirror) }
            let image = try call.string(2), version = try call.string(3)
            let options = try call.options(4, allowed: ["dir", "keyring", "hash", "size"])
            let keyring = try options.index == 0 ? nil : keyringOption(options, call)
            // The hash a verified decision or channel named for this version holds without `hash =`.
            let announced = call.state.announcedHash(image: image, version: version)
            let (dir, hash) = (try options.string("dir"), try options.string("hash"))
            if let announced, let hash, hash != announced {
                throw call.argumentError(4, "hash \(hash) is not the \(announced) that a verified decision or channel named for \(image) \(version)")
            }
            if let dir { try call.state.checkPath(dir, for: .write) }
            let size = try options.integer("size").map { UInt64(clamping: $0) }
            let fetcher = try CurlFetcher(options: call.state.fetchOptions(mirrors))
            let got = try call.state.untimed(cancel: { fetcher.cancel() }) {
                try fetcher.downloadManifest(image: image, version: version, into: dir, keyring: keyring?.keyring,
                                             hash: hash ?? announced, size: size)
            }
            let m = LuaManifest(manifest: got.manifest, bytes: got.download.content, signatures: got.download.signature,
                                source: got.path ?? Repository.manifestPath(image: image, version: version))
            m.verified = got.verified
            try call.push(m, as: manifestType)
            return 1
        }

        state.setFunction("fetch") { call in
            let p = try call.object(1, planType)
            let options = try call.options(2, allowed: ["mirrors", "cache", "rate_limit", "concurrency", "on_progress"])
            guard let cache = try options.string("cache") else { throw call.argumentError(2, "option 'cache' is required") }
            try call.state.checkPath(cache, for: .write)
            let fetcher = try makeFetcher(options, call)
            let progress = try ProgressCallback(options, call)
            progress.fetcher = fetcher
            fetcher.progress = { progress.report(download: $0, steps: nil) }
            // The plan's own contents to obtain; the fetch skips those the cache has already.
            let requests = p.plan.downloads().requests
            let report: FetchReport
            do {
                report = try call.state.untimed(cancel: { fetcher.cancel() }) { try fetcher.fetch(requests, into: BlobStore(directory: cache)) }
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
            // A script cannot install what no keyring verified.
            let target = try p.to.requireVerified()
            let sources = try contentSources(options, call, blobs: (try options.strings("blobs") ?? []) + p.blobs)
            let progress = try ProgressCallback(options, call)
            let state = call.state
            var observer = observer(call)
            let fetcher = Locked<CurlFetcher?>(nil)
            observer.fetcherMade = { made in
                progress.fetcher = made
                fetcher.withLock { $0 = made }
            }
            observer.progress = { a in
                progress.report(download: a.download, steps: (a.stepsDone, a.totalSteps))
                try progress.rethrow()
                if state.mustStop() { throw LuaError(message: "interrupted; the apply stopped at a resumable point") }
            }
            let root = try options.string("root") ?? p.root
            try call.state.checkPath(root, for: .tree)
            let request = UpdateEngine.ApplyRequest(root: root, target: target,
                                                    from: p.from.manifest, sources: sources, machine: p.machine)
            // An interrupt cancels the apply's downloads too: it stops at a resumable point.
            let report = try state.untimed(cancel: { fetcher.withLock { $0 }?.cancel() }) { try UpdateEngine.apply(request, observer: observer) }
            return call.results(try LuaValue(encoding: report))
        }

        state.setFunction("fsck") { call in
            let root = try call.string(1)
            try call.state.checkPath(root, for: .tree)
            let m = try call.object(2, manifestType)
            let options = try call.options(3, allowed: ["live"])
            let machine = try MachinePaths.of(root: root, live: try options.boolean("live") == true)
            let findings = try call.state.untimed { try TreeChecker(manifest: m.manifest).checkTree(root: root, machine: machine) }
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

    /// How the engine's warnings reach a script's host: its log, at level warn.
    static func observer(_ call: LuaCall) -> UpdateObserver {
        let state = call.state
        return UpdateObserver(warn: { state.log("warn", $0) })
    }

    static func keyringOption(_ options: LuaOptions, _ call: LuaCall) throws -> LuaKeyring? {
        guard options["keyring"] != .nil else { return nil }
        call.state.push("keyring", on: call.L)
        lua_rawget(call.L, options.index)
        defer { CLua_pop(call.L, 1) }
        return try call.object(-1, keyringType)
    }

    /// The transport's options from a call's `mirrors`, `rate_limit` and `concurrency`; nil without mirrors.
    static func fetchOptions(_ options: LuaOptions, _ call: LuaCall) throws -> FetchOptions? {
        guard let mirrors = try options.strings("mirrors") else { return nil }
        for mirror in mirrors { try call.state.checkLocation(mirror) }
        var fetchOptions = call.state.fetchOptions(mirrors)
        if let limit = try options.integer("rate_limit") { fetchOptions.rateLimit = UInt64(max(0, limit)) }
        if let concurrency = try options.integer("concurrency") { fetchOptions.concurrency = Int(concurrency) }
        do {
            try fetchOptions.validate()
        } catch let e as UpdError {
            throw call.argumentError(options.index, e.message)
        }
        return fetchOptions
    }

    /// A call's content sources: blob directories, mirrors, and the keyring that verifies the
    /// mirrors' delta index.
    static func contentSources(_ options: LuaOptions, _ call: LuaCall, blobs: [String]) throws -> ContentSources {
        for directory in blobs { try call.state.checkPath(directory, for: .read) }
        return ContentSources(blobDirectories: blobs, mirrors: try fetchOptions(options, call),
                       deltaKeyring: try keyringOption(options, call)?.keyring)
    }

    static func makeFetcher(_ options: LuaOptions, _ call: LuaCall) throws -> CurlFetcher {
        guard let fetchOptions = try fetchOptions(options, call) else {
            throw call.argumentError(options.index, "option 'mirrors' is required")
        }
        return try CurlFetcher(options: fetchOptions)
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

    init(_ options: LuaOptions, _ call: LuaCall) throws {
        self.call = call
        function = try options.function("on_progress")
        limit = try options.integer("rate_limit").map { UInt64(max(0, $0)) }
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
