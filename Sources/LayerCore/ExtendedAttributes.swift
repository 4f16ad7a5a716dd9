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
    /// Entry NAME of directory fd N: `listxattrat(2)` / `getxattrat(2)` with
    /// `AT_SYMLINK_NOFOLLOW` where the kernel has them (6.13+), else `/proc/self/fd/N/NAME`.
    case entry(CInt, FileName)

    /// Whether this is an `entry` target.
    var isEntry: Bool {
        if case .entry = self { return true }
        return false
    }

    /// The `/proc/self/fd/N/NAME` form of an `entry` target.
    var procFallback: XattrTarget {
        guard case .entry(let dirfd, let name) = self else { return self }
        var path = Array("/proc/self/fd/\(dirfd)/".utf8).map { CChar(bitPattern: $0) }
        path.append(contentsOf: name.bytes.map { CChar(bitPattern: $0) })
        path.append(0)
        return .procPath(path)
    }
}

/// One extended attribute: its name (`user.note`, `security.capability`) and value, as bytes.
public struct ExtendedAttribute: Hashable, Sendable, Comparable {
    /// The attribute's full name, namespace included, without a NUL.
    public var name: [UInt8]
    /// The value (may contain any byte, NUL included).
    public var value: [UInt8]

    /// An attribute from its parts.
    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }

    /// An attribute from a Swift-string name (tests and fixed names).
    public init(_ name: String, value: [UInt8]) {
        self.init(name: Array(name.utf8), value: value)
    }

    /// The name for display (see ``escapeForDisplay(_:)``).
    public var displayName: String { escapeForDisplay(name) }

    /// Orders by name bytewise, then by value.
    public static func < (lhs: ExtendedAttribute, rhs: ExtendedAttribute) -> Bool {
        if lhs.name != rhs.name { return lhs.name.lexicographicallyPrecedes(rhs.name) }
        return lhs.value.lexicographicallyPrecedes(rhs.value)
    }
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
        try listNames(entryTarget(entry))
    }

    /// The value of extended attribute `name` of entry `entry` of this directory (not following a
    /// symlink).
    ///
    /// - Throws: `ENODATA` when absent, other `lgetxattr(2)` errnos.
    /// - Wraps lgetxattr(2) on /proc/self/fd/N/NAME.
    public func extendedAttribute(_ name: [UInt8], of entry: FileName) throws(Errno) -> [UInt8] {
        try getValue(entryTarget(entry), name)
    }

    /// All extended attributes (names and values) of entry `entry` of this directory, not
    /// following a symlink, sorted by name. A file system without xattr support gives none.
    ///
    /// - Throws: `ENOENT`, `EACCES` and other `llistxattr(2)` / `lgetxattr(2)` errnos. An
    ///   attribute removed between listing and reading is skipped.
    /// - Wraps listxattrat(2) and getxattrat(2), or llistxattr(2) and lgetxattr(2) on
    ///   /proc/self/fd/N/NAME on kernels before 6.13.
    public func extendedAttributes(of entry: FileName) throws(Errno) -> [ExtendedAttribute] {
        let target = entryTarget(entry)
        let names: [[UInt8]]
        do {
            names = try listNames(target)
        } catch .notSupported {
            return []
        }
        if names.isEmpty { return [] }
        var result: [ExtendedAttribute] = []
        result.reserveCapacity(names.count)
        for name in names {
            do {
                result.append(ExtendedAttribute(name: name, value: try getValue(target, name)))
            } catch .noData {
                continue
            }
        }
        result.sort()
        return result
    }

    /// All extended attributes (names and values) of the file this descriptor refers to, sorted
    /// by name. A file system without xattr support gives none.
    ///
    /// - Throws: `flistxattr(2)` / `fgetxattr(2)` errnos other than `ENOTSUP`.
    /// - Wraps flistxattr(2) and fgetxattr(2) (through /proc/self/fd/N for O_PATH descriptors).
    public func extendedAttributes() throws(Errno) -> [ExtendedAttribute] {
        let names: [[UInt8]]
        do {
            names = try extendedAttributeNames()
        } catch .notSupported {
            return []
        }
        var result: [ExtendedAttribute] = []
        for name in names {
            do {
                result.append(ExtendedAttribute(name: name, value: try extendedAttribute(name)))
            } catch .noData {
                continue
            }
        }
        result.sort()
        return result
    }

    /// Removes extended attribute `name` of the file open as this (non-`O_PATH`) descriptor.
    ///
    /// - Throws: `ENODATA` when absent, other `fremovexattr(2)` errnos.
    /// - Wraps fremovexattr(2).
    public func removeExtendedAttribute(_ name: [UInt8]) throws(Errno) {
        var cName = name.map { CChar(bitPattern: $0) }
        cName.append(0)
        _ = try valueOrErrno { fremovexattr(rawValue, cName) }
    }

    /// Removes extended attribute `name` of entry `entry` of this directory (not following a
    /// symlink).
    ///
    /// - Throws: `ENODATA` when absent, other `lremovexattr(2)` errnos.
    /// - Wraps lremovexattr(2) on /proc/self/fd/N/NAME.
    public func removeExtendedAttribute(_ name: [UInt8], of entry: FileName) throws(Errno) {
        let path = entryPath(entry)
        var cName = name.map { CChar(bitPattern: $0) }
        cName.append(0)
        _ = try valueOrErrno { lremovexattr(path, cName) }
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

    private func entryTarget(_ entry: FileName) -> XattrTarget {
        .entry(rawValue, entry)
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

/// One list call into `buffer` (`errno` set on failure).
private func listCall(_ target: XattrTarget, _ buffer: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int {
    switch target {
    case .descriptor(let fd): return flistxattr(fd, buffer, size)
    case .procPath(let path): return path.withUnsafeBufferPointer { llistxattr($0.baseAddress, buffer, size) }
    case .magicLink(let path): return path.withUnsafeBufferPointer { listxattr($0.baseAddress, buffer, size) }
    case .entry(let dirfd, let name):
        let result = try? name.withCString { (cName) throws(Errno) -> Int in
            cls_listxattrat(dirfd, cName, UInt32(AT_SYMLINK_NOFOLLOW), buffer, size)
        }
        guard let result else {
            errno = EINVAL
            return -1
        }
        return result
    }
}

/// One get call into `buffer` (`errno` set on failure).
private func getCall(
    _ target: XattrTarget, _ cName: UnsafePointer<CChar>, _ buffer: UnsafeMutablePointer<UInt8>?, _ size: Int
) -> Int {
    switch target {
    case .descriptor(let fd): return fgetxattr(fd, cName, buffer, size)
    case .procPath(let path): return path.withUnsafeBufferPointer { lgetxattr($0.baseAddress, cName, buffer, size) }
    case .magicLink(let path): return path.withUnsafeBufferPointer { getxattr($0.baseAddress, cName, buffer, size) }
    case .entry(let dirfd, let name):
        let result = try? name.withCString { (cEntry) throws(Errno) -> Int in
            cls_getxattrat(dirfd, cEntry, UInt32(AT_SYMLINK_NOFOLLOW), cName, buffer, size)
        }
        guard let result else {
            errno = EINVAL
            return -1
        }
        return result
    }
}

/// Splits a NUL-separated name list.
private func splitNames(_ list: UnsafeBufferPointer<CChar>) -> [[UInt8]] {
    var names: [[UInt8]] = []
    var start = 0
    for index in 0..<list.count where list[index] == 0 {
        if index > start { names.append(list[start..<index].map { UInt8(bitPattern: $0) }) }
        start = index + 1
    }
    return names
}

private func listNames(_ target: XattrTarget) throws(Errno) -> [[UInt8]] {
    var target = target
    // First try with a buffer on the stack: most files have no xattrs, or a few short ones.
    while true {
        let first: Result<[[UInt8]]?, Errno> = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 1024) { buffer in
            do throws(Errno) {
                let count = try valueOrErrno { listCall(target, buffer.baseAddress, buffer.count) }
                return .success(count == 0 ? [] : splitNames(UnsafeBufferPointer(rebasing: buffer[0..<count])))
            } catch .outOfRange {
                return .success(nil)
            } catch {
                return .failure(error)
            }
        }
        do throws(Errno) {
            if let names = try first.get() { return names }
            break
        } catch .notImplemented where target.isEntry {
            target = target.procFallback
        }
    }
    var capacity = 4096
    while true {
        var buffer = [CChar](repeating: 0, count: capacity)
        let count: Int
        do {
            count = try buffer.withUnsafeMutableBufferPointer { (raw) throws(Errno) -> Int in
                try valueOrErrno { listCall(target, raw.baseAddress, raw.count) }
            }
        } catch .outOfRange {
            guard capacity < 1 << 22 else { throw .outOfRange }
            capacity *= 4
            continue
        } catch .notImplemented where target.isEntry {
            target = target.procFallback
            continue
        }
        return buffer.withUnsafeBufferPointer { splitNames(UnsafeBufferPointer(rebasing: $0[0..<count])) }
    }
}

private func getValue(_ target: XattrTarget, _ name: [UInt8]) throws(Errno) -> [UInt8] {
    var target = target
    var cName = name.map { CChar(bitPattern: $0) }
    cName.append(0)
    var capacity = 256
    while true {
        var buffer = [UInt8](repeating: 0, count: capacity)
        let count: Int
        do {
            count = try buffer.withUnsafeMutableBufferPointer { (raw) throws(Errno) -> Int in
                try cName.withUnsafeBufferPointer { (c) throws(Errno) -> Int in
                    guard let cBase = c.baseAddress else { throw .invalidArgument }
                    return try valueOrErrno { getCall(target, cBase, raw.baseAddress, raw.count) }
                }
            }
        } catch .outOfRange {
            guard capacity < 1 << 22 else { throw .outOfRange }
            capacity *= 8
            continue
        } catch .notImplemented where target.isEntry {
            target = target.procFallback
            continue
        }
        return Array(buffer[0..<count])
    }
}
