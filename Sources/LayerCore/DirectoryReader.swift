import CLayerSys
import Glibc

/// One entry of a directory as `getdents64(2)` returns it.
public struct DirectoryEntry: Sendable, Hashable {
    /// The entry's name (never `.` or `..`: the reader drops them).
    public var name: FileName
    /// `d_ino`: the inode number in the directory's file system.
    public var inode: UInt64
    /// `d_type`; nil when the file system does not say (`DT_UNKNOWN`).
    public var type: FileType?

    /// An entry from its parts.
    public init(name: FileName, inode: UInt64, type: FileType?) {
        self.name = name
        self.inode = inode
        self.type = type
    }
}

/// Reads the entries of a directory with `getdents64(2)`, without `opendir(3)` allocations.
public enum DirectoryReader {
    /// Calls `body` for each entry of the directory open as `directory` (opened with
    /// `O_RDONLY | O_DIRECTORY`), skipping `.` and `..`. Reads from the descriptor's current
    /// offset, so use a freshly opened descriptor.
    ///
    /// - Throws: the `getdents64(2)` errno, or what `body` throws.
    /// - Wraps getdents64(2).
    public static func forEachEntry(
        in directory: FileDescriptor, _ body: (DirectoryEntry) throws(Errno) -> Void
    ) throws(Errno) {
        let capacity = 64 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let count = try valueOrErrno { cls_getdents64(directory.rawValue, buffer, capacity) }
            if count == 0 { return }
            var offset = 0
            while offset + 19 <= count {
                let record = buffer + offset
                let inode = record.loadUnaligned(as: UInt64.self)
                let length = Int(record.loadUnaligned(fromByteOffset: 16, as: UInt16.self))
                let type = record.load(fromByteOffset: 18, as: UInt8.self)
                guard length > 0 else { throw .ioError }
                let namePointer = (record + 19).assumingMemoryBound(to: UInt8.self)
                let nameLength = strnlen(UnsafePointer<CChar>(OpaquePointer(namePointer)), length - 19)
                offset += length
                let bytes = UnsafeBufferPointer(start: namePointer, count: nameLength)
                if nameLength == 0 { continue }
                if nameLength == 1 && bytes[0] == 0x2E { continue }
                if nameLength == 2 && bytes[0] == 0x2E && bytes[1] == 0x2E { continue }
                guard let name = try? FileName(validating: bytes) else { continue }
                try body(DirectoryEntry(name: name, inode: inode, type: FileType(directoryEntryType: type)))
            }
        }
    }

    /// All entries of the directory, in the file system's order. See ``forEachEntry(in:_:)``.
    ///
    /// - Throws: the `getdents64(2)` errno.
    public static func entries(of directory: FileDescriptor) throws(Errno) -> [DirectoryEntry] {
        var result: [DirectoryEntry] = []
        try forEachEntry(in: directory) { entry in result.append(entry) }
        return result
    }
}
