import Glibc
import LayerCore

/// Where `flatten` writes the merged tree.
public enum FlattenTarget: Sendable, Equatable {
    /// A plain directory (created, or an existing empty one).
    case directory(String)
    /// An OCI layer tarball with this compression (replaced atomically when it exists).
    case archive(String, ArchiveCompression)

    /// The target a `--to` value names: a tarball for names ending in `.tar`, `.tar.gz`, `.tgz`,
    /// `.tar.zst`, `.tzst`; a directory otherwise.
    public init(_ path: String) {
        if let compression = ArchiveCompression(fileName: path) {
            self = .archive(path, compression)
        } else {
            self = .directory(path)
        }
    }

    /// The path given.
    public var path: String {
        switch self {
        case .directory(let path), .archive(let path, _): path
        }
    }
}

/// What `flatten` wrote.
public struct FlattenSummary: Sendable {
    /// Regular file names written.
    public var files = 0
    /// Directories written (not the root).
    public var directories = 0
    /// Symlinks written.
    public var symlinks = 0
    /// Fifos, sockets and devices written.
    public var specials = 0
    /// Names written as hard links to an earlier name.
    public var hardLinks = 0
    /// Bytes of regular files, each inode once.
    public var bytes: Int64 = 0
    /// Entries that could not be written, with the reason (devices without root, sockets in a tar).
    public var skipped: [String] = []
    /// For a tarball: its digests and size.
    public var archive: ArchiveSummary?

    /// Entries written (not the root).
    public var entries: Int { files + directories + symlinks + specials }
}

/// Writes a stack's merged tree, as the mount serves it, into a plain directory or an OCI layer
/// tarball, in bytewise path order: every visible entry with its type, mode, owner, times,
/// xattrs (overlay-private ones dropped), content, link target and device numbers; names that
/// are one inode in a layer stay hard links; a merged directory gets its top layer's metadata.
public enum Flattener {
    /// Flattens `stack` (which must hold content: tarball layers extracted, see
    /// ``InspectedStack/init(paths:format:hashArchiveContent:extractArchives:)``) to `target`.
    ///
    /// - Throws: ``PathError`` naming the layer that could not be read or the output path that
    ///   could not be written; a failed directory target keeps what was written, a failed
    ///   tarball leaves no file.
    public static func flatten(_ stack: InspectedStack, to target: FlattenTarget) throws(PathError) -> FlattenSummary {
        try refuseTargetInsideLayers(stack, target)
        switch target {
        case .directory(let path):
            let root = try openEmptyDirectory(path)
            var writer = DirectoryWriter(stack: stack, root: root, rootPath: path)
            try walk(stack, &writer)
            try writer.finishRoot()
            return writer.summary
        case .archive(let path, let compression):
            return try writeArchive(stack, path: path, compression: compression)
        }
    }

    private static func walk<V: StackVisitor>(_ stack: InspectedStack, _ visitor: inout V) throws(PathError) {
        var walker = StackWalker(stack: stack, includeHidden: false)
        walker.sortsNames = true
        try walker.walk(&visitor)
    }

    /// The top layer's root: the merged root's metadata source.
    static func rootSource(_ stack: InspectedStack) throws(PathError) -> (FileStatus, [ExtendedAttribute]) {
        let top = stack.stack[stack.stack.topIndex]
        do {
            let status = stack.status(of: try top.root.status(), in: top.index)
            return (status, try top.root.extendedAttributes())
        } catch {
            throw PathError(path: stack.layers[top.index.rawValue].path, errno: error, what: "layer")
        }
    }

    /// Refuses a target inside one of the layers (the walk would read what it writes) or equal
    /// to a layer tarball.
    private static func refuseTargetInsideLayers(_ stack: InspectedStack, _ target: FlattenTarget) throws(PathError) {
        var roots: [FileIdentity: Int] = [:]
        for layer in stack.layers {
            var status = stat()
            if stat(layer.path, &status) == 0 {
                roots[FileIdentity(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))] = layer.index.rawValue
            }
        }
        var status = stat()
        if stat(target.path, &status) == 0,
            let layer = roots[FileIdentity(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))]
        {
            throw PathError(path: target.path, reason: "the destination is layer \(layer + 1) itself")
        }
        // Walk up to the root from the destination directory (followed if it is a symlink), or
        // from its parent when it does not exist yet or is a file.
        let start =
            (try? FileDescriptor.open(path: target.path, flags: O_RDONLY | O_DIRECTORY))
            ?? (try? FileDescriptor.open(path: parentDirectory(of: target.path), flags: O_RDONLY | O_DIRECTORY))
        guard var directory = start else { return }
        for _ in 0..<4096 {
            guard let current = try? directory.status() else { return }
            if let layer = roots[current.identity] {
                throw PathError(path: target.path, reason: "the destination is inside layer \(layer + 1)")
            }
            guard let parent = try? directory.open(FileName(unchecked: [0x2E, 0x2E]), flags: O_RDONLY | O_DIRECTORY),
                let up = try? parent.status(), up.identity != current.identity
            else { return }
            directory = parent
        }
    }

    /// The directory holding `path`, lexically (`.` for a bare name).
    static func parentDirectory(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        let parent = trimmed[..<slash]
        return parent.isEmpty ? "/" : String(parent)
    }

    /// Opens the destination directory: created when missing (its parent must exist), or an
    /// existing empty directory.
    private static func openEmptyDirectory(_ path: String) throws(PathError) -> FileDescriptor {
        if mkdir(path, 0o700) != 0 && Errno.current != .exists {
            throw PathError(path: path, errno: .current, what: "destination")
        }
        do {
            let directory = try FileDescriptor.open(path: path, flags: O_RDONLY | O_DIRECTORY)
            let reader = try directory.open(FileName(unchecked: [0x2E]), flags: O_RDONLY | O_DIRECTORY)
            guard try DirectoryReader.entries(of: reader).isEmpty else {
                throw PathError(path: path, reason: "the destination directory is not empty")
            }
            return directory
        } catch let error as PathError {
            throw error
        } catch let error as Errno {
            throw PathError(path: path, errno: error, what: "destination")
        } catch {
            throw PathError(path: path, reason: "\(error)")
        }
    }

    private static func writeArchive(_ stack: InspectedStack, path: String, compression: ArchiveCompression)
        throws(PathError) -> FlattenSummary
    {
        // A temporary file next to the target, renamed over it once complete.
        var template = Array("\(path).partial-XXXXXX".utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { buffer -> CInt in
            guard let base = buffer.baseAddress else { return -1 }
            return mkstemp(base)
        }
        guard descriptor >= 0 else { throw PathError(path: path, errno: .current, what: "destination") }
        let temporary = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let output = FileDescriptor(owning: descriptor)
        var finished = false
        defer { if !finished { unlink(temporary) } }
        let writer: ArchiveWriter
        do {
            writer = try ArchiveWriter(output: output, compression: compression)
        } catch {
            throw PathError(path: path, reason: "cannot write the archive: \(error)")
        }
        var archive = ArchiveFlattener(stack: stack, writer: writer, path: path)
        try archive.writeRoot()
        try walk(stack, &archive)
        var summary = archive.summary
        do {
            summary.archive = try writer.finish()
        } catch {
            throw PathError(path: path, reason: "cannot write the archive: \(error)")
        }
        _ = fchmod(descriptor, 0o644 & ~currentUmask())
        guard fsync(descriptor) == 0, rename(temporary, path) == 0 else {
            throw PathError(path: path, errno: .current, what: "destination")
        }
        finished = true
        return summary
    }

    private static func currentUmask() -> mode_t {
        let mask = umask(0o022)
        umask(mask)
        return mask
    }
}

/// A hard-link group of the merged tree: one inode, whichever layers its names come from (the
/// kernel overlay and the mount show names of one inode in two layers as one file too).
private struct LinkKey: Hashable {
    var identity: FileIdentity
}

/// Writes the walk into a directory.
private struct DirectoryWriter: StackVisitor {
    let stack: InspectedStack
    let root: FileDescriptor
    let rootPath: String
    var summary = FlattenSummary()
    /// Open destination directories, the root first, with the metadata each gets when left.
    private var directories: [(FileDescriptor, MadeMetadata?)]
    private var links: [LinkKey: RelativePath] = [:]

    init(stack: InspectedStack, root: FileDescriptor, rootPath: String) {
        self.stack = stack
        self.root = root
        self.rootPath = rootPath
        directories = [(root, nil)]
    }

    private func failure(_ entry: WalkEntry, _ error: Errno) -> PathError {
        let relative = entry.displayPath
        return PathError(path: rootPath + relative, errno: error, what: "destination entry")
    }

    private func sourceFailure(_ entry: WalkEntry, _ error: Errno) -> PathError {
        PathError(path: stack.displayPath(entry.displayPath, in: entry.layer), errno: error, what: "entry")
    }

    mutating func visit(_ entry: WalkEntry) throws(PathError) -> Bool {
        guard let parent = directories.last?.0 else { return false }
        let status = entry.status
        switch status.type {
        case .directory:
            let attributes: [ExtendedAttribute]
            do {
                attributes = try entry.directories.first?.descriptor.extendedAttributes() ?? []
            } catch {
                throw sourceFailure(entry, error)
            }
            do {
                let made = try TreeMaker.makeDirectory(entry.name, in: parent)
                directories.append((made, MadeMetadata(status, attributes: attributes)))
            } catch {
                throw failure(entry, error)
            }
            summary.directories += 1
            return true
        case .regular:
            summary.files += 1
            let key = LinkKey(identity: status.identity)
            if status.linkCount > 1, let first = links[key] {
                do throws(Errno) {
                    guard let firstName = first.lastName else { throw Errno.invalidArgument }
                    let firstParent = try root.open(beneath: first.parent, flags: O_RDONLY | O_DIRECTORY)
                    try TreeMaker.link(entry.name, in: parent, to: firstName, in: firstParent)
                } catch {
                    throw failure(entry, error)
                }
                summary.hardLinks += 1
                return true
            }
            let source: FileDescriptor
            let attributes: [ExtendedAttribute]
            do {
                source = try entry.container.open(entry.name, flags: O_RDONLY)
                attributes = try source.extendedAttributes()
            } catch {
                throw sourceFailure(entry, error)
            }
            do {
                let file = try TreeMaker.createFile(entry.name, in: parent)
                try source.copyContents(to: file, size: status.size)
                try TreeMaker.apply(MadeMetadata(status, attributes: attributes), to: file, setTime: true)
            } catch {
                throw failure(entry, error)
            }
            summary.bytes += status.size
            if status.linkCount > 1 { links[key] = entry.parent.relativePath.appending(entry.name) }
            return true
        default:
            let target: [UInt8]
            let attributes: [ExtendedAttribute]
            do {
                target =
                    status.type == .symlink
                    ? try stack.linkTarget(
                        of: entry.name, status: entry.resolvedStatus, in: entry.container, layer: entry.layer) : []
                attributes = try entry.container.extendedAttributes(of: entry.name)
            } catch {
                throw sourceFailure(entry, error)
            }
            do {
                try TreeMaker.makeSpecial(
                    entry.name, in: parent, MadeMetadata(status, attributes: attributes, linkTarget: target))
            } catch .notPermitted where !TreeMaker.privileged && status.type != .symlink {
                summary.skipped.append("\(entry.displayPath): cannot create a \(status.type) without root")
                return true
            } catch {
                throw failure(entry, error)
            }
            if status.type == .symlink { summary.symlinks += 1 } else { summary.specials += 1 }
            return true
        }
    }

    mutating func leave(_ entry: WalkEntry) throws(PathError) {
        guard let (directory, metadata) = directories.popLast(), let metadata else { return }
        do {
            try TreeMaker.apply(metadata, to: directory, setTime: true)
        } catch {
            throw failure(entry, error)
        }
    }

    mutating func marker(_ kind: MarkerKind, layer: LayerIndex, in directory: TreePath, isHidden: Bool) {}
    mutating func opaque(layer: LayerIndex, at directory: TreePath) {}

    /// Gives the destination root the merged root's metadata (last: its time changes as entries
    /// are added).
    func finishRoot() throws(PathError) {
        let (status, attributes) = try Flattener.rootSource(stack)
        do {
            try TreeMaker.apply(MadeMetadata(status, attributes: attributes), to: root, setTime: true)
        } catch {
            throw PathError(path: rootPath, errno: error, what: "destination")
        }
    }
}

/// Writes the walk into an OCI layer tarball.
private struct ArchiveFlattener: StackVisitor {
    let stack: InspectedStack
    let writer: ArchiveWriter
    let path: String
    var summary = FlattenSummary()
    private var links: [LinkKey: [UInt8]] = [:]

    init(stack: InspectedStack, writer: ArchiveWriter, path: String) {
        self.stack = stack
        self.writer = writer
        self.path = path
    }

    private func failure(_ error: ArchiveError) -> PathError {
        PathError(path: path, reason: "cannot write the archive: \(error)")
    }

    private func sourceFailure(_ entry: WalkEntry, _ error: Errno) -> PathError {
        PathError(path: stack.displayPath(entry.displayPath, in: entry.layer), errno: error, what: "entry")
    }

    /// The `./` entry, with the merged root's metadata.
    func writeRoot() throws(PathError) {
        let (status, attributes) = try Flattener.rootSource(stack)
        do {
            try writer.writeHeader(header(for: .root, status: status, attributes: attributes, kind: .directory))
        } catch {
            throw failure(error)
        }
    }

    private func header(
        for relative: RelativePath, status: FileStatus, attributes: [ExtendedAttribute], kind: ArchiveEntry.Kind,
        linkTarget: [UInt8] = []
    ) -> ArchiveEntry {
        ArchiveEntry(
            path: ArchiveEntry.storedPath(relative, isDirectory: kind == .directory), kind: kind,
            permissions: status.permissions, userID: status.userID, groupID: status.groupID,
            size: kind == .regular ? status.size : 0, modificationTime: status.modificationTime, linkTarget: linkTarget,
            deviceMajor: status.deviceMajor, deviceMinor: status.deviceMinor,
            extendedAttributes: attributes.filter { !Whiteout.isOverlayPrivateAttribute($0.name) }.sorted())
    }

    mutating func visit(_ entry: WalkEntry) throws(PathError) -> Bool {
        let status = entry.status
        let relative = entry.parent.relativePath.appending(entry.name)
        do {
            switch status.type {
            case .directory:
                let attributes: [ExtendedAttribute]
                do {
                    attributes = try entry.directories.first?.descriptor.extendedAttributes() ?? []
                } catch {
                    throw sourceFailure(entry, error)
                }
                try writer.writeHeader(header(for: relative, status: status, attributes: attributes, kind: .directory))
                summary.directories += 1
            case .regular:
                summary.files += 1
                let key = LinkKey(identity: status.identity)
                if status.linkCount > 1, let first = links[key] {
                    try writer.writeHeader(
                        header(for: relative, status: status, attributes: [], kind: .hardLink, linkTarget: first))
                    summary.hardLinks += 1
                    return true
                }
                let source: FileDescriptor
                let attributes: [ExtendedAttribute]
                do {
                    source = try entry.container.open(entry.name, flags: O_RDONLY)
                    attributes = try source.extendedAttributes()
                } catch {
                    throw sourceFailure(entry, error)
                }
                try writer.writeHeader(header(for: relative, status: status, attributes: attributes, kind: .regular))
                try copy(source, size: status.size, entry: entry)
                summary.bytes += status.size
                if status.linkCount > 1 { links[key] = ArchiveEntry.storedPath(relative, isDirectory: false) }
            case .socket, .unknown:
                summary.skipped.append("\(entry.displayPath): a tar archive cannot hold a \(status.type)")
            default:
                let target: [UInt8]
                let attributes: [ExtendedAttribute]
                do {
                    target =
                        status.type == .symlink
                        ? try stack.linkTarget(
                            of: entry.name, status: entry.resolvedStatus, in: entry.container, layer: entry.layer) : []
                    attributes = try entry.container.extendedAttributes(of: entry.name)
                } catch {
                    throw sourceFailure(entry, error)
                }
                guard let kind = ArchiveEntry.Kind(status.type) else { return true }
                try writer.writeHeader(
                    header(for: relative, status: status, attributes: attributes, kind: kind, linkTarget: target))
                if status.type == .symlink { summary.symlinks += 1 } else { summary.specials += 1 }
            }
        } catch let error as PathError {
            throw error
        } catch let error as ArchiveError {
            throw failure(error)
        } catch {
            throw PathError(path: path, reason: "\(error)")
        }
        return true
    }

    /// Copies `size` bytes of `source` into the current entry (zeros if the file shrank).
    private func copy(_ source: FileDescriptor, size: Int64, entry: WalkEntry) throws -> Void {
        let capacity = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while offset < size {
            let wanted = Int(min(Int64(capacity), size - offset))
            let count: Int
            do {
                count = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<wanted]), at: offset)
            } catch {
                throw sourceFailure(entry, error)
            }
            if count == 0 {
                throw PathError(
                    path: stack.displayPath(entry.displayPath, in: entry.layer),
                    reason: "the file shrank while being read")
            }
            try writer.writeData(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            offset += Int64(count)
        }
    }

    mutating func leave(_ entry: WalkEntry) throws(PathError) {}
    mutating func marker(_ kind: MarkerKind, layer: LayerIndex, in directory: TreePath, isHidden: Bool) {}
    mutating func opaque(layer: LayerIndex, at directory: TreePath) {}
}
