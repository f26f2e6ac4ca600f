import Foundation

/// One upgrade as the school server directs it: check (a signed decision for this device and
/// a fresh nonce) → verify → the target manifest (signed by a build key, with the hash the
/// decision names) → plan and streaming apply, downloading from the peers the decision lists
/// first, then the mirrors, then the server → report. The decision's bandwidth rules hold:
/// nothing starts before `not_before` or outside its window, and its rate limit caps downloads.
public struct ServerUpgrade {
    public var root: String
    public var server: String
    /// Build keys, which sign manifests.
    public var keyring: Keyring
    /// The school servers' keys, which sign decisions.
    public var decisionKeyring: Keyring
    /// Repositories to download from after the peers and before the server.
    public var mirrors: [String] = []
    /// The manifest the tree matches, for a tree without an installed-manifest record.
    public var from: Manifest?
    /// This device's id and key, which sign every request to the server.
    public var signer: RequestSigner
    public var device: String { signer.sender }
    public var channel: String?
    /// This device's peer server, advertised to the school server with each check and report.
    public var peerURL: String?
    public var concurrency = 4
    /// The CA file that https servers' and mirrors' certificates must chain to; nil for the system's store.
    public var caFile: String?
    public var faults = FaultInjection.none
    /// What of the tree is the machine's (`.runningSystem` for a running system's root).
    public var machine = MachinePaths.none
    /// Shows the apply's progress and warnings, and failures to report (a report never stops an upgrade).
    public var observer = UpdateObserver()
    public var now: () -> Date = { Date() }

    public enum Outcome {
        /// No move now, and why: the decision's reason and words, or `deferred` with the rule
        /// that defers the offered update.
        case noUpdate(NoUpdateReason, String?, Decision)
        case applied(Decision, ApplyReport)
    }

    public init(root: String, server: String, keyring: Keyring, decisionKeyring: Keyring, signer: RequestSigner) {
        self.root = root
        self.server = server
        self.keyring = keyring
        self.decisionKeyring = decisionKeyring
        self.signer = signer
    }

    public func run() throws -> Outcome {
        // (Its name alone is kept: the apply reads the installed manifest itself, and one parsed
        // copy of a large image's manifest is enough.)
        let installed: (image: String, version: String) = try {
            let manifest = try from ?? StateDirectory(root: root).readInstalled().manifest
            return (manifest.image, manifest.version)
        }()
        let client = SchoolServerClient(server: server, signer: signer, caFile: caFile)
        let nonce = SchoolServerClient.newNonce()
        let request = CheckRequest(device: device, nonce: nonce, image: installed.image, version: installed.version,
                                   channel: channel, peer: peerURL, freeBytes: try? FilesystemSpace(path: root).free,
                                   agentVersion: UpdatinatorVersion.current)
        let decision = try client.check(request, keyring: decisionKeyring, now: Int64(now().timeIntervalSince1970))
        guard decision.update, let image = decision.image, let version = decision.version,
              image != installed.image || version != installed.version else {
            return .noUpdate(decision.update ? .upToDate : decision.noUpdateReason, decision.message, decision)
        }
        if let notBefore = decision.notBefore, Int64(now().timeIntervalSince1970) < notBefore {
            return .noUpdate(.deferred, "the decision allows no download before \(notBefore)", decision)
        }
        if let text = decision.window {
            guard let window = TimeWindow(parsing: text) else { throw UpdError(.corrupt, "\(server): the decision's window '\(text)' is not HH:MM-HH:MM") }
            if !window.contains(now()) { return .noUpdate(.deferred, "the decision allows downloads only in \(text)", decision) }
        }
        report(client, DeviceReport(device: device, status: .applying, image: image, version: version))
        do {
            var manifestOptions = FetchOptions(mirrors: [server] + mirrors)
            manifestOptions.caFile = caFile
            let manifestFetcher = try CurlFetcher(options: manifestOptions)
            let target = try manifestFetcher.downloadManifest(image: image, version: version, into: nil, keyring: keyring,
                                                              hash: decision.manifestHash, size: decision.manifestSize).verified!
            var options = FetchOptions(peers: decision.peers, mirrors: mirrors + [server])
            options.rateLimit = decision.rateLimit
            options.concurrency = concurrency
            options.caFile = caFile
            // Without peers, the contents come from the server in batches; peers serve blobs.
            let sources = ContentSources(mirrors: options, batchServer: decision.peers.isEmpty ? server : nil, signer: signer)
            let result = try UpdateEngine.apply(UpdateEngine.ApplyRequest(root: root, target: target, from: from, sources: sources,
                                                                          faults: faults, machine: machine), observer: observer)
            report(client, DeviceReport(device: device, status: .done, image: image, version: version,
                                        bytes: Int64(clamping: result.download.bytes), peer: peerURL))
            return .applied(decision, result)
        } catch let error as UpdError {
            report(client, DeviceReport(device: device, status: .failed, image: image, version: version, code: error.code.rawValue,
                                        message: String(error.message.prefix(1000))))
            throw error
        }
    }

    private func report(_ client: SchoolServerClient, _ report: DeviceReport) {
        do {
            try client.report(report)
        } catch {
            observer.warn("report '\(report.status.rawValue)': \(error)")
        }
    }
}
