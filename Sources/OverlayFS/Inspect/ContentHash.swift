import CXXHash
import Glibc
import LayerCore

/// The content hash the inspect commands report: XXH3 128-bit (the project's hash, via
/// CXXHash), printed as 32 lowercase hex digits. 128 bits make accidental collisions between
/// versions of a file practically impossible, at the speed of XXH3-64.
public struct ContentHash: Hashable, Sendable, CustomStringConvertible {
    /// The high 64 bits.
    public var high: UInt64
    /// The low 64 bits.
    public var low: UInt64

    /// A hash from its halves.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The hash as 32 hex digits, high half first (the canonical XXH128 order).
    public var description: String {
        Self.hex(high) + Self.hex(low)
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// The hash of `bytes`.
    public static func of(_ bytes: [UInt8]) -> ContentHash {
        var hasher = ContentHasher()
        bytes.withUnsafeBytes { hasher.update($0) }
        return hasher.finish()
    }

    /// The hash of the whole content of the open regular file `file`, read with `pread` from
    /// offset 0 (holes read as zeros, as a reader of the mount sees them).
    ///
    /// - Throws: the `pread(2)` errno.
    public static func of(file: FileDescriptor) throws(Errno) -> ContentHash {
        var hasher = ContentHasher()
        let capacity = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while true {
            try Interruption.shared.checkErrno()
            let count = try file.read(into: buffer, at: offset)
            if count == 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            offset += Int64(count)
        }
        return hasher.finish()
    }
}

/// A streaming XXH3-128 computation (for tar entries read block by block).
public struct ContentHasher: ~Copyable {
    private let state: OpaquePointer?

    /// A fresh hasher.
    public init() {
        state = XXH3_createState()
        if let state { XXH3_128bits_reset(state) }
    }

    /// Feeds `bytes`.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let state, let base = bytes.baseAddress, bytes.count > 0 else { return }
        XXH3_128bits_update(state, base, bytes.count)
    }

    /// Feeds `count` zero bytes (the holes of a sparse file, as a reader sees them).
    public mutating func updateWithZeros(_ count: Int64) {
        guard let state, count > 0 else { return }
        let zeros = ContentHasher.zeros
        var remaining = count
        while remaining > 0 {
            let chunk = Int(min(remaining, Int64(zeros.count)))
            zeros.withUnsafeBytes { bytes in
                if let base = bytes.baseAddress { XXH3_128bits_update(state, base, chunk) }
            }
            remaining -= Int64(chunk)
        }
    }

    private static let zeros = [UInt8](repeating: 0, count: 1 << 16)

    /// The hash of everything fed so far.
    public func finish() -> ContentHash {
        guard let state else { return ContentHash(high: 0, low: 0) }
        let digest = XXH3_128bits_digest(state)
        return ContentHash(high: digest.high64, low: digest.low64)
    }

    deinit {
        if let state { XXH3_freeState(state) }
    }
}
