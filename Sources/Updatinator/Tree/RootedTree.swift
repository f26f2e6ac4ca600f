import CLinux
import Glibc

/// File operations anchored at a tree's root directory that never follow a symlink inside it.
///
/// Every path is resolved component by component with `openat(O_NOFOLLOW | O_DIRECTORY)`
/// from the root's descriptor (`openChildDirectory`, the one place that opens a directory of
/// the tree), so no entry a manifest creates, and none already in the tree, can lead an
/// operation outside the root. Operations act on (parent descriptor, name) pairs.
final class RootedTree {
    let root: String
    let rootFD: Int32
    /// The root's mount: operations never cross into another one (a mount point or a bind mount
    /// inside the tree), which may lead outside the root or whose writes the root's flushes
    /// would not make durable.
    let mount: UInt64

    init(root: String) throws {
        self.root = root
        rootFD = try Sys.open(root, O_RDONLY | O_DIRECTORY)
        do {
            mount = try Sys.mountID(rootFD, path: root)
        } catch {
            Sys.close(rootFD)
            throw error
        }
    }

    deinit { Sys.close(rootFD) }

    func display(_ path: ManifestPath) -> String {
        String(decoding: Array(root.utf8) + (path.isRoot ? [] : path.bytes), as: UTF8.self)
    }

    /// Opens the directory `name` in the tree's directory `parent` without following a symlink;
    /// nil when nothing is there.
    ///
    /// A symlink, a non-directory or another mount than the root's at the name is refused
    /// (`.unsafe`). With `create`, a missing directory is made with that mode; with `owner`,
    /// one that another user owns is refused too.
    func openChildDirectory(_ parent: Int32, _ name: [UInt8], display: String,
                            create: mode_t? = nil, owner: uid_t? = nil) throws -> Int32? {
        func open() -> Int32 { withName(name) { openat(parent, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) } }
        var fd = open()
        if fd < 0 && errno == ENOENT, let create {
            if withName(name, { mkdirat(parent, $0, create) }) != 0 && errno != EEXIST { throw UpdError.system("mkdir", display) }
            fd = open()
        }
        guard fd >= 0 else {
            let err = errno
            if err == ENOENT { return nil }
            if err == ELOOP || err == ENOTDIR {
                throw UpdError(.unsafe, "\(display): not a directory (a symlink or file is in the way); refusing to follow it",
                               path: display, errno: err)
            }
            throw UpdError.system("openat", display, errno: err)
        }
        do {
            guard try Sys.mountID(fd, path: display) == mount else {
                throw UpdError(.unsafe, "\(display): is another mount than the root; refusing to go into it (a tree is one mount)",
                               path: display)
            }
            if let owner, try Sys.fstat(fd, path: display).st_uid != owner {
                throw UpdError(.unsafe, "\(display): not a directory owned by this user; refusing to use it", path: display)
            }
        } catch {
            Sys.close(fd)
            throw error
        }
        return fd
    }

    /// Opens the directory `names` below the root, one component at a time with
    /// `openChildDirectory` (creating and checking the owner as it says); nil when a component
    /// does not exist.
    func openDirectoryChain(_ names: [[UInt8]], create: mode_t? = nil, owner: uid_t? = nil) throws -> Int32? {
        var fd = dup(rootFD)
        guard fd >= 0 else { throw UpdError.system("dup", root) }
        var display = Array(root.utf8)
        for name in names {
            display += [UInt8(ascii: "/")] + name
            let next = try { () throws -> Int32? in
                defer { Sys.close(fd) }
                return try openChildDirectory(fd, name, display: String(decoding: display, as: UTF8.self), create: create, owner: owner)
            }()
            guard let next else { return nil }
            fd = next
        }
        return fd
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
        try openDirectoryChain(path.isRoot ? [] : path.bytes.dropFirst().split(separator: UInt8(ascii: "/")).map { Array($0) })
    }

    /// Runs `body` with a descriptor of the parent directory of `path` and its last component.
    func inParent<T>(of path: ManifestPath, _ body: (Int32, [UInt8]) throws -> T) throws -> T {
        precondition(!path.isRoot, "the root has no parent inside the tree")
        let fd = try openDirectory(path.parent)
        defer { Sys.close(fd) }
        return try body(fd, path.name)
    }

    /// The status of the entry `name` in `dirFD` without following a symlink, or nil when nothing is there.
    static func status(_ dirFD: Int32, _ name: [UInt8], display: String) throws -> stat? {
        var st = stat()
        if withName(name, { fstatat(dirFD, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 { return st }
        if errno == ENOENT || errno == ENOTDIR { return nil }
        throw UpdError.system("fstatat", display)
    }

    /// Removes an entry (an empty directory with `directory`), its parent opened through
    /// `directories`; nothing there is not an error.
    func remove(_ path: ManifestPath, directory: Bool, through directories: DirectoryCursor) throws {
        guard let fd = try directories.directory(path.parent) else { return }
        let rc = withName(path.name) { unlinkat(fd, $0, directory ? AT_REMOVEDIR : 0) }
        if rc != 0 && errno != ENOENT {
            if errno == ENOTEMPTY || errno == EEXIST {
                throw UpdError(.usage, "\(display(path)): holds entries that the installed manifest does not list; refusing to remove them")
            }
            throw UpdError.system(directory ? "rmdir" : "unlink", display(path))
        }
    }

    /// Removes the directory `name` in `parent` with everything in it, never following a symlink
    /// and refusing (`.unsafe`) to go into another mount; nothing there is not an error.
    func removeTree(_ parent: Int32, _ name: [UInt8], display: String) throws {
        guard let fd = try openChildDirectory(parent, name, display: display) else { return }
        do {
            defer { Sys.close(fd) }
            for child in try Self.list(fd, display: display) {
                let childDisplay = display + "/" + String(decoding: child, as: UTF8.self)
                guard let st = try Self.status(fd, child, display: childDisplay) else { continue }
                if st.st_mode & S_IFMT == S_IFDIR {
                    try removeTree(fd, child, display: childDisplay)
                } else if withName(child, { unlinkat(fd, $0, 0) }) != 0 && errno != ENOENT {
                    throw UpdError.system("unlink", childDisplay)
                }
            }
        }
        if withName(name, { unlinkat(parent, $0, AT_REMOVEDIR) }) != 0 && errno != ENOENT { throw UpdError.system("rmdir", display) }
    }

    /// The names in the directory `fd`, without `.` and `..`.
    static func list(_ fd: Int32, display: String) throws -> [[UInt8]] {
        let copy = dup(fd)
        guard copy >= 0, let dir = fdopendir(copy) else {
            if copy >= 0 { Sys.close(copy) }
            throw UpdError.system("opendir", display)
        }
        defer { closedir(dir) }
        var names = [[UInt8]]()
        while true {
            errno = 0
            guard let e = readdir(dir) else {
                if errno != 0 { throw UpdError.system("readdir", display) }
                return names
            }
            let name = withUnsafeBytes(of: e.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
            if name != [46] && name != [46, 46] { names.append(name) }
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
    func makeSpecial(_ e: ManifestEntry, in dirFD: Int32, named name: [UInt8], display: String) throws {
        let rc: Int32
        switch e.kind {
        case .symlink(let target):
            rc = withName(target) { t in withName(name) { symlinkat(t, dirFD, $0) } }
        case .characterDevice(let major, let minor), .blockDevice(let major, let minor):
            let type = e.kind.letter == "c" ? Glibc.S_IFCHR : Glibc.S_IFBLK
            rc = withName(name) { mknodat(dirFD, $0, type | 0o600, Self.device(major, minor)) }
        case .fifo:
            rc = withName(name) { mknodat(dirFD, $0, Glibc.S_IFIFO | 0o600, 0) }
        default:
            preconditionFailure("\(display): not a symlink, device or fifo")
        }
        if rc != 0 { throw UpdError.system("create", display) }
        try setMetadata(dirFD, name, expecting: e.kind, links: { _ in 1 }, e.metadata, display: display)
    }

    /// Makes `name` in `dirFD` another name for the tree's file at `first`.
    func makeHardlink(to first: ManifestPath, in dirFD: Int32, named name: [UInt8], display: String) throws {
        let firstDir = try openDirectory(first.parent)
        defer { Sys.close(firstDir) }
        if withName(first.name, { f in withName(name) { linkat(firstDir, f, dirFD, $0, 0) } }) != 0 { throw UpdError.system("link", display) }
    }

    static func device(_ major: UInt32, _ minor: UInt32) -> dev_t {
        let ma = UInt64(major), mi = UInt64(minor)
        return dev_t((ma & 0xfff) << 8 | (ma & ~0xfff) << 32 | (mi & 0xff) | (mi & ~0xff) << 12)
    }

    /// The file type (`S_IFMT` bits) of what a manifest entry describes; a hardlink's is a regular file's.
    static func fileType(of kind: EntryKind) -> mode_t {
        switch kind {
        case .directory: return S_IFDIR
        case .file, .hardlink: return S_IFREG
        case .symlink: return S_IFLNK
        case .characterDevice: return S_IFCHR
        case .blockDevice: return S_IFBLK
        case .fifo: return S_IFIFO
        }
    }

    /// What a file type (`S_IFMT` bits of a mode) is called in messages.
    static func typeName(ofMode mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "directory"
        case S_IFREG: return "file"
        case S_IFLNK: return "symlink"
        case S_IFCHR: return "character device"
        case S_IFBLK: return "block device"
        case S_IFIFO: return "fifo"
        case S_IFSOCK: return "socket"
        default: return "file of unknown type"
        }
    }

    /// Opens the entry `name` in `dirFD` itself, without following or opening it (`O_PATH`: a
    /// fifo cannot block, a device is not opened), and refuses (`.unsafe`) anything but what the
    /// caller expects there: an entry of the type of `kind`, on the root's mount (not a bind
    /// mount over the name), with as many links as `links` counts for its status (when given).
    /// More links than the manifest accounts for mean a name planted outside the plan, perhaps
    /// of a file outside the root.
    func openEntry(_ dirFD: Int32, _ name: [UInt8], expecting kind: EntryKind, links: ((stat) throws -> Int)?, display: String) throws -> Int32 {
        let fd = withName(name) { openat(dirFD, $0, CLinux_O_PATH | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else { throw UpdError.system("openat", display) }
        do {
            let st = try Sys.fstat(fd, path: display)
            guard st.st_mode & S_IFMT == Self.fileType(of: kind) else {
                throw UpdError(.unsafe, "\(display): is not a \(kind.typeName) as the manifest says; refusing to change it", path: display)
            }
            guard try Sys.mountID(fd, path: display) == mount else {
                throw UpdError(.unsafe, "\(display): is another mount than the root; refusing to change it", path: display)
            }
            if let links, case let expected = try links(st), st.st_nlink != expected {
                throw UpdError(.unsafe, "\(display): has \(st.st_nlink) links where the manifest accounts for \(expected) (a hardlink "
                               + "planted to another file?); refusing to change it", path: display)
            }
        } catch {
            Sys.close(fd)
            throw error
        }
        return fd
    }

    /// Sets the metadata of the entry `name` in `dirFD` through a descriptor, after checking
    /// that it is what the plan expects there (`openEntry`); nothing changes when it is not.
    func setMetadata(_ dirFD: Int32, _ name: [UInt8], expecting kind: EntryKind, links: ((stat) throws -> Int)?,
                     _ m: Metadata, display: String) throws {
        let fd = try openEntry(dirFD, name, expecting: kind, links: links, display: display)
        defer { Sys.close(fd) }
        try Self.setMetadata(fd: fd, m, isSymlink: kind.letter == "l", display: display)
    }

    /// Sets owner, extended attributes, mode (except a symlink's) and time of what `fd` refers
    /// to, in the order that keeps them: chown clears setuid bits and capabilities, so it comes
    /// first; time is last.
    ///
    /// A file the apply opened itself (`opened`) is changed through its descriptor. Any other
    /// descriptor may be `O_PATH`, which the descriptor calls refuse: the calls then name
    /// `/proc/self/fd/FD`, which leads to the descriptor's own inode, a symlink included, and
    /// never through a name in the tree.
    static func setMetadata(fd: Int32, _ m: Metadata, isSymlink: Bool = false, opened: Bool = false, display: String) throws {
        let path = "/proc/self/fd/\(fd)"
        if (opened ? fchown(fd, m.uid, m.gid) : chown(path, m.uid, m.gid)) != 0 { throw UpdError.system("chown", display) }
        // Drop what the entry has (a new file's inherited default ACLs, labels) that the manifest does not list.
        let wanted = Set(m.xattrs.map(\.name))
        for name in try XattrNames.read(call: "listxattr", display: display, { opened ? flistxattr(fd, $0, $1) : listxattr(path, $0, $1) })
        where !wanted.contains(name) {
            if withName(name, { opened ? fremovexattr(fd, $0) : removexattr(path, $0) }) != 0 && errno != ENODATA {
                throw UpdError.system("removexattr", display)
            }
        }
        for x in m.xattrs {
            let rc = withName(x.name) { n in
                x.value.withUnsafeBytes { opened ? fsetxattr(fd, n, $0.baseAddress, $0.count, 0) : setxattr(path, n, $0.baseAddress, $0.count, 0) }
            }
            if rc != 0 { throw UpdError.system("setxattr \(String(decoding: x.name, as: UTF8.self))", display) }
        }
        if !isSymlink && (opened ? fchmod(fd, mode_t(m.mode)) : chmod(path, mode_t(m.mode))) != 0 { throw UpdError.system("chmod", display) }
        var times = [timespec(tv_sec: Int(m.mtime.seconds), tv_nsec: Int(m.mtime.nanoseconds)),
                     timespec(tv_sec: Int(m.mtime.seconds), tv_nsec: Int(m.mtime.nanoseconds))]
        if (opened ? futimens(fd, &times) : utimensat(AT_FDCWD, path, &times, 0)) != 0 { throw UpdError.system("utimensat", display) }
    }
}
