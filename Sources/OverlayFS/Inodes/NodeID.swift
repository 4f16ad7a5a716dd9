/// A node of the mounted tree, as the FUSE low-level protocol names it (`fuse_ino_t`).
///
/// Contract: 1 is the root; every other value comes from ``InodeTable``'s counter, starting at
/// 2, and is never reused during a session, so a stale ID from the kernel can only miss (and
/// get `ESTALE`), never reach another file. It is not the `st_ino` the mount reports: see
/// ``InodeNumbering``.
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The raw protocol value.
    public let rawValue: UInt64

    /// Wraps a raw protocol value.
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// The root of the mount (`FUSE_ROOT_ID`).
    public static let root = NodeID(1)

    /// Orders IDs numerically (older nodes first).
    public static func < (lhs: NodeID, rhs: NodeID) -> Bool { lhs.rawValue < rhs.rawValue }

    /// `node N`.
    public var description: String { "node \(rawValue)" }
}
