import CLayerSys
import Glibc
import LayerCore

extension OverlayFileSystem {
    /// `O_NOATIME` (GNU): reading a layer file does not touch its atime.
    private static let noAccessTime: CInt = 0o1_000_000

    /// The directories of `node` in each of its layers, top first, for the resolver.
    ///
    /// - Throws: `ESTALE` when a layer directory cannot be reached any more, other errnos.
    func layerDirectories(of node: NodeID, _ record: NodeRecord) throws(Errno) -> [LayerDirectory] {
        var result: [LayerDirectory] = []
        result.reserveCapacity(record.layers.count)
        for layer in record.layers {
            result.append(LayerDirectory(layer: layer, descriptor: try directoryDescriptor(node, layer: layer)))
        }
        return result
    }

    /// The descriptor of directory `node` in `layer`: cached, or opened from its parent's
    /// descriptor in the same layer (walking up to the nearest cached ancestor, the layer root,
    /// or an ancestor an absolute redirect puts at a path from the root), one name at a time with
    /// `O_NOFOLLOW | O_DIRECTORY`. A redirected node is opened under its redirected name or path.
    ///
    /// - Throws: `ESTALE` when a directory on the way is gone, is no longer a directory, or
    ///   (in its providing layer) is another directory now; other `openat(2)` errnos.
    func directoryDescriptor(_ node: NodeID, layer: LayerIndex) throws(Errno) -> FileDescriptor {
        guard layer.rawValue >= 0 && layer.rawValue < stack.layers.count else { throw .stale }
        if node == .root { return stack[layer].root }
        if let cached = descriptors.descriptor(for: DescriptorCache.Key(node: node, layer: layer)) { return cached }
        // Walk up to the first ancestor with a descriptor in this layer.
        var chain: [(NodeID, NodeRecord)] = []
        var current = node
        var base = stack[layer].root
        while true {
            let record = try inodes.record(of: current)
            chain.append((current, record))
            if case .absolute = record.origins?.paths[layer] { break }
            let parent = record.parent
            if parent == .root {
                base = stack[layer].root
                break
            }
            if let cached = descriptors.descriptor(for: DescriptorCache.Key(node: parent, layer: layer)) {
                base = cached
                break
            }
            current = parent
        }
        for (id, record) in chain.reversed() {
            guard record.type == .directory else { throw .stale }
            let opened: FileDescriptor
            do {
                opened = try openEntry(record, layer: layer, in: base, flags: O_RDONLY | O_DIRECTORY)
            } catch let error where error == .noEntry || error == .notDirectory || error == .tooManySymlinks {
                log("\(describe(record)): directory gone from \(stack[layer].path) (\(error))")
                throw .stale
            }
            if record.layer == layer {
                guard try opened.status().identity == record.identity else {
                    log("\(describe(record)): replaced underneath the mount")
                    throw .stale
                }
            }
            base = descriptors.insert(opened, for: DescriptorCache.Key(node: id, layer: layer)).descriptor
        }
        return base
    }

    /// Opens a node's entry in `layer`: under its name (or its redirected name) in `parent`, its
    /// parent's directory in that layer, or at its redirected path from the layer root.
    ///
    /// - Throws: `ESTALE` for the root, `ENOENT`, `ENOTDIR`, `ELOOP` and other `openat(2)`
    ///   errnos.
    func openEntry(_ record: NodeRecord, layer: LayerIndex, in parent: FileDescriptor, flags: CInt) throws(Errno)
        -> FileDescriptor
    {
        guard let name = record.name else { throw .stale }
        switch record.origins?.paths[layer] {
        case nil:
            return try parent.open(name, flags: flags)
        case .name(let redirected):
            return try parent.open(redirected, flags: flags)
        case .absolute(let components):
            guard let last = components.last else { throw .noEntry }
            var base = stack[layer].root
            for component in components.dropLast() {
                base = try base.open(component, flags: O_RDONLY | O_DIRECTORY)
            }
            return try base.open(last, flags: flags)
        }
    }

    /// The directory descriptor (in the providing layer) and name of a non-root node's entry.
    ///
    /// - Throws: `ESTALE` for the root or an unreachable parent.
    func entryLocation(_ record: NodeRecord) throws(Errno) -> (FileDescriptor, FileName) {
        guard let name = record.name else { throw .stale }
        return (try directoryDescriptor(record.parent, layer: record.layer), name)
    }

    /// The cached read descriptor of a regular file, opened on demand (`O_RDONLY | O_NOFOLLOW |
    /// O_NONBLOCK`, and `O_NOATIME` where permitted) and checked to be the same file.
    ///
    /// - Throws: `EISDIR`, `EINVAL` for other non-regular nodes, `ESTALE` when the layer file
    ///   is gone or replaced, other `openat(2)` errnos.
    /// - Returns: the descriptor and the file's size when it was opened.
    func readDescriptor(_ node: NodeID) throws(Errno) -> DescriptorCache.Cached {
        let record = try inodes.record(of: node)
        guard record.type == .regular else { throw record.type == .directory ? .isDirectory : .invalidArgument }
        // A metacopy file's data is in a lower layer's file.
        let layer = record.origins?.dataLayer ?? record.layer
        let identity = record.origins?.dataIdentity ?? record.identity
        let key = DescriptorCache.Key(node: node, layer: layer)
        if let cached = descriptors.entry(for: key) { return cached }
        let opened: FileDescriptor
        do {
            let parent: FileDescriptor
            if case .absolute = record.origins?.paths[layer] {
                parent = stack[layer].root  // unused: the path starts at the layer root
            } else {
                parent = try directoryDescriptor(record.parent, layer: layer)
            }
            do {
                opened = try openEntry(
                    record, layer: layer, in: parent, flags: O_RDONLY | O_NONBLOCK | Self.noAccessTime)
            } catch .notPermitted {
                opened = try openEntry(record, layer: layer, in: parent, flags: O_RDONLY | O_NONBLOCK)
            }
        } catch let error where error == .noEntry || error == .tooManySymlinks || error == .notDirectory {
            log("\(describe(record)): file gone (\(error))")
            throw .stale
        }
        let status = try opened.status()
        guard status.identity == identity, status.type == .regular else {
            log("\(describe(record)): replaced underneath the mount")
            throw .stale
        }
        return descriptors.insert(opened, size: status.size, for: key)
    }
}
