/// Writes a manifest in its canonical text form; the same manifest always gives the same bytes.
public enum ManifestWriter {
    /// The text is handed to a sink in pieces of about this many bytes.
    static let pieceSize = 64 << 10

    public static func write(_ manifest: Manifest) -> [UInt8] {
        var out = [UInt8]()
        write(manifest) { out.append(contentsOf: $0) }
        return out
    }

    /// Writes the text to `sink` in pieces, so that a large image's text (tens of megabytes)
    /// need not be held whole: it goes to a file or a hash as it is made.
    public static func write(_ manifest: Manifest, into sink: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        var piece = [UInt8]()
        piece.reserveCapacity(pieceSize + 1024)
        func line(_ s: String) { piece.append(contentsOf: s.utf8); piece.append(10) }
        line("\(Manifest.formatTag) \(Manifest.formatVersion)")
        line("image \(manifest.image)")
        line("version \(manifest.version)")
        line("hash \(ContentHash.algorithm)")
        if let created = manifest.created { line("created \(created)") }
        line("entries \(manifest.entries.count)")
        for entry in manifest.entries {
            appendEntry(entry, to: &piece)
            if piece.count >= pieceSize {
                try piece.withUnsafeBytes(sink)
                piece.removeAll(keepingCapacity: true)
            }
        }
        if !piece.isEmpty { try piece.withUnsafeBytes(sink) }
    }

    /// The digest and length of the text, made in pieces.
    public static func measure(_ manifest: Manifest) -> (hash: ContentHash, byteCount: Int) {
        let hasher = Blake2b()
        var count = 0
        write(manifest) { hasher.update($0); count += $0.count }
        return (hasher.finalize(), count)
    }

    static func appendEntry(_ e: ManifestEntry, to out: inout [UInt8]) {
        func field(_ s: String) { out.append(32); out.append(contentsOf: s.utf8) }
        ByteEscaping.append(e.path.bytes, to: &out)
        field(String(e.kind.letter))
        if case .hardlink(let target) = e.kind {
            out.append(32)
            ByteEscaping.append(target.bytes, to: &out)
            out.append(10)
            return
        }
        let m = e.metadata
        field(octal4(m.mode))
        field(String(m.uid))
        field(String(m.gid))
        field(timestamp(m.mtime))
        switch e.kind {
        case .file(let size, let hash, let blobSize):
            field(String(size))
            field(hash.hex)
            field(String(blobSize))
        case .symlink(let target):
            out.append(32)
            ByteEscaping.append(target, to: &out)
        case .characterDevice(let major, let minor), .blockDevice(let major, let minor):
            field("\(major):\(minor)")
        case .directory, .fifo, .hardlink:
            break
        }
        for x in m.xattrs {
            field("x:")
            ByteEscaping.append(x.name, to: &out)
            out.append(UInt8(ascii: "="))
            ByteEscaping.append(x.value, to: &out)
        }
        out.append(10)
    }

    static func octal4(_ mode: UInt32) -> String {
        let s = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    static func timestamp(_ t: Timestamp) -> String {
        let ns = String(t.nanoseconds)
        return "\(t.seconds)." + String(repeating: "0", count: 9 - ns.count) + ns
    }
}
