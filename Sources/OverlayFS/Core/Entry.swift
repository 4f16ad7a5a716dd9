import LayerCore

/// A name the kernel receives from a lookup: the node and its attributes.
public struct Entry: Sendable {
    /// The node (the FUSE `ino`); its lookup count was raised by 1 for this entry.
    public var node: NodeID
    /// The attributes as the mount reports them (``InodeNumbering`` inode, nlink 1 for a merged
    /// directory).
    public var attributes: FileStatus

    /// An entry from its parts.
    public init(node: NodeID, attributes: FileStatus) {
        self.node = node
        self.attributes = attributes
    }
}

/// Where a read is served from: an open descriptor of the providing layer's file. The adapter
/// hands it to the kernel (splice); the object keeps the descriptor open until it is released.
public struct ReadSource: Sendable {
    /// The layer file, open for reading.
    public var descriptor: FileDescriptor
    /// The offset to read at.
    public var offset: Int64
    /// The number of bytes asked for.
    public var size: Int
}

/// Tunables of an ``OverlayFileSystem``.
public struct OverlayOptions: Sendable {
    /// How long the kernel may cache a name (positive and negative), in seconds. Lower layers
    /// are immutable, so this is long.
    public var entryTimeout: Double = 86_400
    /// How long the kernel may cache attributes, in seconds.
    public var attributeTimeout: Double = 86_400
    /// The most open descriptors kept (directories per layer and read descriptors).
    public var descriptorCacheCapacity: Int = 4096
    /// The most bytes of merged listings kept for readdir continuations.
    public var listingCacheBytes: Int = 16 << 20
    /// Let the kernel open files and directories itself where it can (no-open, no-opendir:
    /// opens never reach the daemon and the page cache survives them). Right for immutable
    /// layers; a writable mount that tracks open handles turns it off.
    public var kernelHandlesOpens = true

    /// The defaults.
    public init() {}
}
