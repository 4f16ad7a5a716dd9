import Glibc
import LayerCore

/// What one layer holds, adds, hides and wastes (see ``StackReport``).
///
/// Bytes are the apparent sizes of regular files, each inode counted once per layer (hard links
/// within a layer share their bytes; the same file in two layers counts in each, as two layer
/// tarballs would store it). Directories, symlinks, devices and markers count as entries with no
/// bytes. Entry counts exclude the layer's root directory.
public struct LayerFigures: Sendable, Equatable {
    /// Regular file names (each hard-link name counts).
    public var files = 0
    /// Directories.
    public var directories = 0
    /// Symbolic links.
    public var symlinks = 0
    /// Fifos, sockets, device nodes (not whiteouts).
    public var specials = 0
    /// Hard-link names beyond the first name of an inode.
    public var extraHardLinks = 0
    /// Bytes stored: regular files, each inode once.
    public var bytes: Int64 = 0
    /// Whiteouts (OCI `.wh.NAME` files, overlay char 0/0 devices).
    public var whiteouts = 0
    /// Opaque directories (overlay xattr or OCI `.wh..wh..opq`; never the layer root).
    public var opaqueDirectories = 0
    /// Entries of this layer visible in the merged tree (a directory merged from several layers
    /// counts in each).
    public var visibleEntries = 0
    /// Bytes of this layer visible in the merged tree.
    public var visibleBytes: Int64 = 0
    /// Entries of this layer that upper layers make invisible.
    public var deadEntries = 0
    /// Bytes of this layer that upper layers make invisible (dead weight): inodes none of whose
    /// names is visible.
    public var deadBytes: Int64 = 0
    /// Lower entries this layer hides by holding a newer entry at the same path.
    public var shadowedEntries = 0
    /// Bytes of lower files this layer shadows.
    public var shadowedBytes: Int64 = 0
    /// Lower entries this layer deletes (whiteouts, opaque directories, a non-directory over a
    /// directory).
    public var deletedEntries = 0
    /// Bytes of lower files this layer deletes.
    public var deletedBytes: Int64 = 0

    /// All entries the layer holds (files, directories, symlinks, specials; not markers).
    public var entries: Int { files + directories + symlinks + specials }

    /// Adds `other` field by field.
    public mutating func add(_ other: LayerFigures) {
        files += other.files
        directories += other.directories
        symlinks += other.symlinks
        specials += other.specials
        extraHardLinks += other.extraHardLinks
        bytes += other.bytes
        whiteouts += other.whiteouts
        opaqueDirectories += other.opaqueDirectories
        visibleEntries += other.visibleEntries
        visibleBytes += other.visibleBytes
        deadEntries += other.deadEntries
        deadBytes += other.deadBytes
        shadowedEntries += other.shadowedEntries
        shadowedBytes += other.shadowedBytes
        deletedEntries += other.deletedEntries
        deletedBytes += other.deletedBytes
    }
}

/// The merged tree's size.
public struct MergedFigures: Sendable, Equatable {
    /// Regular file names.
    public var files = 0
    /// Directories (not the root).
    public var directories = 0
    /// Symbolic links.
    public var symlinks = 0
    /// Fifos, sockets, device nodes.
    public var specials = 0
    /// Bytes visible: regular files, each inode once (names of one inode in two layers too).
    public var bytes: Int64 = 0

    /// All entries (not the root).
    public var entries: Int { files + directories + symlinks + specials }
}

/// A file that takes space in a layer but is not visible in the merged tree.
public struct WastedFile: Sendable, Equatable {
    /// Its path for display (one of its names, for a hard-linked file).
    public var path: String
    /// The same path as names.
    public var relativePath: RelativePath
    /// The layer storing it.
    public var layer: LayerIndex
    /// Its size.
    public var size: Int64
    /// Which upper layer hides it first, and how.
    public var hiding: Hiding
    /// For a shadowed file: whether the hiding layer's version has the same content (a
    /// metadata-only change, such as chmod, copied the whole file up); nil when not known (not
    /// shadowed, or the newer version is not a regular file).
    public var sameContentAsHider: Bool?
}

/// The result of `layermount inspect`: per layer what it holds, adds, hides and wastes; totals;
/// the merged tree; the stack's efficiency; the largest wasted files.
public struct StackReport: Sendable {
    /// Per layer, bottom first.
    public var layers: [LayerFigures]
    /// The merged tree.
    public var merged = MergedFigures()
    /// The largest wasted files, largest first.
    public var wasted: [WastedFile] = []

    /// The sum over all layers.
    public var total: LayerFigures {
        var sum = LayerFigures()
        for figures in layers { sum.add(figures) }
        return sum
    }

    /// Bytes visible in the merged tree / bytes stored in all layers; nil when the layers store
    /// no bytes.
    public var efficiency: Double? {
        let stored = total.bytes
        return stored == 0 ? nil : Double(merged.bytes) / Double(stored)
    }

    /// Computes the report for `stack`, keeping the `top` largest wasted files.
    ///
    /// - Parameter workers: threads walking the layers (the result does not depend on it).
    /// - Throws: ``PathError`` naming what could not be read.
    public static func compute(_ stack: InspectedStack, top: Int, workers: Int = defaultWorkers) throws(PathError)
        -> StackReport
    {
        var accumulator = ReportAccumulator(layerCount: stack.layers.count, top: top)
        let walker = StackWalker(stack: stack, includeHidden: true, checksOpacity: true)
        try walker.walkInParallel(&accumulator, workers: workers)
        if accumulator.metRedirect {
            // A redirect lets the walk meet a layer entry at two merged paths (a renamed
            // directory's contents at the new name and, hidden, at the old one): walk again,
            // keeping each layer entry once. Stacks without redirects are walked once.
            accumulator = ReportAccumulator(layerCount: stack.layers.count, top: top, keepsEntries: true)
            try walker.walkInParallel(&accumulator, workers: workers)
        }
        var report = accumulator.finish()
        for index in report.wasted.indices where report.wasted[index].hiding.isShadowing {
            report.wasted[index].sameContentAsHider = sameContent(report.wasted[index], stack)
        }
        return report
    }

    /// Whether a shadowed file and the hiding layer's version at the same path hold the same
    /// bytes (XXH3-128 of both, after comparing sizes); nil when either cannot be read.
    static func sameContent(_ file: WastedFile, _ stack: InspectedStack) -> Bool? {
        guard let name = file.relativePath.lastName else { return nil }
        var hashes: [ContentHash] = []
        for layer in [file.layer, file.hiding.layer] {
            guard
                let parent = try? stack.stack[layer].root.open(
                    beneath: file.relativePath.parent, flags: O_RDONLY | O_DIRECTORY),
                let status = try? parent.status(of: name), stack.status(of: status, in: layer).type == .regular
            else { return nil }
            if stack.status(of: status, in: layer).size != file.size { return false }
            guard let hash = try? stack.contentHash(of: name, status: status, in: parent, layer: layer) else {
                return nil
            }
            hashes.append(hash)
        }
        return hashes[0] == hashes[1]
    }

    /// Worker threads for a walk: the online CPUs, at most 8 (metadata walks stop scaling early).
    public static var defaultWorkers: Int {
        let online = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return max(1, min(8, online))
    }
}

/// Collects a ``StackReport`` during a walk; forks and merges for a parallel walk.
struct ReportAccumulator: ParallelStackVisitor {
    private struct InodeKey: Hashable, Sendable {
        var layer: Int
        var identity: FileIdentity
    }

    /// A hard-linked inode of a layer: its bytes count once, and it is dead only when no name
    /// of it is visible (then the layer hiding its last name gets the bytes).
    private struct InodeState: Sendable {
        var size: Int64
        var names = 0
        var visibleNames = 0
        var lastHiding: Hiding?
        var path: String
        var relativePath = RelativePath.root

        /// Records a hidden name: the inode's attribution follows the name hidden last (ties: the
        /// smallest path), so it does not depend on walk order.
        mutating func hide(_ hiding: Hiding, path name: String, relative: RelativePath) {
            if let last = lastHiding, last.layer > hiding.layer || (last.layer == hiding.layer && path <= name) {
                return
            }
            lastHiding = hiding
            path = name
            relativePath = relative
        }

        mutating func merge(_ other: InodeState) {
            names += other.names
            visibleNames += other.visibleNames
            if let hiding = other.lastHiding { hide(hiding, path: other.path, relative: other.relativePath) }
        }
    }

    /// A layer entry met at one merged path or more (kept when ``keepsEntries``).
    private struct EntryKey: Hashable, Sendable {
        var layer: Int
        var path: RelativePath
    }

    /// What the walk met of one layer entry: visible when any meeting is; else hidden by the
    /// layer hiding it last, as a shadowing when that layer shadows it at one of its paths (a
    /// redirect's new name) and deletes it at another (the old name's whiteout), so that the
    /// answer does not depend on which path a worker met first.
    private struct EntryState: Sendable {
        var type: FileType
        var status: FileStatus
        var isMetacopy: Bool
        var visible: Bool
        var hiding: Hiding?

        mutating func meet(visible other: Bool, hiding: Hiding?) {
            if other { visible = true }
            guard let hiding else { return }
            if let current = self.hiding,
                current.layer > hiding.layer || (current.layer == hiding.layer && current.isShadowing)
            {
                return
            }
            self.hiding = hiding
        }
    }

    private var report: StackReport
    private var inodes: [InodeKey: InodeState] = [:]
    private let top: Int
    /// Whether each layer entry is kept by its layer path and counted once in ``finish()`` (for
    /// stacks with redirects); otherwise counted as met, each once by construction.
    private let keepsEntries: Bool
    private var entries: [EntryKey: EntryState] = [:]
    /// The merged tree's hard-linked inodes met so far (with ``keepsEntries``).
    private var mergedLinked = Set<FileIdentity>()
    /// Whether the walk followed a redirect (then entries must be kept: see ``keepsEntries``).
    private(set) var metRedirect = false

    init(layerCount: Int, top: Int, keepsEntries: Bool = false) {
        report = StackReport(layers: Array(repeating: LayerFigures(), count: layerCount))
        self.top = top
        self.keepsEntries = keepsEntries
    }

    func fork() -> ReportAccumulator {
        ReportAccumulator(layerCount: report.layers.count, top: top, keepsEntries: keepsEntries)
    }

    mutating func merge(_ other: ReportAccumulator) {
        metRedirect = metRedirect || other.metRedirect
        mergedLinked.formUnion(other.mergedLinked)
        for (key, state) in other.entries {
            if var mine = entries[key] {
                mine.meet(visible: state.visible, hiding: state.hiding)
                entries[key] = mine
            } else {
                entries[key] = state
            }
        }
        for (index, figures) in other.report.layers.enumerated() { report.layers[index].add(figures) }
        report.merged.files += other.report.merged.files
        report.merged.directories += other.report.merged.directories
        report.merged.symlinks += other.report.merged.symlinks
        report.merged.specials += other.report.merged.specials
        report.merged.bytes += other.report.merged.bytes
        for file in other.report.wasted { insertWasted(file) }
        for (key, state) in other.inodes {
            if var mine = inodes[key] {
                mine.merge(state)
                inodes[key] = mine
            } else {
                inodes[key] = state
            }
        }
    }

    mutating func marker(_ kind: MarkerKind, layer: LayerIndex, in directory: TreePath, isHidden: Bool) {
        if case .whiteout = kind { report.layers[layer.rawValue].whiteouts += 1 }
    }

    mutating func opaque(layer: LayerIndex, at directory: TreePath) {
        report.layers[layer.rawValue].opaqueDirectories += 1
    }

    mutating func leave(_ entry: WalkEntry) throws(PathError) {}

    mutating func visit(_ entry: WalkEntry) throws(PathError) -> Bool {
        if entry.followedRedirect { metRedirect = true }
        if keepsEntries {
            keep(entry)
            return true
        }
        let type = entry.status.type
        if entry.isDirectory {
            let layers = entry.layers
            for layer in layers { report.layers[layer.rawValue].directories += 1 }
            if let hiding = entry.hiding {
                for layer in layers { report.layers[layer.rawValue].deadEntries += 1 }
                count(hiding, entries: layers.count, bytes: 0)
            } else {
                for layer in layers { report.layers[layer.rawValue].visibleEntries += 1 }
                report.merged.directories += 1
            }
            return true
        }
        let layer = entry.layer.rawValue
        switch type {
        case .regular: report.layers[layer].files += 1
        case .symlink: report.layers[layer].symlinks += 1
        default: report.layers[layer].specials += 1
        }
        if let hiding = entry.hiding {
            report.layers[layer].deadEntries += 1
            count(hiding, entries: 1, bytes: 0)
        } else {
            report.layers[layer].visibleEntries += 1
            if !entry.isDataFile { countMerged(entry) }
        }
        guard type == .regular else { return true }
        let size = entry.status.size
        if entry.isMetacopy {
            // Metadata only: the data (and its bytes) are the lower data file's.
            if entry.hiding == nil { report.merged.bytes += size }
            return true
        }
        if entry.status.linkCount <= 1 {
            report.layers[layer].bytes += size
            if let hiding = entry.hiding {
                dead(
                    size: size, layer: entry.layer, hiding: hiding,
                    path: { (entry.displayPath, entry.parent.relativePath.appending(entry.name)) })
            } else {
                report.layers[layer].visibleBytes += size
                if !entry.isDataFile { report.merged.bytes += size }
            }
            return true
        }
        let key = InodeKey(layer: layer, identity: entry.status.identity)
        var state = inodes[key] ?? InodeState(size: size, path: "")
        state.names += 1
        if let hiding = entry.hiding {
            state.hide(hiding, path: entry.displayPath, relative: entry.parent.relativePath.appending(entry.name))
        } else {
            state.visibleNames += 1
        }
        inodes[key] = state
        return true
    }

    /// Counts a visible entry of the merged tree (not its bytes).
    private mutating func countMerged(_ entry: WalkEntry) {
        switch entry.status.type {
        case .directory: report.merged.directories += 1
        case .regular: report.merged.files += 1
        case .symlink: report.merged.symlinks += 1
        default: report.merged.specials += 1
        }
    }

    /// Records a met entry by its path in each of its layers (and a metacopy file's data file by
    /// its path), so that ``finish()`` counts each once; counts the merged tree as met.
    private mutating func keep(_ entry: WalkEntry) {
        if entry.hiding == nil && !entry.isDataFile {
            countMerged(entry)
            if entry.status.type == .regular {
                if entry.status.linkCount <= 1 {
                    report.merged.bytes += entry.status.size
                } else if mergedLinked.insert(entry.status.identity).inserted {
                    report.merged.bytes += entry.status.size
                }
            }
        }
        for layer in entry.layers {
            // For the lower directories of a merged one only the type counts.
            meet(
                EntryKey(layer: layer.rawValue, path: entry.layerPath(in: layer)), status: entry.status,
                isMetacopy: entry.isMetacopy, hiding: entry.hiding)
        }
        if let data = entry.data, data.path != nil, let path = entry.dataPath {
            // Renamed metacopy file: its data file is met here, at another path of its layer.
            meet(
                EntryKey(layer: data.layer.rawValue, path: path), status: data.status, isMetacopy: false,
                hiding: entry.hiding)
        }
    }

    private mutating func meet(_ key: EntryKey, status: FileStatus, isMetacopy: Bool, hiding: Hiding?) {
        if var state = entries[key] {
            state.meet(visible: hiding == nil, hiding: hiding)
            entries[key] = state
        } else {
            entries[key] = EntryState(
                type: status.type, status: status, isMetacopy: isMetacopy, visible: hiding == nil, hiding: hiding)
        }
    }

    /// Counts the kept entries: each layer entry once, visible when any meeting was.
    private mutating func settleEntries() {
        let keys = entries.keys.sorted { ($0.layer, $0.path) < ($1.layer, $1.path) }
        for key in keys {
            guard let state = entries[key] else { continue }
            let layer = key.layer
            switch state.type {
            case .directory: report.layers[layer].directories += 1
            case .regular: report.layers[layer].files += 1
            case .symlink: report.layers[layer].symlinks += 1
            default: report.layers[layer].specials += 1
            }
            let hiding = state.visible ? nil : state.hiding
            if let hiding {
                report.layers[layer].deadEntries += 1
                count(hiding, entries: 1, bytes: 0)
            } else {
                report.layers[layer].visibleEntries += 1
            }
            guard state.type == .regular, !state.isMetacopy else { continue }
            let inodeKey = InodeKey(layer: layer, identity: state.status.identity)
            var inode = inodes[inodeKey] ?? InodeState(size: state.status.size, path: "")
            inode.names += 1
            if let hiding {
                inode.hide(hiding, path: key.path.absoluteDisplay, relative: key.path)
            } else {
                inode.visibleNames += 1
            }
            inodes[inodeKey] = inode
        }
        entries = [:]
    }

    private mutating func count(_ hiding: Hiding, entries: Int, bytes: Int64) {
        if hiding.isShadowing {
            report.layers[hiding.layer.rawValue].shadowedEntries += entries
            report.layers[hiding.layer.rawValue].shadowedBytes += bytes
        } else {
            report.layers[hiding.layer.rawValue].deletedEntries += entries
            report.layers[hiding.layer.rawValue].deletedBytes += bytes
        }
    }

    private mutating func dead(
        size: Int64, layer: LayerIndex, hiding: Hiding, path: () -> (String, RelativePath)
    ) {
        report.layers[layer.rawValue].deadBytes += size
        count(hiding, entries: 0, bytes: size)
        guard top > 0, size > 0 else { return }
        if report.wasted.count >= top, let smallest = report.wasted.last, smallest.size > size { return }
        let (display, relative) = path()
        insertWasted(WastedFile(path: display, relativePath: relative, layer: layer, size: size, hiding: hiding))
    }

    /// Keeps the `top` largest, largest first, ties by path, then by layer (bottom first): one
    /// order whatever the walk order, which parallel workers do not keep.
    private mutating func insertWasted(_ file: WastedFile) {
        let position =
            report.wasted.firstIndex {
                ($0.size, file.path, file.layer.rawValue) < (file.size, $0.path, $0.layer.rawValue)
            } ?? report.wasted.count
        guard position < top else { return }
        report.wasted.insert(file, at: position)
        if report.wasted.count > top { report.wasted.removeLast() }
    }

    /// The report, once every worker's part is merged: hard-linked inodes are settled here.
    mutating func finish() -> StackReport {
        if keepsEntries { settleEntries() }
        let keys = inodes.keys.sorted { ($0.layer, $0.identity.inode) < ($1.layer, $1.identity.inode) }
        // The merged tree holds each inode once, even when two layers hold names of it (layers
        // made with `cp -al` share inodes; the kernel overlay shows them as one file).
        var mergedInodes = Set<FileIdentity>()
        for key in keys {
            guard let state = inodes[key] else { continue }
            report.layers[key.layer].bytes += state.size
            report.layers[key.layer].extraHardLinks += state.names - 1
            if state.visibleNames > 0 {
                report.layers[key.layer].visibleBytes += state.size
                if !keepsEntries && mergedInodes.insert(key.identity).inserted { report.merged.bytes += state.size }
            } else if let hiding = state.lastHiding {
                dead(
                    size: state.size, layer: LayerIndex(key.layer), hiding: hiding,
                    path: { (state.path, state.relativePath) })
            }
        }
        inodes = [:]
        return report
    }
}
