import Glibc
import LayerCore

/// Why an entry of a layer is not in the merged tree.
public struct Hiding: Sendable, Hashable {
    /// The lowest layer above the entry that hides it (the first one to make it invisible).
    public var layer: LayerIndex
    /// Whether that layer holds an entry at the same path (a newer version: the entry is
    /// *shadowed*); false when it *deletes* the path: a whiteout of it or of a parent, an opaque
    /// directory above it, or a non-directory where it has a parent directory.
    public var isShadowing: Bool

    /// A reason from its parts.
    public init(layer: LayerIndex, isShadowing: Bool) {
        self.layer = layer
        self.isShadowing = isShadowing
    }
}

/// One entry met by ``StackWalker``: a name of the merged tree, or (with hidden entries included)
/// a version of a name that upper layers make invisible.
public struct WalkEntry {
    /// The entry's name.
    public var name: FileName
    /// The directory holding it.
    public var parent: TreePath
    /// The layer providing it (for a directory: the top of the layers that make it up).
    public var layer: LayerIndex
    /// The real status of the entry in `layer` (for a tarball layer: the archive's record).
    public var status: FileStatus
    /// The status as the resolver saw it (for a tarball layer: the skeleton file's).
    public var resolvedStatus: FileStatus
    /// For a directory: the layer directories that make it up, top first. Empty otherwise.
    public var directories: [LayerDirectory]
    /// The directory of `layer` that holds the entry (to read a link target or content).
    public var container: FileDescriptor
    /// For a metacopy file (metadata only): the lower file holding its data.
    public var data: DataFile?
    /// Nil when the entry is in the merged tree; otherwise why not.
    public var hiding: Hiding?
    /// The layers whose directory of ``parent`` is at another path in the layer (reached through
    /// a redirect), with that path. Empty in a stack without redirects.
    public var layerParents: [LayerIndex: TreePath] = [:]
    /// The resolver's redirects for this entry (see ``ResolvedEntry/redirects``).
    public var redirects: [LayerIndex: LayerPath] = [:]
    /// Whether this is the lower file holding the data of a metacopy version of the same path
    /// (reported right after it, with its visibility): it is not a name of the merged tree.
    public var isDataFile = false

    /// Whether this is a metacopy file (metadata only: it stores no data bytes).
    public var isMetacopy: Bool { data != nil }

    /// Whether reaching this entry (or its data) followed a redirect: then a layer entry can be
    /// met at more than one merged path.
    public var followedRedirect: Bool { !redirects.isEmpty || !layerParents.isEmpty || data?.path != nil }

    /// The entry's path in `layer` (one of ``layers``): its merged path unless a redirect moved it.
    public func layerPath(in layer: LayerIndex) -> RelativePath {
        StackWalker.layerPath(of: name, redirect: redirects[layer], in: layer, parents: layerParents, parent: parent)
            .relativePath
    }

    /// The path of the data file of a metacopy entry in its layer.
    public var dataPath: RelativePath? {
        guard let data else { return nil }
        return StackWalker.layerPath(
            of: name, redirect: data.path, in: data.layer, parents: layerParents, parent: parent
        )
        .relativePath
    }

    /// Opens the file holding the entry's content: its own, or a metacopy file's data file.
    ///
    /// - Throws: the `openat(2)` errno.
    public func openContent() throws(Errno) -> FileDescriptor {
        if let data { return try data.container.open(data.name, flags: O_RDONLY) }
        return try container.open(name, flags: O_RDONLY)
    }

    /// Whether this is a directory.
    public var isDirectory: Bool { resolvedStatus.type == .directory }

    /// The layers holding this entry: for a directory all the layers that make it up, top first.
    public var layers: [LayerIndex] { directories.isEmpty ? [layer] : directories.map(\.layer) }

    /// The display path (`/usr/bin/python3`).
    public var displayPath: String { parent.display(appending: name) }
}

/// A whiteout or opaque marker held by a layer directory.
public enum MarkerKind: Sendable, Hashable {
    /// A whiteout deleting `name` (OCI `.wh.NAME` or an overlay char 0/0 device).
    case whiteout(FileName)
    /// An OCI `.wh..wh..opq` marker.
    case opaqueMarker
    /// Another OCI `.wh..wh.` metadata name (never shown, no meaning).
    case meta
}

/// What a walk of the stack reports to.
public protocol StackVisitor {
    /// Called for every entry, a directory before its contents.
    ///
    /// - Returns: whether to descend into it (ignored for non-directories).
    /// - Throws: ``PathError`` to stop the walk.
    mutating func visit(_ entry: WalkEntry) throws(PathError) -> Bool
    /// Called after the contents of a directory that ``visit(_:)`` descended into.
    ///
    /// - Throws: ``PathError`` to stop the walk.
    mutating func leave(_ entry: WalkEntry) throws(PathError)
    /// Called for every whiteout or opaque marker, in `layer`'s directory at `directory`.
    mutating func marker(_ kind: MarkerKind, layer: LayerIndex, in directory: TreePath, isHidden: Bool)
    /// Called once for every opaque directory of a layer (when the walker checks opacity).
    mutating func opaque(layer: LayerIndex, at directory: TreePath)
}

/// Walks a stack's merged tree with the ``Resolver``'s lookup, so that what it reports as visible is
/// exactly what the mount serves; optionally also every version the merged tree hides, each with
/// the lowest upper layer that hides it.
///
/// Each layer directory is listed once. Every name of a merged directory is looked up with
/// ``Resolver/lookup(_:in:)`` over the layer directories that make the merged directory up; the
/// lookup returns the visible entry (a non-directory, or the layer directories that merge into a
/// directory) and where the merge stops. For hidden versions the walker repeats the lookup over
/// the layers below that point: each further result is a version that upper layers hide, and the
/// layer where the previous lookup stopped is the lowest one hiding it. A hidden directory is
/// walked the same way, as a merge of the layers below its hider, so an entry inside it is
/// attributed to an intermediate layer when one hides it first.
public struct StackWalker: Sendable {
    /// The stack.
    public let stack: InspectedStack
    /// Whether to report hidden versions too (inspect); false walks only the merged tree.
    public var includeHidden: Bool
    /// Whether each directory's names are visited in bytewise order (for reproducible output);
    /// otherwise in layer order, then the file systems' order.
    public var sortsNames = false
    /// The pool of a parallel walk (``walkInParallel(_:workers:)``), nil for a serial one.
    var pool: WalkPool?
    /// Whether to report opaque layer directories to ``StackVisitor/opaque(layer:at:)`` (one
    /// xattr read per merged directory for overlay-format layers).
    public var checksOpacity: Bool

    /// A walker over `stack`.
    public init(stack: InspectedStack, includeHidden: Bool, checksOpacity: Bool = false) {
        self.stack = stack
        self.includeHidden = includeHidden
        self.checksOpacity = checksOpacity
    }

    /// Where a hidden walk's hider stands, to tell shadowed entries from deleted ones: the hider
    /// layer and its directory at the current path (nil when it has none).
    struct HiderContext: Sendable {
        var layer: LayerIndex
        var directory: FileDescriptor?

        func holds(_ name: FileName, format: WhiteoutFormat) -> Bool {
            guard let directory else { return false }
            if format.honorsOCI && Whiteout.ociMarker(for: name) != nil { return false }
            guard let status = try? directory.statusIfPresent(of: name) else { return false }
            guard format.honorsOverlay else { return true }
            return (try? Resolver.isOverlayWhiteout(name, in: directory, status: status)) == false
        }

        func child(_ name: FileName) -> HiderContext {
            HiderContext(layer: layer, directory: try? directory?.open(name, flags: O_RDONLY | O_DIRECTORY))
        }
    }

    /// Walks the whole merged tree (and hidden versions when ``includeHidden``), reporting to
    /// `visitor`. The root itself is not reported.
    ///
    /// - Throws: ``PathError`` naming the layer path that could not be read, or what the
    ///   visitor throws.
    public func walk<V: StackVisitor>(_ visitor: inout V) throws(PathError) {
        let roots: [LayerDirectory]
        do {
            roots = try stack.resolver.rootDirectories()
        } catch {
            throw PathError(path: stack.layers[0].path, errno: error, what: "layer")
        }
        try WalkStack.run { () throws(PathError) in
            try walkDirectory(roots, path: .root, hider: nil, owned: false, &visitor)
        }
    }

    /// Walks one task of a parallel walk (the roots are listed through fresh opens).
    func walkTask<V: StackVisitor>(_ task: WalkTask, _ visitor: inout V) throws(PathError) {
        try walkDirectory(
            task.directories, path: task.path, hider: task.hider, owned: !task.path.isRoot,
            layerPaths: task.layerPaths, &visitor)
    }

    /// Walks the merged directory made of `directories` (top first) at `path`.
    ///
    /// - Throws: ``PathError`` naming the layer path that could not be read.
    public func walk<V: StackVisitor>(
        directory directories: [LayerDirectory], at path: TreePath, _ visitor: inout V
    ) throws(PathError) {
        try WalkStack.run { () throws(PathError) in
            try walkDirectory(directories, path: path, hider: nil, owned: false, &visitor)
        }
    }

    private static let dot = FileName(unchecked: [0x2E])

    /// What one layer directory lists, markers apart.
    private struct Listing {
        /// Names of entries (not markers).
        var names: [FileName] = []
        /// Names this directory whites out (OCI `.wh.NAME`, overlay char 0/0 `NAME`).
        var whiteouts: [FileName] = []
        /// Whether it holds an OCI opaque marker.
        var hasOpaqueMarker = false
    }

    /// Lists one layer directory, reporting its markers. Directories the walker opened itself (from
    /// a lookup) are read directly; shared ones (the layer roots) through a fresh open.
    private func listing<V: StackVisitor>(
        of directory: LayerDirectory, path: TreePath, hidden: Bool, owned: Bool, _ visitor: inout V
    ) throws(PathError) -> Listing {
        let format = stack.stack[directory.layer].format
        var result = Listing()
        do {
            let reader =
                owned ? directory.descriptor : try directory.descriptor.open(Self.dot, flags: O_RDONLY | O_DIRECTORY)
            let listed = try DirectoryReader.entries(of: reader)
            // Xattr whiteouts are markers of a listing only in a directory marked as holding
            // them, as in the mount (a lookup finds one anywhere).
            let xattrWhiteouts =
                format.honorsOverlay ? try Resolver.holdsXattrWhiteouts(directory.descriptor) : false
            result.names.reserveCapacity(listed.count)
            for entry in listed {
                if format.honorsOCI, let marker = Whiteout.ociMarker(for: entry.name) {
                    switch marker {
                    case .whiteout(let deleted):
                        result.whiteouts.append(deleted)
                        visitor.marker(.whiteout(deleted), layer: directory.layer, in: path, isHidden: hidden)
                    case .opaque:
                        result.hasOpaqueMarker = true
                        visitor.marker(.opaqueMarker, layer: directory.layer, in: path, isHidden: hidden)
                    case .meta:
                        visitor.marker(.meta, layer: directory.layer, in: path, isHidden: hidden)
                    }
                    continue
                }
                if format.honorsOverlay
                    && (entry.type == .characterDevice || (entry.type == .regular && xattrWhiteouts)),
                    let status = try directory.descriptor.statusIfPresent(of: entry.name),
                    try Resolver.isOverlayWhiteout(
                        entry.name, in: directory.descriptor, status: status, xattr: xattrWhiteouts)
                {
                    result.whiteouts.append(entry.name)
                    visitor.marker(.whiteout(entry.name), layer: directory.layer, in: path, isHidden: hidden)
                    continue
                }
                result.names.append(entry.name)
            }
        } catch {
            throw PathError(
                path: stack.displayPath(path.display, in: directory.layer), errno: error, what: "layer directory")
        }
        return result
    }

    /// Whether the lowest layer directory of a merged directory is opaque (the only one that can
    /// be: the resolver stops a merge at an opaque directory), reported once per directory.
    private func reportOpacity<V: StackVisitor>(
        _ directory: LayerDirectory, listing: Listing, path: TreePath, _ visitor: inout V
    ) throws(PathError) {
        guard checksOpacity, !path.isRoot else { return }
        let format = format(of: directory.layer)
        var opaque = format.honorsOCI && listing.hasOpaqueMarker
        if !opaque && format.honorsOverlay {
            do {
                opaque = try stack.resolver.isOpaque(directory.descriptor, format: .overlay)
            } catch {
                throw PathError(
                    path: stack.displayPath(path.display, in: directory.layer), errno: error, what: "layer directory")
            }
        }
        if opaque { visitor.opaque(layer: directory.layer, at: path) }
    }

    /// The positions (in a merged directory's layer list) that hold a name or a whiteout of it.
    private struct Positions {
        var bits: UInt64 = 0
        var overflow: [Int] = []
        /// The lowest (largest) position holding an entry of the name; -1 when only whiteouts do.
        var lowestEntry = -1

        mutating func insert(_ position: Int) {
            if position < 64 {
                bits |= 1 << UInt64(position)
            } else if overflow.last != position {
                overflow.append(position)
            }
        }

        /// The positions at or after `start`, in order (top first).
        func list(from start: Int) -> [Int] {
            var result: [Int] = []
            var remaining = start >= 64 ? 0 : bits & ~((1 << UInt64(start)) - 1)
            while remaining != 0 {
                let position = remaining.trailingZeroBitCount
                result.append(position)
                remaining &= remaining - 1
            }
            for position in overflow where position >= start { result.append(position) }
            return result
        }
    }

    /// Walks the merged directory made of `directories`; `owned` when the walker opened them
    /// itself (then it reads them in place, as nothing else uses their offset).
    private func walkDirectory<V: StackVisitor>(
        _ directories: [LayerDirectory], path: TreePath, hider: HiderContext?, owned: Bool = true,
        layerPaths: [LayerIndex: TreePath] = [:], _ visitor: inout V
    ) throws(PathError) {
        try Interruption.shared.check()
        guard WalkStack.hasRoom() else {
            throw PathError(
                path: stack.displayPath(path.display, in: directories[0].layer),
                reason: "directories nested too deeply to walk (\(path.components.count) levels)")
        }
        let hidden = hider != nil
        if directories.count == 1 {
            var listing = try listing(of: directories[0], path: path, hidden: hidden, owned: owned, &visitor)
            try reportOpacity(directories[0], listing: listing, path: path, &visitor)
            if sortsNames { listing.names.sort() }
            for name in listing.names {
                let result = try lookup(name, in: directories, path: path)
                guard case .found(let found) = result else { continue }
                let hiding = hider.map { context in
                    Hiding(layer: context.layer, isShadowing: context.holds(name, format: format(of: context.layer)))
                }
                try visit(
                    found, container: directories[0].descriptor, path: path, hiding: hiding,
                    childHider: hider?.child(name), layerPaths: layerPaths, &visitor)
            }
            return
        }
        // Several layers: the union of their names. A layer directory that holds neither a name nor
        // a whiteout of it cannot change how the name resolves, so each lookup only goes through
        // the layers that hold one (the same answer as over all of them, without the misses).
        var order: [FileName] = []
        var positions: [FileName: Positions] = [:]
        for (position, directory) in directories.enumerated() {
            let listing = try listing(of: directory, path: path, hidden: hidden, owned: owned, &visitor)
            if position == directories.count - 1 {
                try reportOpacity(directory, listing: listing, path: path, &visitor)
            }
            positions.reserveCapacity(positions.count + listing.names.count)
            for name in listing.names {
                var slot = positions[name] ?? Positions()
                if slot.lowestEntry < 0 { order.append(name) }
                slot.insert(position)
                slot.lowestEntry = position
                positions[name] = slot
            }
            for name in listing.whiteouts {
                var slot = positions[name] ?? Positions()
                slot.insert(position)
                positions[name] = slot
            }
        }
        if sortsNames { order.sort() }
        for name in order {
            guard let slot = positions[name], slot.lowestEntry >= 0 else { continue }
            try resolveChain(name, directories, slot, path: path, hider: hider, layerPaths: layerPaths, &visitor)
        }
    }

    /// Looks `name` up over the layers that hold it, then (with hidden entries) again over the
    /// layers below where each lookup stopped, until no lower layer holds the name.
    private func resolveChain<V: StackVisitor>(
        _ name: FileName, _ directories: [LayerDirectory], _ slot: Positions, path: TreePath,
        hider: HiderContext?, layerPaths: [LayerIndex: TreePath], _ visitor: inout V
    ) throws(PathError) {
        var start = 0
        // The layer holding the data of the first metacopy version met, at this same name, and
        // that version's visibility: the data file is as visible as the metacopy file.
        var metacopyData: (layer: LayerIndex, hiding: Hiding?)?
        // The hider of the next version, and its directory at this name (for its children).
        var stopper: (hiding: Hiding, directory: FileDescriptor?)?
        while start <= slot.lowestEntry {
            var remaining = slot.list(from: start).map { directories[$0] }
            guard let first = slot.list(from: start).first else { return }
            var result: LookupResult
            do throws(PathError) {
                result = try lookup(name, in: remaining, path: path)
            } catch {
                // A metacopy file's data or a redirect's target may be in a layer that does not
                // hold the name: only the full lookup tells.
                remaining = Array(directories[first...])
                result = try lookup(name, in: remaining, path: path)
            }
            if case .found(let found) = result, found.usedOtherNames, remaining.count < directories.count - first {
                remaining = Array(directories[first...])
                result = try lookup(name, in: remaining, path: path)
            }
            let bottom: LayerIndex
            switch result {
            case .absent:
                return
            case .whitedOut(let layer):
                if !includeHidden { return }
                bottom = layer
                stopper = (Hiding(layer: layer, isShadowing: false), nil)
            case .found(let found):
                var hiding: Hiding?
                let childHider: HiderContext?
                if let stopper {
                    hiding = stopper.hiding
                    childHider = HiderContext(layer: stopper.hiding.layer, directory: stopper.directory)
                } else {
                    hiding = hider.map { context in
                        Hiding(
                            layer: context.layer, isShadowing: context.holds(name, format: format(of: context.layer)))
                    }
                    childHider = hider?.child(name)
                }
                var isDataFile = false
                if let data = metacopyData, data.layer == found.layer, found.data == nil,
                    found.status.type == .regular
                {
                    hiding = data.hiding
                    isDataFile = true
                }
                if metacopyData == nil, let data = found.data, data.path == nil {
                    metacopyData = (data.layer, hiding)
                }
                let container = remaining.first { $0.layer == found.layer }?.descriptor ?? remaining[0].descriptor
                try visit(
                    found, container: container, path: path, hiding: hiding, childHider: childHider,
                    layerPaths: layerPaths, isDataFile: isDataFile, &visitor)
                if let last = found.directories.last {
                    bottom = last.layer
                    stopper = (Hiding(layer: last.layer, isShadowing: true), last.descriptor)
                } else {
                    bottom = found.layer
                    stopper = (Hiding(layer: found.layer, isShadowing: true), nil)
                }
                if !includeHidden { return }
            }
            guard let position = directories.firstIndex(where: { $0.layer == bottom }) else { return }
            start = position + 1
        }
    }

    private func format(of layer: LayerIndex) -> WhiteoutFormat { stack.stack[layer].format }

    /// The path in `layer` of the entry `name` of the merged directory `parent`: reached through
    /// `redirect` when set, else under its own name in the layer's directory of the parent (at
    /// `parents[layer]` when a redirect moved that one).
    static func layerPath(
        of name: FileName, redirect: LayerPath?, in layer: LayerIndex, parents: [LayerIndex: TreePath],
        parent: TreePath
    ) -> TreePath {
        switch redirect {
        case .absolute(let components): TreePath.from(RelativePath(components: components))
        case .name(let other): (parents[layer] ?? parent).appending(other)
        case nil: (parents[layer] ?? parent).appending(name)
        }
    }

    private func visit<V: StackVisitor>(
        _ found: ResolvedEntry, container: FileDescriptor, path: TreePath, hiding: Hiding?,
        childHider: HiderContext?, layerPaths: [LayerIndex: TreePath], isDataFile: Bool = false, _ visitor: inout V
    ) throws(PathError) {
        var entry = WalkEntry(
            name: found.name, parent: path, layer: found.layer, status: stack.status(of: found.status, in: found.layer),
            resolvedStatus: found.status, directories: found.directories, container: container, data: found.data,
            hiding: hiding)
        entry.layerParents = layerPaths
        entry.redirects = found.redirects
        entry.isDataFile = isDataFile
        guard found.status.type == .directory else {
            _ = try visitor.visit(entry)
            return
        }
        try checkSameFileSystem(found, path: path)
        guard try visitor.visit(entry) else { return }
        if hiding == nil || includeHidden {
            let childPath = path.appending(found.name)
            var childPaths: [LayerIndex: TreePath] = [:]
            if !layerPaths.isEmpty || !found.redirects.isEmpty {
                for directory in found.directories
                where layerPaths[directory.layer] != nil || found.redirects[directory.layer] != nil {
                    childPaths[directory.layer] = Self.layerPath(
                        of: found.name, redirect: found.redirects[directory.layer], in: directory.layer,
                        parents: layerPaths, parent: path)
                }
            }
            if let pool, pool.wantsWork {
                pool.push(
                    WalkTask(directories: found.directories, path: childPath, hider: childHider, layerPaths: childPaths)
                )
            } else {
                try walkDirectory(
                    found.directories, path: childPath, hider: childHider, layerPaths: childPaths, &visitor)
            }
        }
        try visitor.leave(entry)
    }

    /// Refuses a directory of a layer that is on another file system than the layer's root (a
    /// mount inside a layer directory): the kernel overlay does not cross such mounts (its
    /// lookups see the directory under the mount), so neither inspect nor flatten do.
    private func checkSameFileSystem(_ found: ResolvedEntry, path: TreePath) throws(PathError) {
        for directory in found.directories {
            let layer = stack.stack[directory.layer]
            let device: UInt64
            if directory.layer == found.layer {
                device = found.status.device
            } else {
                guard let status = try? directory.descriptor.status() else { continue }
                device = status.device
            }
            guard device != layer.rootStatus.device else { continue }
            throw PathError(
                path: stack.displayPath(path.display(appending: found.name), in: directory.layer),
                reason: "another file system is mounted here; a layer is one file system (the kernel overlay does "
                    + "not cross mounts inside a layer): unmount it, or give it as a layer of its own")
        }
    }

    /// The resolver's lookup, with failures turned into a ``PathError`` naming the layer that
    /// could not be read.
    private func lookup(_ name: FileName, in directories: [LayerDirectory], path: TreePath) throws(PathError)
        -> LookupResult
    {
        do {
            return try stack.resolver.lookup(name, in: directories)
        } catch {
            var culprit = directories[0].layer
            for directory in directories {
                do {
                    if let status = try directory.descriptor.statusIfPresent(of: name), status.type == .directory {
                        _ = try directory.descriptor.open(name, flags: O_RDONLY | O_DIRECTORY)
                    }
                } catch {
                    culprit = directory.layer
                    break
                }
            }
            throw PathError(
                path: stack.displayPath(path.display(appending: name), in: culprit), errno: error, what: "entry")
        }
    }
}
