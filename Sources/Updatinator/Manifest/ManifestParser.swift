/// Parses manifest text strictly: every deviation from the canonical form is an error naming the line and field.
///
/// The parser is total: it never traps on hostile input, and it allocates no more than the
/// input's size implies.
public enum ManifestParser {
    public static let maxLineLength = 256 * 1024
    /// The largest manifest read, downloaded or parsed: 64 MiB. A Debian tree's manifest is
    /// 0.7 MB and a 300 000-file desktop image's about 45 MB (150 bytes a line); a manifest
    /// read whole is at most this much memory, and its parsed entries a few times that.
    public static let maxManifestBytes = 64 << 20
    public static let maxFileSize: UInt64 = 1 << 40
    public static let maxXattrsPerEntry = 64

    /// The largest blob a content of `size` bytes can have: zlib never expands data by more
    /// than a few bytes per 16 KiB block.
    static func blobSizeBound(_ size: UInt64) -> UInt64 { size + size / 1024 + 64 }

    /// Parses `bytes`; `source` names the input in error messages. Each entry whose path is
    /// also one of `other`'s takes that path's bytes, so that two images of one machine, held
    /// together (an apply's old and new), hold each path they share once.
    public static func parse(_ bytes: [UInt8], source: String = "manifest", sharingPathsWith other: Manifest? = nil) throws -> Manifest {
        var parser = Parser(bytes: bytes, source: source, sharing: other?.entries ?? [])
        return try parser.run()
    }

    /// Parses the manifest file at `path`.
    public static func parse(contentsOf path: String, sharingPathsWith other: Manifest? = nil) throws -> Manifest {
        try parse(ManifestFile.readNamed(path), source: path, sharingPathsWith: other)
    }
}

private struct Parser {
    let bytes: [UInt8]
    let source: String
    var position = 0
    var lineNumber = 0
    var currentLine: ArraySlice<UInt8> = []
    /// Another manifest's entries, whose paths equal ones are given; `sharedPosition` is how
    /// far into them the entries, which come in path order, have gone.
    let sharing: [ManifestEntry]
    var sharedPosition = 0

    init(bytes: [UInt8], source: String, sharing: [ManifestEntry]) {
        self.bytes = bytes
        self.source = source
        self.sharing = sharing
    }

    /// `path`, or the equal path of `sharing`; paths are asked for in increasing order.
    mutating func shared(_ path: ManifestPath) -> ManifestPath {
        while sharedPosition < sharing.count && sharing[sharedPosition].path < path { sharedPosition += 1 }
        return sharedPosition < sharing.count && sharing[sharedPosition].path == path ? sharing[sharedPosition].path : path
    }

    func fail(_ field: String, _ problem: String) -> UpdError {
        UpdError(.corrupt, "\(source) line \(lineNumber), field \(field): \(problem)")
    }

    /// Advances to the next line, or returns false at the end of input.
    mutating func nextLine() throws -> Bool {
        guard position < bytes.count else { return false }
        lineNumber += 1
        let limit = min(bytes.count, position + ManifestParser.maxLineLength + 1)
        guard let newline = bytes[position..<limit].firstIndex(of: 10) else {
            if limit == bytes.count { throw fail("line", "truncated: no newline at the end of the line") }
            throw fail("line", "longer than \(ManifestParser.maxLineLength) bytes")
        }
        currentLine = bytes[position..<newline]
        position = newline + 1
        return true
    }

    func fields() throws -> [ArraySlice<UInt8>] {
        let parts = currentLine.split(separator: 32, omittingEmptySubsequences: false)
        if parts.contains(where: \.isEmpty) { throw fail("line", "empty field (fields are separated by one space)") }
        return parts
    }

    mutating func headerValue(_ key: String) throws -> String {
        guard try nextLine() else {
            lineNumber += 1
            throw fail(key, "missing: the manifest ends inside its header")
        }
        let parts = try fields()
        guard parts.count == 2, parts[0].elementsEqual(key.utf8) else {
            throw fail(key, "expected '\(key) VALUE'")
        }
        return String(decoding: parts[1], as: UTF8.self)
    }

    mutating func run() throws -> Manifest {
        guard bytes.count <= ManifestParser.maxManifestBytes else {
            throw UpdError(.corrupt, "\(source): larger than \(ManifestParser.maxManifestBytes) bytes")
        }
        let format = try headerValue(Manifest.formatTag)
        guard format == String(Manifest.formatVersion) else {
            throw fail("format", "unsupported manifest format version '\(format)' (this is version \(Manifest.formatVersion))")
        }
        let image = try headerValue("image")
        if let problem = Manifest.problem(withName: image) { throw fail("image", "name \(problem)") }
        let version = try headerValue("version")
        if let problem = Manifest.problem(withName: version) { throw fail("version", "version \(problem)") }
        let algorithm = try headerValue("hash")
        guard algorithm == ContentHash.algorithm else {
            throw fail("hash", "unsupported hash algorithm '\(algorithm)'")
        }
        guard try nextLine() else { lineNumber += 1; throw fail("entries", "missing") }
        var created: Int64? = nil
        if currentLine.starts(with: "created ".utf8) {
            let parts = try fields()
            guard parts.count == 2, let value = signedDecimal(parts[1]) else {
                throw fail("created", "expected 'created SECONDS'")
            }
            created = value
            guard try nextLine() else { lineNumber += 1; throw fail("entries", "missing") }
        }
        let parts = try fields()
        guard parts.count == 2, parts[0].elementsEqual("entries".utf8),
              let count = decimal(parts[1], max: UInt64(Int32.max)) else {
            throw fail("entries", "expected 'entries COUNT'")
        }
        // A line is at least 12 bytes, so the input bounds how many entries to reserve.
        var entries = [ManifestEntry]()
        entries.reserveCapacity(min(Int(count), (bytes.count - position) / 12 + 1))
        while try nextLine() {
            guard entries.count < Int(count) else {
                throw fail("entries", "more entries than the header's count of \(count)")
            }
            var entry = try parseEntry(earlier: entries)
            if let previous = entries.last {
                if entry.path == previous.path { throw fail("path", "duplicate path \(entry.path)") }
                if entry.path < previous.path { throw fail("path", "\(entry.path) is out of order (entries are sorted by path bytes)") }
                guard Manifest.index(of: entry.path.parent, in: entries).map({ entries[$0].kind == .directory }) == true else {
                    throw fail("path", "parent directory of \(entry.path) is not an earlier directory entry")
                }
            } else if !entry.path.isRoot || entry.kind != .directory {
                throw fail("path", "the first entry must be the root directory '/'")
            }
            entry.path = shared(entry.path)
            entries.append(entry)
        }
        guard entries.count == Int(count) else {
            lineNumber += 1
            throw fail("entries", "the header announces \(count) entries but the manifest has \(entries.count)")
        }
        return Manifest(image: image, version: version, created: created, entries: entries)
    }

    /// Parses the current line; `earlier` are the entries before it, in path order.
    func parseEntry(earlier: [ManifestEntry]) throws -> ManifestEntry {
        let f = try fields()
        guard f.count >= 3 else { throw fail("line", "too few fields for an entry") }
        let path = try parsePath(f[0], field: "path")
        guard f[1].count == 1 else { throw fail("type", "unknown entry type '\(text(f[1]))'") }
        let letter = f[1].first!
        if letter == UInt8(ascii: "h") {
            guard f.count == 3 else { throw fail("line", "a hardlink entry has exactly 3 fields") }
            let target = try parsePath(f[2], field: "target")
            guard let i = Manifest.index(of: target, in: earlier), case .file = earlier[i].kind else {
                throw fail("target", "hardlink target \(target) is not an earlier regular file")
            }
            // (The target's path is the earlier entry's: held once.)
            return ManifestEntry(path: path, kind: .hardlink(target: earlier[i].path), metadata: earlier[i].metadata)
        }
        guard f.count >= 6 else { throw fail("line", "too few fields for an entry") }
        guard f[2].count == 4, let mode = octal(f[2]) else {
            throw fail("mode", "expected 4 octal digits, got '\(text(f[2]))'")
        }
        // 4294967295 is (uid_t)-1, which chown reads as "leave unchanged": the owner would be whatever was there.
        guard let uid = decimal(f[3], max: UInt64(UInt32.max - 1)) else { throw fail("uid", "not a decimal number below 4294967295") }
        guard let gid = decimal(f[4], max: UInt64(UInt32.max - 1)) else { throw fail("gid", "not a decimal number below 4294967295") }
        let mtime = try parseTimestamp(f[5])
        var next = 6
        func take(_ name: String) throws -> ArraySlice<UInt8> {
            // An extended attribute (x:NAME=VALUE) where this field should be: it is missing. A
            // field without a literal '=' is no attribute ('=' is escaped everywhere else), so
            // a symlink's target may start with "x:".
            guard next < f.count, !(f[next].starts(with: "x:".utf8) && f[next].contains(UInt8(ascii: "="))) else {
                throw fail(name, "missing")
            }
            next += 1
            return f[next - 1]
        }
        let kind: EntryKind
        switch letter {
        case UInt8(ascii: "d"): kind = .directory
        case UInt8(ascii: "p"): kind = .fifo
        case UInt8(ascii: "f"):
            guard let size = decimal(try take("size"), max: ManifestParser.maxFileSize) else {
                throw fail("size", "not a decimal number up to \(ManifestParser.maxFileSize)")
            }
            guard let hash = ContentHash(hexBytes: try take("hash")) else {
                throw fail("hash", "expected 64 lowercase hexadecimal digits")
            }
            // An empty file is written without reading any content, so nothing else would check its hash.
            guard size > 0 || hash == ContentHash.empty else {
                throw fail("hash", "a file of size 0 must have the hash of no bytes (\(ContentHash.empty.hex))")
            }
            let bound = ManifestParser.blobSizeBound(size)
            guard let blobSize = decimal(try take("blob size"), max: bound), blobSize > 0 else {
                throw fail("blob size", "not a decimal number between 1 and \(bound)")
            }
            kind = .file(size: size, hash: hash, blobSize: blobSize)
        case UInt8(ascii: "l"):
            let raw = try take("target")
            guard let target = ByteEscaping.unescape(raw) else { throw fail("target", "invalid escaping") }
            guard !target.contains(0), target.count <= ManifestPath.maxLength else {
                throw fail("target", "contains a NUL byte or is longer than \(ManifestPath.maxLength) bytes")
            }
            kind = .symlink(target: target)
        case UInt8(ascii: "c"), UInt8(ascii: "b"):
            let raw = try take("device")
            let numbers = raw.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
            guard numbers.count == 2, let major = decimal(numbers[0], max: UInt64(UInt32.max)),
                  let minor = decimal(numbers[1], max: UInt64(UInt32.max)) else {
                throw fail("device", "expected MAJOR:MINOR")
            }
            kind = letter == UInt8(ascii: "c")
                ? .characterDevice(major: UInt32(major), minor: UInt32(minor))
                : .blockDevice(major: UInt32(major), minor: UInt32(minor))
        default:
            throw fail("type", "unknown entry type '\(text(f[1]))'")
        }
        let xattrs = try parseXattrs(f[next...])
        let metadata = Metadata(mode: UInt32(mode), uid: UInt32(uid), gid: UInt32(gid), mtime: mtime, xattrs: xattrs)
        return ManifestEntry(path: path, kind: kind, metadata: metadata)
    }

    func parsePath(_ raw: ArraySlice<UInt8>, field: String) throws -> ManifestPath {
        guard let bytes = ByteEscaping.unescape(raw) else { throw fail(field, "invalid escaping in '\(text(raw))'") }
        if let problem = ManifestPath.problem(with: bytes) { throw fail(field, "\(text(raw)) \(problem)") }
        return ManifestPath(unchecked: bytes)
    }

    func parseTimestamp(_ raw: ArraySlice<UInt8>) throws -> Timestamp {
        let parts = raw.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].count == 9, let seconds = signedDecimal(parts[0]),
              parts[1].allSatisfy({ $0 >= 48 && $0 <= 57 }), let ns = UInt32(text(parts[1])) else {
            throw fail("mtime", "expected SECONDS.NANOSECONDS with 9 digits of nanoseconds")
        }
        return Timestamp(seconds: seconds, nanoseconds: ns)
    }

    func parseXattrs(_ raw: ArraySlice<ArraySlice<UInt8>>) throws -> [ExtendedAttribute] {
        guard raw.count <= ManifestParser.maxXattrsPerEntry else {
            throw fail("xattr", "more than \(ManifestParser.maxXattrsPerEntry) extended attributes")
        }
        var result = [ExtendedAttribute]()
        for field in raw {
            guard field.starts(with: "x:".utf8), let eq = field.firstIndex(of: UInt8(ascii: "=")) else {
                throw fail("xattr", "unexpected field '\(text(field))' (extended attributes are x:NAME=VALUE)")
            }
            guard let name = ByteEscaping.unescape(field[(field.startIndex + 2)..<eq]),
                  let value = ByteEscaping.unescape(field[(eq + 1)...]) else {
                throw fail("xattr", "invalid escaping in '\(text(field))'")
            }
            guard !name.isEmpty, name.count <= ExtendedAttribute.maxNameLength, !name.contains(0),
                  value.count <= ExtendedAttribute.maxValueLength else {
                throw fail("xattr", "name must be 1–\(ExtendedAttribute.maxNameLength) bytes without NUL, value at most \(ExtendedAttribute.maxValueLength) bytes")
            }
            if let previous = result.last, !previous.name.lexicographicallyPrecedes(name) {
                throw fail("xattr", "extended attributes must be sorted by name without duplicates")
            }
            result.append(ExtendedAttribute(name: name, value: value))
        }
        return result
    }

    /// A field as it appears in the input, for messages: at most 80 bytes, unprintable bytes as '?'.
    func text(_ s: ArraySlice<UInt8>) -> String {
        String(decoding: s.prefix(80).map { $0 > 32 && $0 < 127 ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
    }

    /// A canonical unsigned decimal (no sign, no leading zeros) not above `max`.
    func decimal(_ s: ArraySlice<UInt8>, max: UInt64) -> UInt64? {
        guard !s.isEmpty, s.count <= 20, s.count == 1 || s.first != 48 else { return nil }
        var value: UInt64 = 0
        for c in s {
            guard c >= 48 && c <= 57 else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(c - 48))
            if o1 || o2 { return nil }
            value = a
        }
        return value <= max ? value : nil
    }

    func signedDecimal(_ s: ArraySlice<UInt8>) -> Int64? {
        if s.first == UInt8(ascii: "-") {
            guard let v = decimal(s.dropFirst(), max: UInt64(Int64.max)), v != 0 else { return nil }
            return -Int64(v)
        }
        guard let v = decimal(s, max: UInt64(Int64.max)) else { return nil }
        return Int64(v)
    }

    func octal(_ s: ArraySlice<UInt8>) -> UInt64? {
        var value: UInt64 = 0
        for c in s {
            guard c >= 48 && c <= 55 else { return nil }
            value = value * 8 + UInt64(c - 48)
        }
        return value
    }
}
