import Glibc
import LayerCore

/// A layer stack opened for the inspect commands: directory layers as they are, OCI layer
/// tarballs (any compression) as an index (see ``ArchiveLayerIndex``).
///
/// Everything the commands read goes through the ``Resolver`` over ``stack``, so the merged view is
/// by construction the one the mount serves. For a tarball layer, `stack` holds a skeleton
/// directory that mirrors the archive's structure (directories as directories, every other entry
/// as a regular file, empty or holding the content, whiteout and opaque markers as OCI names);
/// the real metadata, xattrs and content hashes of its entries come from the index, looked up by
/// the skeleton file's inode (``status(of:in:)``, ``attributes(of:status:in:layer:)``).
public final class InspectedStack: Sendable {
    /// What one layer of the stack is.
    public enum Kind: Sendable, Equatable {
        /// A layer directory.
        case directory
        /// An OCI layer tarball with the named compression (`none`, `gzip`, `zstd`, ...).
        case archive(compression: String)
    }

    /// One layer as the user gave it.
    public struct LayerInfo: Sendable {
        /// Position (0 = bottom).
        public var index: LayerIndex
        /// The path as given, in display form (``LayerCore/escapeForDisplay(_:)``), for messages
        /// and output.
        public var path: String
        /// The path's bytes.
        public var pathBytes: CommandLinePath
        /// Directory or tarball.
        public var kind: Kind
        /// The whiteout format the layer is read in.
        public var format: WhiteoutFormat
        /// For a tarball: its index.
        public var archive: ArchiveLayerIndex?
    }

    /// The layers, bottom first.
    public let layers: [LayerInfo]
    /// The stack the resolver works on (skeletons for tarball layers).
    public let stack: LayerStack
    /// The overlay policy over ``stack``.
    public let resolver: Resolver
    /// Where tarball skeletons live; removed by ``close()``.
    private let scratch: ScratchDirectory?

    /// Opens `paths` (bottom first) as layers: directories are used in place, regular files are read
    /// as OCI layer tarballs.
    ///
    /// - Parameters:
    ///   - paths: the layers, bottom first, as the command line gave them.
    ///   - format: the whiteout format of directory layers (tarball layers are always OCI).
    ///   - hashArchiveContent: whether to hash tarball entries' content (XXH3-128) while
    ///     indexing, for ``MergedPath/report(_:hashContent:)`` and ``WastedFile/sameContentAsHider``;
    ///     otherwise data is skipped.
    ///   - keepArchiveContent: store tarball entries' content in the skeletons, for commands
    ///     that copy content (``Flattener``).
    /// - Throws: ``PathError`` naming the layer: missing, unreadable, neither a directory nor a
    ///   layer tarball; ``Interruption/error`` when stopped.
    public init(
        layers paths: [CommandLinePath], format: WhiteoutFormat, hashArchiveContent: Bool = true,
        keepArchiveContent: Bool = false
    ) throws(PathError) {
        guard !paths.isEmpty else { throw PathError(path: "", reason: "no layers given") }
        var infos: [LayerInfo] = []
        var opened: [Layer] = []
        var scratch: ScratchDirectory?
        do throws(PathError) {
            for (position, path) in paths.enumerated() {
                try Interruption.shared.check()
                let index = LayerIndex(position)
                let display = path.description
                // A symlink given on the command line is followed, as for any command-line path.
                let status: FileStatus
                do {
                    status = try path.status()
                } catch {
                    throw PathError(path: display, errno: error, what: "layer")
                }
                switch status.type {
                case .directory:
                    let root: FileDescriptor
                    do {
                        root = try path.open(flags: O_RDONLY | O_DIRECTORY)
                    } catch {
                        throw PathError(path: display, errno: error, what: "layer")
                    }
                    opened.append(try Layer(index: index, path: display, root: root, format: format))
                    infos.append(
                        LayerInfo(index: index, path: display, pathBytes: path, kind: .directory, format: format))
                case .regular:
                    if scratch == nil { scratch = try ScratchDirectory(holdsContent: keepArchiveContent) }
                    guard let scratch else { throw PathError(path: display, reason: "no scratch directory") }
                    let skeleton = scratch.path.appending("/layer\(position + 1)")
                    let archive = try ArchiveLayerIndex(
                        archivePath: path, skeletonPath: skeleton, hashContent: hashArchiveContent,
                        keepContent: keepArchiveContent)
                    let root: FileDescriptor
                    do {
                        root = try skeleton.open(flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
                    } catch {
                        throw PathError(path: skeleton.description, errno: error, what: "scratch directory")
                    }
                    opened.append(try Layer(index: index, path: display, root: root, format: .oci))
                    infos.append(
                        LayerInfo(
                            index: index, path: display, pathBytes: path,
                            kind: .archive(compression: archive.compression), format: .oci, archive: archive))
                default:
                    throw PathError(
                        path: display,
                        reason: "not a layer: a \(status.type) is neither a layer directory nor a layer tarball")
                }
            }
        } catch {
            scratch?.remove()
            throw error
        }
        layers = infos
        stack = LayerStack(layers: opened)
        resolver = Resolver(stack: stack)
        self.scratch = scratch
    }

    /// Opens `paths` (strings; bottom first) as layers. See
    /// ``init(layers:format:hashArchiveContent:keepArchiveContent:)``.
    public convenience init(
        paths: [String], format: WhiteoutFormat, hashArchiveContent: Bool = true, keepArchiveContent: Bool = false
    ) throws(PathError) {
        try self.init(
            layers: paths.map(CommandLinePath.init), format: format, hashArchiveContent: hashArchiveContent,
            keepArchiveContent: keepArchiveContent)
    }

    /// Removes the tarball skeletons. Call once when done; the stack must not be used afterwards.
    public func close() { scratch?.remove() }

    /// The layer at `index`.
    public subscript(index: LayerIndex) -> LayerInfo { layers[index.rawValue] }

    /// Whether any layer is a tarball.
    public var hasArchives: Bool { layers.contains { $0.archive != nil } }

    /// The real status of an entry whose status in the resolver's layer is `status`: the same for
    /// a directory layer, the archive's record for a tarball layer (with the skeleton's link
    /// count, which is the archive's: hard links are hard links of the skeleton).
    public func status(of status: FileStatus, in layer: LayerIndex) -> FileStatus {
        guard let archive = layers[layer.rawValue].archive else { return status }
        guard var real = archive.record(forSkeletonInode: status.inode)?.status else { return status }
        real.linkCount = status.linkCount
        return real
    }

    /// The symlink target of entry `name` (with skeleton status `status`) in `directory` of
    /// `layer`.
    ///
    /// - Throws: the `readlinkat(2)` errno for a directory layer.
    public func linkTarget(
        of name: FileName, status: FileStatus, in directory: FileDescriptor, layer: LayerIndex
    ) throws(Errno) -> [UInt8] {
        if let archive = layers[layer.rawValue].archive {
            return archive.record(forSkeletonInode: status.inode)?.linkTarget ?? []
        }
        return try directory.readLink(name)
    }

    /// The extended attributes of entry `name` (skeleton status `status`) in `directory` of
    /// `layer`: read for a directory layer (not following a symlink), from the index for a
    /// tarball layer.
    ///
    /// - Throws: the errno of listing or reading the attributes.
    public func attributes(
        of name: FileName, status: FileStatus, in directory: FileDescriptor, layer: LayerIndex
    ) throws(Errno) -> [ExtendedAttribute] {
        if let archive = layers[layer.rawValue].archive {
            return archive.record(forSkeletonInode: status.inode)?.attributes ?? []
        }
        return try directory.extendedAttributes(of: name)
    }

    /// The extended attributes of the layer directory `directory` (a directory of the merged tree
    /// or a layer root).
    ///
    /// - Throws: the errno of listing or reading the attributes.
    public func attributes(ofDirectory directory: LayerDirectory) throws(Errno) -> [ExtendedAttribute] {
        if let archive = layers[directory.layer.rawValue].archive {
            return archive.record(forSkeletonInode: try directory.descriptor.status().inode)?.attributes ?? []
        }
        return try directory.descriptor.extendedAttributes()
    }

    /// The content hash of regular file `name` (skeleton status `status`) in `directory` of
    /// `layer`: read for a directory layer, from the index for a tarball layer (nil when the index
    /// was built without hashes).
    ///
    /// - Throws: the errno of opening or reading the file.
    public func contentHash(
        of name: FileName, status: FileStatus, in directory: FileDescriptor, layer: LayerIndex
    ) throws(Errno) -> ContentHash? {
        if let archive = layers[layer.rawValue].archive {
            return archive.record(forSkeletonInode: status.inode)?.contentHash
        }
        let file = try directory.open(name, flags: O_RDONLY)
        return try ContentHash.of(file: file)
    }

    /// The display path of `relative` inside layer `layer`, for messages (`LAYER/rel/path`).
    public func displayPath(_ relative: String, in layer: LayerIndex) -> String {
        let base = layers[layer.rawValue].path
        if relative.isEmpty || relative == "/" { return base }
        let trimmed = relative.hasPrefix("/") ? String(relative.dropFirst()) : relative
        return base.hasSuffix("/") ? base + trimmed : base + "/" + trimmed
    }
}
