/// Chooses, for each content a new image has and an old image lacks, the old content to encode it
/// against. The rules, in order (documented in docs/deltas.md):
///
/// 1. the file at the same path in the old image;
/// 2. an old file whose whole path is the same once version numbers are stripped
///    (`libssl.so.1.1` → `libssl.so.3`, `python3.11/os.py` → `python3.12/os.py`);
/// 3. an old file with the same name, once version numbers are stripped, anywhere in the image.
///
/// Among several candidates of one rule, the one closest in size wins, then the first path.
/// Empty files and pairs too large for a delta's window are never matched.
public enum DeltaBases {
    public enum Rule: String, Sendable, CaseIterable {
        case samePath = "same path"
        case versionlessPath = "same path without versions"
        case versionlessName = "same name without versions"
    }

    public struct Match: Sendable, Equatable {
        public let base: ContentHash
        public let baseSize: UInt64
        public let rule: Rule
    }

    private struct Candidate {
        let path: ManifestPath
        let hash: ContentHash
        let size: UInt64
    }

    /// A match for every content of `new` that `old` lacks and some rule finds a base for.
    public static func match(from old: Manifest, to new: Manifest) -> [ContentHash: Match] {
        let oldContents = old.contents
        var byPath = [ManifestPath: Candidate]()
        var byVersionlessPath = [[UInt8]: [Candidate]]()
        var byVersionlessName = [[UInt8]: [Candidate]]()
        for e in old.entries {
            guard case .file(let size, let hash, _) = e.kind, size > 0 else { continue }
            let c = Candidate(path: e.path, hash: hash, size: size)
            byPath[e.path] = c
            byVersionlessPath[versionless(e.path.bytes), default: []].append(c)
            byVersionlessName[versionless(e.path.name), default: []].append(c)
        }
        var matches = [ContentHash: Match]()
        for e in new.entries {
            guard case .file(let size, let hash, _) = e.kind, size > 0, oldContents[hash] == nil, matches[hash] == nil else { continue }
            let tiers: [(Rule, [Candidate])] = [
                (.samePath, byPath[e.path].map { [$0] } ?? []),
                (.versionlessPath, byVersionlessPath[versionless(e.path.bytes)] ?? []),
                (.versionlessName, byVersionlessName[versionless(e.path.name)] ?? []),
            ]
            for (rule, candidates) in tiers {
                let fitting = candidates.filter { fits(base: $0.size, target: size) }
                guard let best = fitting.min(by: { closer($0, than: $1, to: size) }) else { continue }
                matches[hash] = Match(base: best.hash, baseSize: best.size, rule: rule)
                break
            }
        }
        return matches
    }

    /// Whether a pair is small enough for a delta's window.
    static func fits(base: UInt64, target: UInt64) -> Bool {
        base + target <= UInt64(1) << ContentDelta.maxWindowLog
    }

    private static func closer(_ a: Candidate, than b: Candidate, to size: UInt64) -> Bool {
        let da = a.size > size ? a.size - size : size - a.size
        let db = b.size > size ? b.size - size : size - b.size
        return da != db ? da < db : a.path < b.path
    }

    /// A name or path with each version number — digits, and digits joined by `.`, `_`, `-`,
    /// `+` or `~` — replaced by `#`.
    public static func versionless(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        var i = 0
        func isDigit(_ j: Int) -> Bool { j < bytes.count && bytes[j] >= 0x30 && bytes[j] <= 0x39 }
        while i < bytes.count {
            guard isDigit(i) else {
                out.append(bytes[i])
                i += 1
                continue
            }
            while isDigit(i) { i += 1 }
            // A separator continues the version only when a digit follows it.
            while i + 1 < bytes.count, Array(".-_+~".utf8).contains(bytes[i]), isDigit(i + 1) {
                i += 1
                while isDigit(i) { i += 1 }
            }
            out.append(UInt8(ascii: "#"))
        }
        return out
    }
}
