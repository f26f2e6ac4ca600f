import Updatinator

/// A Swift object that Lua holds, charged against the state's memory limit by its real size
/// while Lua holds it (`LuaState.charge`, given back when it is collected or closed).
protocol LuaHostObject: AnyObject {
    var hostBytes: Int { get }
}

/// A Swift array's heap block beyond its elements.
private let arrayHeader = 32

extension LuaManifest: LuaHostObject {
    /// Its text and signatures, and its parsed entries with their paths and targets.
    var hostBytes: Int {
        var total = bytes.count + (signatures?.count ?? 0) + MemoryLayout<ManifestEntry>.stride * manifest.entries.count
        for e in manifest.entries {
            total += arrayHeader + e.path.bytes.count
            if case .symlink(let target) = e.kind { total += arrayHeader + target.count }
        }
        return total
    }
}

extension LuaPlan: LuaHostObject {
    /// Its steps and the contents it must obtain (its manifests are charged on their own).
    var hostBytes: Int {
        MemoryLayout<ApplyStep>.stride * plan.steps.count + (MemoryLayout<ContentHash>.stride + 16) * plan.missing.count
            + 1024 + blobs.reduce(0) { $0 + arrayHeader + $1.utf8.count }
    }
}

extension LuaKeyring: LuaHostObject {
    var hostBytes: Int { 256 + keyring.directory.utf8.count + 128 * keyring.trusted.count }
}
