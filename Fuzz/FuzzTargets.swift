import Foundation
@testable import Updatinator
@testable import UpdatinatorServer

/// The parsers libFuzzer drives (`scripts/fuzz TARGET SECONDS`). Each target takes arbitrary
/// bytes and must return or throw `UpdError`: a crash, a hang, a leak or a memory error is a bug.
/// Where a parser's input is signed, the target also signs the bytes with a key of its own
/// keyring, so that the fuzzer reaches what follows the signature check.
enum FuzzTargets {
    static let names = ["manifest", "signature", "keyfile", "repo-json", "channel", "decision", "request", "blob"]

    /// A keyring of one key, and that key.
    struct Keys {
        let keyring: Keyring
        let key: SecretKey

        init() throws {
            let directory = NSTemporaryDirectory() + "updatinator-fuzz-\(getpid())"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            key = SecretKey.generate()
            try KeyFile.writeKeyPair(key, secretPath: directory + "/fuzz.key", publicPath: directory + "/fuzz.pub")
            keyring = try Keyring(directory: directory)
        }
    }

    static func run(_ target: String, _ bytes: [UInt8], keys: Keys) {
        let now: Int64 = 1_800_000_000
        switch target {
        case "manifest":
            // The parser accepts the canonical form alone: the writer gives back what it accepted,
            // byte for byte (a verified manifest's bytes are made again from it, `VerifiedManifest`).
            if let manifest = try? ManifestParser.parse(bytes, source: "fuzz") {
                precondition(ManifestWriter.write(manifest) == bytes, "a manifest the parser accepts is not in canonical form")
            }
        case "signature":
            if let signatures = try? SignatureFile.parse(bytes, source: "fuzz") {
                _ = try? keys.keyring.verify(Array("content".utf8), signatures: signatures, purpose: .manifest, source: "fuzz")
                _ = signatures.encoded()
            }
        case "keyfile":
            _ = try? KeyFile.parsePublic(bytes, source: "fuzz")
            _ = try? KeyFile.parseSecret(bytes, source: "fuzz")
        case "repo-json":
            _ = try? RepoConfig.parse(bytes, source: "fuzz")
        case "channel":
            _ = try? ChannelMetadata.parse(bytes, source: "fuzz")
            _ = try? ChannelMetadata.verify(bytes, signatures: signed(bytes, keys, .channel), keyring: keys.keyring, channel: "stable", source: "fuzz", now: now)
        case "decision":
            _ = try? Decision.verify(envelope: bytes, keyring: keys.keyring, device: "fuzz", nonce: "00112233445566778899aabbccddeeff",
                                     now: now, source: "fuzz")
            // The same bytes as a decision, signed: what follows the signature check.
            let envelope = Decision.Envelope(decision: String(decoding: bytes, as: UTF8.self),
                                             signatures: String(decoding: signed(bytes, keys, .decision).encoded(), as: UTF8.self))
            if let data = try? JSONEncoder().encode(envelope) {
                _ = try? Decision.verify(envelope: Array(data), keyring: keys.keyring, device: "fuzz",
                                         nonce: "00112233445566778899aabbccddeeff", now: now, source: "fuzz")
            }
        case "request":
            request(bytes)
        case "blob":
            blob(bytes)
        default:
            fatalError("no fuzz target '\(target)' (known: \(names.joined(separator: ", ")))")
        }
    }

    /// The school server's request handling: the first byte picks the check body, the report
    /// body, the batch body, a repository path, a Range header, a school's forwarded reports, or
    /// a path as a mirror of upstream reads it.
    /// A blob (after three bytes that declare its content's size, up to 1 MiB): libdeflate's
    /// whole inflate (`BlobStore` up to its limit) and zlib's stream (past it) must refuse the
    /// same blobs, and give the same content for the others.
    static func blob(_ bytes: [UInt8]) {
        guard bytes.count >= 3, let library = LibDeflate.shared else { return }
        let size = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2] & 0x0f) << 16
        let stream = Array(bytes[3...])
        let whole = try? [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            try stream.withUnsafeBytes { try library.inflate($0, into: UnsafeMutableRawBufferPointer(buffer), source: "fuzz") }
            count = size
        }
        var streamed: [UInt8]? = []
        do {
            let inflater = try ZlibInflater(expectedSize: UInt64(size), source: "fuzz")
            try stream.withUnsafeBytes { try inflater.inflate($0) { streamed! += $0 } }
            try inflater.finish()
        } catch {
            streamed = nil
        }
        if whole != streamed {
            fatalError("libdeflate \(whole == nil ? "refuses" : "accepts") and zlib \(streamed == nil ? "refuses" : "accepts") a blob of declared size \(size)\(whole != nil && streamed != nil ? ", with different contents" : "")")
        }
    }

    static func request(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        let rest = Array(bytes.dropFirst())
        switch first % 7 {
        case 0: _ = (try? WireCoding.decode(CheckRequest.self, from: rest))?.policyTable(address: "10.1.2.3")
        case 1: _ = try? WireCoding.decode(DeviceReport.self, from: rest)
        case 2: _ = try? WireCoding.decode(BatchRequest.self, from: rest, userInfo: [BatchRequest.maxItemsKey: 1000])
        case 3: _ = FileResponder.relativePath(String(decoding: rest, as: UTF8.self).split(separator: "/", omittingEmptySubsequences: false).map(String.init))
        case 4: _ = FileResponder.parseRange(String(decoding: rest, as: UTF8.self), size: 1 << 20)
        case 5: _ = try? WireCoding.decode(ForwardedReports.self, from: rest)
        default: _ = RepositoryFile(path: String(decoding: rest, as: UTF8.self).split(separator: "/", omittingEmptySubsequences: false).map(String.init))
        }
    }

    static func signed(_ bytes: [UInt8], _ keys: Keys, _ purpose: SignaturePurpose) -> SignatureFile {
        var signatures = SignatureFile()
        signatures.sign(bytes, with: keys.key, purpose: purpose)
        return signatures
    }
}
