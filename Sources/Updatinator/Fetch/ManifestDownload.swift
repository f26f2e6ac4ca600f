import Foundation

extension CurlFetcher {
    /// A repository document and its detached signature file (`PATH.sig`), downloaded into memory.
    public struct SignedDownload: Sendable {
        public let content: [UInt8]
        /// Nil when the signature was optional and no mirror had it.
        public let signature: [UInt8]?
    }

    /// Downloads a small repository file (a manifest, channel metadata) and its signature;
    /// with `compressed`, its compressed copy (`CompressedCopy`) when a mirror has one.
    /// The partial downloads live in a private temporary directory, removed before returning.
    public func fetchSigned(_ path: String, maxBytes: UInt64, signatureRequired: Bool = true, compressed: Bool = false) throws -> SignedDownload {
        try fetchSigned(path, maxBytes: maxBytes, signatureRequired: signatureRequired, compressed: compressed, from: nil)
    }

    /// `fetchSigned` from the given base URLs (nil for the mirrors).
    private func fetchSigned(_ path: String, maxBytes: UInt64, signatureRequired: Bool, compressed: Bool,
                             from bases: [String]?) throws -> SignedDownload {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("updatinator-\(UUID().uuidString)").path
        try Sys.mkdirs(directory, mode: 0o700)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var copy: [UInt8]?
        if compressed {
            do {
                try fetchFile(path + CompressedCopy.suffix, to: "\(directory)/copy", maxBytes: maxBytes, from: bases, flow: nil)
                copy = try CompressedCopy.decompress(Sys.readFile("\(directory)/copy", limit: Int(maxBytes)), limit: Int(maxBytes),
                                                        source: path + CompressedCopy.suffix)
            } catch let e as UpdError where e.code == .network || e.code == .corrupt {
                copy = nil
            }
        }
        let content: [UInt8]
        if let copy {
            content = copy
        } else {
            try fetchFile(path, to: "\(directory)/document", maxBytes: maxBytes, from: bases, flow: nil)
            content = try Sys.readFile("\(directory)/document", limit: Int(maxBytes))
        }
        do {
            try fetchFile(path + ".sig", to: "\(directory)/signature", maxBytes: 64 * 1024, from: bases, flow: nil)
        } catch let e as UpdError where e.code == .network && !signatureRequired {
            return SignedDownload(content: content, signature: nil)
        }
        return SignedDownload(content: content, signature: try Sys.readFile("\(directory)/signature", limit: 64 * 1024))
    }

    /// Downloads an image version's manifest and its signature. It is refused unless it names that
    /// image and version, has the announced BLAKE2b-256 `hash` (when given), and, given a
    /// keyring, its signature verifies. Accepted, it is written to `directory` (when given) as
    /// `VERSION.manifest` and `VERSION.manifest.sig`; refused, nothing is written.
    ///
    /// The mirrors are tried in order, each for both files: one whose manifest is refused (a stale
    /// or hostile mirror first in the list) is passed over for the next, and when none has an
    /// acceptable one, the first mirror's error is thrown.
    public func downloadManifest(image: String, version: String, into directory: String?, keyring: Keyring?,
                                 hash: String? = nil) throws -> DownloadedManifest {
        try Manifest.checkName(image, what: "image name")
        try Manifest.checkName(version, what: "version")
        if let directory { try Sys.mkdirs(directory) }
        var firstError: UpdError?
        for mirror in options.mirrors {
            do {
                return try downloadManifest(image: image, version: version, keyring: keyring, hash: hash, from: mirror, into: directory)
            } catch let e as UpdError where e.code == .verification || e.code == .corrupt || e.code == .network {
                firstError = firstError ?? e
            }
        }
        throw firstError ?? UpdError(.usage, "no mirror to download \(image) \(version) from")
    }

    /// `downloadManifest` from one mirror (with this fetcher's rate limit and cancellation).
    private func downloadManifest(image: String, version: String, keyring: Keyring?, hash: String?, from mirror: String,
                                  into directory: String?) throws -> DownloadedManifest {
        let remote = Repository.manifestPath(image: image, version: version)
        let got = try fetchSigned(remote, maxBytes: UInt64(ManifestParser.maxManifestBytes), signatureRequired: true, compressed: true,
                                  from: [mirror])
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
        let remote = DeltaIndex.path(image: image, version: version)
        let got: SignedDownload
        do {
            got = try fetchSigned(remote, maxBytes: UInt64(DeltaIndex.maxBytes), signatureRequired: keyring != nil, compressed: true)
        } catch let e as UpdError where e.code == .network {
            return nil
        }
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
        return index
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
            warn("deltas not used: \((error as? UpdError)?.message ?? "\(error)")")
            return nil
        }
    }
}
