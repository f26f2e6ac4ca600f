import Glibc

/// Owns an open file descriptor and closes it exactly once: at `close()` or, failing that, when released.
///
/// The kernel hands a closed descriptor's number to the next `open` of any thread at once, so
/// closing a number twice can close another thread's file. The number lives only here, and
/// `close` forgets it, so no path through a `do`/`catch` can close it a second time.
public final class FileDescriptor {
    private var fd: Int32

    /// Takes ownership of `fd`, an open descriptor nothing else will close.
    public init(owning fd: Int32) {
        precondition(fd >= 0, "not an open file descriptor")
        self.fd = fd
    }

    deinit { close() }

    /// The descriptor's number, valid until `close`.
    public var rawValue: Int32 {
        precondition(fd >= 0, "use of a closed file descriptor")
        return fd
    }

    /// Whether `close` has been called.
    public var isClosed: Bool { fd < 0 }

    /// Closes the descriptor; later calls do nothing.
    public func close() {
        guard fd >= 0 else { return }
        // Linux releases the number even when close fails (EINTR included): never retry.
        _ = Glibc.close(fd)
        fd = -1
    }
}

extension FileDescriptor {
    /// Opens the regular file `components` below the directory `root`, following no symlink
    /// below `root`; refuses anything else (a symlink, a FIFO, a device, a directory) with `unsafe`.
    public static func openRegularFile(beneath root: String, components: [String]) throws -> FileDescriptor {
        guard let name = components.last else { throw UpdError(.usage, "\(root): no file named below it") }
        let base = try Sys.openDirectory(root)
        let display = ([root] + components).joined(separator: "/")
        let directory = try Sys.openDirectory(beneath: base, components.dropLast(), display: display)
        return try Sys.openRegularFile(in: directory, name, display: display)
    }

    /// Reads the regular file `components` below `root` as `openRegularFile(beneath:components:)`
    /// opens it, refusing one larger than `limit` bytes.
    public static func readRegularFile(beneath root: String, components: [String], limit: Int) throws -> [UInt8] {
        let file = try openRegularFile(beneath: root, components: components)
        return try Sys.readAll(file.rawValue, path: ([root] + components).joined(separator: "/"), limit: limit)
    }
}
