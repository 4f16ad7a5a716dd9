import Glibc
import LayerCore

/// What a created file gets: type, ownership, permissions, xattrs, mtime and type-specific
/// data. The common form of a diff's B entry and of an archive entry.
struct EntryMetadata: Sendable {
    /// The file type to create.
    var type: FileType
    /// Permission bits, setuid/setgid/sticky included.
    var permissions: UInt32
    /// Owner.
    var userID: UInt32
    /// Group.
    var groupID: UInt32
    /// Modification time (also used as the access time).
    var modificationTime: Timestamp
    /// The exact xattr set.
    var attributes: [ExtendedAttribute]
    /// Symlink target.
    var linkTarget: [UInt8] = []
    /// Device major number (devices).
    var deviceMajor: UInt32 = 0
    /// Device minor number (devices).
    var deviceMinor: UInt32 = 0

    /// The metadata of a diff side's entry.
    init(_ entry: SideEntry, clamp: Int64?) {
        type = entry.type
        permissions = entry.status.permissions
        userID = entry.status.userID
        groupID = entry.status.groupID
        modificationTime = EntryMetadata.clamped(entry.status.modificationTime, clamp)
        attributes = entry.attributes
        linkTarget = entry.linkTarget
        deviceMajor = entry.status.deviceMajor
        deviceMinor = entry.status.deviceMinor
    }

    /// The metadata of an archive entry.
    init(_ entry: ArchiveEntry) {
        type = entry.kind.fileType
        permissions = entry.permissions
        userID = entry.userID
        groupID = entry.groupID
        modificationTime = entry.modificationTime
        attributes = entry.extendedAttributes
        linkTarget = entry.linkTarget
        deviceMajor = entry.deviceMajor
        deviceMinor = entry.deviceMinor
    }

    /// Metadata from its parts.
    init(
        type: FileType, permissions: UInt32, userID: UInt32, groupID: UInt32, modificationTime: Timestamp,
        attributes: [ExtendedAttribute]
    ) {
        self.type = type
        self.permissions = permissions
        self.userID = userID
        self.groupID = groupID
        self.modificationTime = modificationTime
        self.attributes = attributes
    }

    /// `time` clamped to `epoch` (SOURCE_DATE_EPOCH semantics: later times become `epoch`).
    static func clamped(_ time: Timestamp, _ epoch: Int64?) -> Timestamp {
        guard let epoch, time > Timestamp(seconds: epoch, nanoseconds: 0) else { return time }
        return Timestamp(seconds: epoch, nanoseconds: 0)
    }
}

/// fd-relative creation of files with exact metadata, shared by the layer-directory writer and
/// the applier. Every call names one entry of an already open directory and never follows a
/// symlink (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `O_EXCL` creation).
enum FileMaker {
    /// Creates a non-regular entry `name` in `directory`: a directory, symlink, device or fifo.
    /// Sets owner, permissions and xattrs; the mtime too unless it is a directory (set those
    /// last, after their contents). `ownerAccess`: see ``apply(_:to:setTime:ownerAccess:)``.
    ///
    /// - Throws: the errno of the failing call.
    static func make(
        _ name: FileName, in directory: FileDescriptor, _ metadata: EntryMetadata, ownerAccess: Bool = false
    ) throws(Errno) {
        switch metadata.type {
        case .directory:
            _ = try name.withCString { (cName) throws(Errno) in
                try valueOrErrno { mkdirat(directory.rawValue, cName, 0o700) }
            }
            let child = try directory.open(name, flags: O_RDONLY | O_DIRECTORY)
            try apply(metadata, to: child, setTime: false, ownerAccess: ownerAccess)
            return
        case .symlink:
            var target = metadata.linkTarget.map { CChar(bitPattern: $0) }
            target.append(0)
            _ = try name.withCString { (cName) throws(Errno) in
                try valueOrErrno { symlinkat(target, directory.rawValue, cName) }
            }
        case .characterDevice, .blockDevice, .fifo:
            let kind: mode_t =
                metadata.type == .fifo ? Glibc.S_IFIFO : metadata.type == .blockDevice ? Glibc.S_IFBLK : Glibc.S_IFCHR
            let device = makeDevice(metadata.deviceMajor, metadata.deviceMinor)
            _ = try name.withCString { (cName) throws(Errno) in
                try valueOrErrno { mknodat(directory.rawValue, cName, kind | 0o600, device) }
            }
        case .regular, .socket, .unknown:
            throw .invalidArgument
        }
        try applyToEntry(metadata, name, in: directory)
    }

    /// Creates regular file `name` in `directory` (which must not exist), filled by `fill`, with
    /// owner, permissions, xattrs and mtime. Writes leave holes for zero blocks (see
    /// ``SparseWriter``).
    ///
    /// - Throws: the errno of the failing call, or what `fill` throws.
    static func makeFile<E: Error>(
        _ name: FileName, in directory: FileDescriptor, _ metadata: EntryMetadata,
        fill: (SparseWriter) throws(E) -> Void
    ) throws(MakeError<E>) {
        let file: FileDescriptor
        do {
            file = try directory.open(name, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        } catch {
            throw .system(error)
        }
        let writer = SparseWriter(file)
        do {
            try fill(writer)
        } catch {
            throw .fill(error)
        }
        do {
            try writer.finish()
            try apply(metadata, to: file, setTime: true)
        } catch {
            throw .system(error)
        }
    }

    /// Creates the empty marker file `name` (an OCI whiteout or opaque marker) in `directory`:
    /// mode 0, owned by the caller, with atime and mtime `time` (so that the same changes give
    /// the same layer, as in a tarball, where markers carry their directory's mtime).
    ///
    /// - Throws: the errno of the failing call.
    static func makeMarker(_ name: FileName, in directory: FileDescriptor, time: Timestamp) throws(Errno) {
        let marker = try directory.open(name, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0)
        try setTimes(of: marker, time)
    }

    /// Sets atime and mtime of entry `name` of `directory` to `time`, not following a symlink.
    static func setTimes(of name: FileName, in directory: FileDescriptor, _ time: Timestamp) throws(Errno) {
        try name.withCString { (cName) throws(Errno) in
            var times = [time.timespec, time.timespec]
            _ = try valueOrErrno { utimensat(directory.rawValue, cName, &times, AT_SYMLINK_NOFOLLOW) }
        }
    }

    /// Sets owner, permissions, the exact xattr set and (optionally) the mtime of the open
    /// file or directory `file`. The owner first: chown clears setuid/setgid and capabilities.
    /// Without root, changing xattrs needs write permission, so the owner gets read and write
    /// (and search, for a directory) until the xattrs are set; with `ownerAccess` a directory
    /// keeps them, so that its entries can be made in it (a 0555 `/usr`): the caller gives it
    /// its permissions at the end with ``setPermissions(of:_:)``. Root needs neither.
    ///
    /// - Throws: the errno of the failing call (ownership changes fail with EPERM unless root).
    static func apply(
        _ metadata: EntryMetadata, to file: FileDescriptor, setTime: Bool, ownerAccess: Bool = false
    ) throws(Errno) {
        if privileged { _ = try valueOrErrno { fchown(file.rawValue, metadata.userID, metadata.groupID) } }
        let mode = mode_t(metadata.permissions)
        let owner: mode_t = metadata.type == .directory ? 0o700 : 0o600
        _ = try valueOrErrno { fchmod(file.rawValue, privileged ? mode : mode | owner) }
        defer {
            if !privileged && !(ownerAccess && metadata.type == .directory) { _ = fchmod(file.rawValue, mode) }
        }
        let current: [[UInt8]]
        do {
            current = try file.extendedAttributeNames()
        } catch .notSupported {
            current = []
        }
        let wanted = Set(metadata.attributes.map(\.name))
        for name in current where !wanted.contains(name) && name != selinuxAttribute {
            try? file.removeExtendedAttribute(name)
        }
        for attribute in metadata.attributes {
            do {
                try file.setExtendedAttribute(attribute.name, value: attribute.value)
            } catch .notPermitted where !privileged {
                continue
            }
        }
        if setTime { try setTimes(of: file, metadata.modificationTime) }
    }

    /// Sets owner, xattrs, permissions (not for symlinks) and mtime of entry `name` of
    /// `directory`, not following a symlink (for symlinks, devices and fifos, which are not
    /// opened).
    ///
    /// - Throws: the errno of the failing call.
    static func applyToEntry(_ metadata: EntryMetadata, _ name: FileName, in directory: FileDescriptor) throws(Errno) {
        try name.withCString { (cName) throws(Errno) in
            if privileged {
                _ = try valueOrErrno {
                    fchownat(directory.rawValue, cName, metadata.userID, metadata.groupID, AT_SYMLINK_NOFOLLOW)
                }
            }
            if metadata.type != .symlink {
                _ = try valueOrErrno { fchmodat(directory.rawValue, cName, mode_t(metadata.permissions), 0) }
            }
        }
        for attribute in metadata.attributes {
            do {
                try directory.setExtendedAttribute(attribute.name, value: attribute.value, of: name)
            } catch .notPermitted where !privileged {
                continue
            }
        }
        try setTimes(of: name, in: directory, metadata.modificationTime)
    }

    /// Sets the permission bits of an open file or directory. Wraps fchmod(2).
    static func setPermissions(of file: FileDescriptor, _ permissions: UInt32) throws(Errno) {
        _ = try valueOrErrno { fchmod(file.rawValue, mode_t(permissions)) }
    }

    /// Without root, gives the owner read, write and search permission on directory `name` of
    /// `directory` if it lacks one (a 0555 or 0000 directory of ROOT that a layer changes), and
    /// returns its permissions before; nil when nothing was changed (or for root, who needs
    /// nothing).
    static func openUp(_ name: FileName, in directory: FileDescriptor) -> UInt32? {
        guard !privileged, let status = try? directory.status(of: name), status.type == .directory,
            status.permissions & 0o700 != 0o700, status.userID == geteuid()
        else { return nil }
        let changed = try? name.withCString { (cName) throws(Errno) in
            try valueOrErrno { fchmodat(directory.rawValue, cName, mode_t(status.permissions | 0o700), 0) }
        }
        return changed == nil ? nil : status.permissions
    }

    /// Sets atime and mtime of an open file or directory to `time`. Wraps futimens(2).
    static func setTimes(of file: FileDescriptor, _ time: Timestamp) throws(Errno) {
        var times = [time.timespec, time.timespec]
        _ = try valueOrErrno { futimens(file.rawValue, &times) }
    }

    /// Hard-links `name` in `directory` to `targetName` in `targetDirectory` (not following a
    /// symlink target). Wraps linkat(2).
    static func link(
        _ name: FileName, in directory: FileDescriptor, to targetName: FileName, in targetDirectory: FileDescriptor
    ) throws(Errno) {
        try targetName.withCString { (cTarget) throws(Errno) in
            try name.withCString { (cName) throws(Errno) in
                _ = try valueOrErrno { linkat(targetDirectory.rawValue, cTarget, directory.rawValue, cName, 0) }
            }
        }
    }

    /// Removes entry `name` of `directory`, a directory tree included, never following a
    /// symlink. Missing entries are fine.
    ///
    /// - Throws: the errno of the failing call.
    static func remove(_ name: FileName, in directory: FileDescriptor) throws(Errno) {
        guard let status = try directory.statusIfPresent(of: name) else { return }
        if status.type == .directory {
            // Without root, a read-only directory cannot be emptied: it goes anyway.
            _ = openUp(name, in: directory)
            let child = try directory.open(name, flags: O_RDONLY | O_DIRECTORY)
            try removeContents(of: child)
            _ = try name.withCString { (cName) throws(Errno) in
                try valueOrErrno { unlinkat(directory.rawValue, cName, AT_REMOVEDIR) }
            }
        } else {
            _ = try name.withCString { (cName) throws(Errno) in
                try valueOrErrno { unlinkat(directory.rawValue, cName, 0) }
            }
        }
    }

    /// Removes every entry of the open directory `directory`.
    ///
    /// - Throws: the errno of the failing call.
    static func removeContents(of directory: FileDescriptor) throws(Errno) {
        for name in try TreeWalker.names(of: directory, sorted: false) {
            try remove(name, in: directory)
        }
    }

    private static let selinuxAttribute = Array("security.selinux".utf8)

    /// Whether the process runs as root: then ownership and every xattr namespace are restored;
    /// otherwise files keep the caller's ownership and privileged xattrs that fail with EPERM
    /// are left out (as tar does for an unprivileged user).
    static var privileged: Bool { geteuid() == 0 }

    /// glibc's makedev encoding.
    static func makeDevice(_ major: UInt32, _ minor: UInt32) -> dev_t {
        let ma = UInt64(major)
        let mi = UInt64(minor)
        return dev_t((mi & 0xff) | ((ma & 0xfff) << 8) | ((mi & ~0xff) << 12) | ((ma & ~0xfff) << 32))
    }
}

/// A failure of ``FileMaker/makeFile(_:in:_:fill:)``: from the file system or from the filler.
enum MakeError<E: Error>: Error {
    case system(Errno)
    case fill(E)
}

/// Writes a file sequentially, seeking over blocks of zeros so they stay holes; ``finish()``
/// sets the final size.
final class SparseWriter {
    private let file: FileDescriptor
    private(set) var offset: Int64 = 0
    private static let block = 4096

    /// A writer filling `file` from offset 0.
    init(_ file: FileDescriptor) { self.file = file }

    /// Appends `bytes`, leaving aligned all-zero 4 KiB blocks as holes.
    ///
    /// - Throws: the `pwrite(2)` errno.
    func write(_ bytes: UnsafeRawBufferPointer) throws(Errno) {
        guard let base = bytes.baseAddress else { return }
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + SparseWriter.block)
            let chunk = UnsafeRawBufferPointer(start: base + start, count: end - start)
            if !(chunk.count == SparseWriter.block && SparseWriter.isZero(chunk)) {
                var done = 0
                while done < chunk.count {
                    let n = try valueOrErrno {
                        pwrite(file.rawValue, base + start + done, chunk.count - done, off_t(offset + Int64(done)))
                    }
                    done += n
                }
            }
            offset += Int64(chunk.count)
            start = end
        }
    }

    /// Moves the write position forward to `position` (the bytes skipped stay a hole).
    func seek(to position: Int64) throws(Errno) {
        if position > offset { offset = position }
    }

    /// Extends the file to `size` bytes (a hole) if it is shorter.
    func pad(to size: Int64) throws(Errno) {
        if size > offset { offset = size }
    }

    /// Sets the file size to the bytes appended (holes at the end included).
    ///
    /// - Throws: the `ftruncate(2)` errno.
    func finish() throws(Errno) {
        _ = try valueOrErrno { ftruncate(file.rawValue, off_t(offset)) }
    }

    private static func isZero(_ chunk: UnsafeRawBufferPointer) -> Bool {
        let words = chunk.count / 8
        for index in 0..<words where chunk.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self) != 0 {
            return false
        }
        for index in (words * 8)..<chunk.count where chunk[index] != 0 { return false }
        return true
    }
}
