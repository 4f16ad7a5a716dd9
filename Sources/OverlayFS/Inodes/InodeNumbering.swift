import LayerCore
import Synchronization

/// Maps a layer entry's (device, inode) to the `st_ino` the mount reports, so that files from
/// different file systems never share one and a file keeps its number for the life of the mount.
///
/// Each device gets an index the first time it is seen; the layers' devices come first, top
/// layer first. Index 0 reports the real inode number: when every layer lives on one file
/// system, the mount shows the layers' own numbers (as kernel overlayfs does with `xino=off` on
/// one file system). Other devices put their index in the top 8 bits (as `xino` does). A number
/// that does not fit (inode >= 2^56, or more than 254 other devices) is folded into the space
/// of index 255 by a hash; such numbers are unique only with high probability.
///
/// The mapping depends on (device, inode) alone, never on the node, so `readdir`'s `d_ino`
/// equals the `st_ino` of the same entry.
///
/// Locking: one `Mutex` over the device map, a leaf lock.
public final class InodeNumbering: Sendable {
    private static let shift: UInt64 = 56
    private static let lowMask: UInt64 = (1 << 56) - 1
    private static let overflowIndex: UInt64 = 255

    private let devices: Mutex<[UInt64: UInt64]>
    /// The device of index 0 (read without the lock: the common case).
    private let primary: UInt64

    /// A numbering whose first devices are `devices` (top layer first; duplicates ignored).
    public init(devices: [UInt64]) {
        var map: [UInt64: UInt64] = [:]
        for device in devices where map[device] == nil {
            map[device] = UInt64(map.count)
        }
        primary = devices.first ?? 0
        self.devices = Mutex(map)
    }

    /// The `st_ino` for an entry with this identity.
    public func number(for identity: FileIdentity) -> UInt64 {
        let inode = identity.inode
        if identity.device == primary && inode <= Self.lowMask { return inode }
        let index = devices.withLock { map -> UInt64 in
            if let known = map[identity.device] { return known }
            let next = UInt64(map.count)
            map[identity.device] = next
            return next
        }
        if index < Self.overflowIndex && inode <= Self.lowMask { return (index << Self.shift) | inode }
        return (Self.overflowIndex << Self.shift) | (Self.mix(identity.device, inode) & Self.lowMask)
    }

    /// A 64-bit mix (splitmix64 finaliser) of a device and inode number.
    private static func mix(_ device: UInt64, _ inode: UInt64) -> UInt64 {
        var z = device &* 0x9E37_79B9_7F4A_7C15 ^ inode
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
