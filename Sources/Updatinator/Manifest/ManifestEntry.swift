/// A modification time with nanoseconds.
public struct Timestamp: Hashable, Sendable, Comparable {
    public var seconds: Int64
    public var nanoseconds: UInt32

    public init(seconds: Int64, nanoseconds: UInt32) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public static func < (a: Timestamp, b: Timestamp) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }
}

/// An extended attribute: a name and a binary value.
public struct ExtendedAttribute: Hashable, Sendable {
    public static let maxNameLength = 255
    public static let maxValueLength = 65536

    public var name: [UInt8]
    public var value: [UInt8]

    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }
}

/// The inode metadata every entry carries.
public struct Metadata: Hashable, Sendable {
    /// Permission bits including setuid, setgid and sticky (at most 0o7777).
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var mtime: Timestamp
    /// Sorted by name, without duplicates.
    public var xattrs: [ExtendedAttribute]

    public init(mode: UInt32, uid: UInt32, gid: UInt32, mtime: Timestamp, xattrs: [ExtendedAttribute] = []) {
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.mtime = mtime
        self.xattrs = xattrs
    }
}

/// What an entry is, with what its type adds.
public enum EntryKind: Hashable, Sendable {
    case directory
    /// A regular file: raw size, content hash, and the size of its compressed blob.
    case file(size: UInt64, hash: ContentHash, blobSize: UInt64)
    /// Another name for an earlier regular file's inode.
    case hardlink(target: ManifestPath)
    case symlink(target: [UInt8])
    case characterDevice(major: UInt32, minor: UInt32)
    case blockDevice(major: UInt32, minor: UInt32)
    case fifo

    /// The one-letter type of the manifest format.
    public var letter: Character {
        switch self {
        case .directory: return "d"
        case .file: return "f"
        case .hardlink: return "h"
        case .symlink: return "l"
        case .characterDevice: return "c"
        case .blockDevice: return "b"
        case .fifo: return "p"
        }
    }

    public var typeName: String {
        switch self {
        case .directory: return "directory"
        case .file: return "file"
        case .hardlink: return "hardlink"
        case .symlink: return "symlink"
        case .characterDevice: return "character device"
        case .blockDevice: return "block device"
        case .fifo: return "fifo"
        }
    }
}

/// One path of an image. A hardlink's metadata is its target's (they share an inode).
public struct ManifestEntry: Hashable, Sendable {
    public var path: ManifestPath
    public var kind: EntryKind
    public var metadata: Metadata

    public init(path: ManifestPath, kind: EntryKind, metadata: Metadata) {
        self.path = path
        self.kind = kind
        self.metadata = metadata
    }

    /// The content hash, for regular files.
    public var contentHash: ContentHash? {
        if case .file(_, let hash, _) = kind { return hash }
        return nil
    }
}
