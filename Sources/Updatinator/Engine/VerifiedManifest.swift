/// A manifest whose signature a keyring has verified: the only kind of manifest the engine installs.
///
/// Only a `Keyring` makes one (its initializer is internal to the core), so a front end cannot
/// hand the engine an unverified manifest by forgetting a check.
public struct VerifiedManifest: Sendable {
    public let manifest: Manifest
    /// The exact bytes the signatures cover.
    public let bytes: [UInt8]
    /// The ids of the keys whose signatures verified.
    public let signers: [String]

    init(manifest: Manifest, bytes: [UInt8], signers: [String]) {
        self.manifest = manifest
        self.bytes = bytes
        self.signers = signers
    }

    /// The image and version, as people name them: "olpc-ext3 445".
    public var name: String { "\(manifest.image) \(manifest.version)" }
}

extension Keyring {
    /// Verifies a manifest's bytes against its signature file's bytes, then parses it.
    public func verifiedManifest(_ bytes: [UInt8], signatures: [UInt8], source: String) throws -> VerifiedManifest {
        let parsed = try SignatureFile.parse(signatures, source: source + ".sig")
        let signers = try verify(bytes, signatures: parsed, purpose: .manifest, source: source)
        return VerifiedManifest(manifest: try ManifestParser.parse(bytes, source: source), bytes: bytes, signers: signers)
    }

    /// Reads a manifest whose signature file (`PATH.sig`) verifies against this keyring, then parses it.
    public func verifiedManifest(at path: String) throws -> VerifiedManifest {
        let (bytes, signers) = try verifyFile(path, purpose: .manifest)
        return VerifiedManifest(manifest: try ManifestParser.parse(bytes, source: path), bytes: bytes, signers: signers)
    }
}
