/// One component of a path, as the bytes the kernel stores.
///
/// Never empty, never contains `/` or NUL, at most ``maxLength`` bytes. Names are not required to be
/// UTF-8; convert to `String` only for display (``description`` escapes what is not printable).
public struct FileName: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// NAME_MAX on Linux.
    public static let maxLength = 255

    /// The raw bytes of the name, without a terminating NUL.
    public let bytes: [UInt8]

    /// Validates and wraps raw name bytes.
    ///
    /// - Throws: `EINVAL` for an empty name or one containing `/` or NUL; `ENAMETOOLONG` past 255 bytes.
    public init<Bytes: Collection>(validating bytes: Bytes) throws(Errno) where Bytes.Element == UInt8 {
        guard !bytes.isEmpty else { throw .invalidArgument }
        guard bytes.count <= FileName.maxLength else { throw .nameTooLong }
        for byte in bytes where byte == 0x2F || byte == 0 { throw .invalidArgument }
        self.bytes = Array(bytes)
    }

    /// Wraps bytes already known to be a valid name (from the kernel or `getdents64`).
    /// Invalid input is caught by `assert` in debug builds only, so call it only on trusted bytes.
    public init(unchecked bytes: [UInt8]) {
        assert(!bytes.isEmpty && bytes.count <= 255 && !bytes.contains(0x2F) && !bytes.contains(0))
        self.bytes = bytes
    }

    /// A name from a Swift string (tests and fixed names such as `.wh..wh..opq`).
    ///
    /// - Throws: as ``init(validating:)``.
    public init(_ string: String) throws(Errno) {
        try self.init(validating: Array(string.utf8))
    }

    /// Reads a NUL-terminated C name, as the kernel passes it.
    ///
    /// - Throws: `EINVAL` or `ENAMETOOLONG` as ``init(validating:)``.
    public init(cString: UnsafePointer<CChar>) throws(Errno) {
        let buffer = UnsafeBufferPointer(start: cString, count: strlenBounded(cString, FileName.maxLength + 1))
        try self.init(validating: buffer.lazy.map { UInt8(bitPattern: $0) })
    }

    /// `.` or `..`.
    public var isDotOrDotDot: Bool {
        bytes == [0x2E] || bytes == [0x2E, 0x2E]
    }

    /// Whether the name starts with `prefix`.
    public func hasPrefix(_ prefix: [UInt8]) -> Bool {
        bytes.count >= prefix.count && bytes[0..<prefix.count].elementsEqual(prefix)
    }

    /// Runs `body` with a NUL-terminated copy of the name.
    ///
    /// - Throws: whatever `body` throws.
    public func withCString<R>(_ body: (UnsafePointer<CChar>) throws(Errno) -> R) throws(Errno) -> R {
        // On the stack: names are at most 255 bytes, and this runs once per syscall.
        let count = bytes.count
        let result: Result<R, Errno> = withUnsafeTemporaryAllocation(of: CChar.self, capacity: count + 1) { buffer in
            guard let base = buffer.baseAddress else { return .failure(.invalidArgument) }
            bytes.withUnsafeBytes { source in
                if let from = source.baseAddress {
                    UnsafeMutableRawPointer(base).copyMemory(from: from, byteCount: count)
                }
            }
            base[count] = 0
            do throws(Errno) { return .success(try body(base)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// The name for display: UTF-8 where valid, with control bytes and invalid bytes as `\xHH`.
    public var description: String { escapeForDisplay(bytes) }

    /// Orders names bytewise, as `LC_ALL=C sort` does.
    public static func < (lhs: FileName, rhs: FileName) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}

/// A path relative to a layer root or tree root, as a list of names. The empty path is the root.
public struct RelativePath: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The components, outermost first.
    public var components: [FileName]

    /// The root (no components).
    public static let root = RelativePath(components: [])

    /// Wraps a list of components.
    public init(components: [FileName]) { self.components = components }

    /// Parses a `/`-separated path; empty components and `.` are dropped.
    ///
    /// - Throws: `EINVAL` for a `..` component; `ENAMETOOLONG` for a component past 255 bytes.
    public init(parsing bytes: [UInt8]) throws(Errno) {
        var parts: [FileName] = []
        for piece in bytes.split(separator: 0x2F, omittingEmptySubsequences: true) {
            if piece.elementsEqual([0x2E]) { continue }
            if piece.elementsEqual([0x2E, 0x2E]) { throw .invalidArgument }
            parts.append(try FileName(validating: piece))
        }
        components = parts
    }

    /// Parses a path given as a Swift string. See ``init(parsing:)``.
    public init(_ string: String) throws(Errno) { try self.init(parsing: Array(string.utf8)) }

    /// Whether this is the root.
    public var isRoot: Bool { components.isEmpty }

    /// The last component, or nil for the root.
    public var lastName: FileName? { components.last }

    /// The parent path (the root's parent is the root).
    public var parent: RelativePath { RelativePath(components: Array(components.dropLast())) }

    /// This path with one more component.
    public func appending(_ name: FileName) -> RelativePath {
        RelativePath(components: components + [name])
    }

    /// The path as bytes joined with `/`; the root is `.`.
    public var bytes: [UInt8] {
        if components.isEmpty { return [0x2E] }
        var out: [UInt8] = []
        out.reserveCapacity(components.reduce(0) { $0 + $1.bytes.count + 1 })
        for (index, name) in components.enumerated() {
            if index > 0 { out.append(0x2F) }
            out.append(contentsOf: name.bytes)
        }
        return out
    }

    /// The path for display (see ``FileName/description``); the root is `.`.
    public var description: String { escapeForDisplay(bytes) }

    /// Orders paths component by component, bytewise (parents sort before their children).
    public static func < (lhs: RelativePath, rhs: RelativePath) -> Bool {
        lhs.components.lexicographicallyPrecedes(rhs.components)
    }
}

/// Escapes bytes for display: valid UTF-8 stays, control characters, backslash and invalid bytes
/// become `\xHH` (so a name with a newline prints on one line).
public func escapeForDisplay(_ bytes: [UInt8]) -> String {
    var out = ""
    var index = 0
    while index < bytes.count {
        let byte = bytes[index]
        if byte >= 0x20 && byte < 0x7F && byte != 0x5C {
            out.unicodeScalars.append(Unicode.Scalar(byte))
            index += 1
            continue
        }
        if byte >= 0x80, let (scalar, length) = decodeUTF8Scalar(bytes, at: index) {
            out.unicodeScalars.append(scalar)
            index += length
            continue
        }
        out += "\\x" + String(byte, radix: 16, uppercase: false).leftPadded(to: 2)
        index += 1
    }
    return out
}

private func decodeUTF8Scalar(_ bytes: [UInt8], at start: Int) -> (Unicode.Scalar, Int)? {
    let lead = bytes[start]
    let length: Int
    if lead & 0xE0 == 0xC0 {
        length = 2
    } else if lead & 0xF0 == 0xE0 {
        length = 3
    } else if lead & 0xF8 == 0xF0 {
        length = 4
    } else {
        return nil
    }
    guard start + length <= bytes.count else { return nil }
    var decoder = UTF8()
    var iterator = bytes[start..<start + length].makeIterator()
    if case .scalarValue(let scalar) = decoder.decode(&iterator), scalar.value >= 0x80 {
        return (scalar, length)
    }
    return nil
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

private func strlenBounded(_ pointer: UnsafePointer<CChar>, _ limit: Int) -> Int {
    var length = 0
    while length < limit && pointer[length] != 0 { length += 1 }
    return length
}

/// Calls `body` with the base address of a NUL-terminated buffer.
@inline(__always)
func withCStringStorage<R>(
    _ storage: [CChar], _ body: (UnsafePointer<CChar>) throws(Errno) -> R
) throws(Errno) -> R {
    let result: Result<R, Errno> = storage.withUnsafeBufferPointer { buffer in
        guard let base = buffer.baseAddress else { return .failure(.invalidArgument) }
        do throws(Errno) { return .success(try body(base)) } catch { return .failure(error) }
    }
    return try result.get()
}
