/// One operation of an in-place apply. Every step can be repeated after a crash with the same result.
public enum ApplyStep: Sendable, Equatable {
    /// Keeps an old file's content for later by hardlinking it into the work area (costs no space).
    case preserve(ContentHash, from: ManifestPath)
    /// Flushes everything before it to disk and records progress in the journal.
    case checkpoint
    /// Removes an old entry (an emptied directory with `directory`).
    case remove(ManifestPath, directory: Bool)
    /// Creates a directory that the new image adds; its metadata is set at the end.
    case makeDirectory(ManifestPath)
    /// Writes a regular file's content and metadata to a temporary file, then renames it into place.
    case writeFile(ManifestEntry)
    /// Makes a hardlink entry another name of its (already written) target.
    case link(ManifestEntry)
    /// Creates a symlink, device or fifo under a temporary name and renames it into place.
    case makeSpecial(ManifestEntry)
    /// Changes the metadata of an entry whose inode stays, where it stands.
    case setMetadata(ManifestEntry)
    /// Drops a preserved content from the work area after its last use.
    case release(ContentHash)
    /// Sets every directory's metadata, deepest first, now that their contents are final.
    case finishDirectories
}

extension ApplyStep {
    /// Appends a line that tells this step from any other: its kind, then its entry as a
    /// manifest writes it, or its content and path. (What a plan's fingerprint is made of.)
    func appendEncoding(to out: inout [UInt8]) {
        func line(_ s: String, _ p: ManifestPath? = nil) {
            out.append(contentsOf: s.utf8)
            if let p { out.append(32); ByteEscaping.append(p.bytes, to: &out) }
            out.append(10)
        }
        func entry(_ kind: String, _ e: ManifestEntry) {
            out.append(contentsOf: kind.utf8)
            out.append(32)
            ManifestWriter.appendEntry(e, to: &out)  // (ends its line)
        }
        switch self {
        case .preserve(let hash, let from): line("preserve \(hash.hex)", from)
        case .checkpoint: line("checkpoint")
        case .remove(let p, let directory): line(directory ? "remove-directory" : "remove", p)
        case .makeDirectory(let p): line("mkdir", p)
        case .writeFile(let e): entry("write", e)
        case .link(let e): entry("link", e)
        case .makeSpecial(let e): entry("special", e)
        case .setMetadata(let e): entry("metadata", e)
        case .release(let hash): line("release \(hash.hex)")
        case .finishDirectories: line("finish-directories")
        }
    }
}
