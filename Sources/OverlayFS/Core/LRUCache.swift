/// A least-recently-used map with a cost budget: inserting past the budget evicts the oldest
/// entries. O(1) get, insert and remove (a dictionary of slots in a doubly linked list).
///
/// Not thread-safe: keep it inside a `Mutex`. Evicted values are returned to the caller, so
/// that their release (closing a descriptor) happens after the lock is dropped.
struct LRUCache<Key: Hashable, Value> {
    private struct Slot {
        var key: Key
        var value: Value
        var cost: Int
        var newer: Int
        var older: Int
    }

    private var index: [Key: Int] = [:]
    private var slots: [Slot?] = []
    private var free: [Int] = []
    /// Most recently used slot, or -1.
    private var newest = -1
    /// Least recently used slot, or -1.
    private var oldest = -1
    /// The budget.
    let capacity: Int
    /// The sum of the costs held.
    private(set) var totalCost = 0

    /// A cache holding at most `capacity` of cost.
    init(capacity: Int) { self.capacity = max(1, capacity) }

    /// The number of entries.
    var count: Int { index.count }

    /// The value for `key`, marked most recently used.
    mutating func get(_ key: Key) -> Value? {
        guard let slot = index[key] else { return nil }
        touch(slot)
        return slots[slot]?.value
    }

    /// The value for `key` without changing the order.
    func peek(_ key: Key) -> Value? {
        guard let slot = index[key] else { return nil }
        return slots[slot]?.value
    }

    /// Inserts or replaces `value` for `key` as most recently used, then evicts the oldest
    /// entries while the budget is exceeded (never the new one).
    ///
    /// - Returns: the values that left the cache (replaced or evicted).
    mutating func insert(_ value: Value, for key: Key, cost: Int = 1) -> [Value] {
        var released: [Value] = []
        if let old = remove(key) { released.append(old) }
        let slot: Int
        let fresh = Slot(key: key, value: value, cost: cost, newer: -1, older: newest)
        if let reused = free.popLast() {
            slot = reused
            slots[slot] = fresh
        } else {
            slot = slots.count
            slots.append(fresh)
        }
        if newest >= 0 { slots[newest]?.newer = slot }
        newest = slot
        if oldest < 0 { oldest = slot }
        index[key] = slot
        totalCost += cost
        while totalCost > capacity, oldest >= 0, oldest != slot, let victim = slots[oldest] {
            if let value = remove(victim.key) { released.append(value) }
        }
        return released
    }

    /// Removes the entry for `key`.
    ///
    /// - Returns: its value, or nil when absent.
    @discardableResult
    mutating func remove(_ key: Key) -> Value? {
        guard let slot = index.removeValue(forKey: key), let entry = slots[slot] else { return nil }
        unlink(slot, entry)
        slots[slot] = nil
        free.append(slot)
        totalCost -= entry.cost
        return entry.value
    }

    /// Removes everything.
    ///
    /// - Returns: all values held.
    mutating func removeAll() -> [Value] {
        let values = slots.compactMap { $0?.value }
        index = [:]
        slots = []
        free = []
        newest = -1
        oldest = -1
        totalCost = 0
        return values
    }

    private mutating func unlink(_ slot: Int, _ entry: Slot) {
        if entry.newer >= 0 { slots[entry.newer]?.older = entry.older } else { newest = entry.older }
        if entry.older >= 0 { slots[entry.older]?.newer = entry.newer } else { oldest = entry.newer }
    }

    private mutating func touch(_ slot: Int) {
        guard slot != newest, let entry = slots[slot] else { return }
        unlink(slot, entry)
        slots[slot]?.newer = -1
        slots[slot]?.older = newest
        if newest >= 0 { slots[newest]?.newer = slot }
        newest = slot
        if oldest < 0 { oldest = slot }
    }

    #if DEBUG
        /// Whether the list and the index agree (for tests).
        func isConsistent() -> Bool {
            var seen = 0
            var cost = 0
            var cursor = newest
            var previous = -1
            while cursor >= 0 {
                guard let entry = slots[cursor], index[entry.key] == cursor, entry.newer == previous else {
                    return false
                }
                seen += 1
                cost += entry.cost
                previous = cursor
                cursor = entry.older
            }
            return seen == index.count && previous == oldest && cost == totalCost
        }
    #endif
}
