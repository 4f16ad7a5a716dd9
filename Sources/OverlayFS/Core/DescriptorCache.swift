import LayerCore
import Synchronization

/// A bounded least-recently-used set of open descriptors, keyed by (node, layer): a
/// directory's descriptor in each of its layers, a regular file's read descriptor in its layer.
///
/// The mount never holds one descriptor per node (a 100k-file stack would pass the open-file
/// limit); whatever is evicted is reopened on demand. Descriptors are reference-counted
/// objects, so one in use by a request stays open even when it is evicted meanwhile.
///
/// Locking: one `Mutex`, a leaf lock held for bookkeeping only; evicted descriptors are
/// closed after it is released.
final class DescriptorCache: Sendable {
    /// What a descriptor belongs to.
    struct Key: Hashable, Sendable {
        var node: NodeID
        var layer: LayerIndex
    }

    /// A descriptor and, for a regular file, its size when it was opened (layers are
    /// immutable: reads are clamped to it, so a short file never makes a short splice).
    struct Cached: Sendable {
        var descriptor: FileDescriptor
        var size: Int64
    }

    private let cache: Mutex<LRUCache<Key, Cached>>

    /// A cache holding at most `capacity` descriptors.
    init(capacity: Int) { cache = Mutex(LRUCache(capacity: capacity)) }

    /// The budget.
    var capacity: Int { cache.withLock { $0.capacity } }

    /// The number of descriptors held.
    var count: Int { cache.withLock { $0.count } }

    /// The descriptor for `key`, marked most recently used.
    func descriptor(for key: Key) -> FileDescriptor? {
        cache.withLock { $0.get(key)?.descriptor }
    }

    /// The descriptor for `key` with the size recorded for it, marked most recently used.
    func entry(for key: Key) -> Cached? {
        cache.withLock { $0.get(key) }
    }

    /// Keeps `descriptor` (of a file of `size` bytes) for `key`, unless another thread stored
    /// one first.
    ///
    /// - Returns: what is now held for `key` (use it rather than the argument, so that racing
    ///   opens share one descriptor).
    @discardableResult
    func insert(_ descriptor: FileDescriptor, size: Int64 = 0, for key: Key) -> Cached {
        var released: [Cached] = []
        let kept = cache.withLock { cache -> Cached in
            if let existing = cache.get(key) { return existing }
            let fresh = Cached(descriptor: descriptor, size: size)
            released = cache.insert(fresh, for: key)
            return fresh
        }
        released.removeAll()  // closes evicted descriptors outside the lock
        return kept
    }

    /// Forgets the descriptors of `node` in `layers`.
    func remove(node: NodeID, layers: [LayerIndex]) {
        var released: [Cached] = []
        cache.withLock { cache in
            for layer in layers {
                if let old = cache.remove(Key(node: node, layer: layer)) { released.append(old) }
            }
        }
        released.removeAll()
    }

    /// Closes everything.
    func removeAll() {
        var released = cache.withLock { $0.removeAll() }
        released.removeAll()
    }
}
