import Foundation

extension CurlFetcher {
    /// A repository document and its detached signature file (`PATH.sig`), downloaded into memory.
    public struct SignedDownload: Sendable {
        public let content: [UInt8]
        /// Nil when the signature was optional and no mirror had it.
        public let signature: [UInt8]?
    }

    /// Downloads a small repository file (a manifest, channel metadata) and its signature;
    /// with `compressed`, its compressed copy (`CompressedCopy`) when a mirror has one. Both
    /// files come from one mirror: the first, least demoted, that has them (see `fromEachMirror`).
    public func fetchSigned(_ path: String, maxBytes: UInt64, signatureRequired: Bool = true, compressed: Bool = false) throws -> SignedDownload {
        try fetchSigned(path, maxBytes: maxBytes, signatureRequired: signatureRequired, compressed: compressed) { $0 }
    }

    /// `fetchSigned`, with what a mirror sent checked by `accept` (a signature, a name, a
    /// freshness): a mirror whose files `accept` refuses is passed over for the next one.
    public func fetchSigned<T>(_ path: String, maxBytes: UInt64, signatureRequired: Bool = true, compressed: Bool = false,
                               accept: (SignedDownload) throws -> T) throws -> T {
        try fromEachMirror(path) { mirror in
            try accept(fetchSigned(path, maxBytes: maxBytes, signatureRequired: signatureRequired, compressed: compressed, from: mirror))
        }
    }

    /// Tries `attempt` with each mirror in turn, least demoted first, until one succeeds. A
    /// mirror that fails it (`network`: it lacks the document or cannot be reached; `corrupt` or
    /// `verification`: what it sent is refused) is passed over, and demoted when it sent
    /// something refused, so that one stale or hostile mirror at the head of the list stops
    /// nothing. When every mirror fails, the error names each one and its problem, in one line,
    /// with the code of the first refusal (else `network`).
    func fromEachMirror<T>(_ path: String, _ attempt: (String) throws -> T) throws -> T {
        var problems = [String](), refusal: UpdError.Code?
        for mirror in order(nil) {
            do {
                return try attempt(mirror)
            } catch let e as UpdError where e.code == .verification || e.code == .corrupt || e.code == .network {
                if e.code != .network {
                    demote(mirror)
                    refusal = refusal ?? e.code
                }
                problems.append("\(mirror): \(Self.problem(e.message, of: path, from: mirror))")
            }
        }
        throw UpdError(refusal ?? .network, "\(path): no mirror had an acceptable copy (\(problems.joined(separator: "; ")))")
    }

    /// What an error from one mirror says, without the path and mirror that the caller names.
    private static func problem(_ message: String, of path: String, from mirror: String) -> String {
        for (name, label) in [(path + ".sig", "signature: "), (path, "")] {
            let failed = "\(name): no mirror could provide it (\(mirror): "
            if message.hasPrefix(failed) && message.hasSuffix(")") { return label + message.dropFirst(failed.count).dropLast() }
            if message.hasPrefix(name + ": ") { return label + message.dropFirst(name.count + 2) }
        }
        return message
    }

    /// `fetchSigned` from one mirror. The partial downloads live in a private temporary
    /// directory, removed before returning. A compressed copy may be at most as large as zstd
    /// can make `maxBytes`, and may not decompress to more than `maxBytes`; one that the mirror
    /// lacks or that does not decode is replaced by the plain file, but a mirror that failed
    /// the copy's request (and was demoted for it) is left at once.
    private func fetchSigned(_ path: String, maxBytes: UInt64, signatureRequired: Bool, compressed: Bool,
                             from mirror: String) throws -> SignedDownload {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("updatinator-\(UUID().uuidString)").path
        try Sys.mkdirs(directory, mode: 0o700)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var copy: [UInt8]?
        if compressed {
            let demotions = demotions(of: mirror)
            do {
                let copyBytes = CompressedCopy.maxBytes(decompressingTo: maxBytes)
                try fetchFile(path + CompressedCopy.suffix, to: "\(directory)/copy", maxBytes: copyBytes, from: [mirror], flow: nil)
                copy = try CompressedCopy.decompress(Sys.readFile("\(directory)/copy", limit: Int(copyBytes)), limit: Int(maxBytes),
                                                        source: path + CompressedCopy.suffix)
            } catch let e as UpdError where e.code == .network || e.code == .corrupt {
                if self.demotions(of: mirror) > demotions { throw e }
                copy = nil
            }
        }
        let content: [UInt8]
        if let copy {
            content = copy
        } else {
            try fetchFile(path, to: "\(directory)/document", maxBytes: maxBytes, from: [mirror], flow: nil)
            content = try Sys.readFile("\(directory)/document", limit: Int(maxBytes))
        }
        do {
            try fetchFile(path + ".sig", to: "\(directory)/signature", maxBytes: 64 * 1024, from: [mirror], flow: nil)
        } catch let e as UpdError where e.code == .network && !signatureRequired {
            return SignedDownload(content: content, signature: nil)
        }
        return SignedDownload(content: content, signature: try Sys.readFile("\(directory)/signature", limit: 64 * 1024))
    }

    /// Downloads an image version's manifest and its signature. It is refused unless it names that
    /// image and version, has the announced BLAKE2b-256 `hash` (when given), and, given a
    /// keyring, its signature verifies. It may be at most `size` bytes, the size a channel or a
    /// decision announced (its compressed copy no more than zstd makes of that), else
    /// `ManifestParser.maxManifestBytes`. Accepted, it is written to `directory` (when given) as
    /// `VERSION.manifest` and `VERSION.manifest.sig`; refused, nothing is written.
    ///
    /// The mirrors are tried in turn (`fromEachMirror`), each for both files: one whose manifest
    /// is refused (a stale or hostile mirror first in the list) is passed over for the next.
    public func downloadManifest(image: String, version: String, into directory: String?, keyring: Keyring?,
                                 hash: String? = nil, size: UInt64? = nil) throws -> DownloadedManifest {
        try Manifest.checkName(image, what: "image name")
        try Manifest.checkName(version, what: "version")
        let remote = Repository.manifestPath(image: image, version: version)
        let maxBytes = size ?? UInt64(ManifestParser.maxManifestBytes)
        guard maxBytes <= ManifestParser.maxManifestBytes else {
            throw UpdError(.corrupt, "\(remote): announced as \(maxBytes) bytes, more than a manifest may have (\(ManifestParser.maxManifestBytes))")
        }
        if let directory { try Sys.mkdirs(directory) }
        return try fetchSigned(remote, maxBytes: maxBytes, signatureRequired: true, compressed: true) { got in
            let verified = try keyring?.verifiedManifest(got.content, signatures: got.signature!, source: remote)
            let manifest = try verified?.manifest ?? ManifestParser.parse(got.content, source: remote)
            // A mirror must not pass off another signed manifest (an older version, say) as this one.
            guard manifest.image == image, manifest.version == version else {
                throw UpdError(.verification, "\(remote): the mirror sent the manifest of \(manifest.image) \(manifest.version)")
            }
            // A channel or a server decision names the manifest by its hash.
            if let hash, Blake2b.hash(got.content).hex != hash {
                throw UpdError(.verification, "\(remote): its hash is not the \(hash) that was announced")
            }
            guard let directory else { return DownloadedManifest(manifest: manifest, download: got, path: nil, verified: verified) }
            let local = "\(directory)/\(version).manifest"
            try Sys.writeFileAtomically(local + ".sig", got.signature!)
            try Sys.writeFileAtomically(local, got.content)
            return DownloadedManifest(manifest: manifest, download: got, path: local, verified: verified)
        }
    }
}

/// A manifest downloaded from a mirror: its bytes and signatures, where it was saved, and, when a
/// keyring was given, the same manifest as verified.
public struct DownloadedManifest: Sendable {
    public let manifest: Manifest
    public let download: CurlFetcher.SignedDownload
    public let path: String?
    public let verified: VerifiedManifest?
}

extension CurlFetcher {
    /// An image version's delta index from the mirrors (`DeltaIndex.path`), its signature checked
    /// against `keyring` when one is given; nil when no mirror has one.
    public func downloadDeltaIndex(image: String, version: String, keyring: Keyring?) throws -> DeltaIndex? {
        do {
            return try downloadSignedDeltaIndex(image: image, version: version, keyring: keyring).index
        } catch let e as UpdError where e.code == .network {
            return nil
        }
    }

    /// `downloadDeltaIndex` with the bytes and signature as downloaded (for a mirror that keeps
    /// them); no mirror having one is a `network` error.
    public func downloadSignedDeltaIndex(image: String, version: String, keyring: Keyring?) throws -> (index: DeltaIndex, download: SignedDownload) {
        let remote = DeltaIndex.path(image: image, version: version)
        return try fetchSigned(remote, maxBytes: UInt64(DeltaIndex.maxBytes), signatureRequired: keyring != nil, compressed: true) { got in
            if let keyring {
                try keyring.verify(got.content, signatures: SignatureFile.parse(got.signature!, source: remote + ".sig"),
                                   purpose: .deltas, source: remote)
            }
            let index = try DeltaIndex.parse(got.content, source: remote)
            // A signed index of another version (mix-and-match), or of format 1, which names none.
            guard let named = index.image, let namedVersion = index.version else {
                throw UpdError(.verification, "\(remote): the index names no image and version (format 1); run `updatinator delta` again to rewrite it")
            }
            guard named == image, namedVersion == version else {
                throw UpdError(.verification, "\(remote): the index is for \(named) \(namedVersion), not \(image) \(version)")
            }
            return (index, got)
        }
    }

    /// The first http(s) mirror and the layout of the pack that `deltas` announces for
    /// `manifest`; nil when there is no such mirror or pack.
    public func announcedPack(for manifest: Manifest, deltas: DeltaIndex?) -> (mirror: String, index: PackIndex)? {
        guard let deltas, let layout = PackIndex.announced(for: manifest, in: deltas),
              let mirror = options.mirrors.first(where: { $0.hasPrefix("http://") || $0.hasPrefix("https://") }) else { return nil }
        return (mirror, layout)
    }

    /// `downloadDeltaIndex`, with a failure reported to `warn` and no deltas used: deltas only
    /// save bytes, so an index that is missing, unsigned or corrupt never stops an update.
    public func usableDeltaIndex(for manifest: Manifest, keyring: Keyring?, warn: (String) -> Void) -> DeltaIndex? {
        do {
            return try downloadDeltaIndex(image: manifest.image, version: manifest.version, keyring: keyring)
        } catch {
            warn("deltas not used: \(error)")
            return nil
        }
    }
}
