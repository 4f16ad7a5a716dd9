import Glibc
import LayerCore

/// Where `flatten` writes the merged tree.
public enum FlattenTarget: Sendable, Equatable {
    /// A plain directory (created, or an existing empty one).
    case directory(CommandLinePath)
    /// An OCI layer tarball with this compression (replaced atomically when it exists).
    case archive(CommandLinePath, ArchiveCompression)

    /// The target a `--to` value names: a tarball for names ending in `.tar`, `.tar.gz`, `.tgz`,
    /// `.tar.zst`, `.tzst`, `.tar.zstd`; a directory otherwise (see ``unsupportedSuffix(of:)``
    /// for names that are neither).
    public init(_ path: CommandLinePath) {
        let name = String(decoding: path.lastComponent, as: UTF8.self)
        if let compression = ArchiveCompression(fileName: name) {
            self = .archive(path, compression)
        } else {
            self = .directory(path)
        }
    }

    /// The target a `--to` string names (see ``init(_:)-(CommandLinePath)``).
    public init(_ path: String) { self.init(CommandLinePath(path)) }

    /// The path given.
    public var path: CommandLinePath {
        switch self {
        case .directory(let path), .archive(let path, _): path
        }
    }

    /// Compression suffixes `flatten` cannot write; a `--to` name ending in one (`.tar.xz`,
    /// `.txz`, `.bz2`, a bare `.gz`) is a usage error rather than a directory of that name.
    static let unwritableSuffixes = [
        ".tar.xz", ".txz", ".tar.bz2", ".tar.bzip2", ".tbz", ".tbz2", ".tb2", ".tar.lz4", ".tar.lz", ".tlz",
        ".tar.lzma", ".tar.lzo", ".tar.z", ".taz", ".tar.br", ".tar.sz", ".xz", ".bz2", ".lz4", ".lz", ".lzma",
        ".lzo", ".gz", ".zst", ".zstd", ".br", ".sz",
    ]

    /// The archive-looking suffix of `path` that `flatten` cannot write, if it has one.
    public static func unsupportedSuffix(of path: CommandLinePath) -> String? {
        let name = String(decoding: path.lastComponent, as: UTF8.self).lowercased()
        if ArchiveCompression(fileName: name) != nil { return nil }
        return unwritableSuffixes.first { name.hasSuffix($0) && name.count > $0.count }
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
/// are one inode in a layer stay hard links (whatever the type: a hard link to a symlink stays
/// one); a merged directory gets its top layer's metadata.
///
/// Nothing partial is left: a tarball is written to `NAME.partial-XXXXXX` next to the target and
/// renamed over it at the end; a directory is built in a hidden `.layermount-partial-XXXXXX`
/// directory inside the destination (created when missing) and its entries are moved up at the
/// end. On a failure or a signal the partial output is removed (and a destination directory
/// `flatten` created itself), so the destination is either complete or as it was.
public enum Flattener {
    /// Flattens `stack` (which must hold content: tarball layers read with
    /// `keepArchiveContent`, see ``InspectedStack/init(layers:format:hashArchiveContent:keepArchiveContent:)``)
    /// to `target`.
    ///
    /// - Throws: ``PathError`` naming the layer that could not be read or the output path that
    ///   could not be written; ``Interruption/error`` when stopped. Either way nothing partial is
    ///   left behind.
    public static func flatten(_ stack: InspectedStack, to target: FlattenTarget) throws(PathError) -> FlattenSummary {
        try refuseTargetInsideLayers(stack, target)
        switch target {
        case .directory(let path):
            let destination = try DirectoryTarget(path, stack: stack)
            do throws(PathError) {
                var writer = DirectoryWriter(stack: stack, root: destination.temporary, rootPath: path.description)
                try walk(stack, &writer)
                try Interruption.shared.check()
                try destination.commit(root: try rootSource(stack), topLevel: writer.topLevelDirectories)
                return writer.summary
            } catch {
                destination.discard()
                throw error
            }
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
    static func rootSource(_ stack: InspectedStack) throws(PathError) -> MadeMetadata {
        let top = stack.stack[stack.stack.topIndex]
        do {
            let status = stack.status(of: try top.root.status(), in: top.index)
            let attributes = try stack.attributes(ofDirectory: LayerDirectory(layer: top.index, descriptor: top.root))
            return MadeMetadata(status, attributes: attributes)
        } catch {
            throw PathError(path: stack.layers[top.index.rawValue].path, errno: error, what: "layer")
        }
    }

    /// Refuses a target inside one of the layers (the walk would read what it writes) or equal
    /// to a layer tarball.
    private static func refuseTargetInsideLayers(_ stack: InspectedStack, _ target: FlattenTarget) throws(PathError) {
        var roots: [FileIdentity: Int] = [:]
        for layer in stack.layers {
            if let status = try? layer.pathBytes.status() { roots[status.identity] = layer.index.rawValue }
        }
        if let status = try? target.path.status(), let layer = roots[status.identity] {
            throw PathError(target.path, reason: "the destination is layer \(layer + 1) itself")
        }
        // Walk up to the root from the destination directory (followed if it is a symlink), or
        // from its parent when it does not exist yet or is a file.
        let start =
            (try? target.path.open(flags: O_RDONLY | O_DIRECTORY))
            ?? (try? target.path.parent.open(flags: O_RDONLY | O_DIRECTORY))
        guard var directory = start else { return }
        for _ in 0..<4096 {
            guard let current = try? directory.status() else { return }
            if let layer = roots[current.identity] {
                throw PathError(target.path, reason: "the destination is inside layer \(layer + 1)")
            }
            guard let parent = try? directory.open(FileName(unchecked: [0x2E, 0x2E]), flags: O_RDONLY | O_DIRECTORY),
                let up = try? parent.status(), up.identity != current.identity
            else { return }
            directory = parent
        }
    }

    private static func writeArchive(_ stack: InspectedStack, path: CommandLinePath, compression: ArchiveCompression)
        throws(PathError) -> FlattenSummary
    {
        let display = path.description
        if let status = try? path.status(), status.type == .directory {
            throw PathError(path: display, reason: "the destination is a directory; a tarball name cannot be one")
        }
        // A temporary file next to the target, renamed over it once complete.
        let made: (CommandLinePath, FileDescriptor)
        do {
            made = try path.makeTemporarySibling()
        } catch {
            throw PathError.writing(display, error)
        }
        let (temporary, output) = made
        CleanupRegistry.shared.register(temporary)
        var finished = false
        defer {
            if !finished { temporary.unlinkFile() }
            CleanupRegistry.shared.unregister(temporary)
        }
        let writer: ArchiveWriter
        do {
            writer = try ArchiveWriter(output: output, compression: compression)
        } catch {
            throw PathError(path: display, reason: "cannot write the archive: \(error)")
        }
        var archive = ArchiveFlattener(stack: stack, writer: writer, path: display)
        try archive.writeRoot()
        try walk(stack, &archive)
        var summary = archive.summary
        do {
            summary.archive = try writer.finish()
        } catch {
            if let errno = error.errno { throw PathError.writing(display, errno) }
            throw PathError(path: display, reason: "cannot write the archive: \(error)")
        }
        _ = fchmod(output.rawValue, 0o644 & ~currentUmask())
        if fsync(output.rawValue) != 0 { throw PathError.writing(display, .current) }
        try Interruption.shared.check()
        do {
            try temporary.rename(to: path)
        } catch {
            throw PathError.writing(display, error)
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

/// A directory destination being built: the destination (created when missing), and the hidden
/// directory inside it that receives the tree until ``commit(root:topLevel:)`` moves it up.
private struct DirectoryTarget {
    let path: CommandLinePath
    let destination: FileDescriptor
    let temporary: FileDescriptor
    let temporaryName: FileName
    /// Whether `flatten` created the destination (then a failure removes it).
    let created: Bool

    /// Opens (or creates) the destination, which must be empty, and makes the hidden directory.
    init(_ path: CommandLinePath, stack: InspectedStack) throws(PathError) {
        self.path = path
        let display = path.description
        var created = false
        do {
            try path.makeDirectory(mode: 0o700)
            created = true
        } catch .exists {
        } catch {
            throw PathError.writing(display, error)
        }
        if created { CleanupRegistry.shared.register(path) }
        let opened: (FileDescriptor, FileDescriptor, FileName)
        do {
            opened = try Self.prepare(path, stack: stack)
        } catch {
            if created { Self.removeCreated(path) }
            throw error
        }
        (destination, temporary, temporaryName) = opened
        self.created = created
        if !created { CleanupRegistry.shared.register(path.appending(component: temporaryName)) }
    }

    /// Opens the destination directory, checks it is empty, and makes the hidden directory in it
    /// under a name no entry of the merged root has.
    private static func prepare(_ path: CommandLinePath, stack: InspectedStack) throws(PathError)
        -> (FileDescriptor, FileDescriptor, FileName)
    {
        let display = path.description
        let destination: FileDescriptor
        do {
            destination = try path.open(flags: O_RDONLY | O_DIRECTORY)
            let reader = try destination.open(FileName(unchecked: [0x2E]), flags: O_RDONLY | O_DIRECTORY)
            if try !DirectoryReader.entries(of: reader).isEmpty {
                throw PathError(path: display, reason: "the destination directory is not empty")
            }
        } catch let error as PathError {
            throw error
        } catch let error as Errno {
            if error == .notDirectory {
                throw PathError(path: display, reason: "the destination exists and is not a directory", errno: error)
            }
            throw PathError.writing(display, error)
        } catch {
            throw PathError(path: display, reason: "\(error)")
        }
        let roots: [LayerDirectory]
        do {
            roots = try stack.resolver.rootDirectories()
        } catch {
            throw PathError(path: stack.layers[0].path, errno: error, what: "layer")
        }
        var attempts = 0
        while true {
            attempts += 1
            let random = UInt64.random(in: 0...UInt64.max)
            let name = FileName(unchecked: Array(".layermount-partial-\(String(random, radix: 16))".utf8))
            if let result = try? stack.resolver.lookup(name, in: roots), case .absent = result {
                do {
                    return (destination, try TreeMaker.makeDirectory(name, in: destination), name)
                } catch {
                    if error != .exists || attempts > 100 { throw PathError.writing(display, error) }
                }
            } else if attempts > 100 {
                throw PathError(path: display, reason: "cannot name a temporary directory in it")
            }
        }
    }

    private static func removeCreated(_ path: CommandLinePath) {
        removeTree(path)
        CleanupRegistry.shared.unregister(path)
    }

    /// Moves the built tree into the destination, gives the destination the merged root's
    /// metadata (last: its time changes as entries are added) and restores the times of the
    /// moved directories (a move to another parent rewrites their `..`).
    func commit(root: MadeMetadata, topLevel: [(FileName, MadeMetadata)]) throws(PathError) {
        let display = path.description
        do {
            let reader = try temporary.open(FileName(unchecked: [0x2E]), flags: O_RDONLY | O_DIRECTORY)
            for entry in try DirectoryReader.entries(of: reader) {
                try entry.name.withCString { (cName) throws(Errno) in
                    _ = try valueOrErrno { renameat(temporary.rawValue, cName, destination.rawValue, cName) }
                }
            }
            try temporaryName.withCString { (cName) throws(Errno) in
                _ = try valueOrErrno { unlinkat(destination.rawValue, cName, AT_REMOVEDIR) }
            }
            for (name, metadata) in topLevel {
                try name.withCString { (cName) throws(Errno) in
                    var times = [metadata.accessTime.timespec, metadata.modificationTime.timespec]
                    _ = try valueOrErrno { utimensat(destination.rawValue, cName, &times, AT_SYMLINK_NOFOLLOW) }
                }
            }
            try TreeMaker.apply(root, to: destination, setTime: true)
        } catch {
            throw PathError.writing(display, error)
        }
        CleanupRegistry.shared.unregister(created ? path : path.appending(component: temporaryName))
    }

    /// Removes what was built (and the destination when `flatten` created it).
    func discard() {
        removeEntry(temporaryName, in: destination)
        if created {
            Self.removeCreated(path)
        } else {
            CleanupRegistry.shared.unregister(path.appending(component: temporaryName))
        }
    }
}

/// A hard-link group of the merged tree: one inode, whichever layers its names come from (the
/// kernel overlay and the mount show names of one inode in two layers as one file too). Tarball
/// entries are identified by their skeleton file, unique in the stack.
private struct LinkKey: Hashable {
    var identity: FileIdentity
}

/// Writes the walk into a directory.
private struct DirectoryWriter: StackVisitor {
    let stack: InspectedStack
    let root: FileDescriptor
    let rootPath: String
    var summary = FlattenSummary()
    /// The directories written at the top, with their metadata (their times are set again once
    /// they are moved into the destination).
    var topLevelDirectories: [(FileName, MadeMetadata)] = []
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
        if error == .interrupted && Interruption.shared.isRequested { return Interruption.error }
        return PathError.writing(rootPath + entry.displayPath, error, what: "destination entry")
    }

    private func sourceFailure(_ entry: WalkEntry, _ error: Errno) -> PathError {
        stack.sourceFailure(entry, error)
    }

    /// Links `entry` to the earlier name of its inode, if there is one.
    private func linkToEarlierName(_ entry: WalkEntry, in parent: FileDescriptor) throws(PathError) -> Bool {
        guard entry.status.linkCount > 1, let first = links[LinkKey(identity: entry.status.identity)] else {
            return false
        }
        do throws(Errno) {
            guard let firstName = first.lastName else { throw Errno.invalidArgument }
            let firstParent = try root.open(beneath: first.parent, flags: O_RDONLY | O_DIRECTORY)
            try TreeMaker.link(entry.name, in: parent, to: firstName, in: firstParent)
        } catch {
            throw failure(entry, error)
        }
        return true
    }

    private mutating func noteName(_ entry: WalkEntry) {
        if entry.status.linkCount > 1 {
            links[LinkKey(identity: entry.status.identity)] = entry.parent.relativePath.appending(entry.name)
        }
    }

    mutating func visit(_ entry: WalkEntry) throws(PathError) -> Bool {
        try Interruption.shared.check()
        guard let parent = directories.last?.0 else { return false }
        let status = entry.status
        switch status.type {
        case .directory:
            let attributes: [ExtendedAttribute]
            do {
                if let top = entry.directories.first {
                    attributes = try stack.attributes(ofDirectory: top)
                } else {
                    attributes = []
                }
            } catch {
                throw sourceFailure(entry, error)
            }
            let metadata = MadeMetadata(status, attributes: attributes)
            do {
                let made = try TreeMaker.makeDirectory(entry.name, in: parent)
                directories.append((made, metadata))
            } catch {
                throw failure(entry, error)
            }
            if entry.parent.isRoot { topLevelDirectories.append((entry.name, metadata)) }
            summary.directories += 1
            return true
        case .regular:
            summary.files += 1
            if try linkToEarlierName(entry, in: parent) {
                summary.hardLinks += 1
                return true
            }
            let source: FileDescriptor
            let attributes: [ExtendedAttribute]
            do {
                source = try entry.openContent()
                attributes = try stack.attributes(
                    of: entry.name, status: entry.resolvedStatus, in: entry.container, layer: entry.layer)
            } catch {
                throw sourceFailure(entry, error)
            }
            do {
                let file = try TreeMaker.createFile(entry.name, in: parent)
                try source.copyContentsInterruptibly(to: file, size: status.size)
                try TreeMaker.apply(MadeMetadata(status, attributes: attributes), to: file, setTime: true)
            } catch {
                throw failure(entry, error)
            }
            summary.bytes += status.size
            noteName(entry)
            return true
        default:
            if try linkToEarlierName(entry, in: parent) {
                if status.type == .symlink { summary.symlinks += 1 } else { summary.specials += 1 }
                summary.hardLinks += 1
                return true
            }
            let (target, attributes) = try stack.sourceOfSpecial(entry, type: status.type)
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
            noteName(entry)
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
        if let errno = error.errno, errno != .interrupted { return PathError.writing(path, errno) }
        return PathError(path: path, reason: "cannot write the archive: \(error)")
    }

    private func sourceFailure(_ entry: WalkEntry, _ error: Errno) -> PathError {
        stack.sourceFailure(entry, error)
    }

    /// The `./` entry, with the merged root's metadata.
    func writeRoot() throws(PathError) {
        let root = try Flattener.rootSource(stack)
        do {
            try writer.writeHeader(
                ArchiveEntry(
                    path: ArchiveEntry.storedPath(.root, isDirectory: true), kind: .directory,
                    permissions: root.permissions, userID: root.userID, groupID: root.groupID,
                    modificationTime: root.modificationTime, extendedAttributes: root.attributes.sorted()))
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

    /// Writes `entry` as a hard link to the earlier name of its inode, if there is one.
    private mutating func linkToEarlierName(_ entry: WalkEntry, _ relative: RelativePath) throws -> Bool {
        guard entry.status.linkCount > 1, let first = links[LinkKey(identity: entry.status.identity)] else {
            return false
        }
        try writer.writeHeader(
            header(for: relative, status: entry.status, attributes: [], kind: .hardLink, linkTarget: first))
        summary.hardLinks += 1
        return true
    }

    private mutating func noteName(_ entry: WalkEntry, _ relative: RelativePath) {
        if entry.status.linkCount > 1 {
            links[LinkKey(identity: entry.status.identity)] = ArchiveEntry.storedPath(relative, isDirectory: false)
        }
    }

    mutating func visit(_ entry: WalkEntry) throws(PathError) -> Bool {
        try Interruption.shared.check()
        let status = entry.status
        let relative = entry.parent.relativePath.appending(entry.name)
        do {
            switch status.type {
            case .directory:
                let attributes: [ExtendedAttribute]
                do {
                    if let top = entry.directories.first {
                        attributes = try stack.attributes(ofDirectory: top)
                    } else {
                        attributes = []
                    }
                } catch {
                    throw sourceFailure(entry, error)
                }
                try writer.writeHeader(header(for: relative, status: status, attributes: attributes, kind: .directory))
                summary.directories += 1
            case .regular:
                summary.files += 1
                if try linkToEarlierName(entry, relative) { return true }
                let source: FileDescriptor
                let attributes: [ExtendedAttribute]
                do {
                    source = try entry.openContent()
                    attributes = try stack.attributes(
                        of: entry.name, status: entry.resolvedStatus, in: entry.container, layer: entry.layer)
                } catch {
                    throw sourceFailure(entry, error)
                }
                try writer.writeHeader(header(for: relative, status: status, attributes: attributes, kind: .regular))
                try copy(source, size: status.size, entry: entry)
                summary.bytes += status.size
                noteName(entry, relative)
            case .socket, .unknown:
                summary.skipped.append("\(entry.displayPath): a tar archive cannot hold a \(status.type)")
            default:
                if try linkToEarlierName(entry, relative) {
                    if status.type == .symlink { summary.symlinks += 1 } else { summary.specials += 1 }
                    return true
                }
                let (target, attributes) = try stack.sourceOfSpecial(entry, type: status.type)
                guard let kind = ArchiveEntry.Kind(status.type) else { return true }
                try writer.writeHeader(
                    header(for: relative, status: status, attributes: attributes, kind: kind, linkTarget: target))
                if status.type == .symlink { summary.symlinks += 1 } else { summary.specials += 1 }
                noteName(entry, relative)
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
    private func copy(_ source: FileDescriptor, size: Int64, entry: WalkEntry) throws {
        let capacity = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while offset < size {
            try Interruption.shared.check()
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

extension InspectedStack {
    /// The error of reading `entry` from its layer (or the interruption that stopped the read).
    fileprivate func sourceFailure(_ entry: WalkEntry, _ error: Errno) -> PathError {
        if error == .interrupted && Interruption.shared.isRequested { return Interruption.error }
        return PathError(path: displayPath(entry.displayPath, in: entry.layer), errno: error, what: "entry")
    }

    /// What flatten reads of a non-regular entry: its link target (symlinks; empty otherwise) and
    /// its extended attributes.
    fileprivate func sourceOfSpecial(_ entry: WalkEntry, type: FileType) throws(PathError)
        -> (target: [UInt8], attributes: [ExtendedAttribute])
    {
        do {
            let target =
                type == .symlink
                ? try linkTarget(of: entry.name, status: entry.resolvedStatus, in: entry.container, layer: entry.layer)
                : []
            let attributes = try attributes(
                of: entry.name, status: entry.resolvedStatus, in: entry.container, layer: entry.layer)
            return (target, attributes)
        } catch {
            throw sourceFailure(entry, error)
        }
    }
}
