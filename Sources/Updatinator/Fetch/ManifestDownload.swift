extension CurlFetcher {
    /// Downloads an image version's manifest and its signature into `directory` as
    /// `VERSION.manifest` and `VERSION.manifest.sig`. They get those names only once the
    /// manifest names that image and version and, given a keyring, its signature verifies;
    /// otherwise nothing is left behind.
    public func downloadManifest(image: String, version: String, into directory: String,
                                 keyring: Keyring?) throws -> (manifest: Manifest, bytes: [UInt8], path: String) {
        try Manifest.checkName(image, what: "image name")
        try Manifest.checkName(version, what: "version")
        let remote = Repository.manifestPath(image: image, version: version)
        let local = "\(directory)/\(version).manifest"
        let incoming = "\(directory)/.incoming-\(version).manifest"
        try Sys.mkdirs(directory)
        defer {
            for leftover in [incoming, incoming + ".partial", incoming + ".sig", incoming + ".sig.partial"] { Sys.unlink(leftover) }
        }
        try fetchFile(remote, to: incoming, maxBytes: UInt64(ManifestParser.maxManifestBytes))
        try fetchFile(remote + ".sig", to: incoming + ".sig", maxBytes: 64 * 1024)
        let got = try keyring.map { try ManifestFile.readVerified(incoming, keyring: $0) } ?? ManifestFile.read(incoming)
        // A mirror must not pass off another signed manifest (an older version, say) as this one.
        guard got.manifest.image == image, got.manifest.version == version else {
            throw UpdError(.verification, "\(remote): the mirror sent the manifest of \(got.manifest.image) \(got.manifest.version)")
        }
        try Sys.rename(incoming + ".sig", local + ".sig")
        try Sys.rename(incoming, local)
        return (got.manifest, got.bytes, local)
    }
}
