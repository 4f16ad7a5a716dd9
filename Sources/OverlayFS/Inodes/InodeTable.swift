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
    /// Where the entry is found in layers that a redirect moved it in, and the data file of a
    /// metacopy file; nil for the common node found by its name in every layer.
    public var origins: NodeOrigins?

    /// A record from its parts.
    public init(
        parent: NodeID, name: FileName?, layer: LayerIndex, type: FileType, identity: FileIdentity,
        layers: [LayerIndex] = [], origins: NodeOrigins? = nil
    ) {
        self.parent = parent
        self.name = name
        self.layer = layer
        self.type = type
        self.identity = identity
        self.layers = layers
        self.origins = origins
    }

    /// Whether more than one layer makes up this directory (the kernel reports nlink 1).
    public var isMergedDirectory: Bool { layers.count > 1 }
}

/// How a node's entries are reached in layers where they are not at the node's own name in the
/// parent's directory: after kernel overlayfs redirects, and for a metacopy file's data.
public struct NodeOrigins: Sendable, Equatable {
    /// The layers (of a directory's ``NodeRecord/layers``, or the data layer) reached through a
    /// redirect, with the path that reaches them.
    public var paths: [LayerIndex: LayerPath]
    /// For a metacopy regular file: the layer and (device, inode) of the file holding its data.
    public var dataLayer: LayerIndex?
    /// The data file's identity (checked when it is opened again).
    public var dataIdentity: FileIdentity?

    /// Origins from their parts.
    public init(paths: [LayerIndex: LayerPath], dataLayer: LayerIndex? = nil, dataIdentity: FileIdentity? = nil) {
        self.paths = paths
        self.dataLayer = dataLayer
        self.dataIdentity = dataIdentity
    }
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
    /// One node, 80 bytes: no heap allocation but a directory's layer list (and the rare name
    /// longer than 23 bytes, in a side table).
    private struct Slot {
        /// The node's ID; 0 for a free slot.
        var id: UInt64
        var parent: NodeID
        var identity: FileIdentity
        /// The kernel's lookup count.
        var lookups: UInt64
        /// How many nodes name this one as their parent.
        var children: UInt32
        var layer: UInt16
        var type: FileType
        var name: PackedName
        var layers: [LayerIndex]
    }

    private struct State {
        /// Live and free slots; free ones are listed in `free` and reused.
        var slots: [Slot] = []
        var free: [Int] = []
        /// NodeID to slot index.
        var index: [UInt64: UInt32] = [:]
        /// (device, inode) to slot index.
        var identities = IdentityIndex()
        /// Names longer than ``PackedName/inlineCapacity``, by slot index.
        var longNames: [Int: FileName] = [:]
        /// The origins of the rare nodes that have them (redirected, metacopy), by slot index.
        var origins: [Int: NodeOrigins] = [:]
        var root: NodeRecord
        var rootChildren: UInt32 = 0
        var next: UInt64 = 2

        func slotIndex(_ id: NodeID) -> Int? { index[id.rawValue].map(Int.init) }

        func record(at slot: Int) -> NodeRecord {
            let entry = slots[slot]
            let name = entry.name.isLong ? longNames[slot] : entry.name.name
            return NodeRecord(
                parent: entry.parent, name: name, layer: LayerIndex(Int(entry.layer)), type: entry.type,
                identity: entry.identity, layers: entry.layers, origins: origins[slot])
        }

        mutating func addChild(to parent: NodeID) {
            if parent == .root {
                rootChildren += 1
            } else if let slot = slotIndex(parent) {
                slots[slot].children += 1
            }
        }
    }

    private let state: Mutex<State>
    private let log: @Sendable (String) -> Void

    /// A table holding only the root, described by `root` (its parent must be ``NodeID/root``).
    ///
    /// - Parameters:
    ///   - root: the root's record.
    ///   - log: receives messages about kernel bookkeeping bugs (forget underflow, unknown node).
    public init(root: NodeRecord, log: @escaping @Sendable (String) -> Void = { _ in }) {
        var rootRecord = root
        rootRecord.parent = .root
        rootRecord.name = nil
        state = Mutex(State(root: rootRecord))
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
    /// - Parameter record: the entry found; `record.parent` must be a live node and
    ///   `record.name` set.
    /// - Returns: the node's ID.
    /// - Throws: `ESTALE` when the parent is not (or no longer) in the table; `EINVAL` without a
    ///   name or with a layer index past 65535.
    public func lookup(_ record: NodeRecord) throws(Errno) -> NodeID {
        guard let name = record.name, let layer = UInt16(exactly: record.layer.rawValue) else {
            throw .invalidArgument
        }
        return try state.withLock { (state) throws(Errno) -> NodeID in
            let slots = state.slots
            if let existing = state.identities.find(record.identity, identityOf: { slots[$0].identity }) {
                state.slots[existing].lookups += 1
                return NodeID(state.slots[existing].id)
            }
            guard record.parent == .root || state.slotIndex(record.parent) != nil else { throw .stale }
            let id = state.next
            state.next += 1
            let packed = PackedName(name) ?? .longName
            let entry = Slot(
                id: id, parent: record.parent, identity: record.identity, lookups: 1, children: 0, layer: layer,
                type: record.type, name: packed, layers: record.layers)
            let slot: Int
            if let reused = state.free.popLast() {
                slot = reused
                state.slots[slot] = entry
            } else {
                slot = state.slots.count
                if state.slots.count == state.slots.capacity {
                    // Grow by a quarter, not double: the table is most of the daemon's memory.
                    state.slots.reserveCapacity(max(64, state.slots.count + state.slots.count / 4))
                }
                state.slots.append(entry)
            }
            if packed.isLong { state.longNames[slot] = name }
            if let origins = record.origins { state.origins[slot] = origins }
            state.index[id] = UInt32(slot)
            let current = state.slots
            state.identities.insert(slot, identity: record.identity, identityOf: { current[$0].identity })
            state.addChild(to: record.parent)
            return NodeID(id)
        }
    }

    /// Makes another layer entry provide a live node, keeping its ID, parent, name and lookup
    /// count: what a copy-up to a writable upper layer does. The identity map follows, and the
    /// node's origins become `origins` (a full copy-up has none).
    ///
    /// Lock: the table lock. Lookup count: unchanged.
    ///
    /// - Throws: `ESTALE` for a node that is not in the table (or the root); `EEXIST` when
    ///   another node already has `identity`; `EINVAL` for a layer index past 65535.
    public func setProvider(
        of node: NodeID, layer: LayerIndex, identity: FileIdentity, layers: [LayerIndex], origins: NodeOrigins? = nil
    ) throws(Errno) {
        guard let layerIndex = UInt16(exactly: layer.rawValue) else { throw .invalidArgument }
        try state.withLock { (state) throws(Errno) in
            guard node != .root, let slot = state.slotIndex(node) else { throw .stale }
            let before = state.slots
            if let holder = state.identities.find(identity, identityOf: { before[$0].identity }), holder != slot {
                throw .exists
            }
            state.identities.remove(slot, identity: state.slots[slot].identity)
            state.slots[slot].identity = identity
            state.slots[slot].layer = layerIndex
            state.slots[slot].layers = layers
            state.origins[slot] = origins
            let after = state.slots
            state.identities.insert(slot, identity: identity, identityOf: { after[$0].identity })
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
            if node == .root { return [] }
            guard let slot = state.slotIndex(node) else {
                message = "forget of unknown \(node) (count \(count))"
                return []
            }
            let lookups = state.slots[slot].lookups
            if count > lookups {
                message = "forget underflow on \(node): count \(count) > lookups \(lookups); clamped"
                state.slots[slot].lookups = 0
            } else {
                state.slots[slot].lookups = lookups - count
            }
            return Self.dropIfUnused(node, in: &state)
        }
        if let message { log(message) }
        return dropped
    }

    private static func dropIfUnused(_ start: NodeID, in state: inout State) -> [(NodeID, NodeRecord)] {
        var dropped: [(NodeID, NodeRecord)] = []
        var current = start
        while current != .root, let slot = state.slotIndex(current), state.slots[slot].lookups == 0,
            state.slots[slot].children == 0
        {
            let record = state.record(at: slot)
            state.identities.remove(slot, identity: record.identity)
            state.index[current.rawValue] = nil
            state.longNames[slot] = nil
            state.origins[slot] = nil
            state.slots[slot].id = 0
            state.slots[slot].layers = []
            state.free.append(slot)
            dropped.append((current, record))
            let parent = record.parent
            if parent == .root {
                state.rootChildren -= 1
                break
            }
            guard let parentSlot = state.slotIndex(parent) else { break }
            state.slots[parentSlot].children -= 1
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
        let record = state.withLock { state -> NodeRecord? in
            if node == .root { return state.root }
            return state.slotIndex(node).map { state.record(at: $0) }
        }
        guard let record else { throw .stale }
        return record
    }

    /// The kernel's lookup count of a node, or nil when it is not in the table (for tests and
    /// diagnostics). The root's is 1.
    ///
    /// Lock: the table lock.
    public func lookupCount(of node: NodeID) -> UInt64? {
        state.withLock { state in
            node == .root ? 1 : state.slotIndex(node).map { state.slots[$0].lookups }
        }
    }

    /// The number of live nodes, the root included.
    ///
    /// Lock: the table lock.
    public var count: Int { state.withLock { $0.index.count + 1 } }

    /// Drops every node but the root (session end: the kernel does not forget at unmount).
    ///
    /// Lock: the table lock. Lookup counts: all gone.
    ///
    /// - Returns: the IDs that were dropped.
    @discardableResult
    public func releaseAll() -> [NodeID] {
        state.withLock { state -> [NodeID] in
            let ids = state.index.keys.map(NodeID.init)
            let next = state.next
            state = State(root: state.root)
            state.next = next  // IDs are never reused, not even after a release
            return ids
        }
    }

    #if DEBUG
        /// Checks the table's invariants and returns the violations found (empty when sound):
        /// every live node has a live parent and a lookup count or children; child counts
        /// match; the ID and identity maps point at the right slots and cover every live node;
        /// free slots are free; every ID is below the counter.
        ///
        /// Lock: the table lock.
        public func checkInvariants() -> [String] {
            state.withLock { state -> [String] in
                var problems: [String] = []
                if state.root.parent != .root { problems.append("root's parent is \(state.root.parent)") }
                var children: [NodeID: UInt32] = [:]
                var live = 0
                let slots = state.slots
                for (slot, entry) in state.slots.enumerated() where entry.id != 0 {
                    live += 1
                    let id = NodeID(entry.id)
                    if entry.id < 2 || entry.id >= state.next { problems.append("\(id) outside 2..<\(state.next)") }
                    if state.index[entry.id] != UInt32(slot) { problems.append("\(id) not indexed at its slot") }
                    if entry.parent != .root && state.slotIndex(entry.parent) == nil {
                        problems.append("\(id) has a dead parent")
                    }
                    if entry.lookups == 0 && entry.children == 0 { problems.append("\(id) is unused but kept") }
                    if state.record(at: slot).name == nil { problems.append("\(id) has no name") }
                    if state.identities.find(entry.identity, identityOf: { slots[$0].identity }) != slot {
                        problems.append("\(id) not in the identity map")
                    }
                    children[entry.parent, default: 0] += 1
                }
                for (slot, entry) in state.slots.enumerated() where entry.id != 0 {
                    let counted = children[NodeID(entry.id), default: 0]
                    if entry.children != counted {
                        problems.append(
                            "node \(entry.id) counts \(entry.children) children, has \(counted) (slot \(slot))")
                    }
                }
                if state.rootChildren != children[.root, default: 0] {
                    problems.append("root counts \(state.rootChildren) children, has \(children[.root, default: 0])")
                }
                if live != state.index.count { problems.append("\(state.index.count) IDs for \(live) live slots") }
                if live != state.identities.count {
                    problems.append("\(state.identities.count) identities for \(live) live slots")
                }
                if live + state.free.count != state.slots.count { problems.append("free list does not match") }
                for slot in state.free where state.slots[slot].id != 0 { problems.append("slot \(slot) free but live") }
                return problems
            }
        }
    #endif
}
