import LayerCore
import Synchronization

/// The merged listing of one directory as the mount reports it: `.`, `..`, then every
/// visible name once. Immutable and compact (names back to back, NUL-terminated, so the FUSE
/// adapter passes them to libfuse without copying).
///
/// Offsets: the entry at index `i` is followed by offset `i + 1`, and a readdir at offset `o`
/// continues at index `o`. The listing of an unchanged directory is deterministic (layer
/// order, then each layer's getdents order), so a listing rebuilt after eviction gives the same
/// offsets.
public final class DirectoryListing: Sendable {
    private let names: [UInt8]
    private let starts: [UInt32]
    private let inodes: [UInt64]
    private let types: [FileType]
    private let layers: [UInt16]

    /// One entry, as Swift values.
    public struct Entry: Sendable, Hashable {
        /// The name.
        public var name: FileName
        /// `d_ino`, equal to the `st_ino` the mount reports for the entry.
        public var inode: UInt64
        /// The entry's type.
        public var type: FileType
        /// The providing layer (for `.` and `..`, the directory's own providing layer).
        public var layer: LayerIndex
    }

    /// Builds a listing; `entries` must start with `.` and `..`.
    init(_ entries: [Entry]) {
        var names: [UInt8] = []
        names.reserveCapacity(entries.reduce(0) { $0 + $1.name.bytes.count + 1 })
        var starts: [UInt32] = []
        starts.reserveCapacity(entries.count)
        for entry in entries {
            starts.append(UInt32(truncatingIfNeeded: names.count))
            names.append(contentsOf: entry.name.bytes)
            names.append(0)
        }
        self.names = names
        self.starts = starts
        inodes = entries.map(\.inode)
        types = entries.map(\.type)
        layers = entries.map { UInt16(truncatingIfNeeded: $0.layer.rawValue) }
    }

    /// The number of entries, `.` and `..` included.
    public var count: Int { starts.count }

    /// The number of bytes held, for the cache budget.
    var footprint: Int { names.count + starts.count * (4 + 8 + 1 + 2) }

    /// Whether entry `index` is `.` or `..` (they are always the first two).
    public func isDotOrDotDot(_ index: Int) -> Bool { index < 2 }

    /// The entry at `index` (0 ..< count).
    public subscript(index: Int) -> Entry {
        let start = Int(starts[index])
        let end = index + 1 < starts.count ? Int(starts[index + 1]) - 1 : names.count - 1
        return Entry(
            name: FileName(unchecked: Array(names[start..<end])), inode: inodes[index], type: types[index],
            layer: LayerIndex(Int(layers[index])))
    }

    /// `d_ino` of entry `index`.
    public func inode(at index: Int) -> UInt64 { inodes[index] }

    /// The type of entry `index`.
    public func type(at index: Int) -> FileType { types[index] }

    /// Calls `body` with the NUL-terminated name of entry `index`, without copying.
    public func withName<R>(at index: Int, _ body: (UnsafePointer<CChar>) -> R) -> R {
        names.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return "".withCString(body) }
            return body((base + Int(starts[index])).assumingMemoryBound(to: CChar.self))
        }
    }
}

/// Recently built listings, bounded by their total size, so that a readdir continuing at an
/// offset does not rebuild the listing. A listing is dropped once it has been read to the end
/// (the kernel caches directory contents itself); a rebuilt one has the same offsets.
///
/// Locking: one `Mutex`, a leaf lock held for bookkeeping only.
final class ListingCache: Sendable {
    private let cache: Mutex<LRUCache<NodeID, DirectoryListing>>

    /// A cache of at most `capacity` bytes of listings.
    init(capacity: Int) { cache = Mutex(LRUCache(capacity: capacity)) }

    /// The cached listing of `node`.
    func listing(of node: NodeID) -> DirectoryListing? { cache.withLock { $0.get(node) } }

    /// Keeps `listing` for `node` (replacing any other).
    func insert(_ listing: DirectoryListing, for node: NodeID) {
        var released = cache.withLock { $0.insert(listing, for: node, cost: listing.footprint) }
        released.removeAll()
    }

    /// Drops the listing of `node`.
    func remove(_ node: NodeID) {
        let released = cache.withLock { $0.remove(node) }
        _ = released
    }

    /// The number of listings held.
    var count: Int { cache.withLock { $0.count } }

    /// Drops everything.
    func removeAll() {
        var released = cache.withLock { $0.removeAll() }
        released.removeAll()
    }
}
