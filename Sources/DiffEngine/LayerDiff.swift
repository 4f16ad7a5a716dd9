import Glibc
import LayerCore

/// A diff run, as a builder backend calls it: A, B (or an overlay upper dir over A), the
/// options and where the layer goes. ``run(_:)`` reports each change as it is decided, in path
/// order, and returns the totals and the layer's digests.
///
/// ```swift
/// var diff = LayerDiff(a: "rootfs-before", b: "rootfs-after")
/// diff.output = .archive("layer.tar.gz", .gzip)
/// let result = try diff.run { change in print(change.kind, change.displayPath) }
/// print(result.archive?.diffID ?? "")
/// ```
public struct LayerDiff: Sendable {
    /// Where the changeset goes besides the reported changes.
    public enum Output: Sendable {
        /// No layer: changes are only reported.
        case none
        /// An OCI layer tarball at the path, with the compression (written to a temporary file
        /// and renamed into place on success).
        case archive(String, ArchiveCompression)
        /// A layer directory at the path (created, or existing and empty), in the marker format.
        case directory(String, LayerFormat)
    }

    /// What a run returns.
    public struct Result: Sendable {
        /// Totals.
        public var summary: DiffSummary
        /// The tarball's digests, for ``Output/archive(_:_:)``.
        public var archive: ArchiveSummary?
    }

    /// The tree before.
    public var a: String
    /// The tree after, or the overlay upper dir over `a` when ``upperFormat`` is set.
    public var b: String
    /// Set when `b` is an overlay upper dir (after a build step over `a`), with its markers.
    public var upperFormat: WhiteoutFormat?
    /// Change detection and layer policy.
    public var options = DiffOptions()
    /// The layer to write.
    public var output = Output.none
    /// Mtimes later than this (seconds since the epoch) are clamped in the written layer.
    public var mtimeClamp: Int64?
    /// The compression level of a gzip (1-12, default 6) or zstd (1-19, default 3) tarball.
    public var compressionLevel: Int?
    /// Checked during the run: once requested, the run stops with ``DiffError/interrupted``
    /// and removes its partial layer.
    public var cancellation: DiffCancellation?

    /// A diff of tree `a` against tree `b`, reporting only.
    public init(a: String, b: String) {
        self.a = a
        self.b = b
    }

    /// Runs the diff, calling `onChange` for every change in path order as it is decided.
    ///
    /// - Throws: ``DiffError`` on trouble; no partial layer is left behind.
    public func run(_ onChange: (Change) -> Void = { _ in }) throws(DiffError) -> Result {
        try withoutActuallyEscaping(onChange) { (escapable) throws(DiffError) -> Result in
            try run(reporters: [ClosureReporter(escapable)], progress: nil) { (_: Result) throws(DiffError) in }
        }
    }

    /// Runs the diff with the given reporters; `beforeFinish` sees the result before the
    /// reporters' summaries are written (the CLI adds the digests to them).
    func run(
        reporters: [ChangeReporter], progress: Progress?, beforeFinish: (Result) throws(DiffError) -> Void
    ) throws(DiffError) -> Result {
        let overlay = upperFormat != nil
        let aRoot = try LayerDiff.openRoot(a, "tree")
        let bRoot = try LayerDiff.openRoot(b, overlay ? "upper dir" : "tree")
        let aReader = SideReader(side: .a, displayRoot: a, dropOverlayAttributes: overlay)
        let bReader = SideReader(side: .b, displayRoot: b, dropOverlayAttributes: overlay)
        let readers: [Side: SideReader] = [.a: aReader, .b: bReader]
        let roots: [Side: FileDescriptor] = [.a: aRoot, .b: bRoot]
        _ = FileDescriptor.raiseOpenFileLimit()
        var options = self.options
        var written: LayerOutput?
        var sink: LayerSink?
        let display = { (path: RelativePath) in bReader.display(path) }
        let content = ContentReader(roots: roots, readers: readers, cancellation: cancellation)
        switch output {
        case .none:
            options.layerFormat = nil
        case .archive(let path, let compression):
            options.layerFormat = .oci
            try LayerDiff.refuseInside(path, trees: [(aRoot, a), (bRoot, b)])
            let created = try LayerOutput.archive(path)
            written = created
            do {
                let writer = try ArchiveWriter(
                    output: created.descriptor, compression: compression, compressionLevel: compressionLevel)
                sink = TarLayerSink(
                    writer: writer, output: path, clamp: mtimeClamp, content: content, display: display)
            } catch {
                created.discard()
                throw DiffError(path: path, reason: error.message, errno: error.errno)
            }
        case .directory(let path, let format):
            options.layerFormat = format
            try LayerDiff.refuseInside(path, trees: [(aRoot, a), (bRoot, b)])
            let created = try LayerOutput.directory(path)
            written = created
            sink = DirectoryLayerSink(
                root: created.descriptor, rootDisplay: path, format: format, clamp: mtimeClamp,
                sources: [bRoot, aRoot], sourceReader: bReader, content: content)
        }
        let emitter = Emitter(
            reporters: reporters, sink: sink, format: options.layerFormat,
            skipUnrepresentable: options.skipUnrepresentable, bReader: bReader, aReader: aReader,
            ignoringMtime: options.ignoreModificationTime, cancellation: cancellation)
        let mode: DiffContext.Mode = upperFormat.map { .upper($0) } ?? .trees
        do {
            let walk = DiffWalk(
                options: options, a: aReader, b: bReader, mode: mode, emitter: emitter, progress: progress)
            try walk.run(aRoot: aRoot, bRoot: bRoot)
            try sink?.finish()
            try written?.commit()
        } catch {
            progress?.finish()
            written?.discard()
            throw error
        }
        let result = Result(summary: emitter.summary, archive: (sink as? TarLayerSink)?.result)
        try beforeFinish(result)
        try emitter.finishReporters()
        return result
    }

    /// Refuses an output at `path` whose directory lies inside one of `trees` (the layer would
    /// be part of what is being compared).
    ///
    /// - Throws: ``DiffError`` naming the output.
    static func refuseInside(_ path: String, trees: [(FileDescriptor, String)]) throws(DiffError) {
        var roots: [FileIdentity: String] = [:]
        for (descriptor, name) in trees {
            if let status = try? descriptor.status() { roots[status.identity] = name }
        }
        var start = path
        while start.count > 1 && start.hasSuffix("/") { start.removeLast() }
        if let slash = start.lastIndex(of: "/") {
            start = slash == start.startIndex ? "/" : String(start[..<slash])
        } else {
            start = "."
        }
        guard var current = try? FileDescriptor.open(path: start, flags: O_RDONLY | O_DIRECTORY) else { return }
        let up = FileName(unchecked: [0x2E, 0x2E])
        for _ in 0..<4096 {
            guard let status = try? current.status() else { return }
            if let tree = roots[status.identity] {
                throw DiffError(
                    path: path, reason: "the layer would be written inside \(tree), which is being compared")
            }
            guard let parent = try? current.open(up, flags: O_RDONLY | O_DIRECTORY),
                let parentStatus = try? parent.status(), parentStatus.identity != status.identity
            else { return }
            current = parent
        }
    }

    static func openRoot(_ path: String, _ what: String) throws(DiffError) -> FileDescriptor {
        do {
            return try FileDescriptor.open(path: path, flags: O_RDONLY | O_DIRECTORY)
        } catch {
            throw DiffError(PathError(path: path, errno: error, what: what))
        }
    }
}

/// Forwards changes to a closure.
private final class ClosureReporter: ChangeReporter {
    private let body: (Change) -> Void
    init(_ body: @escaping (Change) -> Void) { self.body = body }
    func report(_ change: Change) throws(DiffError) { body(change) }
    func finish(_ summary: DiffSummary) throws(DiffError) {}
}
