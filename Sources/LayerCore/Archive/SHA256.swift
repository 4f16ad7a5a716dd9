import CCrypto

/// A SHA-256 digest, as OCI image manifests use for layers (`sha256:<64 hex digits>`).
public struct SHA256Digest: Hashable, Sendable, CustomStringConvertible {
    /// The 32 digest bytes.
    public let bytes: [UInt8]

    /// Wraps 32 digest bytes.
    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// The digest as 64 lowercase hex digits.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `sha256:<hex>`, the OCI digest form.
    public var description: String { "sha256:" + hex }

    /// The digest of `bytes` in one call.
    public static func of(_ bytes: [UInt8]) -> SHA256Digest {
        let hasher = SHA256Hasher()
        bytes.withUnsafeBytes { hasher.update($0) }
        return hasher.finalize()
    }
}

/// An incremental SHA-256 computation over OpenSSL's EVP interface (libcrypto). Feed it with
/// ``update(_:)``, then call ``finalize()`` once.
///
/// Not thread-safe: use one hasher per stream. It is a class because it owns the EVP context.
public final class SHA256Hasher {
    private let context: OpaquePointer?
    private var finished = false

    /// Starts a new digest.
    public init() {
        context = EVP_MD_CTX_new()
        if let context { _ = EVP_DigestInit_ex(context, EVP_sha256(), nil) }
    }

    deinit { EVP_MD_CTX_free(context) }

    /// Adds `buffer` to the digest. Wraps EVP_DigestUpdate(3).
    public func update(_ buffer: UnsafeRawBufferPointer) {
        guard let context, !finished, buffer.count > 0 else { return }
        _ = EVP_DigestUpdate(context, buffer.baseAddress, buffer.count)
    }

    /// The digest of everything added so far; the hasher is finished afterwards (further updates
    /// are ignored). Wraps EVP_DigestFinal_ex(3).
    public func finalize() -> SHA256Digest {
        var out = [UInt8](repeating: 0, count: 32)
        guard let context, !finished else { return SHA256Digest(bytes: out) }
        finished = true
        var length: UInt32 = 0
        _ = out.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        return SHA256Digest(bytes: out)
    }
}
