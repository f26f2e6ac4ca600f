internal import CLua
import Foundation
import Updatinator

/// A manifest a script holds: its parsed form, exact bytes and signatures, and whether a
/// keyring has verified it.
final class LuaManifest {
    let manifest: Manifest
    let bytes: [UInt8]
    let signatures: [UInt8]?
    let source: String
    /// The same manifest as a keyring verified it (`kr:verify`, or a download given a keyring):
    /// what `upd.apply` and `upd.deploy` install.
    var verified: VerifiedManifest?

    init(manifest: Manifest, bytes: [UInt8], signatures: [UInt8]?, source: String) {
        self.manifest = manifest
        self.bytes = bytes
        self.signatures = signatures
        self.source = source
    }

    /// The verified manifest, for an operation that installs it.
    func requireVerified() throws -> VerifiedManifest {
        guard let verified else {
            throw UpdError(.verification, "\(source): not verified; verify it with a keyring (kr:verify) first")
        }
        return verified
    }

    /// Reads a manifest file and, when present, its signature file.
    convenience init(path: String) throws {
        let (manifest, bytes, signatures) = try ManifestFile.readWithSignature(path)
        self.init(manifest: manifest, bytes: bytes, signatures: signatures, source: path)
    }

    lazy var totalBytes: UInt64 = manifest.entries.reduce(0) { $0 + ManifestDiff.fileSize($1) }
}

final class LuaKeyring {
    let keyring: Keyring
    init(_ keyring: Keyring) { self.keyring = keyring }
}

extension UpdLibrary {
    static let manifestType = LuaObjectType<LuaManifest>(name: "upd.Manifest")
    static let keyringType = LuaObjectType<LuaKeyring>(name: "upd.Keyring")

    static func installManifests(in state: LuaState) {
        // next_entry(m, previous): the entry after `previous` (by its `index`), or the first.
        state.pushFunction("entries") { call in
            let m = try call.object(1, manifestType)
            let index = Int(call.state.value(at: 2, on: call.L)["index"].integerValue ?? 0)
            guard index >= 0, index < m.manifest.entries.count else { return call.results(.nil) }
            return call.results(entryTable(m.manifest.entries[index], index: index + 1))
        }
        state.references["next_entry"] = luaL_ref(state.L, CLua_registryindex())
        state.defineType(manifestType, methods: [
            "get": { call in
                let m = try call.object(1, manifestType)
                let path = try call.string(2)
                // Paths are in the manifest format's escaped form, as entry tables give them.
                guard let bytes = ByteEscaping.unescape(Array(path.utf8)), let p = try? ManifestPath(bytes: bytes),
                      let i = m.manifest.index(of: p) else { return call.results(.nil) }
                return call.results(entryTable(m.manifest.entries[i], index: i + 1))
            },
            "entries": { call in
                // A stateless iterator: (next_entry, m, nil), as pairs does, so nothing is kept per call.
                _ = try call.object(1, manifestType)
                lua_rawgeti(call.L, CLua_registryindex(), lua_Integer(call.state.references["next_entry"]!))
                lua_pushvalue(call.L, 1)
                lua_pushnil(call.L)
                return 3
            },
        ], fields: [
            "image": { .string($0.manifest.image) },
            "version": { .string($0.manifest.version) },
            "entry_count": { .integer(Int64($0.manifest.entries.count)) },
            "total_bytes": { .integer(Int64($0.totalBytes)) },
            "verified": { .boolean($0.verified != nil) },
            "hash": { .string(Blake2b.hash($0.bytes).hex) },
            "source": { .string($0.source) },
        ], describe: { "Manifest \($0.manifest.image) \($0.manifest.version) (\($0.manifest.entries.count) entries)" })

        state.defineType(keyringType, methods: [
            "verify": { call in
                let kr = try call.object(1, keyringType)
                let m = try call.object(2, manifestType)
                guard let sig = m.signatures else {
                    throw UpdError(.verification, "\(m.source): no signature file")
                }
                m.verified = try kr.keyring.verifiedManifest(m.bytes, signatures: sig, source: m.source)
                return call.results(.boolean(true))
            },
        ], fields: [
            "directory": { .string($0.keyring.directory) },
            "threshold": { .integer(Int64($0.keyring.threshold)) },
        ], describe: { "Keyring \($0.keyring.directory) (\($0.keyring.trusted.count) keys, \($0.keyring.threshold) required)" })

        submodule("manifest", in: state) {
            state.setFunction("load") { call in
                let location = try call.string(1)
                try call.state.checkLocation(location)
                let m = try call.state.untimed { try loadManifest(location, options: call.state.fetchOptions) }
                try call.push(m, as: manifestType)
                return 1
            }
            state.setFunction("installed") { call in
                let root = try call.string(1)
                try call.state.checkPath(root, for: .tree)
                try call.push(try LuaManifest(path: StateDirectory(root: root).installedManifest), as: manifestType)
                return 1
            }
        }
        state.setFunction("keyring") { call in
            let directory = try call.string(1)
            try call.state.checkPath(directory, for: .read)
            try call.push(LuaKeyring(try Keyring(directory: directory)), as: keyringType)
            return 1
        }
        state.setFunction("diff") { call in
            let a = try call.object(1, manifestType), b = try call.object(2, manifestType)
            let d = ManifestDiff(from: a.manifest, to: b.manifest)
            return call.results(.table([
                "added": .array(d.added.map { .string($0.path.description) }),
                "removed": .array(d.removed.map { .string($0.path.description) }),
                "changed": .array(d.changed.map { .string($0.path.description) }),
                "added_bytes": .integer(Int64(d.addedFileBytes)),
                "removed_bytes": .integer(Int64(d.removedFileBytes)),
                "new_contents": .integer(Int64(d.newContents)),
                "download_bytes": .integer(Int64(d.newContentBlobBytes)),
            ]))
        }
    }

    /// A manifest from a file, or from a URL (with its signature, if the server has one).
    static func loadManifest(_ location: String, options: ([String]) -> FetchOptions) throws -> LuaManifest {
        guard let scheme = location.range(of: "://"), location[..<scheme.lowerBound].allSatisfy(\.isLetter) else {
            return try LuaManifest(path: location)
        }
        let slash = location.lastIndex(of: "/")!
        let mirror = String(location[..<slash]), name = String(location[location.index(after: slash)...])
        let got = try CurlFetcher(options: options([mirror]))
            .fetchSigned(name, maxBytes: UInt64(ManifestParser.maxManifestBytes), signatureRequired: false)
        let manifest = try ManifestParser.parse(got.content, source: location)
        return LuaManifest(manifest: manifest, bytes: got.content, signatures: got.signature, source: location)
    }

    /// An entry as a table: its 1-based position in the manifest, path, type, size, hash, mode,
    /// uid, gid, mtime, target.
    static func entryTable(_ e: ManifestEntry, index: Int) -> LuaValue {
        var t: [String: LuaValue] = [
            "index": .integer(Int64(index)),
            "path": .string(e.path.description), "type": .string(e.kind.typeName),
            "mode": .integer(Int64(e.metadata.mode)), "uid": .integer(Int64(e.metadata.uid)),
            "gid": .integer(Int64(e.metadata.gid)), "mtime": .integer(e.metadata.mtime.seconds),
        ]
        switch e.kind {
        case .file(let size, let hash, let blobSize):
            t["size"] = .integer(Int64(size))
            t["hash"] = .string(hash.hex)
            t["blob_size"] = .integer(Int64(blobSize))
        case .hardlink(let target):
            t["target"] = .string(target.description)
        case .symlink(let target):
            t["target"] = .string(String(decoding: target, as: UTF8.self))
        default:
            break
        }
        return .table(t)
    }
}
