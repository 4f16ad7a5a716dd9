import CLayerSys
import Glibc
import LayerCore

/// The read-only overlay of a ``LayerStack``: one method per file-system operation, named after
/// the syscall, taking and returning Swift values and throwing ``Errno``.
///
/// It asks ``Resolver`` (the policy) which layer provides what, keeps the kernel's nodes in an
/// ``InodeTable``, and caches open descriptors and listings in bounded caches. It has no C
/// FUSE types and never replies: the FUSE adapter converts, calls one method and replies.
///
/// Every layer entry is reached fd-relative from its layer's root, one name at a time with
/// `O_NOFOLLOW`: a symlink stored in a layer is never followed, and paths have no length
/// limit. A directory's descriptor in layer L is opened from its parent's descriptor in L.
///
/// Locking: the table and the caches each have their own leaf lock; no method holds two, and
/// none does I/O under one.
///
/// A writable upper layer slots in as the top layer index: a node's providing layer can
/// change (copy-up, via the table), and per-node cache entries can be dropped.
public final class OverlayFileSystem: Sendable {
    /// The layers, bottom first.
    public let stack: LayerStack
    /// The overlay policy.
    public let resolver: Resolver
    /// The kernel's nodes.
    public let inodes: InodeTable
    /// The `st_ino` mapping.
    public let numbering: InodeNumbering
    /// The tunables.
    public let options: OverlayOptions
    let descriptors: DescriptorCache
    let listings: ListingCache
    let log: @Sendable (String) -> Void

    /// The read-only extended attribute naming the layer a file comes from
    /// (`user.layermount.layer`; value `INDEX:PATH`, INDEX 1-based from the bottom). The kernel
    /// passes `user.*` names only for regular files and directories.
    public static let layerAttributeName: [UInt8] = Array("user.layermount.layer".utf8)

    /// The same attribute for every file type, symlinks and devices included
    /// (`trusted.layermount.layer`; reading `trusted.*` needs CAP_SYS_ADMIN).
    public static let trustedLayerAttributeName: [UInt8] = Array("trusted.layermount.layer".utf8)

    /// An overlay of `stack`.
    ///
    /// - Parameters:
    ///   - stack: the opened layers.
    ///   - options: cache sizes and kernel timeouts.
    ///   - log: receives diagnostics (kernel bookkeeping bugs, layers changed underneath).
    public init(
        stack: LayerStack, options: OverlayOptions = OverlayOptions(),
        log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.stack = stack
        resolver = Resolver(stack: stack)
        self.options = options
        self.log = log
        let top = stack[stack.topIndex]
        inodes = InodeTable(
            root: NodeRecord(
                parent: .root, name: nil, layer: stack.topIndex, type: .directory,
                identity: top.rootStatus.identity, layers: stack.topFirst),
            log: log)
        numbering = InodeNumbering(devices: stack.topFirst.map { stack[$0].rootStatus.device })
        descriptors = DescriptorCache(capacity: options.descriptorCacheCapacity)
        listings = ListingCache(capacity: options.listingCacheBytes)
    }

    // MARK: - Names

    /// Looks `name` up in directory `parent` and adds 1 to the found node's lookup count.
    ///
    /// - Returns: the entry for the kernel.
    /// - Throws: `ENOENT` when no layer provides the name (or a whiteout hides it);
    ///   `ENOTDIR` when `parent` is not a directory; `ESTALE` for an unknown parent or one
    ///   changed underneath; other errnos from the layers.
    public func lookup(parent: NodeID, name: FileName) throws(Errno) -> Entry {
        try lookup(parent: parent, name: name, listedIn: nil)
    }

    /// Looks up an entry of `parent`'s merged listing (readdirplus), which names the layer that
    /// provides it: the layers above it are not consulted again. Adds 1 to the lookup count.
    ///
    /// - Returns: the entry for the kernel.
    /// - Throws: as ``lookup(parent:name:)``.
    public func lookup(parent: NodeID, listed entry: DirectoryListing.Entry) throws(Errno) -> Entry {
        try lookup(parent: parent, name: entry.name, listedIn: entry.layer)
    }

    private func lookup(parent: NodeID, name: FileName, listedIn layer: LayerIndex?) throws(Errno) -> Entry {
        let record = try inodes.record(of: parent)
        guard record.type == .directory else { throw .notDirectory }
        if name.isDotOrDotDot { throw .invalidArgument }
        let directories = try layerDirectories(of: parent, record)
        let result =
            if let layer {
                try resolver.lookup(name, in: directories, listedIn: layer)
            } else {
                try resolver.lookup(name, in: directories)
            }
        switch result {
        case .absent, .whitedOut: throw .noEntry
        case .found(let found): return try register(found, in: parent)
        }
    }

    /// Records a resolved entry as a node (+1) and keeps its opened layer directories.
    private func register(_ found: ResolvedEntry, in parent: NodeID) throws(Errno) -> Entry {
        var origins: NodeOrigins?
        if !found.redirects.isEmpty || found.data != nil {
            var paths = found.redirects
            if let data = found.data, let path = data.path { paths[data.layer] = path }
            origins = NodeOrigins(paths: paths, dataLayer: found.data?.layer, dataIdentity: found.data?.status.identity)
        }
        let record = NodeRecord(
            parent: parent, name: found.name, layer: found.layer, type: found.status.type,
            identity: found.status.identity, layers: found.directories.map(\.layer), origins: origins)
        let node = try inodes.lookup(record)
        for directory in found.directories {
            descriptors.insert(directory.descriptor, for: DescriptorCache.Key(node: node, layer: directory.layer))
        }
        var attributes = reported(found.status, merged: found.isMergedDirectory)
        if let data = found.data { attributes.blocks = data.status.blocks }
        return Entry(node: node, attributes: attributes)
    }

    /// Subtracts `count` from a node's lookup count (`forget`, `forget_multi`); a node that
    /// drops releases its cached descriptors and listing.
    public func forget(_ node: NodeID, count: UInt64) {
        for (id, record) in inodes.forget(node, count: count) {
            var layers = record.type == .directory ? record.layers : [record.layer]
            if let data = record.origins?.dataLayer { layers.append(data) }
            descriptors.remove(node: id, layers: layers)
            listings.remove(id)
        }
    }

    // MARK: - Attributes

    /// The attributes of a node, as the mount reports them.
    ///
    /// - Throws: `ESTALE` for an unknown node or one whose layer entry changed underneath;
    ///   other errnos from the layer.
    public func getattr(_ node: NodeID) throws(Errno) -> FileStatus {
        let record = try inodes.record(of: node)
        let status: FileStatus
        if record.type == .directory {
            status = try directoryDescriptor(node, layer: record.layer).status()
        } else if record.type == .regular,
            let open = descriptors.descriptor(for: DescriptorCache.Key(node: node, layer: record.layer))
        {
            status = try open.status()
        } else {
            let (parent, name) = try entryLocation(record)
            do {
                status = try parent.status(of: name)
            } catch let error where error == .noEntry || error == .notDirectory {
                throw .stale
            }
        }
        // Same identity and type: a freed inode number can come back for a new file of another
        // type (ext4 reuses them), which must not pass for the old entry.
        guard status.identity == record.identity, status.type == record.type else {
            log("\(describe(record)): changed underneath the mount")
            throw .stale
        }
        var result = reported(status, merged: record.isMergedDirectory)
        if record.origins?.dataLayer != nil {
            // A metacopy file: the blocks are the data file's, as the kernel reports them.
            result.blocks = try readDescriptor(node).descriptor.status().blocks
        }
        return result
    }

    /// The target of a symlink node, as bytes.
    ///
    /// - Throws: `EINVAL` when the node is not a symlink, `ESTALE`, other errnos.
    public func readlink(_ node: NodeID) throws(Errno) -> [UInt8] {
        let record = try inodes.record(of: node)
        guard record.type == .symlink else { throw .invalidArgument }
        let (parent, name) = try entryLocation(record)
        do {
            return try parent.readLink(name)
        } catch .noEntry {
            throw .stale
        }
    }

    /// File system statistics: those of the top layer's file system, with a name limit of 255.
    ///
    /// - Throws: the `fstatvfs(3)` errno.
    public func statfs(_ node: NodeID) throws(Errno) -> statvfs {
        var result = try stack[stack.topIndex].root.fileSystemStatus()
        result.f_namemax = UInt(FileName.maxLength)
        return result
    }

    // MARK: - Data

    /// Where to read `size` bytes at `offset` of a regular file from: its layer file's cached
    /// read descriptor (opened on demand), with the size clamped to the end of the file (so
    /// the reply is never a short read that libfuse must patch up).
    ///
    /// - Throws: `EISDIR` for a directory, `EINVAL` for other non-regular nodes, `EINVAL` for
    ///   a negative offset, `ESTALE`, other errnos.
    public func read(_ node: NodeID, size: Int, offset: Int64) throws(Errno) -> ReadSource {
        guard offset >= 0, size >= 0 else { throw .invalidArgument }
        let open = try readDescriptor(node)
        let available = max(0, open.size - offset)
        return ReadSource(descriptor: open.descriptor, offset: offset, size: Int(min(Int64(size), available)))
    }

    /// Finds data or a hole (`SEEK_DATA`, `SEEK_HOLE`; also `SEEK_SET`/`CUR`/`END`) in a regular
    /// file, on its layer file.
    ///
    /// - Returns: the offset found.
    /// - Throws: `ENXIO` past the end or the last data, `EINVAL`, `ESTALE`, other errnos.
    public func lseek(_ node: NodeID, offset: Int64, whence: CInt) throws(Errno) -> Int64 {
        let descriptor = try readDescriptor(node).descriptor
        switch whence {
        case CLS_SEEK_DATA, CLS_SEEK_HOLE, SEEK_SET, SEEK_END:
            return try descriptor.seek(to: offset, whence: whence)
        default:
            throw .invalidArgument
        }
    }

    // MARK: - Directories

    /// The merged listing of a directory and the index to continue at for `offset` (see
    /// ``DirectoryListing`` for the offset contract). A listing read to its end is dropped from
    /// the cache.
    ///
    /// - Throws: `ENOTDIR`, `EINVAL` for a negative offset, `ESTALE`, errnos of reading a layer.
    public func readdir(_ node: NodeID, offset: Int64) throws(Errno) -> (listing: DirectoryListing, start: Int) {
        guard offset >= 0 else { throw .invalidArgument }
        let listing: DirectoryListing
        if let cached = listings.listing(of: node) {
            listing = cached
        } else {
            listing = try buildListing(node)
            if offset < Int64(listing.count) { listings.insert(listing, for: node) }
        }
        if offset >= Int64(listing.count) {
            listings.remove(node)
            return (listing, listing.count)
        }
        return (listing, Int(offset))
    }

    private func buildListing(_ node: NodeID) throws(Errno) -> DirectoryListing {
        let record = try inodes.record(of: node)
        guard record.type == .directory else { throw .notDirectory }
        let directories = try layerDirectories(of: node, record)
        let merged = try resolver.list(directories)
        let parentIdentity = node == .root ? record.identity : (try? inodes.record(of: record.parent))?.identity
        var entries: [DirectoryListing.Entry] = []
        entries.reserveCapacity(merged.count + 2)
        entries.append(
            DirectoryListing.Entry(
                name: Self.dot, inode: numbering.number(for: record.identity), type: .directory, layer: record.layer))
        entries.append(
            DirectoryListing.Entry(
                name: Self.dotDot, inode: numbering.number(for: parentIdentity ?? record.identity), type: .directory,
                layer: record.layer))
        for entry in merged {
            let identity = FileIdentity(device: stack[entry.layer].rootStatus.device, inode: entry.inode)
            entries.append(
                DirectoryListing.Entry(
                    name: entry.name, inode: numbering.number(for: identity), type: entry.type, layer: entry.layer))
        }
        return DirectoryListing(entries)
    }

    /// `.`
    static let dot = FileName(unchecked: [0x2E])
    /// `..`
    static let dotDot = FileName(unchecked: [0x2E, 0x2E])

    // MARK: - Session

    /// Releases every node and cached descriptor (the session ends; the kernel does not forget
    /// at unmount).
    public func destroy() {
        inodes.releaseAll()
        listings.removeAll()
        descriptors.removeAll()
    }

    // MARK: - Helpers

    /// `status` as the mount reports it: mapped inode number, nlink 1 for a merged directory.
    func reported(_ status: FileStatus, merged: Bool) -> FileStatus {
        var result = status
        result.inode = numbering.number(for: status.identity)
        if merged { result.linkCount = 1 }
        return result
    }

    /// `PATH (layer N)` of a node, for messages.
    func describe(_ record: NodeRecord) -> String {
        "\(record.name?.description ?? ".") in \(stack[record.layer].path) (\(record.layer))"
    }
}
