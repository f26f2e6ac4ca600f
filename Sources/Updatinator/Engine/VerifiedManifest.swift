import Foundation

/// A manifest whose signature a keyring has verified: the only kind of manifest the engine installs.
///
/// Only a `Keyring` makes one (its initializer is internal to the core), so a front end cannot
/// hand the engine an unverified manifest by forgetting a check.
public struct VerifiedManifest: Sendable {
    public let manifest: Manifest
    /// The BLAKE2b digest of the bytes the signatures cover.
    public let hash: ContentHash
    public let byteCount: Int
    /// The ids of the keys whose signatures verified.
    public let signers: [String]

    /// `bytes` must be the manifest's canonical text (`ManifestWriter.write(manifest)`), which
    /// the keyring checks before it makes one.
    init(manifest: Manifest, bytes: [UInt8], signers: [String]) {
        self.manifest = manifest
        hash = Blake2b.hash(bytes)
        byteCount = bytes.count
        self.signers = signers
    }

    /// Hands `sink` the exact bytes the signatures cover, made again from the manifest piece by
    /// piece: the text is not held, as it is tens of megabytes for a large image.
    public func write(into sink: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try ManifestWriter.write(manifest, into: sink)
    }

    /// The image and version, as people name them: "olpc-ext3 445".
    public var name: String { "\(manifest.image) \(manifest.version)" }
}

extension Keyring {
    /// Verifies a manifest's bytes against its signature file's bytes, then parses it.
    public func verifiedManifest(_ bytes: [UInt8], signatures: [UInt8], source: String) throws -> VerifiedManifest {
        let parsed = try SignatureFile.parse(signatures, source: source + ".sig")
        let signers = try verify(bytes, signatures: parsed, purpose: .manifest, source: source)
        return try Self.verified(bytes, signers: signers, source: source)
    }

    /// Reads a manifest whose signature file (`PATH.sig`) verifies against this keyring, then parses it.
    public func verifiedManifest(at path: String) throws -> VerifiedManifest {
        let (bytes, signers) = try verifyFile(path, purpose: .manifest)
        return try Self.verified(bytes, signers: signers, source: path)
    }

    /// Parses signed bytes, which must be in the canonical form the parser demands: then the
    /// writer gives them back byte for byte, and a verified manifest need not hold them.
    private static func verified(_ bytes: [UInt8], signers: [String], source: String) throws -> VerifiedManifest {
        let manifest = try ManifestParser.parse(bytes, source: source)
        var offset = 0, same = true
        bytes.withUnsafeBytes { signed in
            ManifestWriter.write(manifest) { piece in
                same = same && offset + piece.count <= signed.count
                    && memcmp(signed.baseAddress! + offset, piece.baseAddress!, piece.count) == 0
                offset += piece.count
            }
        }
        guard same && offset == bytes.count else {
            throw UpdError(.corrupt, "\(source): not in the canonical form of a manifest")
        }
        return VerifiedManifest(manifest: manifest, bytes: bytes, signers: signers)
    }
}
