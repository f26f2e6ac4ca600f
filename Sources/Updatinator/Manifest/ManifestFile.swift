/// Reading manifest files without their signatures (`Keyring.verifiedManifest(at:)` reads them with).
public enum ManifestFile {
    /// Reads and parses a manifest, keeping its exact bytes.
    public static func read(_ path: String) throws -> (manifest: Manifest, bytes: [UInt8]) {
        guard (try Sys.lstatIfExists(path)) != nil else { throw UpdError(.usage, "\(path): no such manifest") }
        let bytes = try Sys.readFile(path, limit: ManifestParser.maxManifestBytes)
        return (try ManifestParser.parse(bytes, source: path), bytes)
    }

    /// Reads and parses a manifest, and its signature file (`PATH.sig`) unparsed when there is one.
    public static func readWithSignature(_ path: String) throws -> (manifest: Manifest, bytes: [UInt8], signatures: [UInt8]?) {
        let (manifest, bytes) = try read(path)
        let sigPath = path + ".sig"
        let signatures = try Sys.lstatIfExists(sigPath) == nil ? nil : try Sys.readFile(sigPath, limit: 64 * 1024)
        return (manifest, bytes, signatures)
    }
}
