import CLayerSys
import Glibc
import LayerCore

/// An OCI layer tarball (uncompressed, gzip, zstd, or any filter libarchive reads) indexed for
/// the inspect commands without extracting its content.
///
/// Reading the archive once, the index builds a *skeleton* directory: every directory of the
/// archive as a directory, every other entry as an empty regular file, OCI whiteout and opaque
/// markers under their own names. The ``Resolver`` runs on the skeleton as on any OCI-format layer
/// directory, so tarball layers follow exactly the same overlay rules as directory layers. The
/// entries' real metadata (type, mode, owner, size, times, device numbers, link targets, hard-link
/// groups) and, when asked for, their content hashes are kept in memory, keyed by the skeleton
/// file's inode.
///
/// Archive semantics follow extraction: a later entry of the same path replaces an earlier one;
/// parent directories missing from the archive are implied (0755, root); `./` and leading `/` are
/// stripped; a `..` component is refused. A character device 0/0 in a tarball is a device, not a
/// whiteout (the image spec's whiteouts are `.wh.` files).
public final class ArchiveLayerIndex: Sendable {
    /// One entry of the archive.
    public struct Record: Sendable {
        /// The entry's path in the layer.
        public var path: RelativePath
        /// Its metadata as a ``FileStatus``: `inode` identifies its hard-link group within the
        /// archive, `device` is 0, `linkCount` the number of names of the group.
        public var status: FileStatus
        /// For a symlink, the target bytes.
        public var linkTarget: [UInt8]?
        /// The XXH3-128 of the content, when the index was built with hashes (regular files).
        public var contentHash: ContentHash?
    }

    /// The compression libarchive detected: `none`, `gzip`, `zstd`, or `other` (xz, bzip2, ...).
    public let compression: String
    /// Number of entries read (markers included).
    public let entryCount: Int
    private let records: [UInt64: Record]

    /// The record of the entry whose skeleton file has inode `inode`.
    public func record(forSkeletonInode inode: UInt64) -> Record? { records[inode] }

    /// Reads the archive at `archivePath` and builds its skeleton at `skeletonPath` (created; must
    /// not exist).
    ///
    /// - Parameter hashContent: hash regular files' content (otherwise data is skipped).
    /// - Throws: ``PathError`` naming `archivePath`: unreadable, not a tar archive, an image
    ///   archive rather than a layer, an entry escaping the layer root, a hard link to a missing
    ///   entry.
    public init(archivePath: String, skeletonPath: String, hashContent: Bool) throws(PathError) {
        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(path: archivePath, flags: O_RDONLY)
        } catch {
            throw PathError(path: archivePath, errno: error, what: "layer")
        }
        guard mkdir(skeletonPath, 0o700) == 0 else {
            throw PathError(path: skeletonPath, errno: .current, what: "scratch directory")
        }
        let root: FileDescriptor
        do {
            root = try FileDescriptor.open(path: skeletonPath, flags: O_RDONLY | O_DIRECTORY)
        } catch {
            throw PathError(path: skeletonPath, errno: error, what: "scratch directory")
        }
        var builder = SkeletonBuilder(root: root, archivePath: archivePath)
        let reader: ArchiveReader
        do {
            reader = try ArchiveReader(input: file)
        } catch {
            throw PathError(path: archivePath, reason: "not a layer: neither a directory nor a tar archive (\(error))")
        }
        var count = 0
        do {
            while let entry = try reader.next() {
                count += 1
                try builder.add(entry, reader: reader, hashContent: hashContent)
            }
        } catch let error as PathError {
            throw error
        } catch {
            let reason = count == 0 ? "not a layer: neither a directory nor a tar archive" : "damaged layer tarball"
            throw PathError(path: archivePath, reason: "\(reason) (\(error))")
        }
        try builder.checkIsLayer()
        compression = reader.compression?.rawValue ?? "other"
        entryCount = count
        records = builder.finish()
    }
}

/// Builds the skeleton directory and the records.
private struct SkeletonBuilder {
    let root: FileDescriptor
    let archivePath: String
    var records: [UInt64: ArchiveLayerIndex.Record] = [:]
    /// Skeleton inode of each path's current entry, for hard links and replacement.
    var inodeOfPath: [RelativePath: UInt64] = [:]
    var groupSizes: [UInt64: UInt64] = [:]
    /// Identities handed out to records (hard links share their target's).
    var nextIdentity: UInt64 = 1
    var layout = ArchiveLayout()

    init(root: FileDescriptor, archivePath: String) {
        self.root = root
        self.archivePath = archivePath
        var status = stat()
        if fstat(root.rawValue, &status) == 0 {
            var rootStatus = FileStatus(status)
            rootStatus.mode = FileType.directory.modeBits | 0o755
            rootStatus.userID = 0
            rootStatus.groupID = 0
            rootStatus.size = 0
            rootStatus.device = 0
            rootStatus.linkCount = 1
            rootStatus.modificationTime = Timestamp(seconds: 0, nanoseconds: 0)
            rootStatus.inode = 0
            records[UInt64(status.st_ino)] = ArchiveLayerIndex.Record(path: .root, status: rootStatus)
            inodeOfPath[.root] = UInt64(status.st_ino)
        }
    }

    private func failure(_ path: RelativePath, _ reason: String) -> PathError {
        PathError(path: archivePath, reason: "not a layer: entry \(path.description): \(reason)")
    }

    mutating func add(_ entry: ArchiveEntry, reader: ArchiveReader, hashContent: Bool) throws(PathError) {
        let path: RelativePath
        do {
            path = try entry.normalizedPath()
        } catch {
            throw PathError(
                path: archivePath, reason: "not a layer: entry \(escapeForDisplay(entry.path)): \(error)")
        }
        layout.note(path)
        let type = entry.kind.fileType
        var status = stat()
        status.st_mode = mode_t(type.modeBits | entry.permissions)
        status.st_uid = uid_t(entry.userID)
        status.st_gid = gid_t(entry.groupID)
        status.st_size = off_t(entry.kind == .regular ? entry.size : 0)
        status.st_nlink = 1
        status.st_rdev = cls_makedev(entry.deviceMajor, entry.deviceMinor)
        status.st_mtim = entry.modificationTime.timespec
        status.st_atim = entry.modificationTime.timespec
        status.st_ctim = entry.modificationTime.timespec
        var record = ArchiveLayerIndex.Record(path: path, status: FileStatus(status))
        record.status.device = 0
        if entry.kind == .symlink {
            record.linkTarget = entry.linkTarget
            record.status.size = Int64(entry.linkTarget.count)  // as lstat(2) reports it
        }

        if path.isRoot {
            // "./": the layer root's metadata.
            if entry.kind == .directory, let inode = inodeOfPath[.root] {
                record.status.inode = 0
                records[inode] = record
            }
            return
        }
        let parent = try makeParents(path)
        guard let name = path.lastName else { return }
        if entry.kind == .directory {
            let inode = try makeDirectory(name, in: parent, path: path)
            record.status.inode = records[inode]?.status.inode ?? 0
            records[inode] = record
            inodeOfPath[path] = inode
            return
        }
        if entry.kind == .hardLink {
            let targetPath: RelativePath
            do {
                targetPath = try ArchiveEntry.normalize(entry.linkTarget)
            } catch {
                throw failure(path, "hard link target \(escapeForDisplay(entry.linkTarget)): \(error)")
            }
            guard let targetInode = inodeOfPath[targetPath], let target = records[targetInode],
                target.status.type != .directory
            else {
                throw failure(path, "hard link to \(targetPath.description), which is not an earlier file")
            }
            let inode = try makeFile(name, in: parent, path: path)
            inodeOfPath[path] = inode
            record = target
            record.path = path
            groupSizes[target.status.inode, default: 1] += 1
            records[inode] = record
            return
        }
        let inode = try makeFile(name, in: parent, path: path)
        inodeOfPath[path] = inode
        record.status.inode = nextIdentity
        nextIdentity += 1
        if hashContent && entry.kind == .regular {
            var hasher = ContentHasher()
            do {
                while let block = try reader.readBlock() { hasher.update(block.bytes) }
            } catch {
                throw PathError(path: archivePath, reason: "damaged layer tarball (\(error))")
            }
            record.contentHash = hasher.finish()
        }
        records[inode] = record
    }

    /// Opens (creating as needed) the skeleton directory holding `path`.
    private mutating func makeParents(_ path: RelativePath) throws(PathError) -> FileDescriptor {
        var directory = root
        var current = RelativePath.root
        for name in path.components.dropLast() {
            current = current.appending(name)
            do {
                if let status = try directory.statusIfPresent(of: name) {
                    guard status.type == .directory else {
                        throw failure(path, "its parent \(current.description) is not a directory")
                    }
                } else {
                    _ = try makeDirectory(name, in: directory, path: current)
                }
                directory = try directory.open(name, flags: O_RDONLY | O_DIRECTORY)
            } catch let error as PathError {
                throw error
            } catch {
                throw PathError(path: archivePath, reason: "cannot build the layer index: \(error)")
            }
        }
        return directory
    }

    /// Creates (or keeps) directory `name`; records implied directories.
    private mutating func makeDirectory(_ name: FileName, in parent: FileDescriptor, path: RelativePath)
        throws(PathError) -> UInt64
    {
        do {
            if let status = try parent.statusIfPresent(of: name) {
                if status.type == .directory { return status.inode }
                try name.withCString { (cName) throws(Errno) in
                    _ = try valueOrErrno { unlinkat(parent.rawValue, cName, 0) }
                }
            }
            try name.withCString { (cName) throws(Errno) in
                _ = try valueOrErrno { mkdirat(parent.rawValue, cName, 0o700) }
            }
            let status = try parent.status(of: name)
            // An implied directory until the archive says more.
            var implied = status
            implied.mode = FileType.directory.modeBits | 0o755
            implied.userID = 0
            implied.groupID = 0
            implied.size = 0
            implied.device = 0
            implied.linkCount = 1
            implied.modificationTime = Timestamp(seconds: 0, nanoseconds: 0)
            implied.inode = nextIdentity
            nextIdentity += 1
            records[status.inode] = ArchiveLayerIndex.Record(path: path, status: implied)
            inodeOfPath[path] = status.inode
            return status.inode
        } catch {
            throw PathError(path: archivePath, reason: "cannot build the layer index: \(path.description): \(error)")
        }
    }

    /// Creates empty file `name`, replacing what was there (a later entry wins).
    private mutating func makeFile(_ name: FileName, in parent: FileDescriptor, path: RelativePath) throws(PathError)
        -> UInt64
    {
        do {
            if let status = try parent.statusIfPresent(of: name) {
                if status.type == .directory {
                    let child = try parent.open(name, flags: O_RDONLY | O_DIRECTORY)
                    removeContents(of: child)
                    try name.withCString { (cName) throws(Errno) in
                        _ = try valueOrErrno { unlinkat(parent.rawValue, cName, AT_REMOVEDIR) }
                    }
                } else {
                    // A fresh inode: the old one may belong to a hard-link group.
                    try name.withCString { (cName) throws(Errno) in
                        _ = try valueOrErrno { unlinkat(parent.rawValue, cName, 0) }
                    }
                }
                records[status.inode] = nil
            }
            let file = try parent.open(name, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
            return try file.status().inode
        } catch {
            throw PathError(path: archivePath, reason: "cannot build the layer index: \(path.description): \(error)")
        }
    }

    func checkIsLayer() throws(PathError) { try layout.check(archivePath) }

    func finish() -> [UInt64: ArchiveLayerIndex.Record] {
        guard !groupSizes.isEmpty else { return records }
        var result = records
        for (inode, record) in records where record.status.type != .directory {
            if let size = groupSizes[record.status.inode] { result[inode]?.status.linkCount = size }
        }
        return result
    }
}

/// Tells an image archive (`docker save` output, an OCI image layout) from a layer tarball by its
/// top-level names: `manifest.json`, `oci-layout`, `index.json` or `repositories` with blobs or
/// `*/layer.tar` and nothing that looks like a root file system.
struct ArchiveLayout {
    private var sawImageMetadata = false
    private var sawBlobs = false
    private var sawLayerEntry = false

    /// Notes one entry's path.
    mutating func note(_ path: RelativePath) {
        guard let first = path.components.first?.description else { return }
        if path.components.count == 1 && ["manifest.json", "oci-layout", "index.json", "repositories"].contains(first) {
            sawImageMetadata = true
        } else if first == "blobs" {
            sawBlobs = true
        } else if path.components.count > 1 && path.components.last?.description == "layer.tar" {
            sawBlobs = true
        } else {
            sawLayerEntry = true
        }
    }

    /// Throws when the entries seen make an image archive.
    func check(_ archivePath: String) throws(PathError) {
        if sawImageMetadata && (sawBlobs || !sawLayerEntry) {
            throw PathError(
                path: archivePath,
                reason: "not a layer: this is an image archive (docker save or OCI image layout); "
                    + "give one of its layer blobs instead")
        }
    }
}
