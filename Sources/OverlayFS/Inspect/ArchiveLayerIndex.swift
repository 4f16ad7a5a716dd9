import CLayerSys
import Glibc
import LayerCore

/// An OCI layer tarball (uncompressed, gzip, zstd, or any filter libarchive reads) read once into
/// a *skeleton* directory plus an in-memory index, for every inspect command.
///
/// The skeleton has every directory of the archive as a directory and every other entry as a
/// regular file: empty, or (with `keepContent`, for `flatten`) holding the entry's content with
/// its holes. Hard links are hard links of the skeleton, so the skeleton's link counts are the
/// archive's. OCI whiteout and opaque markers keep their names. The ``Resolver`` runs on the
/// skeleton as on any OCI-format layer directory, so tarball layers follow exactly the same
/// overlay rules as directory layers. The entries' real metadata (type, mode, owner, size, times,
/// device numbers, link targets, xattrs) and, when asked for, content hashes are kept in memory,
/// keyed by the skeleton file's inode. There is one reader for all commands, so `ls`, `which`,
/// `inspect` and `flatten` see the same tree.
///
/// Archive semantics (those of extraction, and of the image spec's "last entry wins"):
/// - a later entry of a path replaces the earlier one; a directory over a directory keeps the
///   children and takes the new metadata; anything else removes what was there first (a
///   non-directory replacing a directory removes the directory's earlier children);
/// - a hard link names the entry its target path holds at that point; later replacing either
///   name leaves the other alone (its link count drops);
/// - the root (`./`) and parents missing from the archive are implied: 0755, owner 0:0, mtime
///   0 (1970-01-01), no xattrs, so the result does not depend on when it is read;
/// - `./` prefixes and empty components are dropped; an absolute path, a `..` component, a NUL,
///   a name over 255 bytes or an entry below a non-directory is refused. Paths may be of any
///   length (PAX records have no limit; `flatten` writes such paths).
///
/// A character device 0/0 in a tarball is a device, not a whiteout (the image spec's whiteouts
/// are `.wh.` files). Sparse entries (every GNU and PAX sparse format) are hashed and stored by
/// their logical content, holes as zeros.
public final class ArchiveLayerIndex: Sendable {
    /// One entry of the archive.
    public struct Record: Sendable {
        /// The entry's path in the layer (for a hard-link group, the first name).
        public var path: RelativePath
        /// Its metadata as a ``FileStatus``. `device` and `inode` are the skeleton file's, so they
        /// identify the entry's hard-link group across all layers of a stack; `linkCount` is
        /// filled in from the skeleton by ``InspectedStack/status(of:in:)``.
        public var status: FileStatus
        /// For a symlink, the target bytes.
        public var linkTarget: [UInt8]?
        /// The XXH3-128 of the content, when the index was built with hashes (regular files).
        public var contentHash: ContentHash?
        /// Extended attributes (PAX `SCHILY.xattr.*` and libarchive's other xattr records).
        public var attributes: [ExtendedAttribute] = []
    }

    /// The compression libarchive detected: `none`, `gzip`, `zstd`, or `other` (xz, bzip2, ...).
    public let compression: String
    /// Number of entries read (markers included).
    public let entryCount: Int
    /// Whether the skeleton's regular files hold the entries' content.
    public let holdsContent: Bool
    private let records: [UInt64: Record]

    /// The record of the entry whose skeleton file has inode `inode`.
    public func record(forSkeletonInode inode: UInt64) -> Record? { records[inode] }

    /// Reads the archive at `archivePath` and builds its skeleton at `skeletonPath` (created; must
    /// not exist).
    ///
    /// - Parameters:
    ///   - hashContent: hash regular files' content (XXH3-128 of the logical content).
    ///   - keepContent: write regular files' content into the skeleton (holes stay holes).
    /// - Throws: ``PathError`` naming `archivePath`: unreadable, not a tar archive, a damaged
    ///   (truncated, corrupt) tarball, an image archive rather than a layer, an entry escaping
    ///   the layer root, a hard link to a missing entry; ``Interruption/error`` when stopped.
    public init(
        archivePath: CommandLinePath, skeletonPath: CommandLinePath, hashContent: Bool, keepContent: Bool = false
    ) throws(PathError) {
        let display = archivePath.description
        let file: FileDescriptor
        do {
            file = try archivePath.open(flags: O_RDONLY)
        } catch {
            throw PathError(path: display, errno: error, what: "layer")
        }
        let root: FileDescriptor
        do {
            try skeletonPath.makeDirectory(mode: 0o700)
            root = try skeletonPath.open(flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        } catch {
            throw PathError.writing(skeletonPath.description, error, what: "scratch directory")
        }
        let recognized = Self.recognizedFormat(of: file)
        let reader: ArchiveReader
        do {
            reader = try ArchiveReader(input: file)
        } catch {
            throw Self.readFailure(display, error, entriesRead: 0, recognized: recognized)
        }
        var builder = try SkeletonBuilder(
            root: root, archivePath: display, hashContent: hashContent, keepContent: keepContent)
        var count = 0
        while true {
            try Interruption.shared.check()
            let entry: ArchiveEntry?
            do {
                entry = try reader.next()
            } catch {
                throw Self.readFailure(display, error, entriesRead: count, recognized: recognized)
            }
            guard let entry else { break }
            count += 1
            try builder.add(entry, reader: reader)
        }
        if builder.layout.isImageArchive { throw PathError(path: display, reason: ArchiveLayout.imageArchiveReason) }
        compression = reader.compression?.rawValue ?? "other"
        entryCount = count
        holdsContent = keepContent
        records = builder.records
    }

    /// Reads `archivePath` (a path string) into a skeleton; see
    /// ``init(archivePath:skeletonPath:hashContent:keepContent:)``.
    public convenience init(archivePath: String, skeletonPath: String, hashContent: Bool) throws(PathError) {
        try self.init(
            archivePath: CommandLinePath(archivePath), skeletonPath: CommandLinePath(skeletonPath),
            hashContent: hashContent)
    }

    /// Why reading failed, in words: a stream that starts like a compressed file or a tar archive
    /// (or has given entries already) is a damaged layer tarball; anything else is not a layer.
    static func readFailure(_ path: String, _ error: ArchiveError, entriesRead: Int, recognized: String?)
        -> PathError
    {
        var detail = error.message
        if detail.hasSuffix("libarchive error") {
            let what = recognized.map { "the \($0) stream" } ?? "the archive"
            detail = detail.dropLast("libarchive error".count) + "\(what) ends early or is corrupt"
        }
        if entriesRead > 0 || recognized != nil || error.isDamage {
            return PathError(path: path, reason: "damaged layer tarball: \(detail)", errno: error.errno)
        }
        return PathError(path: path, reason: "not a layer: neither a directory nor a tar archive (\(detail))")
    }

    /// What the first bytes of `file` say it is (a compressed stream, or a tar archive by its
    /// `ustar` magic); nil when they say nothing.
    static func recognizedFormat(of file: FileDescriptor) -> String? {
        var head = [UInt8](repeating: 0, count: 512)
        let count = head.withUnsafeMutableBytes { (try? file.read(into: $0, at: 0)) ?? 0 }
        func starts(_ magic: [UInt8]) -> Bool { count >= magic.count && head.starts(with: magic) }
        if starts([0x1F, 0x8B]) { return "gzip" }
        if starts([0x28, 0xB5, 0x2F, 0xFD]) { return "zstd" }
        if starts([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) { return "xz" }
        if starts([0x42, 0x5A, 0x68]) { return "bzip2" }
        if starts([0x04, 0x22, 0x4D, 0x18]) { return "lz4" }
        if starts([0x4C, 0x5A, 0x49, 0x50]) { return "lzip" }
        if starts([0x1F, 0x9D]) { return "compress" }
        if count >= 262 && head[257..<262].elementsEqual(Array("ustar".utf8)) { return "tar" }
        return nil
    }
}

/// Builds the skeleton directory and the records.
private struct SkeletonBuilder {
    let root: FileDescriptor
    let archivePath: String
    let hashContent: Bool
    let keepContent: Bool
    var records: [UInt64: ArchiveLayerIndex.Record] = [:]
    var layout = ArchiveLayout()
    /// The skeleton's device (part of every record's identity).
    private let device: UInt64
    private let rootInode: UInt64
    /// The directory the last entry went into (tar entries come grouped by directory).
    private var cachedParent: (path: RelativePath, directory: FileDescriptor)?

    init(root: FileDescriptor, archivePath: String, hashContent: Bool, keepContent: Bool) throws(PathError) {
        self.root = root
        self.archivePath = archivePath
        self.hashContent = hashContent
        self.keepContent = keepContent
        let status: FileStatus
        do {
            status = try root.status()
        } catch {
            throw PathError(path: archivePath, reason: "cannot build the layer index: \(error)", errno: error)
        }
        device = status.device
        rootInode = status.inode
        records[status.inode] = Self.implied(.root, status)
    }

    /// The record of an implied directory (the root, a missing parent): 0755, 0:0, mtime 0.
    static func implied(_ path: RelativePath, _ skeleton: FileStatus) -> ArchiveLayerIndex.Record {
        var status = skeleton
        status.mode = FileType.directory.modeBits | 0o755
        status.userID = 0
        status.groupID = 0
        status.size = 0
        status.specialDevice = 0
        status.linkCount = 1
        status.modificationTime = Timestamp(seconds: 0, nanoseconds: 0)
        status.accessTime = status.modificationTime
        status.changeTime = status.modificationTime
        return ArchiveLayerIndex.Record(path: path, status: status)
    }

    private func notALayer(_ path: RelativePath, _ reason: String) -> PathError {
        PathError(path: archivePath, reason: "not a layer: entry \(path.description): \(reason)")
    }

    private func failure(_ path: RelativePath, _ error: Errno) -> PathError {
        if error == .interrupted && Interruption.shared.isRequested { return Interruption.error }
        return PathError(
            path: archivePath, reason: "cannot build the layer index: \(path.description): \(error)", errno: error)
    }

    /// The record of `entry` at `path`, with the identity of skeleton inode `inode`.
    private func record(_ entry: ArchiveEntry, _ path: RelativePath, inode: UInt64) -> ArchiveLayerIndex.Record {
        var status = stat()
        status.st_mode = mode_t(entry.kind.fileType.modeBits | entry.permissions)
        status.st_uid = uid_t(entry.userID)
        status.st_gid = gid_t(entry.groupID)
        status.st_size = off_t(entry.kind == .regular ? entry.size : 0)
        status.st_nlink = 1
        status.st_rdev = cls_makedev(entry.deviceMajor, entry.deviceMinor)
        status.st_mtim = entry.modificationTime.timespec
        status.st_atim = entry.modificationTime.timespec
        status.st_ctim = entry.modificationTime.timespec
        var record = ArchiveLayerIndex.Record(
            path: path, status: FileStatus(status), attributes: entry.extendedAttributes)
        record.status.device = device
        record.status.inode = inode
        if entry.kind == .symlink {
            record.linkTarget = entry.linkTarget
            record.status.size = Int64(entry.linkTarget.count)  // as lstat(2) reports it
        }
        return record
    }

    mutating func add(_ entry: ArchiveEntry, reader: ArchiveReader) throws(PathError) {
        let path: RelativePath
        do {
            path = try ArchiveEntry.normalize(entry.path)
        } catch {
            throw PathError(
                path: archivePath, reason: "not a layer: entry \(escapeForDisplay(entry.path)): \(error)")
        }
        // As `layerdiff apply`: a whiteout marker name is never a directory on the way (x/.wh.y/z).
        if entry.kind == .symlink && entry.linkTarget.count > ArchiveEntry.maximumLinkTargetLength {
            throw PathError(
                path: archivePath,
                reason: "not a layer: entry \(escapeForDisplay(entry.path)): symlink target longer than "
                    + "\(ArchiveEntry.maximumLinkTargetLength) bytes")
        }
        if let marker = Whiteout.markerUsedAsDirectory(in: path) {
            throw PathError(
                path: archivePath,
                reason: "not a layer: entry \(escapeForDisplay(entry.path)): goes through '\(marker)', a whiteout "
                    + "marker name used as a directory")
        }
        layout.note(path)
        guard let name = path.lastName else {
            // "./": the layer root's metadata (a non-directory root entry cannot apply).
            if entry.kind == .directory { records[rootInode] = record(entry, .root, inode: rootInode) }
            return
        }
        let parent = try openParent(of: path, creating: true)
        let existing: FileStatus?
        do {
            existing = try parent.statusIfPresent(of: name)
        } catch {
            throw failure(path, error)
        }
        switch entry.kind {
        case .directory:
            if let existing, existing.type == .directory {
                records[existing.inode] = record(entry, path, inode: existing.inode)
                return
            }
            if let existing { try remove(name, existing, in: parent, path: path) }
            do {
                _ = try name.withCString { (cName) throws(Errno) in
                    try valueOrErrno { mkdirat(parent.rawValue, cName, 0o700) }
                }
                let made = try parent.status(of: name)
                records[made.inode] = record(entry, path, inode: made.inode)
            } catch {
                throw failure(path, error)
            }
        case .hardLink:
            try addHardLink(entry, name, path: path, in: parent, existing: existing)
        case .regular, .symlink, .characterDevice, .blockDevice, .fifo:
            if let existing { try remove(name, existing, in: parent, path: path) }
            let file: FileDescriptor
            let inode: UInt64
            do {
                file = try parent.open(name, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
                inode = try file.status().inode
            } catch {
                throw failure(path, error)
            }
            var made = record(entry, path, inode: inode)
            if entry.kind == .regular && (hashContent || keepContent) {
                made.contentHash = try readContent(
                    of: entry, into: keepContent ? file : nil, path: path, reader: reader)
            }
            records[inode] = made
        }
    }

    /// Links `name` to the entry the hard link's target path holds now.
    private mutating func addHardLink(
        _ entry: ArchiveEntry, _ name: FileName, path: RelativePath, in parent: FileDescriptor, existing: FileStatus?
    ) throws(PathError) {
        let targetPath: RelativePath
        do {
            targetPath = try ArchiveEntry.normalize(entry.linkTarget)
        } catch {
            throw notALayer(path, "hard link target \(escapeForDisplay(entry.linkTarget)): \(error)")
        }
        let missing = notALayer(path, "hard link to \(targetPath.description), which is not an earlier file")
        guard let targetName = targetPath.lastName else { throw missing }
        let targetParent: FileDescriptor
        let target: FileStatus
        do {
            targetParent = try openParent(of: targetPath, creating: false)
            guard let found = try targetParent.statusIfPresent(of: targetName), found.type != .directory else {
                throw missing
            }
            target = found
        } catch let error as PathError {
            throw error.errno == .noEntry || error.errno == .notDirectory ? missing : error
        } catch {
            throw missing
        }
        if let existing {
            if existing.inode == target.inode { return }  // already that file (a link to itself)
            try remove(name, existing, in: parent, path: path)
        }
        do {
            try targetName.withCString { (cTarget) throws(Errno) in
                try name.withCString { (cName) throws(Errno) in
                    _ = try valueOrErrno { linkat(targetParent.rawValue, cTarget, parent.rawValue, cName, 0) }
                }
            }
        } catch {
            throw failure(path, error)
        }
    }

    /// Reads the current entry's content: writes it into `file` (at its offsets, so holes stay
    /// holes) and hashes it as a reader of the file would see it, holes as zeros.
    private func readContent(
        of entry: ArchiveEntry, into file: FileDescriptor?, path: RelativePath, reader: ArchiveReader
    ) throws(PathError) -> ContentHash? {
        var hasher = ContentHasher()
        // Holes are hashed as zeros, at memory speed: a hole claiming more than this (a crafted
        // sparse map can claim 2^62 bytes) leaves the entry without a hash rather than spin.
        var hashing = hashContent && entry.size <= Self.largestHashedSize
        var position: Int64 = 0
        while true {
            try Interruption.shared.check()
            let block: (bytes: UnsafeRawBufferPointer, offset: Int64)?
            do {
                block = try reader.readBlock()
            } catch {
                throw ArchiveLayerIndex.readFailure(archivePath, error, entriesRead: 1, recognized: nil)
            }
            guard let block else { break }
            if hashing {
                if block.offset > position { hasher.updateWithZeros(block.offset - position) }
                hasher.update(block.bytes)
            }
            if let file {
                do {
                    try Self.write(block.bytes, to: file, at: block.offset)
                } catch {
                    throw failure(path, error)
                }
            }
            position = max(position, block.offset + Int64(block.bytes.count))
        }
        if hashing && position < entry.size { hasher.updateWithZeros(entry.size - position) }
        if let file {
            do {
                _ = try valueOrErrno { ftruncate(file.rawValue, off_t(entry.size)) }
            } catch {
                throw failure(path, error)
            }
        }
        if hashing && position > entry.size { hashing = false }  // data past the size: no agreed content
        return hashing ? hasher.finish() : nil
    }

    /// The largest entry whose content is hashed (64 GiB: seconds of zeros at worst).
    static let largestHashedSize: Int64 = 64 << 30

    private static func write(_ bytes: UnsafeRawBufferPointer, to file: FileDescriptor, at offset: Int64)
        throws(Errno)
    {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let start = done
            done += try valueOrErrno {
                pwrite(file.rawValue, base + start, bytes.count - start, off_t(offset) + off_t(start))
            }
        }
    }

    /// Opens the skeleton directory holding `path`; missing parents are created as implied
    /// directories when `creating`, otherwise they fail with `ENOENT`.
    private mutating func openParent(of path: RelativePath, creating: Bool) throws(PathError) -> FileDescriptor {
        let parentPath = path.parent
        let components = parentPath.components
        var directory = root
        var start = 0
        if let cachedParent {
            if cachedParent.path == parentPath { return cachedParent.directory }
            // A directory below the last parent (as in a tarball listing a directory, then its
            // subdirectory, ...) goes on from there: from the root, entries nested n deep cost n²
            // lookups.
            let cached = cachedParent.path.components
            if cached.count < components.count && components.starts(with: cached) {
                directory = cachedParent.directory
                start = cached.count
            }
        }
        for index in start..<components.count {
            let name = components[index]
            // The path so far, built only when needed: building it at every step made an entry's
            // cost grow with the square of its depth.
            var current: RelativePath { RelativePath(components: Array(components[...index])) }
            do {
                if let status = try directory.statusIfPresent(of: name) {
                    guard status.type == .directory else {
                        if !creating { throw PathError(path: archivePath, reason: "", errno: .notDirectory) }
                        throw notALayer(path, "its parent \(current.description) is not a directory")
                    }
                } else {
                    guard creating else { throw PathError(path: archivePath, reason: "", errno: .noEntry) }
                    _ = try name.withCString { (cName) throws(Errno) in
                        try valueOrErrno { mkdirat(directory.rawValue, cName, 0o700) }
                    }
                    let made = try directory.status(of: name)
                    records[made.inode] = Self.implied(current, made)
                }
                directory = try directory.open(name, flags: O_RDONLY | O_DIRECTORY)
            } catch let error as PathError {
                throw error
            } catch let error as Errno {
                throw failure(current, error)
            } catch {
                throw PathError(path: archivePath, reason: "cannot build the layer index: \(error)")
            }
        }
        if creating { cachedParent = (parentPath, directory) }
        return directory
    }

    /// Removes what `name` is (a directory with everything below it), for a later entry.
    private mutating func remove(_ name: FileName, _ status: FileStatus, in parent: FileDescriptor, path: RelativePath)
        throws(PathError)
    {
        do {
            if status.type == .directory {
                cachedParent = nil
                let child = try parent.open(name, flags: O_RDONLY | O_DIRECTORY)
                removeContents(of: child)
                _ = try name.withCString { (cName) throws(Errno) in
                    try valueOrErrno { unlinkat(parent.rawValue, cName, AT_REMOVEDIR) }
                }
            } else {
                _ = try name.withCString { (cName) throws(Errno) in
                    try valueOrErrno { unlinkat(parent.rawValue, cName, 0) }
                }
            }
        } catch {
            throw failure(path, error)
        }
    }
}
