import Foundation

/// A directory of trusted public keys (`*.pub`), with an optional `threshold` file (k of n
/// distinct trusted keys must sign) and a `revoked/` subdirectory of keys that never count.
///
/// Symlinks in the directory are followed (it is the administrator's configuration, and a
/// package may link a key into it), but only to regular files: a FIFO or device is refused.
///
/// Verification fails closed: a missing or empty keyring, a missing signature file, zero
/// signatures, unknown or revoked keys and too few valid signatures are all refused.
public struct Keyring: Sendable {
    public let directory: String
    public let trusted: [String: PublicKey]
    public let revoked: Set<String>
    public let threshold: Int

    public init(directory: String) throws {
        self.directory = directory
        guard let st = try Sys.lstatIfExists(directory), st.st_mode & S_IFMT == S_IFDIR else {
            throw UpdError(.verification, "keyring \(directory) does not exist")
        }
        let revoked = Set(try Self.readKeys(in: "\(directory)/revoked").keys)
        self.revoked = revoked
        trusted = try Self.readKeys(in: directory).filter { !revoked.contains($0.key) }
        guard !trusted.isEmpty else {
            throw UpdError(.verification, "keyring \(directory) holds no trusted, unrevoked keys")
        }
        let thresholdPath = "\(directory)/threshold"
        if (try Sys.lstatIfExists(thresholdPath)) != nil {
            let text = String(decoding: try Sys.readFile(thresholdPath, limit: 64, followSymlink: true), as: UTF8.self)
            guard let k = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), k >= 1 else {
                throw UpdError(.verification, "\(thresholdPath): expected a whole number of at least 1")
            }
            guard k <= trusted.count else {
                throw UpdError(.verification, "\(thresholdPath): threshold \(k) exceeds the \(trusted.count) trusted keys")
            }
            threshold = k
        } else {
            threshold = 1
        }
    }

    private static func readKeys(in directory: String) throws -> [String: PublicKey] {
        guard let dir = opendir(directory) else {
            if errno == ENOENT { return [:] }
            throw UpdError.system("opendir", directory)
        }
        defer { closedir(dir) }
        var keys = [String: PublicKey]()
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard name.hasSuffix(".pub") else { continue }
            let key = try KeyFile.readPublic("\(directory)/\(name)")
            keys[key.keyID] = key
        }
        return keys
    }

    /// Verifies `content` against its signatures; returns the IDs of the trusted keys that signed,
    /// or throws a verification error that says why each signature did not count.
    @discardableResult
    public func verify(_ content: [UInt8], signatures: SignatureFile, purpose: SignaturePurpose, source: String) throws -> [String] {
        guard !signatures.signatures.isEmpty else {
            throw UpdError(.verification, "\(source): the signature file holds no signatures")
        }
        var signers = [String]()
        var reasons = [String]()
        for s in signatures.signatures {
            if revoked.contains(s.keyID) {
                reasons.append("key \(s.keyID) is revoked")
            } else if let key = trusted[s.keyID] {
                if key.isValidSignature(s.bytes, over: content, purpose: purpose) {
                    if !signers.contains(s.keyID) { signers.append(s.keyID) }
                } else {
                    reasons.append("signature by key \(s.keyID) does not match the content")
                }
            } else {
                reasons.append("key \(s.keyID) is not in the keyring")
            }
        }
        guard signers.count >= threshold else {
            let why = reasons.isEmpty ? "" : " (" + reasons.joined(separator: "; ") + ")"
            throw UpdError(.verification,
                           "\(source): \(signers.count) of the \(threshold) required trusted signatures verified\(why)")
        }
        return signers
    }

    /// Verifies a file against its detached signature file `PATH.sig`.
    @discardableResult
    public func verifyFile(_ path: String, purpose: SignaturePurpose) throws -> (content: [UInt8], signers: [String]) {
        let content = try ManifestFile.readNamed(path)
        let sigPath = path + ".sig"
        guard (try Sys.lstatIfExists(sigPath)) != nil else {
            throw UpdError(.verification, "\(path): no signature file \(sigPath)")
        }
        let signatures = try SignatureFile.parse(Sys.readFile(sigPath, limit: 64 * 1024), source: sigPath)
        return (content, try verify(content, signatures: signatures, purpose: purpose, source: path))
    }
}
