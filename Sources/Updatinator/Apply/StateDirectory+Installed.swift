import Glibc

extension StateDirectory {
    /// Reads the installed manifest, the image an apply or `adopt` recorded as the tree's.
    ///
    /// A tree with none (freshly installed, or only generated) is a usage error whose one line
    /// names both ways out: recording what it runs with `adopt`, or naming it with `--from`.
    public func readInstalled() throws -> (manifest: Manifest, bytes: [UInt8]) {
        guard (try Sys.lstatIfExists(installedManifest)) != nil else { throw nothingInstalled }
        return try ManifestFile.read(installedManifest)
    }

    /// The failure of a move that starts from the installed manifest when there is none.
    var nothingInstalled: UpdError {
        UpdError(.usage, "\(installedManifest): no image recorded as installed; run `updatinator adopt --root \(root) --manifest M` "
            + "or pass --from M (M: the manifest the tree matches)", path: installedManifest)
    }

    /// Takes the tree's lock shared, for a reader that must not see an apply's half-moved tree;
    /// nil when the tree has no lock file (nothing ever applied to it). Fails at once (`busy`)
    /// while an apply holds the lock; close the descriptor to release it.
    func lockShared() throws -> Int32? {
        let path = "\(directory)/\(Self.lockName)"
        let fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw UpdError.system("open", path)
        }
        guard flock(fd, LOCK_SH | LOCK_NB) == 0 else {
            let err = errno
            Sys.close(fd)
            if err == EWOULDBLOCK {
                throw UpdError(.busy, "\(root): an updatinator apply is changing this tree (it holds \(path)); check it once the apply ends", path: path)
            }
            throw UpdError.system("flock", path, errno: err)
        }
        return fd
    }
}
