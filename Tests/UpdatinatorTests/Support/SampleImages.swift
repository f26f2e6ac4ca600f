import Foundation
@testable import Updatinator

/// Sample images built once per test run with scripts/make-sample-tree, generated into a signed
/// repository: olpc-ext3 1 and 2 and olpc-devel-ext3 2 (small trees with every entry type).
final class SampleImages: Sendable {
    /// The images of this run, built on first use. A build that fails (no python3, a full /tmp)
    /// fails each test that needs them with the same one-line error, instead of crashing the run.
    static var shared: SampleImages {
        get throws { try built.get() }
    }

    private static let built = Result { () throws(UpdError) -> SampleImages in
        do {
            return try SampleImages()
        } catch {
            throw UpdError(.io, "the sample images could not be built: \(error)")
        }
    }

    let directory: String
    var repo: String { "\(directory)/repo" }
    var keyring: String { "\(directory)/keyring" }
    var secretKey: String { "\(directory)/test.sec" }

    static let images = [("olpc-ext3", "1"), ("olpc-ext3", "2"), ("olpc-devel-ext3", "2")]

    private init() throws {
        var template = Array("/tmp/updatinator-samples-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!).map { String(cString: $0) } }) else {
            throw UpdError.system("mkdtemp", "/tmp/updatinator-samples-XXXXXX")
        }
        directory = made
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("scripts/make-sample-tree").path
        try Sys.mkdirs(keyring)
        let key = SecretKey.generate()
        try KeyFile.writeKeyPair(key, secretPath: secretKey, publicPath: "\(keyring)/test.pub")
        for (image, version) in Self.images {
            try Shell.run([script, tree(image, version), "--image", image, "--version", version, "--files", "400"])
            var generator = ImageGenerator(tree: tree(image, version), repository: repo, image: image, version: version)
            generator.signingKey = key
            _ = try generator.run()
        }
    }

    func tree(_ image: String, _ version: String) -> String { "\(directory)/trees/\(image)-\(version)" }
    func manifest(_ image: String, _ version: String) -> String { "\(repo)/images/\(image)/\(version).manifest" }

    /// The blobs olpc-ext3 2 needs when olpc-ext3 1 is installed.
    var upgradeBlobs: [BlobRequest] {
        get throws {
            try BlobFetchPlan.missing(target: ManifestParser.parse(contentsOf: manifest("olpc-ext3", "2")),
                                      present: ManifestParser.parse(contentsOf: manifest("olpc-ext3", "1")), stores: [])
        }
    }
}

enum Shell {
    /// Runs a program and returns its standard output; a non-zero exit is an error.
    @discardableResult
    static func run(_ arguments: [String]) throws -> String {
        let child = try Subprocess(arguments)
        let status = child.wait()
        guard status == 0 else {
            throw UpdError(.io, "\(arguments.joined(separator: " ")) exited with \(status): \(child.stderr)")
        }
        return child.stdout
    }

    /// Copies a tree exactly: hardlinks, devices, owners, times and extended attributes.
    static func copyTree(_ from: String, _ to: String) throws {
        try run(["cp", "-a", from, to])
    }

    /// What rsync would change to make `root` equal `expected`, ignoring the state directory and
    /// the root directory's own time.
    static func rsyncDifferences(expected: String, root: String) throws -> [String] {
        try run(["rsync", "-anciHX", "--delete", "--exclude=/.updatinator", expected + "/", root + "/"])
            .split(separator: "\n").map(String.init).filter { !$0.hasSuffix(" ./") }
    }
}
