import CLinux
import Glibc

/// File operations relative to an open directory, which never follow a symlink at the name.
///
/// A directory opened once without following symlinks (see `RootedTree.openDirectoryChain`)
/// then anchors every file operation inside it: no path is resolved again from `/`.
extension Sys {
    /// Reads the regular file `name` in `dirFD`, refusing one larger than `limit` bytes; nil
    /// when nothing is there. A symlink, fifo or device there is refused (`.unsafe`); a fifo
    /// is opened without blocking, so it cannot hang the caller.
    static func readFileIfExists(in dirFD: Int32, _ name: String, display: String, limit: Int = 1 << 30) throws -> [UInt8]? {
        let file: FileDescriptor
        do {
            file = try openRegularFile(inDirectory: dirFD, name, display: display)
        } catch let e as UpdError where e.errno == ENOENT {
            return nil
        }
        return try readAll(file.rawValue, path: display, limit: limit)
    }

    /// Reads from `fd` to its end, refusing more than `limit` bytes.
    static func readAll(_ fd: Int32, path: String, limit: Int) throws -> [UInt8] {
        let st = try fstat(fd, path: path)
        if Int(st.st_size) > limit {
            throw UpdError(.corrupt, "\(path): \(st.st_size) bytes is larger than the limit of \(limit)")
        }
        var result = [UInt8]()
        result.reserveCapacity(Int(st.st_size))
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try read(fd, $0.baseAddress!, $0.count, path: path) }
            if n == 0 { break }
            result.append(contentsOf: chunk[0..<n])
            if result.count > limit {
                throw UpdError(.corrupt, "\(path): larger than the limit of \(limit) bytes")
            }
        }
        return result
    }

    /// Writes the file `name` in `dirFD` atomically: a new temporary file beside it, fsync,
    /// rename over the name (which replaces a symlink there instead of following it), fsync
    /// of the directory. A nil `mode` leaves the mode the filesystem gives (FAT refuses most).
    static func writeFileAtomically(in dirFD: Int32, _ name: String, display: String, _ bytes: [UInt8], mode: mode_t? = 0o644) throws {
        try writeFileAtomically(in: dirFD, name, display: display, mode: mode) { sink in try bytes.withUnsafeBytes(sink) }
    }

    /// `writeFileAtomically` of what `contents` hands its sink, piece by piece.
    static func writeFileAtomically(in dirFD: Int32, _ name: String, display: String, mode: mode_t? = 0o644,
                                    contents: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let temporary = ".tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        let created = openat(dirFD, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode ?? 0o644)
        guard created >= 0 else { throw UpdError.system("create", display) }
        let file = FileDescriptor(owning: created)
        do {
            try contents { try writeAll(file.rawValue, $0, path: display) }
            if let mode, fchmod(file.rawValue, mode) != 0 { throw UpdError.system("fchmod", display) }
            try fsync(file.rawValue, path: display)
            file.close()
            if renameat(dirFD, temporary, dirFD, name) != 0 { throw UpdError.system("rename", display) }
        } catch {
            // Once closed, the number may already be another thread's: `close` does nothing twice.
            file.close()
            _ = unlinkat(dirFD, temporary, 0)
            throw error
        }
        try fsync(dirFD, path: display)
    }

    /// Opens (creating) the lock file `name` in `dirFD` and takes its exclusive lock, held until
    /// the descriptor is closed; fails at once, with `busy` as the message, when another holds it.
    /// Anything but a regular file at the name is refused (`.unsafe`).
    static func lockExclusively(in dirFD: Int32, _ name: String, display: String, busy: String) throws -> Int32 {
        let file = try openRegularFile(inDirectory: dirFD, name, flags: O_RDWR | O_CREAT, mode: 0o600, display: display)
        guard flock(file.rawValue, LOCK_EX | LOCK_NB) == 0 else { throw UpdError(.busy, busy, path: display) }
        // Close-on-exec like the original: a child spawned meanwhile must not keep the lock.
        let fd = fcntl(file.rawValue, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { throw UpdError.system("fcntl F_DUPFD_CLOEXEC", display) }
        return fd
    }

    /// The id of the mount that holds what `fd` refers to: two directories on one filesystem
    /// but different mounts (a bind mount) have different ids, though the same `st_dev`.
    static func mountID(_ fd: Int32, path: String) throws -> UInt64 {
        var id: UInt64 = 0
        if CLinux_mount_id(fd, &id) == 0 { return id }
        guard errno == ENOSYS || errno == EINVAL else { throw UpdError.system("statx", path) }
        // Kernels before 5.8 report the mount id only in /proc.
        let info = try readFile("/proc/self/fdinfo/\(fd)", limit: 64 * 1024)
        for line in info.split(separator: UInt8(ascii: "\n")) where line.starts(with: "mnt_id:".utf8) {
            let digits = line.dropFirst(7).filter { $0 != UInt8(ascii: "\t") && $0 != UInt8(ascii: " ") }
            if let value = UInt64(String(decoding: digits, as: UTF8.self)) { return value }
        }
        throw UpdError(.io, "\(path): the kernel reports no mount id (statx STATX_MNT_ID, /proc/self/fdinfo)", path: path)
    }
}
