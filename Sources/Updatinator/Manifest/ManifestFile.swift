/// Reading manifest files without their signatures (`Keyring.verifiedManifest(at:)` reads them with).
public enum ManifestFile {
    /// Reads and parses a manifest, keeping its exact bytes.
    public static func read(_ path: String) throws -> (manifest: Manifest, bytes: [UInt8]) {
        let bytes = try readNamed(path)
        return (try ManifestParser.parse(bytes, source: path), bytes)
    }

    /// Reads a manifest or channel file that a command line or a script named: one that does
    /// not exist is a usage error (exit 64) in every command, not an I/O failure.
    static func readNamed(_ path: String) throws -> [UInt8] {
        guard (try Sys.lstatIfExists(path)) != nil else { throw UpdError(.usage, "\(path): no such file", path: path) }
        return try Sys.readFile(path, limit: ManifestParser.maxManifestBytes)
    }

    /// Reads and parses a manifest, and its signature file (`PATH.sig`) unparsed when there is one.
    public static func readWithSignature(_ path: String) throws -> (manifest: Manifest, bytes: [UInt8], signatures: [UInt8]?) {
        let (manifest, bytes) = try read(path)
        let sigPath = path + ".sig"
        let signatures = try Sys.lstatIfExists(sigPath) == nil ? nil : try Sys.readFile(sigPath, limit: 64 * 1024)
        return (manifest, bytes, signatures)
    }
}
