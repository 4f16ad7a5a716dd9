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
    /// descriptor in the same layer (walking up to the nearest cached ancestor or the layer
    /// root), one name at a time with `O_NOFOLLOW | O_DIRECTORY`.
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
        var base: FileDescriptor
        while true {
            let record = try inodes.record(of: current)
            chain.append((current, record))
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
            guard let name = record.name, record.type == .directory else { throw .stale }
            let opened: FileDescriptor
            do {
                opened = try base.open(name, flags: O_RDONLY | O_DIRECTORY)
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
        let key = DescriptorCache.Key(node: node, layer: record.layer)
        if let cached = descriptors.entry(for: key) { return cached }
        let (parent, name) = try entryLocation(record)
        let opened: FileDescriptor
        do {
            do {
                opened = try parent.open(name, flags: O_RDONLY | O_NONBLOCK | Self.noAccessTime)
            } catch .notPermitted {
                opened = try parent.open(name, flags: O_RDONLY | O_NONBLOCK)
            }
        } catch let error where error == .noEntry || error == .tooManySymlinks || error == .notDirectory {
            log("\(describe(record)): file gone (\(error))")
            throw .stale
        }
        let status = try opened.status()
        guard status.identity == record.identity, status.type == .regular else {
            log("\(describe(record)): replaced underneath the mount")
            throw .stale
        }
        return descriptors.insert(opened, size: status.size, for: key)
    }
}
