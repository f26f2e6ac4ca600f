import Foundation
import Updatinator

/// The paths a script without `io` and `os` may use through `upd`: it may read and write files
/// under the `writable` directories, read files under the `readable` ones, and act on the
/// `trees` (`upd.manifest.installed`, `upd.fsck`, `upd.plan`, `upd.apply`, `upd.deploy`,
/// `upd.status`, `upd.rollback`), which the engine changes only to verified images. A tree
/// of `/` (the running system) is a tree and no more: its files are not opened to the script.
///
/// Paths are resolved as the kernel would open them (symlinks followed, `..` taken physically)
/// before they are compared, so that neither a symlink inside an allowed directory nor `..`
/// leads out of it; a path that does not exist yet resolves through its nearest existing parent.
public struct AllowedPaths: Sendable {
    public var writable: [String]
    public var readable: [String]
    public var trees: [String]

    public init(writable: [String], readable: [String] = [], trees: [String] = []) {
        self.writable = writable
        self.readable = readable
        self.trees = trees
    }

    public enum Use: Sendable {
        case read, write, tree
    }

    /// Throws, naming the path and the option that would allow it, unless `path` may be used so.
    func check(_ path: String, for use: Use) throws {
        guard let resolved = Self.resolve(path) else { throw refusal(path, " (a '..' after a directory that does not exist)") }
        var allowed = writable
        if use == .read { allowed += readable }
        if use == .tree && trees.compactMap(Self.resolve).contains(resolved) { return }
        for directory in allowed.compactMap(Self.resolve) where Self.isInside(resolved, directory) { return }
        throw refusal(path, resolved == path ? "" : " (\(resolved))")
    }

    private func refusal(_ path: String, _ detail: String) -> LuaPathRefused {
        LuaPathRefused(message: "\(path)\(detail) is outside the paths scripts may use; allow it with --allow-path DIR (or --allow-os)")
    }

    static func isInside(_ path: String, _ directory: String) -> Bool {
        directory == "/" || path == directory || path.hasPrefix(directory + "/")
    }

    /// The path with every symlink of its existing part resolved; nil when a part that does not
    /// exist is `..`.
    static func resolve(_ path: String) -> String? {
        var existing = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var rest = [Substring]()
        while true {
            if let real = realpath(existing, nil) {
                defer { free(real) }
                let base = String(cString: real)
                guard !rest.contains(where: { $0 == ".." }) else { return nil }
                let tail = rest.reversed().filter { $0 != "." && !$0.isEmpty }.joined(separator: "/")
                return tail.isEmpty ? base : (base == "/" ? "/" : base + "/") + tail
            }
            guard let slash = existing.lastIndex(of: "/"), existing != "/" else { return nil }
            rest.append(existing[existing.index(after: slash)...])
            existing = slash == existing.startIndex ? "/" : String(existing[..<slash])
        }
    }
}

/// A path a script may not use.
struct LuaPathRefused: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
