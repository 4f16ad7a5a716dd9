import CLayerSys
import Glibc

/// An open file descriptor owned by this object and closed exactly once, when it is released.
///
/// All lookups below a descriptor are fd-relative and never follow symlinks: single names with
/// `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`, longer paths with `openat2(2)` and
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`.
public final class FileDescriptor: Sendable {
    /// The raw descriptor. Valid for the life of this object; never close it yourself.
    public let rawValue: CInt

    /// Takes ownership of `rawValue`.
    public init(owning rawValue: CInt) { self.rawValue = rawValue }

    deinit { _ = Glibc.close(rawValue) }

    /// Opens a path given by the user (relative to the working directory; symlinks in it are
    /// followed, as for any command-line path). Adds `O_CLOEXEC`.
    ///
    /// - Throws: the `open(2)` errno.
    /// - Wraps open(2).
    public static func open(path: String, flags: CInt, mode: mode_t = 0) throws(Errno) -> FileDescriptor {
        let fd = try valueOrErrno { Glibc.open(path, flags | O_CLOEXEC, mode) }
        return FileDescriptor(owning: fd)
    }

    /// Opens the entry `name` of this directory, never following a symlink (`O_NOFOLLOW`; with
    /// `O_PATH` the symlink itself is opened). Adds `O_CLOEXEC`.
    ///
    /// - Throws: `ELOOP` when `name` is a symlink and `flags` lacks `O_PATH`, `ENOTDIR` for
    ///   `O_DIRECTORY` on a non-directory, other `openat(2)` errnos.
    /// - Wraps openat(2).
    public func open(_ name: FileName, flags: CInt, mode: mode_t = 0) throws(Errno) -> FileDescriptor {
        let fd = try name.withCString { (cName) throws(Errno) -> CInt in
            try valueOrErrno { Glibc.openat(rawValue, cName, flags | O_NOFOLLOW | O_CLOEXEC, mode) }
        }
        return FileDescriptor(owning: fd)
    }

    /// Opens `path` below this directory without following any symlink on the way and without
    /// leaving the directory (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`).
    /// The root path opens `.`. A path longer than `PATH_MAX` is resolved a run of components
    /// at a time (each run beneath the directory the previous one opened), so depth is no limit.
    ///
    /// - Throws: `ELOOP` when a component is a symlink, `EXDEV` for an escape, other errnos.
    /// - Wraps openat2(2).
    public func open(beneath path: RelativePath, flags: CInt, mode: mode_t = 0) throws(Errno) -> FileDescriptor {
        guard path.bytes.count >= Self.longPathThreshold, path.components.count > 1 else {
            return try openBeneathOnce(path, flags: flags, mode: mode)
        }
        // Split into runs shorter than the threshold; every run but the last names a directory.
        var runs: [[FileName]] = [[]]
        var runLength = 0
        for component in path.components {
            let added = (runs[runs.count - 1].isEmpty ? 0 : 1) + component.bytes.count
            if !runs[runs.count - 1].isEmpty, runLength + added >= Self.longPathThreshold {
                runs.append([component])
                runLength = component.bytes.count
            } else {
                runs[runs.count - 1].append(component)
                runLength += added
            }
        }
        var directory: FileDescriptor?
        for run in runs.dropLast() {
            directory = try (directory ?? self).openBeneathOnce(
                RelativePath(components: run), flags: O_RDONLY | O_DIRECTORY | CLS_O_PATH, mode: 0)
        }
        return try (directory ?? self).openBeneathOnce(
            RelativePath(components: runs[runs.count - 1]), flags: flags, mode: mode)
    }

    /// `O_PATH`, which Glibc's module does not export: a descriptor that locates a file (to
    /// open or stat below it) without the permission to read it.
    public static let pathOnly: CInt = CLS_O_PATH

    /// Paths at least this long are resolved in runs (below `PATH_MAX`, 4096, with room).
    static let longPathThreshold = 3_072

    private func openBeneathOnce(_ path: RelativePath, flags: CInt, mode: mode_t) throws(Errno) -> FileDescriptor {
        var bytes = path.bytes.map { CChar(bitPattern: $0) }
        bytes.append(0)
        let resolve = CLS_RESOLVE_BENEATH | CLS_RESOLVE_NO_SYMLINKS | CLS_RESOLVE_NO_MAGICLINKS
        let fd = try withCStringStorage(bytes) { (cPath) throws(Errno) -> CInt in
            try valueOrErrno {
                cls_openat2(rawValue, cPath, UInt64(flags | O_CLOEXEC), UInt64(mode), resolve)
            }
        }
        return FileDescriptor(owning: fd)
    }

    /// This directory as the root of a private, detached copy of its mount that holds none of
    /// the mounts below it (open_tree(2) with `OPEN_TREE_CLONE`), re-opened `O_RDONLY |
    /// O_DIRECTORY`. Lookups through it never cross into a file system mounted inside the
    /// directory: they see what lies underneath, as the kernel's overlayfs does with its layers.
    ///
    /// - Throws: `EPERM` without `CAP_SYS_ADMIN`, `ENOSYS` before Linux 5.2, other errnos.
    /// - Wraps open_tree(2) and openat(2).
    public func privateMountClone() throws(Errno) -> FileDescriptor {
        let tree = try valueOrErrno {
            cls_open_tree(rawValue, "", CLS_OPEN_TREE_CLONE | CLS_OPEN_TREE_CLOEXEC | UInt32(CLS_AT_EMPTY_PATH))
        }
        let clone = FileDescriptor(owning: tree)
        let fd = try valueOrErrno { openat(clone.rawValue, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        return FileDescriptor(owning: fd)
    }

    /// Re-opens this descriptor (typically an `O_PATH` one) with other flags, through
    /// `/proc/self/fd`. Symlinks cannot be re-opened this way.
    ///
    /// - Throws: the `open(2)` errno.
    /// - Wraps open(2) on /proc/self/fd/N.
    public func reopen(flags: CInt) throws(Errno) -> FileDescriptor {
        let fd = try valueOrErrno { Glibc.open(procPath, flags | O_CLOEXEC) }
        return FileDescriptor(owning: fd)
    }

    /// `/proc/self/fd/N` for this descriptor.
    public var procPath: String { "/proc/self/fd/\(rawValue)" }

    /// The status of the open file.
    ///
    /// - Throws: the `fstat(2)` errno.
    /// - Wraps fstat(2).
    public func status() throws(Errno) -> FileStatus {
        var s = stat()
        _ = try valueOrErrno { fstat(rawValue, &s) }
        return FileStatus(s)
    }

    /// The status of entry `name` of this directory, not following a symlink.
    ///
    /// - Throws: `ENOENT` when absent, other `fstatat(2)` errnos.
    /// - Wraps fstatat(2) with AT_SYMLINK_NOFOLLOW.
    public func status(of name: FileName) throws(Errno) -> FileStatus {
        var s = stat()
        _ = try name.withCString { (cName) throws(Errno) -> CInt in
            try valueOrErrno { fstatat(rawValue, cName, &s, AT_SYMLINK_NOFOLLOW) }
        }
        return FileStatus(s)
    }

    /// Like ``status(of:)`` but returns nil when the entry does not exist (`ENOENT`, `ENOTDIR`).
    ///
    /// - Throws: other `fstatat(2)` errnos.
    public func statusIfPresent(of name: FileName) throws(Errno) -> FileStatus? {
        do {
            return try status(of: name)
        } catch let error where error == .noEntry || error == .notDirectory {
            return nil
        }
    }

    /// The target of symlink `name` in this directory, as bytes.
    ///
    /// - Throws: `EINVAL` when it is not a symlink, other `readlinkat(2)` errnos.
    /// - Wraps readlinkat(2).
    public func readLink(_ name: FileName) throws(Errno) -> [UInt8] {
        try name.withCString { (cName) throws(Errno) -> [UInt8] in try readLinkAt(rawValue, cName) }
    }

    /// The target of the symlink this `O_PATH` descriptor refers to.
    ///
    /// - Throws: `EINVAL` when it is not a symlink, other errnos.
    /// - Wraps readlinkat(2) with an empty path.
    public func readLinkTarget() throws(Errno) -> [UInt8] {
        try readLinkAt(rawValue, "")
    }

    /// Reads up to `count` bytes at `offset` into `buffer`.
    ///
    /// - Returns: the number of bytes read; 0 at end of file.
    /// - Throws: the `pread(2)` errno.
    /// - Wraps pread(2).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(Errno) -> Int {
        try valueOrErrno { pread(rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// Reads up to `count` bytes from the current position.
    ///
    /// - Throws: the `read(2)` errno.
    /// - Wraps read(2).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try valueOrErrno { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Writes all of `buffer`, retrying short writes.
    ///
    /// - Throws: the `write(2)` errno.
    /// - Wraps write(2).
    public func writeAll(_ buffer: UnsafeRawBufferPointer) throws(Errno) {
        var done = 0
        while done < buffer.count {
            let n = try valueOrErrno {
                Glibc.write(rawValue, buffer.baseAddress.map { $0 + done }, buffer.count - done)
            }
            done += n
        }
    }

    /// Moves the file offset (`SEEK_SET`, `SEEK_CUR`, `SEEK_END`, `SEEK_DATA`, `SEEK_HOLE`).
    ///
    /// - Returns: the new offset.
    /// - Throws: `ENXIO` past the last data or hole, other `lseek(2)` errnos.
    /// - Wraps lseek(2).
    public func seek(to offset: Int64, whence: CInt) throws(Errno) -> Int64 {
        Int64(try valueOrErrno { lseek(rawValue, off_t(offset), whence) })
    }

    /// File system statistics of the file system holding this descriptor.
    ///
    /// - Throws: the `fstatvfs(3)` errno.
    /// - Wraps fstatvfs(3).
    public func fileSystemStatus() throws(Errno) -> statvfs {
        var s = statvfs()
        _ = try valueOrErrno { fstatvfs(rawValue, &s) }
        return s
    }
}

private func readLinkAt(_ dirfd: CInt, _ path: UnsafePointer<CChar>) throws(Errno) -> [UInt8] {
    var capacity = 256
    while true {
        var buffer = [CChar](repeating: 0, count: capacity)
        let count = try buffer.withUnsafeMutableBufferPointer { (raw) throws(Errno) -> Int in
            guard let base = raw.baseAddress else { throw .invalidArgument }
            return try valueOrErrno { readlinkat(dirfd, path, base, raw.count) }
        }
        if count < capacity { return buffer[0..<count].map { UInt8(bitPattern: $0) } }
        guard capacity < 1 << 20 else { throw .nameTooLong }
        capacity *= 4
    }
}

extension FileDescriptor {
    /// Opens /dev/null on descriptors 0, 1 and 2 where they are closed (a caller that ran
    /// `cmd <&- >&- 2>&-`), so that no descriptor the program opens lands there: a message for
    /// stdout would be written into it, and daemonizing (which points 0-2 at /dev/null) would
    /// replace it. Call it first thing in `main`.
    public static func openStandardDescriptors() {
        while true {
            let fd = Glibc.open("/dev/null", O_RDWR)
            if fd < 0 { return }
            if fd > 2 {
                Glibc.close(fd)
                return
            }
        }
    }

    /// Raises the soft limit on open descriptors to the hard limit and returns the new soft limit.
    /// Wraps setrlimit(2).
    public static func raiseOpenFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(clamping: limit.rlim_cur)
    }
}
