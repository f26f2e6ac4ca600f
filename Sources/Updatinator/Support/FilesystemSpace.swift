import CLinux
import Glibc

/// Free and used space of the filesystem holding a path.
public struct FilesystemSpace: Sendable {
    public let unit: UInt64
    public let free: UInt64
    public let used: UInt64
    /// Whether it is a tmpfs, whose directories occupy no data pages.
    public let isTmpfs: Bool

    public init(path: String) throws {
        var s = statfs()
        guard statfs(path, &s) == 0 else { throw UpdError.system("statfs", path) }
        self.init(s)
    }

    /// The filesystem of an open descriptor (`display` names it in errors).
    init(fd: Int32, display: String) throws {
        var s = statfs()
        guard fstatfs(fd, &s) == 0 else { throw UpdError.system("statfs", display) }
        self.init(s)
    }

    private init(_ s: statfs) {
        unit = UInt64(s.f_frsize)
        free = UInt64(s.f_bavail) * unit
        used = (UInt64(s.f_blocks) - UInt64(s.f_bfree)) * unit
        isTmpfs = s.f_type == 0x0102_1994
    }
}
