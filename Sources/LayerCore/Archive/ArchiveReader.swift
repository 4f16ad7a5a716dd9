import CArchive
import Glibc

/// Reads a tar archive (an OCI layer) with libarchive, whatever its compression (plain, gzip,
/// zstd, xz, bzip2: libarchive detects it from the magic bytes).
///
/// Usage: ``next()`` until it returns nil; after each entry, read a regular file's content with
/// ``readData(into:)`` or ``readBlock()`` (which reports sparse holes), or skip it (the next
/// ``next()`` skips what was not read). Paths come as raw bytes, unchecked: use
/// ``ArchiveEntry/normalizedPath()`` before touching the file system. A class because it owns
/// the libarchive handle; use it from one thread.
public final class ArchiveReader {
    private let archive: OpaquePointer
    private let input: FileDescriptor
    /// The stream, gzip and zstd decoded with their checksums verified (see ``CheckedInput``).
    private let checked: CheckedInput
    /// Warnings libarchive reported for the entries read so far (for example a name that is not
    /// valid in the locale's charset, kept as raw bytes).
    public private(set) var warnings: [String] = []
    /// Whether an entry was returned whose content may not have been read to its end.
    private var entryOpen = false

    /// Opens the archive readable from `input` (a file or a pipe, read sequentially).
    ///
    /// - Parameter input: the descriptor; kept open for the reader's life, never closed by it.
    /// - Throws: ``ArchiveError`` when the stream is not a tar archive.
    public init(input: FileDescriptor) throws(ArchiveError) {
        guard let archive = archive_read_new() else { throw ArchiveError("cannot allocate a libarchive reader") }
        self.archive = archive
        self.input = input
        checked = CheckedInput(input: input)
        archive_read_support_filter_all(archive)
        archive_read_support_format_tar(archive)
        archive_read_support_format_gnutar(archive)
        archive_read_set_callback_data(archive, Unmanaged.passUnretained(checked).toOpaque())
        archive_read_set_read_callback(archive) { _, client, buffer in
            guard let client else { return -1 }
            let input = Unmanaged<CheckedInput>.fromOpaque(client).takeUnretainedValue()
            guard let chunk = input.read() else { return -1 }
            buffer?.pointee = UnsafeRawPointer(chunk.baseAddress)
            return chunk.count
        }
        archive_read_set_skip_callback(archive) { _, client, request in
            guard let client else { return 0 }
            return Unmanaged<CheckedInput>.fromOpaque(client).takeUnretainedValue().skip(request)
        }
        if archive_read_open1(archive) != ARCHIVE_OK {
            // Every stored property is set, so deinit runs and frees the handle.
            throw failure("open archive")
        }
    }

    deinit { archive_read_free(archive) }

    /// The compression libarchive detected (after the first ``next()``); nil for one it does
    /// not name here (xz, bzip2).
    public var compression: ArchiveCompression? {
        switch checked.codec {
        case .gzip: return .gzip
        case .zstd: return .zstd
        case .none: break
        }
        let count = archive_filter_count(archive)
        guard count > 1 else { return ArchiveCompression.none }
        switch archive_filter_code(archive, 0) {
        case ARCHIVE_FILTER_GZIP: return .gzip
        case ARCHIVE_FILTER_ZSTD: return .zstd
        default: return nil
        }
    }

    /// The next entry's header, or nil at the end of the archive.
    ///
    /// - Throws: ``ArchiveError`` for a damaged or truncated archive.
    public func next() throws(ArchiveError) -> ArchiveEntry? {
        // Skip what is left of the current entry first, so that the position below is where
        // the next header (or the end-of-archive blocks) must start.
        if entryOpen, archive_read_data_skip(archive) < ARCHIVE_WARN { throw failure("skip data") }
        let before = archive_filter_bytes(archive, 0)
        var header: OpaquePointer?
        let status = archive_read_next_header(archive, &header)
        if status == ARCHIVE_EOF {
            entryOpen = false
            // libarchive also ends cleanly when the stream stops at a header boundary, without
            // the zero blocks every tar writer puts at the end: that is a layer cut short (a
            // plain tar, or a gzip stream cut between members), whose missing entries would go
            // unnoticed. The end-of-archive block is consumed, so the position moved.
            if archive_filter_bytes(archive, 0) == before && checked.failure == nil {
                throw ArchiveError(
                    "truncated: the tar stream ends at byte \(before) without its end-of-archive blocks",
                    isDamage: true)
            }
            // The tar ends before its stream does: check the rest (the last CRC or checksum).
            try checked.finish()
            // After the end-of-archive blocks only padding may follow: anything else is entries
            // the tar reader would never see (a header block zeroed by damage, or an archive
            // appended). Positions are comparable when libarchive decodes nothing itself.
            let end = archive_filter_bytes(archive, 0)
            if archive_filter_count(archive) == 1 && checked.endOfData > end {
                throw ArchiveError(
                    "data follows the end-of-archive block at byte \(before) (a zeroed header, "
                        + "or another archive appended)", isDamage: true)
            }
            return nil
        }
        if status == ARCHIVE_WARN, let message = archive_error_string(archive) {
            warnings.append(String(cString: message))
        }
        guard status >= ARCHIVE_WARN, let header else { throw failure("read header") }
        entryOpen = true
        // PAX stores ids of any size; Linux ids are 32-bit and (uid_t)-1 means "unchanged" to
        // chown(2). Truncated, uid 2^32 would become root.
        for (what, id) in [("uid", archive_entry_uid(header)), ("gid", archive_entry_gid(header))]
        where id < 0 || id > Int64(UInt32.max - 1) {
            let path = ArchiveReader.bytes(archive_entry_pathname(header)).map(escapeForDisplay) ?? "?"
            throw ArchiveError("\(path): \(what) \(id) is out of range (0 to \(UInt32.max - 1))", isDamage: true)
        }
        return ArchiveReader.convert(header)
    }

    /// Reads content of the current entry into `buffer`, holes of a sparse entry as zeros.
    ///
    /// - Returns: the bytes read; 0 at the end of the entry.
    /// - Throws: ``ArchiveError`` for a damaged or truncated archive.
    public func readData(into buffer: UnsafeMutableRawBufferPointer) throws(ArchiveError) -> Int {
        let count = archive_read_data(archive, buffer.baseAddress, buffer.count)
        if count < 0 { throw failure("read data") }
        return count
    }

    /// The next block of the current entry's content and its offset in the file; offsets skip
    /// over the holes of a sparse entry. Nil at the end of the entry. The bytes are valid until
    /// the next call.
    ///
    /// - Throws: ``ArchiveError`` for a damaged or truncated archive.
    public func readBlock() throws(ArchiveError) -> (bytes: UnsafeRawBufferPointer, offset: Int64)? {
        var buffer: UnsafeRawPointer?
        var size = 0
        var offset: Int64 = 0
        let status = archive_read_data_block(archive, &buffer, &size, &offset)
        if status == ARCHIVE_EOF { return nil }
        guard status >= ARCHIVE_WARN else { throw failure("read data") }
        return (UnsafeRawBufferPointer(start: buffer, count: size), offset)
    }

    /// Skips the rest of the current entry's content.
    ///
    /// - Throws: ``ArchiveError`` for a damaged or truncated archive.
    public func skipData() throws(ArchiveError) {
        if archive_read_data_skip(archive) < ARCHIVE_WARN { throw failure("skip data") }
    }

    private static func convert(_ header: OpaquePointer) -> ArchiveEntry {
        let path = bytes(archive_entry_pathname(header)) ?? bytes(archive_entry_pathname_utf8(header)) ?? []
        let kind: ArchiveEntry.Kind
        var linkTarget: [UInt8] = []
        if let hardlink = bytes(archive_entry_hardlink(header)) ?? bytes(archive_entry_hardlink_utf8(header)) {
            kind = .hardLink
            linkTarget = hardlink
        } else {
            switch Int32(archive_entry_filetype(header)) {
            case Int32(Glibc.S_IFDIR): kind = .directory
            case Int32(Glibc.S_IFLNK):
                kind = .symlink
                linkTarget = bytes(archive_entry_symlink(header)) ?? bytes(archive_entry_symlink_utf8(header)) ?? []
            case Int32(Glibc.S_IFCHR): kind = .characterDevice
            case Int32(Glibc.S_IFBLK): kind = .blockDevice
            case Int32(Glibc.S_IFIFO): kind = .fifo
            default: kind = .regular
            }
        }
        var attributes: [ExtendedAttribute] = []
        if archive_entry_xattr_reset(header) > 0 {
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while archive_entry_xattr_next(header, &name, &value, &size) == ARCHIVE_OK {
                guard let nameBytes = bytes(name) else { continue }
                let valueBytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
                attributes.append(ExtendedAttribute(name: nameBytes, value: valueBytes))
            }
            attributes.sort()
        }
        let size = kind == .regular ? max(0, Int64(archive_entry_size(header))) : 0
        // libarchive reads a PAX time "-4.75" as -4 s and 0.75 s (see ArchiveWriter): it is
        // -5 s and 0.25 s, as GNU tar, Python and Go (and the writer here) mean it.
        var seconds = Int64(archive_entry_mtime(header))
        var nanoseconds = Int64(archive_entry_mtime_nsec(header))
        if seconds < 0 && nanoseconds > 0 {
            seconds -= 1
            nanoseconds = 1_000_000_000 - nanoseconds
        }
        return ArchiveEntry(
            path: path, kind: kind, permissions: UInt32(archive_entry_perm(header)) & 0o7777,
            userID: UInt32(truncatingIfNeeded: archive_entry_uid(header)),
            groupID: UInt32(truncatingIfNeeded: archive_entry_gid(header)), size: size,
            modificationTime: Timestamp(seconds: seconds, nanoseconds: nanoseconds),
            linkTarget: linkTarget, deviceMajor: UInt32(truncatingIfNeeded: archive_entry_rdevmajor(header)),
            deviceMinor: UInt32(truncatingIfNeeded: archive_entry_rdevminor(header)), extendedAttributes: attributes)
    }

    private static func bytes(_ pointer: UnsafePointer<CChar>?) -> [UInt8]? {
        guard let pointer else { return nil }
        return Array(UnsafeBufferPointer(start: pointer, count: strlen(pointer))).map { UInt8(bitPattern: $0) }
    }

    private func failure(_ what: String) -> ArchiveError {
        // A damaged compressed stream: say so, rather than what libarchive made of the cut.
        if let damage = checked.failure {
            return ArchiveError(damage, errno: checked.failureErrno, isDamage: checked.failureErrno == nil)
        }
        let message = archive_error_string(archive).map { String(cString: $0) } ?? "libarchive error"
        let code = archive_errno(archive)
        return ArchiveError("\(what): \(message)", errno: code > 0 ? Errno(rawValue: code) : nil)
    }
}
