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
