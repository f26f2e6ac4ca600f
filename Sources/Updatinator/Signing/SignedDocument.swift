/// Signing and verifying the documents a repository publishes: manifests and channel metadata.
public enum SignedDocument {
    /// What a successful verification found.
    public struct Verified: Sendable {
        /// "manifest" or "channel".
        public let kind: String
        /// The image and version the manifest is, or the channel points to.
        public let image: String
        public let version: String
        public let signers: [String]
        /// A one-line description of the document, e.g. "manifest base 2 (3012 entries)".
        public let summary: String
    }

    /// Adds a signature by `key` to `PATH.sig`, creating it when missing. The manifest must parse.
    @discardableResult
    public static func signManifest(at path: String, with key: SecretKey) throws -> String {
        let content = try ManifestFile.readNamed(path)
        _ = try ManifestParser.parse(content, source: path)
        let sigPath = path + ".sig"
        var signatures = SignatureFile()
        if (try Sys.lstatIfExists(sigPath)) != nil {
            signatures = try SignatureFile.parse(Sys.readFile(sigPath, limit: 64 * 1024), source: sigPath)
        }
        signatures.sign(content, with: key, purpose: .manifest)
        try Sys.writeFileAtomically(sigPath, signatures.encoded())
        return key.publicKey.keyID
    }

    /// Verifies a manifest or channel metadata file (told apart by its first byte) against `PATH.sig`.
    public static func verify(fileAt path: String, keyring: Keyring, now: Int64) throws -> Verified {
        let head = try ManifestFile.readNamed(path).first
        if head == UInt8(ascii: "{") {
            let (content, signers) = try keyring.verifyFile(path, purpose: .channel)
            let m = try ChannelMetadata.parse(content, source: path)
            try m.checkFreshness(source: path, now: now)
            return Verified(kind: "channel", image: m.image, version: m.version, signers: signers, summary: "channel \(m.channel) → \(m.image) \(m.version), serial \(m.serial)")
        }
        let (content, signers) = try keyring.verifyFile(path, purpose: .manifest)
        let manifest = try ManifestParser.parse(content, source: path)
        return Verified(kind: "manifest", image: manifest.image, version: manifest.version, signers: signers,
                        summary: "manifest \(manifest.image) \(manifest.version) (\(manifest.entries.count) entries)")
    }
}
