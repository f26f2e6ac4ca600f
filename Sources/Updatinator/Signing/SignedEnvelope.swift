import Foundation

/// Signed canonical JSON as it travels over HTTP: an object of two strings, the document's
/// canonical JSON text under its name and its signature file's text under `signatures`. A
/// school server's decisions and a national server's rollouts travel so.
enum SignedEnvelope {
    /// The envelope of `value` under `name`, signed with `key` for `purpose`.
    static func seal<T: Encodable>(_ value: T, as name: String, key: SecretKey, purpose: SignaturePurpose) -> [UInt8] {
        let content = CanonicalJSON.encode(value, pretty: false)
        var signatures = SignatureFile()
        signatures.sign(content, with: key, purpose: purpose)
        return CanonicalJSON.encode([name: String(decoding: content, as: UTF8.self),
                                     "signatures": String(decoding: signatures.encoded(), as: UTF8.self)], pretty: false)
    }

    /// The document an envelope carries under `name`, once its signatures verify against the
    /// keyring for `purpose` and its text is canonical.
    static func open<T: Decodable>(_ bytes: [UInt8], as name: String, _ type: T.Type, keyring: Keyring, purpose: SignaturePurpose,
                                   maxBytes: Int, source: String) throws -> T {
        guard bytes.count <= maxBytes, let envelope = try? JSONDecoder().decode([String: String].self, from: Data(bytes)),
              let text = envelope[name], let signatureText = envelope["signatures"] else {
            throw UpdError(.corrupt, "\(source): not a \(name) envelope")
        }
        let content = Array(text.utf8)
        let signatures = try SignatureFile.parse(Array(signatureText.utf8), source: "\(source) signatures")
        try keyring.verify(content, signatures: signatures, purpose: purpose, source: source)
        try CanonicalJSON.requireCanonical(content, pretty: false, source: source)
        do {
            return try JSONDecoder().decode(T.self, from: Data(content))
        } catch {
            throw UpdError(.corrupt, "\(source): not a valid \(name) (\(JSONErrors.describe(error)))")
        }
    }
}
