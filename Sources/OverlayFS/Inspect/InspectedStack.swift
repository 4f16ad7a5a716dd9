import Glibc
import LayerCore

/// A layer stack opened for the inspect commands: directory layers as they are, OCI layer
/// tarballs (any compression) as an index (see ``ArchiveLayerIndex``).
///
/// Everything the commands read goes through the ``Resolver`` over ``stack``, so the merged view is
/// by construction the one the mount serves. For a tarball layer, `stack` holds a skeleton
/// directory that mirrors the archive's structure (directories as directories, every other entry
/// as an empty file, whiteout and opaque markers as OCI names); the real metadata and content
/// hashes of its entries come from the index, looked up by the skeleton file's inode
/// (``status(of:in:)``).
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
        /// The path as given, for messages and output.
        public var path: String
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
    /// Entries of extracted tarballs that could not be created (devices without root).
    public let extractionSkipped: [String]

    /// Opens `paths` (bottom first) as layers: directories are used in place, regular files are read
    /// as OCI layer tarballs.
    ///
    /// - Parameters:
    ///   - paths: the layers, bottom first.
    ///   - format: the whiteout format of directory layers (tarball layers are always OCI).
    ///   - hashArchiveContent: whether to hash tarball entries' content (XXH3-128) while
    ///     indexing, for ``MergedPath/report(_:hashContent:)`` and ``WastedFile/sameContentAsHider``;
    ///     otherwise data is skipped.
    ///   - extractArchives: extract tarball layers (content and metadata) into the scratch
    ///     directory instead of indexing them, for commands that copy content (``Flattener``).
    /// - Throws: ``PathError`` naming the layer: missing, unreadable, neither a directory nor a
    ///   layer tarball.
    public init(
        paths: [String], format: WhiteoutFormat, hashArchiveContent: Bool = true, extractArchives: Bool = false
    ) throws(PathError) {
        guard !paths.isEmpty else { throw PathError(path: "", reason: "no layers given") }
        var infos: [LayerInfo] = []
        var opened: [Layer] = []
        var scratch: ScratchDirectory?
        var skipped: [String] = []
        do throws(PathError) {
            for (position, path) in paths.enumerated() {
                let index = LayerIndex(position)
                // A symlink given on the command line is followed, as for any command-line path.
                var status = stat()
                if stat(path, &status) != 0 { throw PathError(path: path, errno: .current, what: "layer") }
                let type = FileType(mode: UInt32(status.st_mode))
                switch type {
                case .directory:
                    opened.append(try Layer(index: index, path: path, format: format))
                    infos.append(LayerInfo(index: index, path: path, kind: .directory, format: format))
                case .regular:
                    if scratch == nil { scratch = try ScratchDirectory(holdsContent: extractArchives) }
                    guard let scratch else { throw PathError(path: path, reason: "no scratch directory") }
                    let skeleton = scratch.path + "/layer\(position + 1)"
                    if extractArchives {
                        let (compression, missed) = try ArchiveExtraction.extract(path, into: skeleton)
                        skipped += missed.map { "\(path): \($0)" }
                        opened.append(try Layer(index: index, path: skeleton, format: .oci))
                        infos.append(
                            LayerInfo(index: index, path: path, kind: .archive(compression: compression), format: .oci))
                        continue
                    }
                    let archive = try ArchiveLayerIndex(
                        archivePath: path, skeletonPath: skeleton, hashContent: hashArchiveContent)
                    opened.append(try Layer(index: index, path: skeleton, format: .oci))
                    infos.append(
                        LayerInfo(
                            index: index, path: path, kind: .archive(compression: archive.compression),
                            format: .oci, archive: archive))
                default:
                    throw PathError(
                        path: path, reason: "not a layer: a \(type) is neither a layer directory nor a layer tarball")
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
        extractionSkipped = skipped
    }

    /// Removes the tarball skeletons. Call once when done; the stack must not be used afterwards.
    public func close() { scratch?.remove() }

    /// The layer at `index`.
    public subscript(index: LayerIndex) -> LayerInfo { layers[index.rawValue] }

    /// Whether any layer is a tarball.
    public var hasArchives: Bool { layers.contains { $0.archive != nil } }

    /// The real status of an entry whose status in the resolver's layer is `status`: the same for
    /// a directory layer, the archive's record for a tarball layer.
    public func status(of status: FileStatus, in layer: LayerIndex) -> FileStatus {
        guard let archive = layers[layer.rawValue].archive else { return status }
        return archive.record(forSkeletonInode: status.inode)?.status ?? status
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

/// A private directory for skeletons and extractions, under `$TMPDIR`; without it, skeletons
/// (empty files only) go to /dev/shm when it is a writable directory (tmpfs: several times faster
/// to build and remove than a journalled disk), extracted content to /var/tmp.
final class ScratchDirectory: Sendable {
    let path: String

    init(holdsContent: Bool) throws(PathError) {
        var base = "/var/tmp"
        if let tmp = getenv("TMPDIR").map({ String(cString: $0) }), !tmp.isEmpty {
            base = tmp
        } else if !holdsContent, access("/dev/shm", W_OK | X_OK) == 0 {
            var status = stat()
            if stat("/dev/shm", &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR { base = "/dev/shm" }
        }
        var template = Array("\(base)/layermount-inspect.XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> Bool in
            guard let pointer = buffer.baseAddress else { return false }
            return mkdtemp(pointer) != nil
        }
        guard made else { throw PathError(path: base, errno: .current, what: "scratch directory") }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        ScratchRegistry.shared.register(path)
    }

    /// Removes the directory and everything in it (never following symlinks).
    func remove() {
        removeTree(path)
        ScratchRegistry.shared.unregister(path)
    }
}
