import CLayerSys
import Glibc
import LayerCore

/// The metadata a created entry gets.
struct MadeMetadata: Sendable {
    var type: FileType
    var permissions: UInt32
    var userID: UInt32
    var groupID: UInt32
    var accessTime: Timestamp
    var modificationTime: Timestamp
    var attributes: [ExtendedAttribute]
    var linkTarget: [UInt8] = []
    var specialDevice: UInt64 = 0

    /// The metadata of a file with `status`, with `attributes` (overlay-private ones dropped).
    init(_ status: FileStatus, attributes: [ExtendedAttribute], linkTarget: [UInt8] = []) {
        type = status.type
        permissions = status.permissions
        userID = status.userID
        groupID = status.groupID
        accessTime = status.accessTime
        modificationTime = status.modificationTime
        self.attributes = attributes.filter { !Whiteout.isOverlayPrivateAttribute($0.name) }
        self.linkTarget = linkTarget
        specialDevice = status.specialDevice
    }
}

/// fd-relative creation of entries with exact metadata, for `flatten` and for extracting
/// tarball layers. Each call names one entry of an open directory and never follows a symlink
/// (`O_NOFOLLOW`, `O_EXCL`, `AT_SYMLINK_NOFOLLOW`).
///
/// As root, ownership and every xattr are restored; otherwise, as `cp -a` and `tar` do for an
/// unprivileged user, entries keep the caller's ownership and privileged xattrs that fail with
/// `EPERM` are left out.
enum TreeMaker {
    static var privileged: Bool { geteuid() == 0 }

    /// Creates directory `name` (0700 until ``apply(_:to:setTime:)`` gives its mode) and opens it.
    static func makeDirectory(_ name: FileName, in parent: FileDescriptor) throws(Errno) -> FileDescriptor {
        _ = try name.withCString { (cName) throws(Errno) in try valueOrErrno { mkdirat(parent.rawValue, cName, 0o700) }
        }
        return try parent.open(name, flags: O_RDONLY | O_DIRECTORY)
    }

    /// Creates the empty regular file `name` (0600) and opens it for writing.
    static func createFile(_ name: FileName, in parent: FileDescriptor) throws(Errno) -> FileDescriptor {
        try parent.open(name, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
    }

    /// Creates a symlink, fifo, socket or device node `name` with its metadata.
    static func makeSpecial(_ name: FileName, in parent: FileDescriptor, _ metadata: MadeMetadata) throws(Errno) {
        switch metadata.type {
        case .symlink:
            var target = metadata.linkTarget.map { CChar(bitPattern: $0) }
            target.append(0)
            _ = try name.withCString { (cName) throws(Errno) in
                try valueOrErrno { symlinkat(target, parent.rawValue, cName) }
            }
        case .fifo, .socket, .characterDevice, .blockDevice:
            let mode = mode_t(metadata.type.modeBits) | 0o600
            _ = try name.withCString { (cName) throws(Errno) in
                try valueOrErrno { mknodat(parent.rawValue, cName, mode, dev_t(metadata.specialDevice)) }
            }
        default:
            throw .invalidArgument
        }
        try applyToEntry(metadata, name, in: parent)
    }

    /// Hard-links `name` in `directory` to `target` in `targetDirectory`. Wraps linkat(2).
    static func link(
        _ name: FileName, in directory: FileDescriptor, to target: FileName, in targetDirectory: FileDescriptor
    ) throws(Errno) {
        try target.withCString { (cTarget) throws(Errno) in
            try name.withCString { (cName) throws(Errno) in
                _ = try valueOrErrno { linkat(targetDirectory.rawValue, cTarget, directory.rawValue, cName, 0) }
            }
        }
    }

    /// Sets owner, permissions, xattrs and (optionally) times of an open file or directory; the
    /// owner first, as chown clears setuid/setgid bits and capabilities.
    static func apply(_ metadata: MadeMetadata, to file: FileDescriptor, setTime: Bool) throws(Errno) {
        if privileged { _ = try valueOrErrno { fchown(file.rawValue, metadata.userID, metadata.groupID) } }
        _ = try valueOrErrno { fchmod(file.rawValue, mode_t(metadata.permissions)) }
        for attribute in metadata.attributes {
            do {
                try file.setExtendedAttribute(attribute.name, value: attribute.value)
            } catch let error where !privileged && (error == .notPermitted || error == .notSupported) {
                continue
            }
        }
        if setTime {
            var times = [metadata.accessTime.timespec, metadata.modificationTime.timespec]
            _ = try valueOrErrno { futimens(file.rawValue, &times) }
        }
    }

    /// Sets owner, permissions (not for symlinks), xattrs and times of entry `name`, not
    /// following a symlink.
    static func applyToEntry(_ metadata: MadeMetadata, _ name: FileName, in parent: FileDescriptor) throws(Errno) {
        try name.withCString { (cName) throws(Errno) in
            if privileged {
                _ = try valueOrErrno {
                    fchownat(parent.rawValue, cName, metadata.userID, metadata.groupID, AT_SYMLINK_NOFOLLOW)
                }
            }
            if metadata.type != .symlink {
                _ = try valueOrErrno { fchmodat(parent.rawValue, cName, mode_t(metadata.permissions), 0) }
            }
        }
        for attribute in metadata.attributes {
            do {
                try parent.setExtendedAttribute(attribute.name, value: attribute.value, of: name)
            } catch let error where error == .notPermitted || error == .notSupported {
                // user.* xattrs cannot be set on symlinks; privileged ones need root.
                if privileged && metadata.type != .symlink { throw error }
            }
        }
        try name.withCString { (cName) throws(Errno) in
            var times = [metadata.accessTime.timespec, metadata.modificationTime.timespec]
            _ = try valueOrErrno { utimensat(parent.rawValue, cName, &times, AT_SYMLINK_NOFOLLOW) }
        }
    }
}
