import LayerCore
import Synchronization

/// What the table knows about one node: enough to reach its entry in its layers again
/// (parent and name, fd-relative) and to answer without touching the disk.
public struct NodeRecord: Sendable, Equatable {
    /// The node this one was first looked up in (the root's parent is the root).
    public var parent: NodeID
    /// The name in ``parent``; nil only for the root.
    public var name: FileName?
    /// The layer providing the entry (the topmost one holding it). A writable upper layer will
    /// change it on copy-up.
    public var layer: LayerIndex
    /// The entry's type.
    public var type: FileType
    /// The providing entry's (device, inode): hard links and racing lookups share one node.
    public var identity: FileIdentity
    /// For a directory: the layers whose directories make it up, top first (the first is
    /// ``layer``). Empty for anything else.
    public var layers: [LayerIndex]

    /// A record from its parts.
    public init(
        parent: NodeID, name: FileName?, layer: LayerIndex, type: FileType, identity: FileIdentity,
        layers: [LayerIndex] = []
    ) {
        self.parent = parent
        self.name = name
        self.layer = layer
        self.type = type
        self.identity = identity
        self.layers = layers
    }

    /// Whether more than one layer makes up this directory (the kernel reports nlink 1).
    public var isMergedDirectory: Bool { layers.count > 1 }
}

/// The nodes the kernel knows, with the kernel's lookup counts.
///
/// - NodeIDs come from a counter starting at 2 (1 is the root) and are never reused.
/// - A (device, inode) map makes hard links and racing lookups share one node.
/// - ``lookup(_:)`` adds 1 to the kernel count; call it only for an entry the kernel receives,
///   and undo it with ``forget(_:count:)`` when the reply fails.
/// - A node stays while the kernel counts it or while a child node names it as parent (the
///   child reaches its layer entries through the parent). At 0 and 0 it is dropped, and its
///   parent's child count drops with it.
/// - The root is pinned. ``releaseAll()`` drops everything else (forgets are not guaranteed at
///   unmount).
///
/// Locking: one `Mutex` over all state, held only for bookkeeping (no I/O, no replies). It is a
/// leaf lock: no other lock is taken while it is held.
public final class InodeTable: Sendable {
    private struct Slot {
        var record: NodeRecord
        /// The kernel's lookup count.
        var lookups: UInt64
        /// How many nodes name this one as their parent.
        var children: UInt32
    }

    private struct State {
        var slots: [NodeID: Slot] = [:]
        var byIdentity: [FileIdentity: NodeID] = [:]
        var next: UInt64 = 2
    }

    private let state: Mutex<State>
    private let log: @Sendable (String) -> Void

    /// A table holding only the root, described by `root` (its parent must be ``NodeID/root``).
    ///
    /// - Parameters:
    ///   - root: the root's record.
    ///   - log: receives messages about kernel bookkeeping bugs (forget underflow, unknown node).
    public init(root: NodeRecord, log: @escaping @Sendable (String) -> Void = { _ in }) {
        var initial = State()
        var rootRecord = root
        rootRecord.parent = .root
        rootRecord.name = nil
        initial.slots[.root] = Slot(record: rootRecord, lookups: 1, children: 0)
        state = Mutex(initial)
        self.log = log
    }

    /// Registers an entry the kernel is about to receive and adds 1 to its lookup count.
    ///
    /// When a node with the same identity exists, that node is returned (its record is kept: a
    /// hard link keeps the parent and name it was first found under). Otherwise a new node with
    /// the next ID is created and its parent's child count grows.
    ///
    /// Lock: the table lock. Lookup count: +1.
    ///
    /// - Parameter record: the entry found; `record.parent` must be a live node.
    /// - Returns: the node's ID.
    /// - Throws: `ESTALE` when the parent is not (or no longer) in the table.
    public func lookup(_ record: NodeRecord) throws(Errno) -> NodeID {
        try state.withLock { (state) throws(Errno) -> NodeID in
            if let existing = state.byIdentity[record.identity], state.slots[existing] != nil {
                state.slots[existing]?.lookups += 1
                return existing
            }
            guard state.slots[record.parent] != nil else { throw .stale }
            let id = NodeID(state.next)
            state.next += 1
            state.slots[id] = Slot(record: record, lookups: 1, children: 0)
            state.slots[record.parent]?.children += 1
            state.byIdentity[record.identity] = id
            return id
        }
    }

    /// Subtracts `count` from the node's lookup count (`forget` and each item of
    /// `forget_multi`). At 0, with no child nodes, the node is dropped, and so are ancestors
    /// left with neither. An underflow (a bug somewhere) is logged and clamped to 0. The root
    /// never drops.
    ///
    /// Lock: the table lock. Lookup count: -count.
    ///
    /// - Returns: the records of the dropped nodes, so that caches can let go of them.
    @discardableResult
    public func forget(_ node: NodeID, count: UInt64) -> [(NodeID, NodeRecord)] {
        var message: String?
        let dropped = state.withLock { (state) -> [(NodeID, NodeRecord)] in
            guard var slot = state.slots[node] else {
                message = "forget of unknown \(node) (count \(count))"
                return []
            }
            if node == .root { return [] }
            if count > slot.lookups {
                message = "forget underflow on \(node): count \(count) > lookups \(slot.lookups); clamped"
                slot.lookups = 0
            } else {
                slot.lookups -= count
            }
            state.slots[node] = slot
            return Self.dropIfUnused(node, in: &state)
        }
        if let message { log(message) }
        return dropped
    }

    private static func dropIfUnused(_ start: NodeID, in state: inout State) -> [(NodeID, NodeRecord)] {
        var dropped: [(NodeID, NodeRecord)] = []
        var current = start
        while current != .root, let slot = state.slots[current], slot.lookups == 0, slot.children == 0 {
            state.slots[current] = nil
            if state.byIdentity[slot.record.identity] == current { state.byIdentity[slot.record.identity] = nil }
            dropped.append((current, slot.record))
            let parent = slot.record.parent
            guard var parentSlot = state.slots[parent] else { break }
            parentSlot.children -= 1
            state.slots[parent] = parentSlot
            current = parent
        }
        return dropped
    }

    /// The record of a live node.
    ///
    /// Lock: the table lock. Lookup count: unchanged.
    ///
    /// - Throws: `ESTALE` for a node that is not in the table.
    public func record(of node: NodeID) throws(Errno) -> NodeRecord {
        guard let record = state.withLock({ $0.slots[node]?.record }) else { throw .stale }
        return record
    }

    /// The kernel's lookup count of a node, or nil when it is not in the table (for tests and
    /// diagnostics).
    ///
    /// Lock: the table lock.
    public func lookupCount(of node: NodeID) -> UInt64? {
        state.withLock { $0.slots[node]?.lookups }
    }

    /// The number of live nodes, the root included.
    ///
    /// Lock: the table lock.
    public var count: Int { state.withLock { $0.slots.count } }

    /// Drops every node but the root (session end: the kernel does not forget at unmount).
    ///
    /// Lock: the table lock. Lookup counts: all gone.
    ///
    /// - Returns: the IDs that were dropped.
    @discardableResult
    public func releaseAll() -> [NodeID] {
        state.withLock { state -> [NodeID] in
            let ids = state.slots.keys.filter { $0 != .root }
            for id in ids { state.slots[id] = nil }
            state.slots[.root]?.children = 0
            state.byIdentity = [:]
            return ids
        }
    }

    #if DEBUG
        /// Checks the table's invariants and returns the violations found (empty when sound):
        /// the root is present and pinned; every other node has a live parent and a lookup count
        /// or children; child counts match; the identity map is a bijection onto the non-root
        /// nodes; every ID is below the counter.
        ///
        /// Lock: the table lock.
        public func checkInvariants() -> [String] {
            state.withLock { state -> [String] in
                var problems: [String] = []
                guard let root = state.slots[.root] else { return ["root missing"] }
                if root.record.parent != .root { problems.append("root's parent is \(root.record.parent)") }
                var children: [NodeID: UInt32] = [:]
                for (id, slot) in state.slots where id != .root {
                    if id.rawValue < 2 || id.rawValue >= state.next {
                        problems.append("\(id) outside 2..<\(state.next)")
                    }
                    if state.slots[slot.record.parent] == nil { problems.append("\(id) has a dead parent") }
                    if slot.lookups == 0 && slot.children == 0 { problems.append("\(id) is unused but kept") }
                    if slot.record.name == nil { problems.append("\(id) has no name") }
                    if state.byIdentity[slot.record.identity] != id { problems.append("\(id) not in identity map") }
                    children[slot.record.parent, default: 0] += 1
                }
                for (id, slot) in state.slots where slot.children != children[id, default: 0] {
                    problems.append("\(id) counts \(slot.children) children, has \(children[id, default: 0])")
                }
                for (identity, id) in state.byIdentity where state.slots[id]?.record.identity != identity {
                    problems.append("identity map entry for \(id) is stale")
                }
                if state.byIdentity.count != state.slots.count - 1 {
                    problems.append(
                        "identity map has \(state.byIdentity.count) entries for \(state.slots.count - 1) nodes")
                }
                return problems
            }
        }
    #endif
}
