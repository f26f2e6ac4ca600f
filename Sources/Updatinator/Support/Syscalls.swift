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

    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// Reads a whole file, refusing one larger than `limit` bytes.
    static func readFile(_ path: String, limit: Int = 1 << 30) throws -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        return try readAll(fd, path: path, limit: limit)
    }

    /// Opens (creating) the lock file at `path` and takes its exclusive lock, held until the
    /// descriptor is closed; fails at once, with `busy` as the message, when another holds it.
    static func lockExclusively(_ path: String, busy: String) throws -> Int32 {
        try lockExclusively(in: AT_FDCWD, path, display: path, busy: busy)
    }

    /// Writes a file atomically: a temporary file in the same directory, fsync, rename, fsync of the directory.
    static func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let directory = try open(parentDirectory(of: path), O_RDONLY | O_DIRECTORY)
        defer { close(directory) }
        let name = path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
        try writeFileAtomically(in: directory, name, display: path, bytes, mode: mode)
    }
}
