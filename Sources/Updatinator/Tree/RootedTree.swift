import CLinux
import Glibc

/// File operations anchored at a tree's root directory that never follow a symlink inside it.
///
/// Every path is resolved component by component with `openat(O_NOFOLLOW | O_DIRECTORY)`
/// from the root's descriptor, so no entry a manifest creates, and none already in the tree,
/// can lead an operation outside the root. Operations act on (parent descriptor, name) pairs.
final class RootedTree {
    let root: String
    let rootFD: Int32
    /// The root's filesystem: operations never cross into another one (a mount point inside
    /// the tree), whose writes the root's flushes would not make durable.
    let device: dev_t

    init(root: String) throws {
        self.root = root
        rootFD = try Sys.open(root, O_RDONLY | O_DIRECTORY)
        device = try Sys.fstat(rootFD, path: root).st_dev
    }

    deinit { Sys.close(rootFD) }

    func display(_ path: ManifestPath) -> String {
        String(decoding: Array(root.utf8) + (path.isRoot ? [] : path.bytes), as: UTF8.self)
    }

    /// Opens the directory at `path`, refusing a symlink or non-directory at any component.
    func openDirectory(_ path: ManifestPath) throws -> Int32 {
        guard let fd = try openDirectoryIfExists(path) else {
            throw UpdError.system("openat", display(path), errno: ENOENT)
        }
        return fd
    }

    /// Like `openDirectory`, but returns nil when a component does not exist.
    func openDirectoryIfExists(_ path: ManifestPath) throws -> Int32? {
        var fd = dup(rootFD)
        guard fd >= 0 else { throw UpdError.system("dup", root) }
        if path.isRoot { return fd }
        for component in path.bytes.dropFirst().split(separator: UInt8(ascii: "/")) {
            let next = withName(Array(component)) { Glibc.openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            let err = errno
            Sys.close(fd)
            guard next >= 0 else {
                if err == ENOENT { return nil }
                if err == ELOOP || err == ENOTDIR {
                    throw UpdError(.corrupt, "\(display(path)): a component is not a directory (a symlink or file is in the way); refusing to follow it")
                }
                throw UpdError.system("openat", display(path), errno: err)
            }
            fd = next
            guard try Sys.fstat(fd, path: display(path)).st_dev == device else {
                Sys.close(fd)
                throw UpdError(.usage, "\(display(path)): is on another filesystem than the root; a tree must be one filesystem")
            }
        }
        return fd
    }

    /// Runs `body` with a descriptor of the parent directory of `path` and its last component.
    func inParent<T>(of path: ManifestPath, _ body: (Int32, [UInt8]) throws -> T) throws -> T {
        precondition(!path.isRoot, "the root has no parent inside the tree")
        let fd = try openDirectory(path.parent)
        defer { Sys.close(fd) }
        return try body(fd, path.name)
    }

    /// The entry's status without following a symlink, or nil when nothing is there.
    func status(_ path: ManifestPath) throws -> stat? {
        if path.isRoot { return try Sys.fstat(rootFD, path: root) }
        do {
            return try inParent(of: path) { fd, name in try Self.status(fd, name, display: display(path)) }
        } catch let e as UpdError where e.code == .corrupt {
            return nil
        }
    }

    static func status(_ dirFD: Int32, _ name: [UInt8], display: String) throws -> stat? {
        var st = stat()
        if withName(name, { fstatat(dirFD, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 { return st }
        if errno == ENOENT || errno == ENOTDIR { return nil }
        throw UpdError.system("fstatat", display)
    }

    /// Removes an entry (an empty directory with `directory`); nothing there is not an error.
    func remove(_ path: ManifestPath, directory: Bool) throws {
        guard let fd = try openDirectoryIfExists(path.parent) else { return }
        defer { Sys.close(fd) }
        let rc = withName(path.name) { unlinkat(fd, $0, directory ? AT_REMOVEDIR : 0) }
        if rc != 0 && errno != ENOENT {
            if errno == ENOTEMPTY || errno == EEXIST {
                throw UpdError(.usage, "\(display(path)): holds entries that the installed manifest does not list; refusing to remove them")
            }
            throw UpdError.system(directory ? "rmdir" : "unlink", display(path))
        }
    }

    static func withName<T>(_ name: [UInt8], _ body: (UnsafePointer<CChar>) throws -> T) rethrows -> T {
        try (name + [0]).withUnsafeBufferPointer { try $0.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) } }
    }

    func withName<T>(_ name: [UInt8], _ body: (UnsafePointer<CChar>) throws -> T) rethrows -> T {
        try Self.withName(name, body)
    }

    /// Creates a symlink, device node or fifo as the entry describes, as `name` in `dirFD`,
    /// with the entry's metadata.
    static func makeSpecial(_ e: ManifestEntry, in dirFD: Int32, named name: [UInt8], display: String) throws {
        let rc: Int32
        switch e.kind {
        case .symlink(let target):
            rc = withName(target) { t in withName(name) { symlinkat(t, dirFD, $0) } }
        case .characterDevice(let major, let minor), .blockDevice(let major, let minor):
            let type = e.kind.letter == "c" ? Glibc.S_IFCHR : Glibc.S_IFBLK
            rc = withName(name) { mknodat(dirFD, $0, type | 0o600, device(major, minor)) }
        case .fifo:
            rc = withName(name) { mknodat(dirFD, $0, Glibc.S_IFIFO | 0o600, 0) }
        default:
            preconditionFailure("\(display): not a symlink, device or fifo")
        }
        if rc != 0 { throw UpdError.system("create", display) }
        try setMetadata(dirFD, name, e.metadata, isSymlink: e.kind.letter == "l", display: display)
    }

    static func device(_ major: UInt32, _ minor: UInt32) -> dev_t {
        let ma = UInt64(major), mi = UInt64(minor)
        return dev_t((ma & 0xfff) << 8 | (ma & ~0xfff) << 32 | (mi & 0xff) | (mi & ~0xff) << 12)
    }

    /// Sets owner, extended attributes, mode and time of the entry `name` in `dirFD`, in the order
    /// that keeps them: chown clears setuid bits and capabilities, so it comes first; time is last.
    static func setMetadata(_ dirFD: Int32, _ name: [UInt8], _ m: Metadata, isSymlink: Bool, display: String) throws {
        try withName(name) { cname in
            if fchownat(dirFD, cname, m.uid, m.gid, AT_SYMLINK_NOFOLLOW) != 0 { throw UpdError.system("chown", display) }
        }
        try setXattrs(dirFD, name, m.xattrs, display: display)
        if !isSymlink {
            try withName(name) { cname in
                if fchmodat(dirFD, cname, mode_t(m.mode), AT_SYMLINK_NOFOLLOW) != 0 { throw UpdError.system("chmod", display) }
            }
        }
        var times = [timespec(tv_sec: Int(m.mtime.seconds), tv_nsec: Int(m.mtime.nanoseconds)),
                     timespec(tv_sec: Int(m.mtime.seconds), tv_nsec: Int(m.mtime.nanoseconds))]
        try withName(name) { cname in
            if utimensat(dirFD, cname, &times, AT_SYMLINK_NOFOLLOW) != 0 { throw UpdError.system("utimensat", display) }
        }
    }

    /// Sets a new file's metadata through its descriptor: owner, extended attributes, mode, time.
    static func setMetadata(fd: Int32, _ m: Metadata, display: String) throws {
        if fchown(fd, m.uid, m.gid) != 0 { throw UpdError.system("chown", display) }
        // Drop what the new file inherited (default ACLs, labels) that the manifest does not list.
        let wanted = Set(m.xattrs.map(\.name))
        for name in try XattrNames.read(call: "flistxattr", display: display, { flistxattr(fd, $0, $1) })
        where !wanted.contains(name) {
            if withName(name, { fremovexattr(fd, $0) }) != 0 && errno != ENODATA {
                throw UpdError.system("removexattr", display)
            }
        }
        for x in m.xattrs {
            let rc = withName(x.name) { n in x.value.withUnsafeBytes { fsetxattr(fd, n, $0.baseAddress, $0.count, 0) } }
            if rc != 0 { throw UpdError.system("setxattr \(String(decoding: x.name, as: UTF8.self))", display) }
        }
        if fchmod(fd, mode_t(m.mode)) != 0 { throw UpdError.system("chmod", display) }
        var times = [timespec(tv_sec: Int(m.mtime.seconds), tv_nsec: Int(m.mtime.nanoseconds)),
                     timespec(tv_sec: Int(m.mtime.seconds), tv_nsec: Int(m.mtime.nanoseconds))]
        if futimens(fd, &times) != 0 { throw UpdError.system("futimens", display) }
    }

    /// Makes the entry's extended attributes exactly `xattrs`. The entry is reached through
    /// /proc/self/fd of its parent, so that the l*xattr calls cannot follow a symlink.
    static func setXattrs(_ dirFD: Int32, _ name: [UInt8], _ xattrs: [ExtendedAttribute], display: String) throws {
        let path = Array("/proc/self/fd/\(dirFD)/".utf8) + name
        try withName(path) { p in
            let existing = try XattrNames.read(call: "llistxattr", display: display) { llistxattr(p, $0, $1) }
            let wanted = Set(xattrs.map(\.name))
            for old in existing where !wanted.contains(old) {
                if withName(old, { lremovexattr(p, $0) }) != 0 && errno != ENODATA {
                    throw UpdError.system("lremovexattr", display)
                }
            }
            for x in xattrs {
                let rc = withName(x.name) { n in x.value.withUnsafeBytes { lsetxattr(p, n, $0.baseAddress, $0.count, 0) } }
                if rc != 0 { throw UpdError.system("lsetxattr \(String(decoding: x.name, as: UTF8.self))", display) }
            }
        }
    }
}
