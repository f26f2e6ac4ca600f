import CLinux
import Foundation
import Glibc
@testable import Updatinator

/// A temporary directory removed when the value is released.
final class TemporaryDirectory {
    let path: String

    init(_ label: String = "test") {
        var template = Array("/tmp/updatinator-\(label)-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }

    deinit {
        _ = try? FileManager.default.removeItem(atPath: path)
    }

    func sub(_ name: String) -> String { "\(path)/\(name)" }
}

/// Builds test trees with exact metadata, as root.
struct TreeBuilder {
    let root: String
    static let epoch: Int64 = 1_600_000_000

    init(root: String) {
        self.root = root
        mkdir(root, 0o755)
    }

    func full(_ path: String) -> String { root + path }

    @discardableResult
    func dir(_ path: String, mode: mode_t = 0o755) -> TreeBuilder {
        check(mkdir(full(path), mode), "mkdir \(path)")
        check(chmod(full(path), mode), "chmod \(path)")
        return self
    }

    @discardableResult
    func file(_ path: String, _ content: String, mode: mode_t = 0o644) -> TreeBuilder {
        file(path, bytes: Array(content.utf8), mode: mode)
    }

    @discardableResult
    func file(_ path: String, bytes: [UInt8], mode: mode_t = 0o644) -> TreeBuilder {
        let fd = open(full(path), O_WRONLY | O_CREAT | O_TRUNC, mode)
        check(fd >= 0 ? 0 : -1, "open \(path)")
        bytes.withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) }
        close(fd)
        check(chmod(full(path), mode), "chmod \(path)")
        return self
    }

    /// A file at a path given as raw bytes (for names that are not UTF-8).
    func file(rawPath: [UInt8], content: [UInt8]) {
        let fd = (Array(root.utf8) + rawPath + [0]).withUnsafeBufferPointer {
            $0.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
        }
        check(fd >= 0 ? 0 : -1, "open raw path")
        content.withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    func symlink(_ path: String, to target: String) {
        check(Glibc.symlink(target, full(path)), "symlink \(path)")
    }

    func hardlink(_ path: String, to existing: String) {
        check(link(full(existing), full(path)), "link \(path)")
    }

    func fifo(_ path: String) {
        check(mkfifo(full(path), 0o644), "mkfifo \(path)")
    }

    func device(_ path: String, char: Bool, major: UInt32, minor: UInt32) {
        let dev = dev_t((UInt64(major) << 8) | UInt64(minor))
        check(mknod(full(path), (char ? S_IFCHR : S_IFBLK) | 0o660, dev), "mknod \(path)")
    }

    func owner(_ path: String, uid: uid_t, gid: gid_t) {
        check(lchown(full(path), uid, gid), "lchown \(path)")
    }

    func xattr(_ path: String, _ name: String, _ value: [UInt8]) {
        check(lsetxattr(full(path), name, value, value.count, 0), "lsetxattr \(path) \(name)")
    }

    /// Sets every entry's mtime to a fixed time, deepest first so directory times stick.
    func fixTimes(_ seconds: Int64 = epoch) {
        func visit(_ path: [UInt8]) {
            var st = stat()
            let isDirectory = withCPath(path) { lstat($0, &st) } == 0 && st.st_mode & S_IFMT == S_IFDIR
            if isDirectory, let dir = withCPath(path, { opendir($0) }) {
                var names = [[UInt8]]()
                while let e = readdir(dir) {
                    let name = withUnsafeBytes(of: e.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
                    if name != [46] && name != [46, 46] { names.append(name) }
                }
                closedir(dir)
                for name in names { visit(path + [47] + name) }
            }
            var times = [timespec(tv_sec: Int(seconds), tv_nsec: 0), timespec(tv_sec: Int(seconds), tv_nsec: 0)]
            check(withCPath(path) { utimensat(AT_FDCWD, $0, &times, AT_SYMLINK_NOFOLLOW) }, "utimensat")
        }
        visit(Array(root.utf8))
    }

    func setTime(_ fullPath: String, _ seconds: Int64, nanoseconds: Int = 0) {
        var times = [timespec(tv_sec: Int(seconds), tv_nsec: nanoseconds), timespec(tv_sec: Int(seconds), tv_nsec: nanoseconds)]
        check(utimensat(AT_FDCWD, fullPath, &times, AT_SYMLINK_NOFOLLOW), "utimensat \(fullPath)")
    }

    private func withCPath<T>(_ path: [UInt8], _ body: (UnsafePointer<CChar>) -> T) -> T {
        (path + [0]).withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) } }
    }

    private func check(_ rc: Int32, _ what: String) {
        precondition(rc == 0, "\(what): \(String(cString: strerror(errno)))")
    }
}

/// The security.capability value for cap_net_raw+ep (VFS capability revision 2).
let netRawCapability: [UInt8] = {
    func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    return le32(0x0200_0001) + le32(1 << 13) + le32(0) + le32(0) + le32(0)
}()

/// A deterministic random generator (SplitMix64) so property tests replay.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
