import CLayerSys
import Glibc

/// The type of a file, from the `S_IFMT` bits of its mode.
public enum FileType: UInt8, Sendable, Hashable, CustomStringConvertible {
    case regular, directory, symlink, characterDevice, blockDevice, fifo, socket, unknown

    /// The type encoded in a `st_mode` value.
    public init(mode: UInt32) {
        switch mode & UInt32(Glibc.S_IFMT) {
        case UInt32(Glibc.S_IFREG): self = .regular
        case UInt32(Glibc.S_IFDIR): self = .directory
        case UInt32(Glibc.S_IFLNK): self = .symlink
        case UInt32(Glibc.S_IFCHR): self = .characterDevice
        case UInt32(Glibc.S_IFBLK): self = .blockDevice
        case UInt32(Glibc.S_IFIFO): self = .fifo
        case UInt32(Glibc.S_IFSOCK): self = .socket
        default: self = .unknown
        }
    }

    /// The type given by a `d_type` byte from `getdents64(2)`; nil for `DT_UNKNOWN`.
    public init?(directoryEntryType: UInt8) {
        switch Int(directoryEntryType) {
        case Int(DT_REG): self = .regular
        case Int(DT_DIR): self = .directory
        case Int(DT_LNK): self = .symlink
        case Int(DT_CHR): self = .characterDevice
        case Int(DT_BLK): self = .blockDevice
        case Int(DT_FIFO): self = .fifo
        case Int(DT_SOCK): self = .socket
        default: return nil
        }
    }

    /// The `S_IFMT` bits of this type.
    public var modeBits: UInt32 {
        switch self {
        case .regular: UInt32(Glibc.S_IFREG)
        case .directory: UInt32(Glibc.S_IFDIR)
        case .symlink: UInt32(Glibc.S_IFLNK)
        case .characterDevice: UInt32(Glibc.S_IFCHR)
        case .blockDevice: UInt32(Glibc.S_IFBLK)
        case .fifo: UInt32(Glibc.S_IFIFO)
        case .socket: UInt32(Glibc.S_IFSOCK)
        case .unknown: 0
        }
    }

    /// The `d_type` byte for this type.
    public var directoryEntryType: UInt8 {
        switch self {
        case .regular: UInt8(DT_REG)
        case .directory: UInt8(DT_DIR)
        case .symlink: UInt8(DT_LNK)
        case .characterDevice: UInt8(DT_CHR)
        case .blockDevice: UInt8(DT_BLK)
        case .fifo: UInt8(DT_FIFO)
        case .socket: UInt8(DT_SOCK)
        case .unknown: UInt8(DT_UNKNOWN)
        }
    }

    /// One letter, as `find -printf %y` prints it (f d l c b p s ?).
    public var letter: Character {
        switch self {
        case .regular: "f"
        case .directory: "d"
        case .symlink: "l"
        case .characterDevice: "c"
        case .blockDevice: "b"
        case .fifo: "p"
        case .socket: "s"
        case .unknown: "?"
        }
    }

    public var description: String {
        switch self {
        case .regular: "regular file"
        case .directory: "directory"
        case .symlink: "symbolic link"
        case .characterDevice: "character device"
        case .blockDevice: "block device"
        case .fifo: "fifo"
        case .socket: "socket"
        case .unknown: "unknown type"
        }
    }
}

/// A point in time with nanoseconds, as `struct timespec`.
public struct Timestamp: Hashable, Sendable, Comparable {
    /// Seconds since the epoch.
    public var seconds: Int64
    /// Nanoseconds, 0 ..< 1_000_000_000.
    public var nanoseconds: Int64

    /// A timestamp from its parts.
    public init(seconds: Int64, nanoseconds: Int64) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// A timestamp from a C `timespec`.
    public init(_ spec: timespec) {
        self.init(seconds: Int64(spec.tv_sec), nanoseconds: Int64(spec.tv_nsec))
    }

    /// The C `timespec` of this timestamp.
    public var timespec: Glibc.timespec {
        Glibc.timespec(tv_sec: Int(seconds), tv_nsec: Int(nanoseconds))
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        (lhs.seconds, lhs.nanoseconds) < (rhs.seconds, rhs.nanoseconds)
    }
}

/// What `stat(2)` says about a file, as Swift values.
public struct FileStatus: Hashable, Sendable {
    /// Device of the file system holding the file (`st_dev`).
    public var device: UInt64
    /// Inode number (`st_ino`).
    public var inode: UInt64
    /// Type and permission bits (`st_mode`).
    public var mode: UInt32
    /// Hard link count (`st_nlink`).
    public var linkCount: UInt64
    /// Owner (`st_uid`).
    public var userID: UInt32
    /// Group (`st_gid`).
    public var groupID: UInt32
    /// Device number of a device node (`st_rdev`).
    public var specialDevice: UInt64
    /// Size in bytes (`st_size`).
    public var size: Int64
    /// Preferred I/O size (`st_blksize`).
    public var blockSize: Int64
    /// 512-byte blocks allocated (`st_blocks`).
    public var blocks: Int64
    /// Last access (`st_atim`).
    public var accessTime: Timestamp
    /// Last content change (`st_mtim`).
    public var modificationTime: Timestamp
    /// Last status change (`st_ctim`).
    public var changeTime: Timestamp

    /// Converts a C `stat`.
    public init(_ s: stat) {
        device = UInt64(s.st_dev)
        inode = UInt64(s.st_ino)
        mode = UInt32(s.st_mode)
        linkCount = UInt64(s.st_nlink)
        userID = UInt32(s.st_uid)
        groupID = UInt32(s.st_gid)
        specialDevice = UInt64(s.st_rdev)
        size = Int64(s.st_size)
        blockSize = Int64(s.st_blksize)
        blocks = Int64(s.st_blocks)
        accessTime = Timestamp(s.st_atim)
        modificationTime = Timestamp(s.st_mtim)
        changeTime = Timestamp(s.st_ctim)
    }

    /// The file's type.
    public var type: FileType { FileType(mode: mode) }

    /// The permission bits including setuid, setgid and sticky (`mode & 07777`).
    public var permissions: UInt32 { mode & 0o7777 }

    /// Major number of ``specialDevice``.
    public var deviceMajor: UInt32 { UInt32(cls_major(dev_t(specialDevice))) }

    /// Minor number of ``specialDevice``.
    public var deviceMinor: UInt32 { UInt32(cls_minor(dev_t(specialDevice))) }

    /// The identity of the underlying file: (device, inode).
    public var identity: FileIdentity { FileIdentity(device: device, inode: inode) }

    /// Back to a C `stat` (for replies to the kernel).
    public var cStat: stat {
        var s = stat()
        s.st_dev = dev_t(device)
        s.st_ino = ino_t(inode)
        s.st_mode = mode_t(mode)
        s.st_nlink = nlink_t(linkCount)
        s.st_uid = uid_t(userID)
        s.st_gid = gid_t(groupID)
        s.st_rdev = dev_t(specialDevice)
        s.st_size = off_t(size)
        s.st_blksize = blksize_t(blockSize)
        s.st_blocks = blkcnt_t(blocks)
        s.st_atim = accessTime.timespec
        s.st_mtim = modificationTime.timespec
        s.st_ctim = changeTime.timespec
        return s
    }
}

/// A file's identity on the host: its device and inode numbers. Hard links share one.
public struct FileIdentity: Hashable, Sendable {
    /// `st_dev`.
    public var device: UInt64
    /// `st_ino`.
    public var inode: UInt64

    /// An identity from its parts.
    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }
}
