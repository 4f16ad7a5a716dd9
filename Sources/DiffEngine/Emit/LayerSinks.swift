import Glibc
import LayerCore

/// What the emitter writes to a layer at one path.
enum LayerWrite {
    /// The B entry; a hard link to the earlier path when given.
    case entry(SideEntry, hardLinkTo: RelativePath?)
    /// A whiteout deleting the path (the time is the parent's B mtime).
    case whiteout(Timestamp)
    /// An opaque marker on the directory at the path (the time is its B mtime).
    case opaque(Timestamp)
}

/// Where a changeset goes: an OCI tarball or a layer directory.
protocol LayerSink: AnyObject {
    /// Writes one item. Items come in layer order (a directory before its contents, markers
    /// before siblings).
    func write(_ path: RelativePath, _ item: LayerWrite) throws(DiffError)
    /// Completes the layer.
    func finish() throws(DiffError)
    /// Whether any xattr name is stored as it is (see ``TarLayerSink``).
    var storesAnyAttributeName: Bool { get }
}

extension LayerSink {
    var storesAnyAttributeName: Bool { true }
}

/// Reads the content of a queued B regular file for a layer writer: reopens its directory from
/// its side's root by path (no symlinks, beneath the root; the last directory is cached),
/// checks it is the inode that was compared and that it still has the size examined.
final class ContentReader {
    private let roots: [Side: FileDescriptor]
    private let readers: [Side: SideReader]
    private let buffer: UnsafeMutableRawBufferPointer
    private var cached: (side: Side, path: RelativePath, directory: FileDescriptor)?
    private let cancellation: DiffCancellation?

    init(roots: [Side: FileDescriptor], readers: [Side: SideReader], cancellation: DiffCancellation? = nil) {
        self.roots = roots
        self.readers = readers
        self.cancellation = cancellation
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
    }

    deinit { buffer.deallocate() }

    /// `root/path` on the entry's side, for messages.
    func display(_ entry: SideEntry, _ path: RelativePath) -> String {
        readers[entry.side]?.display(path) ?? path.description
    }

    /// Calls `body` with successive chunks of `entry`'s content (at `path`), exactly
    /// `entry.status.size` bytes in all.
    ///
    /// - Throws: ``DiffError`` naming the file.
    func read(_ entry: SideEntry, at path: RelativePath, _ body: (UnsafeRawBufferPointer) throws(DiffError) -> Void)
        throws(DiffError)
    {
        let shown = display(entry, path)
        let directory = try parent(entry.side, path.parent, shown)
        let file = try ContentComparison.open(entry.name, in: directory, expecting: entry.status.identity, shown)
        let size = entry.status.size
        var offset: Int64 = 0
        while offset < size {
            try cancellation?.check()
            let want = Int(min(Int64(buffer.count), size - offset))
            let count = try ContentComparison.read(file, into: buffer, count: want, at: offset, shown)
            if count == 0 { throw DiffError(path: shown, reason: "shrank while the diff ran") }
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            offset += Int64(count)
        }
    }

    private func parent(_ side: Side, _ path: RelativePath, _ shown: String) throws(DiffError) -> FileDescriptor {
        if let cached, cached.side == side, cached.path == path { return cached.directory }
        guard let root = roots[side] else { throw DiffError(path: shown, reason: "internal error: no root") }
        do {
            let directory = path.isRoot ? root : try root.open(beneath: path, flags: O_RDONLY | O_DIRECTORY)
            cached = (side, path, directory)
            return directory
        } catch {
            throw DiffError(path: shown, "cannot open its directory", error)
        }
    }
}

/// Writes the changeset as an OCI layer tarball through LayerCore's ``ArchiveWriter``.
final class TarLayerSink: LayerSink {
    /// libarchive writes an xattr name with a byte outside `!`...`~`, `%` or `=` URL-encoded in
    /// its `SCHILY.xattr.` record (`user.a b` as `user.a%20b`), which every reader, libarchive
    /// included, takes as the name: such a file cannot be stored (see
    /// ``Emitter/isStorableInTar(attributeName:)``).
    var storesAnyAttributeName: Bool { false }

    private let writer: ArchiveWriter
    private let clamp: Int64?
    private let content: ContentReader
    private let display: (RelativePath) -> String
    private let output: String
    /// The digests, after ``finish()``.
    private(set) var result: ArchiveSummary?

    /// A sink writing to `writer`, the tarball named `output` (for messages); mtimes after
    /// `clamp` (seconds) become `clamp`.
    init(
        writer: ArchiveWriter, output: String, clamp: Int64?, content: ContentReader,
        display: @escaping (RelativePath) -> String
    ) {
        self.writer = writer
        self.output = output
        self.clamp = clamp
        self.content = content
        self.display = display
    }

    func write(_ path: RelativePath, _ item: LayerWrite) throws(DiffError) {
        switch item {
        case .entry(let entry, let linkTo):
            try writeEntry(path, entry, linkTo: linkTo)
        case .whiteout(let time):
            guard let name = path.lastName else { return }
            let whiteout = path.parent.appending(FileName(unchecked: Whiteout.ociPrefix + name.bytes))
            try header(marker(whiteout, time), path)
        case .opaque(let time):
            try header(marker(path.appending(Whiteout.ociOpaqueMarker), time), path)
        }
    }

    private func marker(_ path: RelativePath, _ time: Timestamp) -> ArchiveEntry {
        ArchiveEntry(
            path: ArchiveEntry.storedPath(path, isDirectory: false), kind: .regular, permissions: 0, size: 0,
            modificationTime: EntryMetadata.clamped(time, clamp))
    }

    private func writeEntry(_ path: RelativePath, _ entry: SideEntry, linkTo: RelativePath?) throws(DiffError) {
        let metadata = EntryMetadata(entry, clamp: clamp)
        var archived = ArchiveEntry(
            path: ArchiveEntry.storedPath(path, isDirectory: entry.isDirectory), kind: .regular,
            permissions: metadata.permissions, userID: metadata.userID, groupID: metadata.groupID,
            modificationTime: metadata.modificationTime, extendedAttributes: metadata.attributes)
        if let linkTo {
            archived.kind = .hardLink
            archived.linkTarget = linkTo.bytes
            try header(archived, path)
            return
        }
        switch entry.type {
        case .regular:
            archived.size = entry.status.size
        case .directory: archived.kind = .directory
        case .symlink:
            archived.kind = .symlink
            archived.linkTarget = entry.linkTarget
        case .characterDevice, .blockDevice:
            archived.kind = entry.type == .characterDevice ? .characterDevice : .blockDevice
            archived.deviceMajor = metadata.deviceMajor
            archived.deviceMinor = metadata.deviceMinor
        case .fifo: archived.kind = .fifo
        case .socket, .unknown:
            throw DiffError(path: display(path), reason: "a \(entry.type) cannot be stored in a layer")
        }
        try header(archived, path)
        if entry.type == .regular && entry.status.size > 0 {
            let writer = self.writer
            try content.read(entry, at: path) { (chunk) throws(DiffError) in
                do throws(ArchiveError) {
                    try writer.writeData(chunk)
                } catch {
                    throw DiffError(
                        path: output, reason: "cannot write \(display(path)): \(error.message)", errno: error.errno)
                }
            }
        }
    }

    private func header(_ entry: ArchiveEntry, _ path: RelativePath) throws(DiffError) {
        do {
            try writer.writeHeader(entry)
        } catch {
            throw DiffError(
                path: output, reason: "cannot write \(display(path)): \(error.message)", errno: error.errno)
        }
    }

    func finish() throws(DiffError) {
        do {
            result = try writer.finish()
        } catch {
            throw DiffError(path: output, reason: "cannot finish the layer: \(error.message)", errno: error.errno)
        }
    }
}

/// Writes the changeset as a layer directory that layermount (and, in the overlay format,
/// kernel overlayfs) stacks directly: entries with their exact metadata, whiteouts as `.wh.NAME`
/// files (OCI) or character devices 0/0 (overlay), opaque directories as `.wh..wh..opq` (OCI) or
/// `trusted.overlay.opaque=y` (overlay). Parents that are not changes themselves are created
/// with B's metadata. Directory mtimes are set last.
final class DirectoryLayerSink: LayerSink {
    private let root: FileDescriptor
    private let rootDisplay: String
    private let format: LayerFormat
    private let clamp: Int64?
    private let sources: [FileDescriptor]
    private let sourceReader: SideReader
    private let content: ContentReader
    private var directoryTimes: [(RelativePath, Timestamp)] = []
    /// Without root: directories stay open to their owner until ``finish()`` gives them these
    /// permissions (a read-only directory of B must be filled first).
    private var directoryModes: [RelativePath: UInt32] = [:]
    private var made = Set<RelativePath>()
    private var rootWritten = false

    /// A sink filling the empty directory `root` (named `rootDisplay`). `sources` are the roots
    /// B's directories are looked up in for parents that must be created (B, then A).
    init(
        root: FileDescriptor, rootDisplay: String, format: LayerFormat, clamp: Int64?, sources: [FileDescriptor],
        sourceReader: SideReader, content: ContentReader
    ) {
        self.root = root
        self.rootDisplay = rootDisplay
        self.format = format
        self.clamp = clamp
        self.sources = sources
        self.sourceReader = sourceReader
        self.content = content
        made.insert(.root)
    }

    private func display(_ path: RelativePath) -> String {
        path.isRoot ? rootDisplay : rootDisplay + "/" + path.description
    }

    func write(_ path: RelativePath, _ item: LayerWrite) throws(DiffError) {
        switch item {
        case .entry(let entry, let linkTo):
            if path.isRoot {
                try fail(path) { () throws(Errno) in
                    try FileMaker.apply(EntryMetadata(entry, clamp: clamp), to: root, setTime: false, ownerAccess: true)
                }
                directoryTimes.append((path, EntryMetadata(entry, clamp: clamp).modificationTime))
                noteMode(path, entry.status.permissions)
                rootWritten = true
                return
            }
            let parent = try directory(path.parent)
            guard let name = path.lastName else { return }
            if let linkTo {
                let target = try directory(linkTo.parent)
                guard let targetName = linkTo.lastName else { return }
                try fail(path) { () throws(Errno) in try FileMaker.link(name, in: parent, to: targetName, in: target) }
                return
            }
            let metadata = EntryMetadata(entry, clamp: clamp)
            if entry.type == .regular {
                do throws(MakeError<DiffError>) {
                    try FileMaker.makeFile(name, in: parent, metadata) { (writer) throws(DiffError) in
                        guard entry.status.size > 0 else { return }
                        try content.read(entry, at: path) { (chunk) throws(DiffError) in
                            do throws(Errno) {
                                try writer.write(chunk)
                            } catch {
                                throw DiffError(path: display(path), "cannot write", error)
                            }
                        }
                    }
                } catch {
                    switch error {
                    case .system(let errno): throw DiffError(path: display(path), "cannot create", errno)
                    case .fill(let inner): throw inner
                    }
                }
            } else {
                try fail(path) { () throws(Errno) in
                    try FileMaker.make(name, in: parent, metadata, ownerAccess: true)
                }
                if entry.isDirectory {
                    made.insert(path)
                    directoryTimes.append((path, metadata.modificationTime))
                    noteMode(path, metadata.permissions)
                }
            }
        case .whiteout(let time):
            let parent = try directory(path.parent)
            guard let name = path.lastName else { return }
            try fail(path) { () throws(Errno) in
                switch format {
                case .oci:
                    try FileMaker.makeMarker(try Whiteout.ociWhiteoutName(for: name), in: parent, time: time)
                case .overlay:
                    _ = try name.withCString { (cName) throws(Errno) in
                        try valueOrErrno { mknodat(parent.rawValue, cName, Glibc.S_IFCHR | 0o000, 0) }
                    }
                    try FileMaker.setTimes(of: name, in: parent, time)
                }
            }
        case .opaque(let time):
            let directory = try directory(path)
            try fail(path) { () throws(Errno) in
                switch format {
                case .oci:
                    try FileMaker.makeMarker(Whiteout.ociOpaqueMarker, in: directory, time: time)
                case .overlay:
                    try directory.setExtendedAttribute(Array("trusted.overlay.opaque".utf8), value: [0x79])
                }
            }
        }
    }

    /// The layer directory at `path`, created (with B's metadata) with its parents if missing.
    private func directory(_ path: RelativePath) throws(DiffError) -> FileDescriptor {
        if path.isRoot { return root }
        if !made.contains(path) {
            _ = try directory(path.parent)
            try makeImplied(path)
        }
        do {
            return try root.open(beneath: path, flags: O_RDONLY | O_DIRECTORY)
        } catch {
            throw DiffError(path: display(path), "cannot open directory", error)
        }
    }

    /// B's metadata for the directory at `path` (from the first source root that has it).
    private func sourceMetadata(_ path: RelativePath) throws(DiffError) -> EntryMetadata {
        var source: FileDescriptor?
        for candidate in sources {
            if let found = try? candidate.open(beneath: path, flags: O_RDONLY | O_DIRECTORY) {
                source = found
                break
            }
        }
        guard let source else {
            throw DiffError(path: display(path), reason: "parent directory not found in the trees")
        }
        let status: FileStatus
        let attributes: [ExtendedAttribute]
        do {
            status = try source.status()
            attributes = try source.extendedAttributes().filter {
                !(sourceReader.dropOverlayAttributes && Whiteout.isOverlayPrivateAttribute($0.name))
            }
        } catch {
            throw DiffError(path: display(path), "cannot examine the source directory", error)
        }
        return EntryMetadata(
            type: .directory, permissions: status.permissions, userID: status.userID, groupID: status.groupID,
            modificationTime: EntryMetadata.clamped(status.modificationTime, clamp), attributes: attributes)
    }

    /// Creates a parent directory that carries no change of its own, with B's metadata.
    private func makeImplied(_ path: RelativePath) throws(DiffError) {
        guard let name = path.lastName else { return }
        let metadata = try sourceMetadata(path)
        let parent = try directory(path.parent)
        try fail(path) { () throws(Errno) in try FileMaker.make(name, in: parent, metadata, ownerAccess: true) }
        made.insert(path)
        directoryTimes.append((path, metadata.modificationTime))
        noteMode(path, metadata.permissions)
    }

    private func noteMode(_ path: RelativePath, _ permissions: UInt32) {
        if !FileMaker.privileged { directoryModes[path] = permissions }
    }

    private func fail(_ path: RelativePath, _ body: () throws(Errno) -> Void) throws(DiffError) {
        do {
            try body()
        } catch {
            throw DiffError(path: display(path), "cannot create", error)
        }
    }

    func finish() throws(DiffError) {
        if !rootWritten {
            // A layer directory always has a root, and overlay stacking takes the top layer's root
            // attributes: give it B's, changed or not.
            let metadata = try sourceMetadata(.root)
            try fail(.root) { () throws(Errno) in
                try FileMaker.apply(metadata, to: root, setTime: false, ownerAccess: true)
            }
            directoryTimes.insert((.root, metadata.modificationTime), at: 0)
            noteMode(.root, metadata.permissions)
        }
        // Children before their parents: a directory's own permissions may keep its owner out.
        for (path, time) in directoryTimes.reversed() {
            do {
                let directory = path.isRoot ? root : try root.open(beneath: path, flags: O_RDONLY | O_DIRECTORY)
                try FileMaker.setTimes(of: directory, time)
                if let permissions = directoryModes.removeValue(forKey: path) {
                    try FileMaker.setPermissions(of: directory, permissions)
                }
            } catch {
                throw DiffError(path: display(path), "cannot set the modification time", error)
            }
        }
    }
}
