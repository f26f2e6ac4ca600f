/// Reading manifest files without their signatures (`Keyring.verifiedManifest(at:)` reads them with).
public enum ManifestFile {
    /// Reads and parses a manifest, keeping its exact bytes.
    public static func read(_ path: String) throws -> (manifest: Manifest, bytes: [UInt8]) {
        guard (try Sys.lstatIfExists(path)) != nil else { throw UpdError(.usage, "\(path): no such manifest") }
        let bytes = try Sys.readFile(path, limit: ManifestParser.maxManifestBytes)
        return (try ManifestParser.parse(bytes, source: path), bytes)
    }
}
