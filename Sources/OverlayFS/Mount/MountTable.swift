import Glibc
import LayerCore

/// The mounts of this process's mount namespace, from `/proc/self/mountinfo`.
public struct MountTable: Sendable {
    /// One mount.
    public struct Mount: Sendable, Equatable {
        /// The mount point (octal escapes decoded).
        public var mountPoint: String
        /// The file system type (`fuse.layermount`, `overlay`, ...).
        public var type: String
        /// The mount source (for FUSE mounts the `fsname`).
        public var source: String
    }

    /// The mounts, in mount order.
    public var mounts: [Mount]

    /// Parses the text of a mountinfo file.
    public init(parsing text: String) {
        var mounts: [Mount] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard let dash = fields.firstIndex(of: "-"), dash >= 5, dash + 2 < fields.count else { continue }
            mounts.append(
                Mount(
                    mountPoint: Self.unescape(fields[4]), type: String(fields[dash + 1]),
                    source: Self.unescape(fields[dash + 2])))
        }
        self.mounts = mounts
    }

    /// The current table.
    ///
    /// - Throws: the errno of reading `/proc/self/mountinfo`.
    public static func current() throws(Errno) -> MountTable {
        let file = try FileDescriptor.open(path: "/proc/self/mountinfo", flags: O_RDONLY)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let result = chunk.withUnsafeMutableBytes { raw in Result { () throws(Errno) in try file.read(into: raw) } }
            let count = try result.get()
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return MountTable(parsing: String(decoding: bytes, as: UTF8.self))
    }

    /// The topmost mount at `path` (an absolute, canonical path), or nil.
    public func mount(at path: String) -> Mount? {
        mounts.last { $0.mountPoint == path }
    }

    /// Decodes mountinfo's octal escapes (`\040` for a space).
    static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        let raw = Array(field.utf8)
        var index = 0
        while index < raw.count {
            if raw[index] == 0x5C, index + 3 < raw.count,
                let value = UInt8(String(decoding: raw[(index + 1)...(index + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(raw[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
