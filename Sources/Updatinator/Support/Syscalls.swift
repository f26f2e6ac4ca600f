import Glibc

/// Thin wrappers over the system calls the core uses: retry on EINTR, name the call and path in errors.
enum Sys {
    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) throws -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw UpdError.system("open", path) }
        }
    }

    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// Reads up to `count` bytes; returns 0 at end of file.
    static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, path: String) throws -> Int {
        while true {
            let n = Glibc.read(fd, buffer, count)
            if n >= 0 { return n }
            if errno != EINTR { throw UpdError.system("read", path) }
        }
    }

    /// Reads up to `count` bytes at `offset`; returns 0 at end of file.
    static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, offset: UInt64, path: String) throws -> Int {
        while true {
            let n = Glibc.pread(fd, buffer, count, off_t(offset))
            if n >= 0 { return n }
            if errno != EINTR { throw UpdError.system("read", path) }
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw UpdError.system("write", path)
            }
            offset += n
        }
    }

    static func fsync(_ fd: Int32, path: String) throws {
        while Glibc.fsync(fd) != 0 {
            if errno != EINTR { throw UpdError.system("fsync", path) }
        }
    }

    static func fsyncDirectory(_ path: String) throws {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd, path: path)
    }

    static func rename(_ from: String, _ to: String) throws {
        if Glibc.rename(from, to) != 0 { throw UpdError.system("rename", "\(from) -> \(to)") }
    }

    static func lstat(_ path: String) throws -> stat {
        var st = stat()
        if Glibc.lstat(path, &st) != 0 { throw UpdError.system("lstat", path) }
        return st
    }

    static func fstat(_ fd: Int32, path: String) throws -> stat {
        var st = stat()
        if Glibc.fstat(fd, &st) != 0 { throw UpdError.system("fstat", path) }
        return st
    }

    /// Returns nil when nothing exists at the path.
    static func lstatIfExists(_ path: String) throws -> stat? {
        var st = stat()
        if Glibc.lstat(path, &st) == 0 { return st }
        if errno == ENOENT || errno == ENOTDIR { return nil }
        throw UpdError.system("lstat", path)
    }

    static func mkdirs(_ path: String, mode: mode_t = 0o755) throws {
        if (try lstatIfExists(path)) != nil { return }
        let parent = parentDirectory(of: path)
        if parent != path { try mkdirs(parent, mode: mode) }
        if Glibc.mkdir(path, mode) != 0 && errno != EEXIST { throw UpdError.system("mkdir", path) }
    }

    static func unlink(_ path: String) {
        _ = Glibc.unlink(path)
    }

    /// The last component of a path.
    static func fileName(of path: String) -> String {
        path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
    }

    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// Reads a whole regular file, refusing one larger than `limit` bytes; a symlink as the last
    /// component is followed only with `followSymlink` (see `openRegularFile`).
    static func readFile(_ path: String, limit: Int = 1 << 30, followSymlink: Bool = false) throws -> [UInt8] {
        let file = try openRegularFile(path, followSymlink: followSymlink)
        return try readAll(file.rawValue, path: path, limit: limit)
    }

    // MARK: Opening without blocking or following

    /// Opens a regular file for reading, refusing (`unsafe`) anything else without blocking on it.
    ///
    /// A plain `open` of a FIFO waits for a writer forever, and one of a device may have effects;
    /// `O_NONBLOCK` makes the open return at once, `fstat` tells what was opened, and blocking
    /// reads are restored only for a regular file. Unless `followSymlink`, a symlink as the last
    /// component is refused too (`O_NOFOLLOW`).
    static func openRegularFile(_ path: String, followSymlink: Bool = false) throws -> FileDescriptor {
        while true {
            let fd = Glibc.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | (followSymlink ? 0 : O_NOFOLLOW))
            if fd >= 0 { return try requireRegularFile(FileDescriptor(owning: fd), display: path, writing: false) }
            let err = errno
            if err == EINTR { continue }
            if err == ELOOP && !followSymlink || err == ENXIO, let st = try? Sys.lstat(path) {
                throw notRegular(st.st_mode, display: path, writing: false)
            }
            throw UpdError.system("open", path, errno: err)
        }
    }

    /// Opens the regular file `name` in the directory `directory` without following a symlink
    /// and without blocking on a FIFO or device; anything but a regular file is refused (`unsafe`).
    /// `flags` adds to `O_RDONLY` (or gives `O_WRONLY`, `O_CREAT`, `O_APPEND`...).
    static func openRegularFile(in directory: FileDescriptor, _ name: String, flags: Int32 = O_RDONLY, mode: mode_t = 0,
                                display: String) throws -> FileDescriptor {
        try openRegularFile(inDirectory: directory.rawValue, name, flags: flags, mode: mode, display: display)
    }

    /// `openRegularFile(in:)` for a directory descriptor the caller owns.
    static func openRegularFile(inDirectory dirFD: Int32, _ name: String, flags: Int32 = O_RDONLY, mode: mode_t = 0,
                                display: String) throws -> FileDescriptor {
        try checkName(name, display: display)
        let writing = flags & O_ACCMODE != O_RDONLY
        while true {
            let fd = openat(dirFD, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode)
            if fd >= 0 { return try requireRegularFile(FileDescriptor(owning: fd), display: display, writing: writing) }
            let err = errno
            if err == EINTR { continue }
            var st = stat()
            if err == ELOOP || err == ENXIO, fstatat(dirFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
                throw notRegular(st.st_mode, display: display, writing: writing)
            }
            throw UpdError.system("open", display, errno: err)
        }
    }

    /// Opens a directory the caller named (a symlink to it is followed).
    static func openDirectory(_ path: String) throws -> FileDescriptor {
        FileDescriptor(owning: try open(path, O_RDONLY | O_DIRECTORY))
    }

    /// Opens the directory `components` below `base`, one component at a time with
    /// `O_NOFOLLOW | O_DIRECTORY`; a symlink or anything but a directory on the way is refused
    /// (`unsafe`). With `create`, a missing component is made with that mode.
    static func openDirectory(beneath base: FileDescriptor, _ components: some Sequence<String>, create: mode_t? = nil,
                              display: String) throws -> FileDescriptor {
        var current = base
        for component in components {
            try checkName(component, display: display)
            var fd = openat(current.rawValue, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if fd < 0 && errno == ENOENT, let create {
                if mkdirat(current.rawValue, component, create) != 0 && errno != EEXIST {
                    throw UpdError.system("mkdir", display)
                }
                fd = openat(current.rawValue, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            guard fd >= 0 else {
                let err = errno
                if err == ELOOP || err == ENOTDIR, let st = try? status(in: current, component, display: display) {
                    throw UpdError(.unsafe, "\(display): \(component) is not a directory (\(kind(st.st_mode))); refusing to go through it",
                                   path: display)
                }
                throw UpdError.system("open", display, errno: err)
            }
            current = FileDescriptor(owning: fd)
        }
        return current
    }

    /// The status of `name` in `directory`, without following a symlink; nil when nothing is there.
    static func status(in directory: FileDescriptor, _ name: String, display: String) throws -> stat? {
        var st = stat()
        if fstatat(directory.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) == 0 { return st }
        if errno == ENOENT || errno == ENOTDIR { return nil }
        throw UpdError.system("fstatat", display)
    }

    /// Renames `from` to `to`, both in `directory`.
    static func rename(in directory: FileDescriptor, _ from: String, _ to: String, display: String) throws {
        if renameat(directory.rawValue, from, directory.rawValue, to) != 0 { throw UpdError.system("rename", display) }
    }

    /// Removes the file `name` from `directory`; nothing there is not an error.
    static func unlink(in directory: FileDescriptor, _ name: String) {
        _ = unlinkat(directory.rawValue, name, 0)
    }

    /// What kind of file a mode describes, for messages: "a FIFO", "a symlink"...
    static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a directory"
        case S_IFLNK: return "a symlink"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        default: return "an unknown kind of file"
        }
    }

    /// Refuses an open descriptor that is not a regular file; restores blocking I/O on one that is.
    private static func requireRegularFile(_ file: FileDescriptor, display: String, writing: Bool) throws -> FileDescriptor {
        let st = try fstat(file.rawValue, path: display)
        guard st.st_mode & S_IFMT == S_IFREG else { throw notRegular(st.st_mode, display: display, writing: writing) }
        let flags = fcntl(file.rawValue, F_GETFL)
        guard flags >= 0, fcntl(file.rawValue, F_SETFL, flags & ~O_NONBLOCK) == 0 else { throw UpdError.system("fcntl", display) }
        return file
    }

    private static func notRegular(_ mode: mode_t, display: String, writing: Bool) -> UpdError {
        UpdError(.unsafe, "\(display): not a regular file (\(kind(mode))); refusing to \(writing ? "write" : "read") it", path: display)
    }

    /// Refuses a name that is not a single component (empty, `.`, `..`, or with a slash).
    private static func checkName(_ name: String, display: String) throws {
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/"), !name.contains("\0") else {
            throw UpdError(.unsafe, "\(display): '\(name)' is not a single file name", path: display)
        }
    }

    /// Opens (creating) the lock file at `path` and takes its exclusive lock, held until the
    /// descriptor is closed; fails at once, with `busy` as the message, when another holds it.
    static func lockExclusively(_ path: String, busy: String) throws -> Int32 {
        let directory = try openDirectory(parentDirectory(of: path))
        return try lockExclusively(in: directory.rawValue, fileName(of: path), display: path, busy: busy)
    }

    /// Writes a file atomically: a temporary file in the same directory, fsync, rename, fsync of the directory.
    static func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t? = 0o644) throws {
        try writeFileAtomically(path, mode: mode) { sink in try bytes.withUnsafeBytes(sink) }
    }

    static func writeFileAtomically(_ path: String, mode: mode_t? = 0o644,
                                    contents: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let directory = try openDirectory(parentDirectory(of: path))
        try writeFileAtomically(in: directory.rawValue, fileName(of: path), display: path, mode: mode, contents: contents)
    }
}
