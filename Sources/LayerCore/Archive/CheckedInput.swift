import CCompress
import Glibc

/// The byte stream of a layer tarball for ``ArchiveReader``, with gzip and zstd decoded here so
/// that every checksum is verified: libarchive does not check a gzip member's CRC-32 and length,
/// and it stops reading at the tar end-of-archive blocks, before the last member's trailer or
/// the last zstd frame's checksum. Any other stream (plain tar, xz, bzip2) passes through as read,
/// and libarchive decodes it.
///
/// A damaged stream (a CRC or checksum mismatch, an invalid code, a stream cut short) makes
/// ``read()`` return nil and sets ``failure``; ``finish()`` decodes what follows the tar's
/// end so that the whole stream is checked.
final class CheckedInput {
    /// How the stream is encoded.
    enum Codec: Equatable {
        case none, gzip, zstd
    }

    private let input: FileDescriptor
    private static let capacity = 256 * 1024
    private let raw = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    private var rawStart = 0
    private var rawEnd = 0
    private var rawEnded = false
    private let output = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    private var started = false
    /// The encoding, known after the first ``read()``.
    private(set) var codec: Codec = .none
    /// Why the stream cannot be read, once it cannot.
    private(set) var failure: String?
    /// The errno of a failed read(2), if that was the failure.
    private(set) var failureErrno: Errno?
    /// Bytes of the decoded stream handed out or skipped so far.
    private(set) var position: Int64 = 0
    /// The position just after the last non-zero byte handed out: what follows the tar's
    /// end-of-archive blocks must be zeros (padding), not more entries.
    private(set) var endOfData: Int64 = 0

    private var inflater = z_stream()
    private var inflaterReady = false
    private var inMember = false
    private var decompressor: OpaquePointer?
    /// libzstd's last hint: 0 when the frames so far are complete.
    private var zstdPending = 0
    private var outputWasFull = false

    init(input: FileDescriptor) { self.input = input }

    deinit {
        if inflaterReady { inflateEnd(&inflater) }
        if let decompressor { ZSTD_freeDCtx(decompressor) }
        raw.deallocate()
        output.deallocate()
    }

    /// The next bytes of the decoded stream (valid until the next call); empty at the end; nil
    /// when the stream is damaged or cannot be read (see ``failure``).
    func read() -> UnsafeRawBufferPointer? {
        if failure != nil { return nil }
        if !started {
            started = true
            guard detect() else { return nil }
        }
        let chunk: UnsafeRawBufferPointer?
        switch codec {
        case .none: chunk = passThrough()
        case .gzip: chunk = inflateNext()
        case .zstd: chunk = decompressNext()
        }
        if let chunk { note(chunk) }
        return chunk
    }

    /// Advances ``position`` over `chunk` and ``endOfData`` to its last non-zero byte (found
    /// from the end: at once, unless the chunk ends in zeros).
    private func note(_ chunk: UnsafeRawBufferPointer) {
        var end = chunk.count
        while end >= 8 && chunk.loadUnaligned(fromByteOffset: end - 8, as: UInt64.self) == 0 { end -= 8 }
        while end > 0 && chunk[end - 1] == 0 { end -= 1 }
        if end > 0 { endOfData = position + Int64(end) }
        position += Int64(chunk.count)
    }

    /// Skips up to `count` bytes of a stream that is not decoded here, with lseek(2) when the
    /// input is seekable; 0 otherwise (libarchive then reads through). Never past the end of a
    /// regular file (lseek(2) would go there without complaint): libarchive reads the rest and
    /// finds the archive truncated, instead of skipping into nothing.
    func skip(_ count: Int64) -> Int64 {
        guard started, codec == .none, failure == nil, rawStart == rawEnd, count > 0 else { return 0 }
        let before = lseek(input.rawValue, 0, SEEK_CUR)
        guard before >= 0 else { return 0 }
        var status = stat()
        guard fstat(input.rawValue, &status) == 0 else { return 0 }
        var length = count
        if (status.st_mode & S_IFMT) == S_IFREG {
            length = min(count, max(0, Int64(status.st_size) - Int64(before)))
        }
        guard length > 0, lseek(input.rawValue, off_t(length), SEEK_CUR) >= 0 else { return 0 }
        position += length
        return length
    }

    /// Reads (and decodes) the rest of the stream, so that its last checksums are verified
    /// too, and ``endOfData`` covers it.
    ///
    /// - Throws: ``ArchiveError`` when the rest is damaged.
    func finish() throws(ArchiveError) {
        while let chunk = read() {
            if chunk.isEmpty { return }
        }
        throw ArchiveError(failure ?? "damaged stream", errno: failureErrno, isDamage: failureErrno == nil)
    }

    // MARK: - Raw input

    /// Reads more raw bytes after those not yet consumed; false at the end of the input.
    private func fill() -> Bool {
        if rawEnded { return false }
        if rawStart > 0 {
            let remaining = rawEnd - rawStart
            if remaining > 0 { memmove(raw, raw + rawStart, remaining) }
            rawStart = 0
            rawEnd = remaining
        }
        guard rawEnd < Self.capacity else { return true }
        while true {
            let count = Glibc.read(input.rawValue, raw + rawEnd, Self.capacity - rawEnd)
            if count < 0 && errno == EINTR { continue }
            if count < 0 {
                let error = Errno.current
                fail("read error: \(error)", errno: error)
                return false
            }
            if count == 0 {
                rawEnded = true
                return false
            }
            rawEnd += count
            return true
        }
    }

    private func fail(_ message: String, errno: Errno? = nil) {
        if failure == nil {
            failure = message
            failureErrno = errno
        }
    }

    /// Reads the first bytes and picks the codec from their magic number.
    private func detect() -> Bool {
        while rawEnd - rawStart < 4 && fill() {}
        if failure != nil { return false }
        let available = rawEnd - rawStart
        let bytes = UnsafeRawBufferPointer(start: raw + rawStart, count: available)
        if available >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B {
            codec = .gzip
        } else if available >= 4 && bytes[0] == 0x28 && bytes[1] == 0xB5 && bytes[2] == 0x2F && bytes[3] == 0xFD {
            codec = .zstd
            guard let context = ZSTD_createDCtx() else {
                fail("cannot allocate a zstd decompressor")
                return false
            }
            decompressor = context
        }
        return true
    }

    private func passThrough() -> UnsafeRawBufferPointer? {
        if rawStart == rawEnd && !fill() {
            return failure == nil ? UnsafeRawBufferPointer(start: output, count: 0) : nil
        }
        let chunk = UnsafeRawBufferPointer(start: raw + rawStart, count: rawEnd - rawStart)
        rawStart = rawEnd
        return chunk
    }

    // MARK: - gzip (zlib checks each member's CRC-32 and length)

    private func inflateNext() -> UnsafeRawBufferPointer? {
        while true {
            if !inMember {
                if rawEnd - rawStart < 2 { _ = fill() }
                if failure != nil { return nil }
                let available = rawEnd - rawStart
                // The end, or bytes after the last member that are not another member: gzip(1)
                // ignores such trailing bytes, and so does the tar reader.
                guard available >= 2, raw.load(fromByteOffset: rawStart, as: UInt8.self) == 0x1F,
                    raw.load(fromByteOffset: rawStart + 1, as: UInt8.self) == 0x8B
                else {
                    rawStart = rawEnd
                    rawEnded = true
                    return UnsafeRawBufferPointer(start: output, count: 0)
                }
                let status = inflaterReady ? inflateReset(&inflater) : cc_inflate_init_gzip(&inflater)
                guard status == Z_OK else {
                    fail("cannot start the gzip decoder (zlib status \(status))")
                    return nil
                }
                inflaterReady = true
                inMember = true
            }
            if rawStart == rawEnd && !outputWasFull && !fill() {
                fail(failure ?? "damaged gzip stream: it ends in the middle of a member (truncated)")
                return nil
            }
            inflater.next_in = raw.advanced(by: rawStart).assumingMemoryBound(to: Bytef.self)
            inflater.avail_in = uInt(rawEnd - rawStart)
            inflater.next_out = output.assumingMemoryBound(to: Bytef.self)
            inflater.avail_out = uInt(Self.capacity)
            let status = inflate(&inflater, Z_NO_FLUSH)
            rawStart = rawEnd - Int(inflater.avail_in)
            let produced = Self.capacity - Int(inflater.avail_out)
            outputWasFull = inflater.avail_out == 0
            switch status {
            case Z_STREAM_END:
                inMember = false
                outputWasFull = false
            case Z_OK, Z_BUF_ERROR:
                break
            default:
                let reason = inflater.msg.map { String(cString: $0) } ?? "zlib status \(status)"
                fail("damaged gzip stream: \(reason)")
                return nil
            }
            if produced > 0 { return UnsafeRawBufferPointer(start: output, count: produced) }
        }
    }

    // MARK: - zstd (libzstd checks each frame's checksum when the frame has one)

    private func decompressNext() -> UnsafeRawBufferPointer? {
        guard let decompressor else { return nil }
        while true {
            if rawStart == rawEnd && !outputWasFull && !fill() {
                if failure != nil { return nil }
                if zstdPending != 0 {
                    fail("damaged zstd stream: it ends in the middle of a frame (truncated)")
                    return nil
                }
                return UnsafeRawBufferPointer(start: output, count: 0)
            }
            var source = ZSTD_inBuffer(src: raw + rawStart, size: rawEnd - rawStart, pos: 0)
            var destination = ZSTD_outBuffer(dst: output, size: Self.capacity, pos: 0)
            let hint = ZSTD_decompressStream(decompressor, &destination, &source)
            rawStart += source.pos
            if ZSTD_isError(hint) != 0 {
                fail("damaged zstd stream: \(String(cString: ZSTD_getErrorName(hint)))")
                return nil
            }
            zstdPending = hint
            outputWasFull = destination.pos == destination.size
            if destination.pos > 0 { return UnsafeRawBufferPointer(start: output, count: destination.pos) }
        }
    }
}
