import CLayerSys
import Glibc

/// Where an extended-attribute call applies: an open file, or an entry of a directory reached
/// without following a symlink (through `/proc/self/fd/N/NAME` and the `l*xattr` calls).
private enum XattrTarget {
    case descriptor(CInt)
    /// `/proc/self/fd/N/NAME`: the `l*xattr` calls, which do not follow a final symlink.
    case procPath([CChar])
    /// `/proc/self/fd/N`: the following calls, which jump through the magic link to the file.
    case magicLink([CChar])
}

extension FileDescriptor {
    /// The names of the extended attributes of the file this descriptor refers to (which may be
    /// an `O_PATH` descriptor), in the file system's order.
    ///
    /// - Throws: `ENOTSUP` when the file system has none, other `flistxattr(2)` errnos.
    /// - Wraps flistxattr(2), or listxattr(2) on /proc/self/fd/N for O_PATH descriptors.
    public func extendedAttributeNames() throws(Errno) -> [[UInt8]] {
        do {
            return try listNames(.descriptor(rawValue))
        } catch .badFileDescriptor {
            return try listNames(.magicLink(cPath(procPath)))
        }
    }

    /// The value of extended attribute `name` of the file this descriptor refers to.
    ///
    /// - Throws: `ENODATA` when the attribute is absent, other `fgetxattr(2)` errnos.
    /// - Wraps fgetxattr(2), or getxattr(2) on /proc/self/fd/N for O_PATH descriptors.
    public func extendedAttribute(_ name: [UInt8]) throws(Errno) -> [UInt8] {
        do {
            return try getValue(.descriptor(rawValue), name)
        } catch .badFileDescriptor {
            return try getValue(.magicLink(cPath(procPath)), name)
        }
    }

    /// The names of the extended attributes of entry `entry` of this directory (not following a
    /// symlink).
    ///
    /// - Throws: `ENOTSUP`, `ENOENT`, other `llistxattr(2)` errnos.
    /// - Wraps llistxattr(2) on /proc/self/fd/N/NAME.
    public func extendedAttributeNames(of entry: FileName) throws(Errno) -> [[UInt8]] {
        try listNames(.procPath(entryPath(entry)))
    }

    /// The value of extended attribute `name` of entry `entry` of this directory (not following a
    /// symlink).
    ///
    /// - Throws: `ENODATA` when absent, other `lgetxattr(2)` errnos.
    /// - Wraps lgetxattr(2) on /proc/self/fd/N/NAME.
    public func extendedAttribute(_ name: [UInt8], of entry: FileName) throws(Errno) -> [UInt8] {
        try getValue(.procPath(entryPath(entry)), name)
    }

    /// Sets extended attribute `name` of entry `entry` of this directory (not following a symlink).
    ///
    /// - Throws: the `lsetxattr(2)` errno.
    /// - Wraps lsetxattr(2) on /proc/self/fd/N/NAME.
    public func setExtendedAttribute(_ name: [UInt8], value: [UInt8], of entry: FileName) throws(Errno) {
        let path = entryPath(entry)
        var cName = name.map { CChar(bitPattern: $0) }
        cName.append(0)
        _ = try valueOrErrno {
            value.withUnsafeBytes { raw in lsetxattr(path, cName, raw.baseAddress, raw.count, 0) }
        }
    }

    /// Sets extended attribute `name` of the file open as this (non-`O_PATH`) descriptor.
    ///
    /// - Throws: the `fsetxattr(2)` errno.
    /// - Wraps fsetxattr(2).
    public func setExtendedAttribute(_ name: [UInt8], value: [UInt8]) throws(Errno) {
        var cName = name.map { CChar(bitPattern: $0) }
        cName.append(0)
        _ = try valueOrErrno {
            value.withUnsafeBytes { raw in fsetxattr(rawValue, cName, raw.baseAddress, raw.count, 0) }
        }
    }

    private func entryPath(_ entry: FileName) -> [CChar] {
        var path = Array("/proc/self/fd/\(rawValue)/".utf8).map { CChar(bitPattern: $0) }
        path.append(contentsOf: entry.bytes.map { CChar(bitPattern: $0) })
        path.append(0)
        return path
    }

    private func cPath(_ string: String) -> [CChar] {
        var path = Array(string.utf8).map { CChar(bitPattern: $0) }
        path.append(0)
        return path
    }
}

private func listNames(_ target: XattrTarget) throws(Errno) -> [[UInt8]] {
    var capacity = 1024
    while true {
        var buffer = [CChar](repeating: 0, count: capacity)
        let count: Int
        do {
            count = try buffer.withUnsafeMutableBufferPointer { (raw) throws(Errno) -> Int in
                try valueOrErrno {
                    switch target {
                    case .descriptor(let fd): flistxattr(fd, raw.baseAddress, raw.count)
                    case .procPath(let path):
                        path.withUnsafeBufferPointer { llistxattr($0.baseAddress, raw.baseAddress, raw.count) }
                    case .magicLink(let path):
                        path.withUnsafeBufferPointer { listxattr($0.baseAddress, raw.baseAddress, raw.count) }
                    }
                }
            }
        } catch .outOfRange {
            guard capacity < 1 << 22 else { throw .outOfRange }
            capacity *= 4
            continue
        }
        var names: [[UInt8]] = []
        var start = 0
        for index in 0..<count where buffer[index] == 0 {
            if index > start { names.append(buffer[start..<index].map { UInt8(bitPattern: $0) }) }
            start = index + 1
        }
        return names
    }
}

private func getValue(_ target: XattrTarget, _ name: [UInt8]) throws(Errno) -> [UInt8] {
    var cName = name.map { CChar(bitPattern: $0) }
    cName.append(0)
    var capacity = 256
    while true {
        var buffer = [UInt8](repeating: 0, count: capacity)
        let count: Int
        do {
            count = try buffer.withUnsafeMutableBufferPointer { (raw) throws(Errno) -> Int in
                try valueOrErrno {
                    switch target {
                    case .descriptor(let fd): fgetxattr(fd, cName, raw.baseAddress, raw.count)
                    case .procPath(let path):
                        path.withUnsafeBufferPointer { lgetxattr($0.baseAddress, cName, raw.baseAddress, raw.count) }
                    case .magicLink(let path):
                        path.withUnsafeBufferPointer { getxattr($0.baseAddress, cName, raw.baseAddress, raw.count) }
                    }
                }
            }
        } catch .outOfRange {
            guard capacity < 1 << 22 else { throw .outOfRange }
            capacity *= 8
            continue
        }
        return Array(buffer[0..<count])
    }
}
