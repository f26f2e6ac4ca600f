import Foundation
import Synchronization

/// The filesystem's floor for moving a tree in place, for `scripts/bench apply`: what is left of
/// an apply when everything that is not the kernel's work of writing the new tree is taken away.
///
/// `apply-floor TREE NEW_TREE THREADS` first (not timed) reads every regular file of NEW_TREE
/// whose bytes differ from TREE's at the same path into memory, and lists the names of TREE that
/// NEW_TREE lacks and the directories it adds. Then, timed, it removes those names, makes those
/// directories, and writes each changed file from memory to a temporary beside it, with its mode,
/// owner and modification time, renamed over the old name, on THREADS threads at once. It reads
/// no blob, inflates and verifies nothing, syncs nothing, and leaves symlinks, devices and the
/// metadata of unchanged files as they were: any real apply does more. Prints the timed seconds.
@main
enum ApplyFloor {
    struct Write {
        let path: String
        let content: [UInt8]
        let status: stat
    }

    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard arguments.count == 3, let threads = Int(arguments[2]), threads > 0 else {
            FileHandle.standardError.write(Data("usage: apply-floor TREE NEW_TREE THREADS\n".utf8))
            exit(64)
        }
        let (tree, newTree) = (arguments[0], arguments[1])
        let newNames = names(under: newTree)
        let oldNames = names(under: tree)
        let newSet = Set(newNames)
        var writes = [Write]()
        var directories = [String]()
        for name in newNames {
            let status = lstatus(newTree + name)!
            switch status.st_mode & S_IFMT {
            case S_IFDIR:
                if lstatus(tree + name) == nil { directories.append(name) }
            case S_IFREG:
                let content = read(newTree + name)
                if let old = lstatus(tree + name), old.st_mode & S_IFMT == S_IFREG, old.st_size == status.st_size,
                   read(tree + name) == content {
                    continue
                }
                writes.append(Write(path: tree + name, content: content, status: status))
            default:
                continue
            }
        }
        // Children before their directories.
        let removals = oldNames.filter { !newSet.contains($0) }.reversed()

        let start = DispatchTime.now().uptimeNanoseconds
        for name in removals {
            let path = tree + name
            if let status = lstatus(path) {
                check(status.st_mode & S_IFMT == S_IFDIR ? rmdir(path) : unlink(path), path)
            }
        }
        for name in directories { check(mkdir(tree + name, 0o755), tree + name) }
        let next = Atomic<Int>(0)
        let all = writes
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            while true {
                let index = next.add(1, ordering: .relaxed).oldValue
                guard index < all.count else { return }
                write(all[index], temporary: "\(all[index].path).floor-\(index).tmp")
            }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        print(String(format: "%.3f", seconds))
    }

    /// Every name below `root`, relative to it with a leading slash, each directory before what it holds.
    static func names(under root: String) -> [String] {
        guard let walk = FileManager.default.enumerator(atPath: root) else { fail("\(root): cannot be read") }
        return walk.map { "/" + ($0 as! String) }
    }

    static func write(_ w: Write, temporary: String) {
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        check(fd, temporary)
        w.content.withUnsafeBytes { bytes in
            var done = 0
            while done < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
                check(n > 0 ? 0 : -1, temporary)
                done += n
            }
        }
        check(fchown(fd, w.status.st_uid, w.status.st_gid), temporary)
        check(fchmod(fd, w.status.st_mode & 0o7777), temporary)
        var times = [w.status.st_mtim, w.status.st_mtim]
        check(futimens(fd, &times), temporary)
        check(close(fd), temporary)
        check(rename(temporary, w.path), w.path)
    }

    static func lstatus(_ path: String) -> stat? {
        var s = stat()
        return lstat(path, &s) == 0 ? s : nil
    }

    static func read(_ path: String) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { fail("\(path): cannot be read") }
        return [UInt8](data)
    }

    static func check(_ result: Int32, _ path: String) {
        if result < 0 { fail("\(path): \(String(cString: strerror(errno)))") }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("apply-floor: \(message)\n".utf8))
        exit(1)
    }
}
