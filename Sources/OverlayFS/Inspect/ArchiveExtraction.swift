import CLayerSys
import Glibc
import LayerCore

/// Extracts an OCI layer tarball into a new directory as an OCI-format layer directory, with
/// content and metadata (for `flatten`, which copies content out of the layers).
///
/// fd-relative throughout: every parent is a directory this extraction created and is opened
/// with `O_NOFOLLOW`, so no entry (a symlink, a `..`, an absolute path) can make it write outside
/// the directory. A later entry of the same path replaces an earlier one; missing parents are
/// implied (0755, root); directory metadata is applied last, deepest first.
struct ArchiveExtraction {
    /// Entries that could not be created (device nodes without root), with the reason.
    private(set) var skipped: [String] = []
    private let archivePath: String
    private let root: FileDescriptor
    private var directories: [(RelativePath, MadeMetadata)] = []
    private var layout = ArchiveLayout()

    /// Extracts `archivePath` into the new directory `destination`.
    ///
    /// - Returns: the compression and the entries that could not be created.
    /// - Throws: ``PathError`` naming the archive (not a layer, damaged) or the file that could
    ///   not be written.
    static func extract(_ archivePath: String, into destination: String) throws(PathError)
        -> (compression: String, skipped: [String])
    {
        guard mkdir(destination, 0o700) == 0 else {
            throw PathError(path: destination, errno: .current, what: "scratch directory")
        }
        let root: FileDescriptor
        let input: FileDescriptor
        do {
            root = try FileDescriptor.open(path: destination, flags: O_RDONLY | O_DIRECTORY)
            input = try FileDescriptor.open(path: archivePath, flags: O_RDONLY)
        } catch {
            throw PathError(path: archivePath, errno: error, what: "layer")
        }
        var extraction = ArchiveExtraction(archivePath: archivePath, root: root)
        let reader: ArchiveReader
        do {
            reader = try ArchiveReader(input: input)
        } catch {
            throw PathError(path: archivePath, reason: "not a layer: neither a directory nor a tar archive (\(error))")
        }
        var count = 0
        do {
            while let entry = try reader.next() {
                count += 1
                try extraction.add(entry, reader: reader)
            }
        } catch let error as PathError {
            throw error
        } catch {
            let reason = count == 0 ? "not a layer: neither a directory nor a tar archive" : "damaged layer tarball"
            throw PathError(path: archivePath, reason: "\(reason) (\(error))")
        }
        try extraction.layout.check(archivePath)
        try extraction.finishDirectories()
        return (reader.compression?.rawValue ?? "other", extraction.skipped)
    }

    private init(archivePath: String, root: FileDescriptor) {
        self.archivePath = archivePath
        self.root = root
    }

    private func failure(_ path: RelativePath, _ error: Errno) -> PathError {
        PathError(path: archivePath, reason: "cannot extract \(path.description): \(error)")
    }

    private func metadata(_ entry: ArchiveEntry) -> MadeMetadata {
        var status = stat()
        status.st_mode = mode_t(entry.kind.fileType.modeBits | entry.permissions)
        status.st_uid = uid_t(entry.userID)
        status.st_gid = gid_t(entry.groupID)
        status.st_mtim = entry.modificationTime.timespec
        status.st_atim = entry.modificationTime.timespec
        status.st_rdev = cls_makedev(entry.deviceMajor, entry.deviceMinor)
        return MadeMetadata(
            FileStatus(status), attributes: entry.extendedAttributes,
            linkTarget: entry.kind == .symlink ? entry.linkTarget : [])
    }

    private mutating func add(_ entry: ArchiveEntry, reader: ArchiveReader) throws(PathError) {
        let path: RelativePath
        do {
            path = try entry.normalizedPath()
        } catch {
            throw PathError(path: archivePath, reason: "not a layer: entry \(escapeForDisplay(entry.path)): \(error)")
        }
        layout.note(path)
        let made = metadata(entry)
        guard let name = path.lastName else {
            if entry.kind == .directory { directories.append((.root, made)) }
            return
        }
        let parent = try makeParents(path)
        do throws(Errno) {
            if let existing = try parent.statusIfPresent(of: name) {
                // A later entry replaces an earlier one; a directory stays when both are.
                if existing.type == .directory && entry.kind == .directory {
                    directories.append((path, made))
                    return
                }
                try remove(name, existing, in: parent)
            }
        } catch {
            throw failure(path, error)
        }
        switch entry.kind {
        case .directory:
            do {
                _ = try TreeMaker.makeDirectory(name, in: parent)
            } catch {
                throw failure(path, error)
            }
            directories.append((path, made))
        case .regular:
            try extractFile(name, in: parent, path: path, size: entry.size, made, reader: reader)
        case .hardLink:
            try extractLink(name, in: parent, path: path, target: entry.linkTarget)
        case .symlink, .fifo, .characterDevice, .blockDevice:
            do {
                try TreeMaker.makeSpecial(name, in: parent, made)
            } catch .notPermitted where !TreeMaker.privileged && entry.kind != .symlink {
                skipped.append("\(path.absoluteDisplay): cannot create a \(entry.kind) without root")
            } catch {
                throw failure(path, error)
            }
        }
    }

    private func extractFile(
        _ name: FileName, in parent: FileDescriptor, path: RelativePath, size: Int64, _ made: MadeMetadata,
        reader: ArchiveReader
    ) throws(PathError) {
        let file: FileDescriptor
        do {
            file = try TreeMaker.createFile(name, in: parent)
        } catch {
            throw failure(path, error)
        }
        while true {
            let block: (bytes: UnsafeRawBufferPointer, offset: Int64)?
            do {
                block = try reader.readBlock()
            } catch {
                throw PathError(path: archivePath, reason: "damaged layer tarball (\(error))")
            }
            guard let block else { break }
            do {
                try Self.write(block.bytes, to: file, at: block.offset)
            } catch {
                throw failure(path, error)
            }
        }
        do {
            _ = try valueOrErrno { ftruncate(file.rawValue, off_t(size)) }
            try TreeMaker.apply(made, to: file, setTime: true)
        } catch {
            throw failure(path, error)
        }
    }

    private static func write(_ bytes: UnsafeRawBufferPointer, to file: FileDescriptor, at offset: Int64)
        throws(Errno)
    {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let start = done
            let written = try valueOrErrno {
                pwrite(file.rawValue, base + start, bytes.count - start, off_t(offset) + off_t(start))
            }
            done += written
        }
    }

    private func extractLink(_ name: FileName, in parent: FileDescriptor, path: RelativePath, target raw: [UInt8])
        throws(PathError)
    {
        let target: RelativePath
        do {
            target = try ArchiveEntry.normalize(raw)
        } catch {
            throw PathError(
                path: archivePath, reason: "not a layer: entry \(path.description): hard link target: \(error)")
        }
        guard let targetName = target.lastName,
            let targetParent = try? root.open(beneath: target.parent, flags: O_RDONLY | O_DIRECTORY),
            let status = try? targetParent.statusIfPresent(of: targetName), status.type != .directory
        else {
            throw PathError(
                path: archivePath,
                reason: "not a layer: entry \(path.description): hard link to \(target.description), "
                    + "which is not an earlier file")
        }
        do {
            try TreeMaker.link(name, in: parent, to: targetName, in: targetParent)
        } catch {
            throw failure(path, error)
        }
    }

    private func remove(_ name: FileName, _ status: FileStatus, in parent: FileDescriptor) throws(Errno) {
        if status.type == .directory {
            let child = try parent.open(name, flags: O_RDONLY | O_DIRECTORY)
            removeContents(of: child)
            _ = try name.withCString { (cName) throws(Errno) in
                try valueOrErrno { unlinkat(parent.rawValue, cName, AT_REMOVEDIR) }
            }
        } else {
            _ = try name.withCString { (cName) throws(Errno) in try valueOrErrno { unlinkat(parent.rawValue, cName, 0) }
            }
        }
    }

    /// Opens (creating as needed) the directory holding `path`; every parent must be a real
    /// directory.
    private mutating func makeParents(_ path: RelativePath) throws(PathError) -> FileDescriptor {
        var directory = root
        var current = RelativePath.root
        for name in path.components.dropLast() {
            current = current.appending(name)
            let existing: FileStatus?
            do {
                existing = try directory.statusIfPresent(of: name)
            } catch {
                throw failure(current, error)
            }
            if let existing, existing.type != .directory {
                throw PathError(
                    path: archivePath,
                    reason:
                        "not a layer: entry \(path.description): its parent \(current.description) is not a directory")
            }
            do {
                if existing != nil {
                    directory = try directory.open(name, flags: O_RDONLY | O_DIRECTORY)
                } else {
                    directory = try TreeMaker.makeDirectory(name, in: directory)
                    var implied = stat()
                    implied.st_mode = mode_t(FileType.directory.modeBits | 0o755)
                    directories.append((current, MadeMetadata(FileStatus(implied), attributes: [])))
                }
            } catch {
                throw failure(current, error)
            }
        }
        return directory
    }

    /// Applies directory metadata, deepest first (the last record of a path wins).
    private func finishDirectories() throws(PathError) {
        var latest: [RelativePath: MadeMetadata] = [:]
        for (path, metadata) in directories { latest[path] = metadata }
        for path in latest.keys.sorted(by: { $0.components.count > $1.components.count }) {
            guard let metadata = latest[path] else { continue }
            do {
                let directory = try root.open(beneath: path, flags: O_RDONLY | O_DIRECTORY)
                try TreeMaker.apply(metadata, to: directory, setTime: true)
            } catch {
                throw failure(path, error)
            }
        }
    }
}
