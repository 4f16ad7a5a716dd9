import LayerCore

/// A file name packed into 24 bytes: up to 23 bytes inline, longer names in a side table. Most
/// names are short (92% of a Debian root file system's names have at most 23 bytes), so a
/// node costs no heap allocation for its name.
struct PackedName: Equatable {
    private var words: (UInt64, UInt64, UInt64)

    /// The marker in the length byte for a name kept in the side table.
    private static let long: UInt8 = 0xFF
    /// The largest inline name.
    static let inlineCapacity = 23

    /// Packs `name`; nil when it is too long to be inline.
    init?(_ name: FileName) {
        let bytes = name.bytes
        guard bytes.count <= Self.inlineCapacity else { return nil }
        var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &words) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
            raw[23] = UInt8(bytes.count)
        }
        self.words = words
    }

    /// The marker of a name kept elsewhere.
    static let longName: PackedName = {
        var name = PackedName(words: (0, 0, 0))
        withUnsafeMutableBytes(of: &name.words) { $0[23] = long }
        return name
    }()

    private init(words: (UInt64, UInt64, UInt64)) { self.words = words }

    /// Whether the name is kept in the side table.
    var isLong: Bool { withUnsafeBytes(of: words) { $0[23] } == Self.long }

    /// The inline name (nil for a long one).
    var name: FileName? {
        withUnsafeBytes(of: words) { raw -> FileName? in
            let count = Int(raw[23])
            guard count > 0 && count <= Self.inlineCapacity else { return nil }
            return FileName(unchecked: Array(raw[0..<count]))
        }
    }

    /// Whether two packed names hold the same bytes.
    static func == (lhs: PackedName, rhs: PackedName) -> Bool {
        lhs.words.0 == rhs.words.0 && lhs.words.1 == rhs.words.1 && lhs.words.2 == rhs.words.2
    }
}

/// An open-addressing set of slot indexes keyed by the identity stored in each slot: the
/// (device, inode) map of ``InodeTable`` at 4 bytes a bucket (the identity itself lives in the
/// slot). Linear probing with tombstones; grows (and drops tombstones) past 3/4 full.
struct IdentityIndex {
    /// 0: empty, 1: tombstone, otherwise slot index + 2.
    private var buckets: [UInt32] = Array(repeating: 0, count: 16)
    private var used = 0
    private var tombstones = 0

    /// The number of identities held.
    private(set) var count = 0

    /// A well-mixed hash of an identity (splitmix64 finaliser).
    static func hash(_ identity: FileIdentity) -> Int {
        var z = identity.device &* 0x9E37_79B9_7F4A_7C15 ^ identity.inode
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Int(truncatingIfNeeded: z ^ (z >> 31))
    }

    /// The slot holding `identity`, given how to read a slot's identity.
    func find(_ identity: FileIdentity, identityOf: (Int) -> FileIdentity) -> Int? {
        let mask = buckets.count - 1
        var position = Self.hash(identity) & mask
        while true {
            let value = buckets[position]
            if value == 0 { return nil }
            if value > 1, identityOf(Int(value - 2)) == identity { return Int(value - 2) }
            position = (position + 1) & mask
        }
    }

    /// Adds `slot` (whose identity is not in the set yet).
    mutating func insert(_ slot: Int, identity: FileIdentity, identityOf: (Int) -> FileIdentity) {
        if (used + 1) * 4 > buckets.count * 3 { rehash(identityOf: identityOf) }
        let mask = buckets.count - 1
        var position = Self.hash(identity) & mask
        while buckets[position] > 1 { position = (position + 1) & mask }
        if buckets[position] == 1 { tombstones -= 1 } else { used += 1 }
        buckets[position] = UInt32(truncatingIfNeeded: slot + 2)
        count += 1
    }

    /// Removes `slot`, found under `identity`.
    mutating func remove(_ slot: Int, identity: FileIdentity) {
        let mask = buckets.count - 1
        var position = Self.hash(identity) & mask
        while buckets[position] != 0 {
            if buckets[position] == UInt32(truncatingIfNeeded: slot + 2) {
                buckets[position] = 1
                tombstones += 1
                count -= 1
                return
            }
            position = (position + 1) & mask
        }
    }

    /// Empties the set.
    mutating func removeAll() { self = IdentityIndex() }

    private mutating func rehash(identityOf: (Int) -> FileIdentity) {
        var size = 16
        while (count + 1) * 2 > size { size *= 2 }
        let old = buckets
        buckets = Array(repeating: 0, count: size)
        used = 0
        tombstones = 0
        count = 0
        for value in old where value > 1 {
            let slot = Int(value - 2)
            insert(slot, identity: identityOf(slot), identityOf: identityOf)
        }
    }
}
