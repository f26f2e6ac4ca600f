import Foundation
import Glibc

/// The contents (blobs, deltas, packs) a mirror holds on its disk, for its size bound: each
/// file's size and when it was last used. Over the bound, the least recently used go first,
/// except those `pinned` says an upgrade in progress needs; when only pinned files are left,
/// the cache stays over its bound rather than take what a laptop is about to download.
/// Documents (manifests, signatures, channels, delta indexes) are small and never evicted.
final class MirrorCache: Sendable {
    private struct Entry {
        var bytes: UInt64
        var used: UInt64
    }

    private struct State {
        var entries = [String: Entry]()
        var total: UInt64 = 0
        var clock: UInt64 = 0
    }

    let root: String
    let bound: UInt64
    private let state = Locked(State())

    /// Takes stock of the contents already under `root`, the oldest modified as least recently used.
    init(root: String, bound: UInt64) {
        self.root = root
        self.bound = bound
        var found = [(path: String, bytes: UInt64, modified: Int)]()
        let files = FileManager.default
        for kind in ["blobs", "deltas"] {
            for prefix in (try? files.contentsOfDirectory(atPath: "\(root)/\(kind)")) ?? [] where prefix.count == 2 {
                for name in (try? files.contentsOfDirectory(atPath: "\(root)/\(kind)/\(prefix)")) ?? [] where !name.hasPrefix(".") {
                    let path = "\(kind)/\(prefix)/\(name)"
                    if let st = try? Sys.lstatIfExists("\(root)/\(path)"), st.st_mode & S_IFMT == S_IFREG {
                        found.append((path, UInt64(st.st_size), st.st_mtim.tv_sec))
                    }
                }
            }
        }
        for image in (try? files.contentsOfDirectory(atPath: "\(root)/images")) ?? [] {
            for name in (try? files.contentsOfDirectory(atPath: "\(root)/images/\(image)")) ?? [] where name.hasSuffix(".pack") {
                let path = "images/\(image)/\(name)"
                if let st = try? Sys.lstatIfExists("\(root)/\(path)"), st.st_mode & S_IFMT == S_IFREG {
                    found.append((path, UInt64(st.st_size), st.st_mtim.tv_sec))
                }
            }
        }
        state.withLock { state in
            for file in found.sorted(by: { $0.modified < $1.modified }) {
                state.clock += 1
                state.entries[file.path] = Entry(bytes: file.bytes, used: state.clock)
                state.total += file.bytes
            }
        }
    }

    var totalBytes: UInt64 { state.withLock { $0.total } }

    var isOverBound: Bool { state.withLock { $0.total > bound } }

    /// A content was served: it becomes the most recently used.
    func used(_ path: String) {
        state.withLock { state in
            guard state.entries[path] != nil else { return }
            state.clock += 1
            state.entries[path]!.used = state.clock
        }
    }

    /// A content was stored.
    func added(_ path: String, bytes: UInt64) {
        state.withLock { state in
            state.clock += 1
            state.total -= state.entries[path]?.bytes ?? 0
            state.entries[path] = Entry(bytes: bytes, used: state.clock)
            state.total += bytes
        }
    }

    /// Removes the least recently used contents that `pinned` allows until the cache fits its
    /// bound; the count and bytes removed.
    @discardableResult
    func trim(pinned: (String) -> Bool) -> (files: Int, bytes: UInt64) {
        let victims: [(String, UInt64)] = state.withLock { state in
            guard state.total > bound else { return [] }
            var chosen = [(String, UInt64)]()
            var total = state.total
            for (path, entry) in state.entries.sorted(by: { $0.value.used < $1.value.used }) where total > bound && !pinned(path) {
                chosen.append((path, entry.bytes))
                total -= entry.bytes
            }
            for (path, bytes) in chosen {
                state.entries[path] = nil
                state.total -= bytes
            }
            return chosen
        }
        for (path, _) in victims { Sys.unlink("\(root)/\(path)") }
        return (victims.count, victims.reduce(0) { $0 + $1.1 })
    }
}
