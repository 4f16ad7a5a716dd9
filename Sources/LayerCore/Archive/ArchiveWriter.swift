import CArchive
import Glibc

/// Writes a tar archive (an OCI layer) with libarchive: PAX format, optionally gzip- or
/// zstd-compressed, and computes the layer's digests on the way.
///
/// Usage: ``writeHeader(_:)`` for each entry, then ``writeData(_:)`` with exactly `size` bytes
/// for a regular file, then ``finish()``.
///
/// The output is deterministic: the same entries give byte-identical output.
/// - PAX: a plain ustar header unless a field needs an extended header (long or non-ASCII
///   names, an mtime with nanoseconds, xattrs, large numbers). Extended headers are named
///   `PaxHeader/NAME` and carry the entry's own mtime, never the current time or a pid.
/// - Only the mtime is stored (no atime, ctime, user or group names); xattrs are written as
///   `SCHILY.xattr.NAME` only.
/// - Names and link targets that are valid UTF-8 are stored as UTF-8 PAX records, byte for byte
///   (no normalization); any other name is stored as raw bytes with `hdrcharset=BINARY`, which
///   GNU tar warns about. The headers are written under the C.UTF-8 locale of the writing thread
///   only (`uselocale(3)`), so this does not depend on the environment.
/// - The stream ends with the two zero blocks and no further padding (an empty archive is 1024
///   zero bytes, the well-known empty layer).
/// - gzip is compressed on all CPUs with libdeflate (``ParallelGzip``): fixed 1 MiB blocks,
///   one gzip member each, no timestamp or name, the same bytes whatever the thread count;
///   zstd (libzstd, ``ZstdStream``) writes one frame with its content checksum, on one worker
///   per CPU, whose output does not depend on the worker count.
///
/// The diff_id (SHA-256 of the uncompressed tar) is computed from the tar stream before
/// compression; the blob digest and size from the bytes written to the output. A class because
/// it owns the libarchive handles; use it from one thread.
public final class ArchiveWriter {
    private let tar: OpaquePointer
    private let tarSink: DigestSink
    private let blobSink: DigestSink
    private let compression: ArchiveCompression
    private var entryCount = 0
    private var finished = false
    /// C.UTF-8 for libarchive's name conversion (nil when the C library lacks it).
    private let utf8Locale: locale_t?

    /// Starts an archive written to `output` (an open, writable descriptor: a file or a pipe).
    ///
    /// - Parameters:
    ///   - output: where the blob goes; written sequentially, never sought.
    ///   - compression: none, gzip or zstd.
    ///   - compressionLevel: gzip 1-12 (libdeflate's scale, default 6), zstd 1-19 (default 3).
    /// - Throws: ``ArchiveError`` when libarchive lacks the filter.
    public init(output: FileDescriptor, compression: ArchiveCompression, compressionLevel: Int? = nil)
        throws(ArchiveError)
    {
        self.compression = compression
        utf8Locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", nil)
        blobSink = DigestSink(output: output)
        tarSink = DigestSink(output: nil)
        guard let tar = archive_write_new() else { throw ArchiveError("cannot allocate a libarchive writer") }
        self.tar = tar
        do throws(ArchiveError) {
            try check(tar, archive_write_set_format_pax(tar), "set PAX format")
            try check(tar, archive_write_set_options(tar, "xattrheader=SCHILY"), "set PAX options")
            try check(tar, archive_write_set_bytes_per_block(tar, 10240), "set block size")
            try check(tar, archive_write_set_bytes_in_last_block(tar, 1), "set last block size")
            if compression == .gzip {
                let blob = blobSink
                tarSink.gzip = ParallelGzip(level: compressionLevel ?? 6) { blob.receive($0) }
            } else if compression == .zstd {
                let blob = blobSink
                tarSink.zstd = ZstdStream(level: compressionLevel ?? 3, threads: onlineProcessorCount()) {
                    blob.receive($0)
                }
            } else {
                tarSink.forward = blobSink
            }
            try check(
                tar,
                archive_write_open2(
                    tar, Unmanaged.passUnretained(tarSink).toOpaque(), nil, archiveWriteCallback, nil, nil),
                "open archive")
        } catch {
            archive_write_free(tar)
            if let utf8Locale { freelocale(utf8Locale) }
            throw error
        }
    }

    deinit {
        archive_write_free(tar)
        if let utf8Locale { freelocale(utf8Locale) }
    }

    /// Writes the header of `entry`. For a regular file, follow with exactly `entry.size` bytes
    /// of ``writeData(_:)``; a shortfall is padded with zeros by the next header.
    ///
    /// - Throws: ``ArchiveError`` when libarchive refuses the entry or the output fails.
    public func writeHeader(_ entry: ArchiveEntry) throws(ArchiveError) {
        guard !finished else { throw ArchiveError("archive already finished") }
        guard let header = archive_entry_new() else { throw ArchiveError("cannot allocate an entry") }
        defer { archive_entry_free(header) }
        withCString(entry.path) { archive_entry_copy_pathname(header, $0) }
        let type: Int32
        switch entry.kind {
        case .regular, .hardLink: type = Int32(Glibc.S_IFREG)
        case .directory: type = Int32(Glibc.S_IFDIR)
        case .symlink: type = Int32(Glibc.S_IFLNK)
        case .characterDevice: type = Int32(Glibc.S_IFCHR)
        case .blockDevice: type = Int32(Glibc.S_IFBLK)
        case .fifo: type = Int32(Glibc.S_IFIFO)
        }
        archive_entry_set_filetype(header, UInt32(type))
        archive_entry_set_perm(header, mode_t(entry.permissions & 0o7777))
        archive_entry_set_uid(header, Int64(entry.userID))
        archive_entry_set_gid(header, Int64(entry.groupID))
        // libarchive writes a PAX time as the seconds, a dot and the fraction, which before 1970
        // is wrong: -4.75 s (seconds -5 + 0.75 s) would become "mtime=-5.75", which GNU tar,
        // Python and Go read as written. Handing it -4 and 0.75 writes "-4.75". Within the
        // second before 1970 ("-0.25") no such pair exists: that time is stored at -1 s.
        let time = entry.modificationTime
        var seconds = time.seconds
        var nanoseconds = Int(time.nanoseconds)
        if seconds < 0 && nanoseconds > 0 {
            if seconds == -1 {
                nanoseconds = 0
            } else {
                seconds += 1
                nanoseconds = 1_000_000_000 - nanoseconds
            }
        }
        archive_entry_set_mtime(header, time_t(seconds), nanoseconds)
        switch entry.kind {
        case .regular: archive_entry_set_size(header, entry.size)
        case .hardLink:
            archive_entry_set_size(header, 0)
            withCString(entry.linkTarget) { archive_entry_copy_hardlink(header, $0) }
        case .symlink:
            archive_entry_set_size(header, 0)
            withCString(entry.linkTarget) { archive_entry_copy_symlink(header, $0) }
        case .characterDevice, .blockDevice:
            archive_entry_set_size(header, 0)
            archive_entry_set_rdevmajor(header, dev_t(entry.deviceMajor))
            archive_entry_set_rdevminor(header, dev_t(entry.deviceMinor))
        case .directory, .fifo: archive_entry_set_size(header, 0)
        }
        for attribute in entry.extendedAttributes {
            withCString(attribute.name) { name in
                attribute.value.withUnsafeBytes {
                    archive_entry_xattr_add_entry(header, name, $0.baseAddress, $0.count)
                }
            }
        }
        // libarchive converts names from the thread's locale to UTF-8: under C.UTF-8 a valid
        // UTF-8 name passes as it is, anything else fails and falls back to raw bytes.
        let previousLocale = utf8Locale.map { uselocale($0) }
        defer { if let previousLocale { uselocale(previousLocale) } }
        let status = archive_write_header(tar, header)
        // ARCHIVE_WARN: a name that is not valid UTF-8, written as raw bytes (hdrcharset=BINARY).
        if status < ARCHIVE_WARN { throw failure(tar, "write header of \(escapeForDisplay(entry.path))") }
        entryCount += 1
    }

    /// Writes content bytes of the current regular-file entry.
    ///
    /// - Throws: ``ArchiveError`` when the output fails.
    public func writeData(_ buffer: UnsafeRawBufferPointer) throws(ArchiveError) {
        var offset = 0
        while offset < buffer.count {
            guard let base = buffer.baseAddress else { return }
            let written = archive_write_data(tar, base + offset, buffer.count - offset)
            if written < 0 { throw failure(tar, "write data") }
            if written == 0 { return }  // past the entry's declared size: libarchive drops the rest
            offset += written
        }
    }

    /// Ends the archive (the two zero blocks), flushes the compressor and returns the digests.
    /// The output descriptor is not closed.
    ///
    /// - Throws: ``ArchiveError`` when the output fails.
    public func finish() throws(ArchiveError) -> ArchiveSummary {
        guard !finished else { throw ArchiveError("archive already finished") }
        finished = true
        if archive_write_close(tar) != ARCHIVE_OK { throw failure(tar, "finish archive") }
        if let gzip = tarSink.gzip, !gzip.finish() {
            throw ArchiveError(
                "finish compression: \(blobSink.failure ?? .ioError)", errno: blobSink.failure ?? .ioError)
        }
        if let zstd = tarSink.zstd, !zstd.finish() {
            throw ArchiveError(
                "finish compression: \(blobSink.failure ?? .ioError)", errno: blobSink.failure ?? .ioError)
        }
        if let error = tarSink.failure ?? blobSink.failure {
            throw ArchiveError("write archive: \(error)", errno: error)
        }
        let diffID = tarSink.hasher.finalize()
        let digest = compression == .none ? diffID : blobSink.hasher.finalize()
        return ArchiveSummary(
            diffID: diffID, digest: digest, size: blobSink.count, uncompressedSize: tarSink.count,
            entryCount: entryCount, compression: compression)
    }

    private func failure(_ archive: OpaquePointer, _ what: String) -> ArchiveError {
        if let error = tarSink.failure ?? blobSink.failure { return ArchiveError("\(what): \(error)", errno: error) }
        let message = archive_error_string(archive).map { String(cString: $0) } ?? "libarchive error"
        let code = archive_errno(archive)
        return ArchiveError("\(what): \(message)", errno: code > 0 ? Errno(rawValue: code) : nil)
    }
}

/// The number of online processors, at least 1.
func onlineProcessorCount() -> Int {
    max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
}

private func check(_ archive: OpaquePointer, _ status: Int32, _ what: String) throws(ArchiveError) {
    guard status == ARCHIVE_OK else {
        let message = archive_error_string(archive).map { String(cString: $0) } ?? "libarchive error \(status)"
        throw ArchiveError("\(what): \(message)")
    }
}

private func withCString<R>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> R) -> R {
    var storage = bytes.map { CChar(bitPattern: $0) }
    storage.append(0)
    return storage.withUnsafeBufferPointer { buffer in
        guard let base = buffer.baseAddress else { return "".withCString(body) }
        return body(base)
    }
}

/// Receives the bytes libarchive writes: hashes and counts them, then forwards them to the
/// compressor, to another sink or to the output descriptor.
private final class DigestSink {
    let hasher = SHA256Hasher()
    var count: Int64 = 0
    var failure: Errno?
    let output: FileDescriptor?
    var forward: DigestSink?
    var gzip: ParallelGzip?
    var zstd: ZstdStream?

    init(output: FileDescriptor?) { self.output = output }

    func receive(_ buffer: UnsafeRawBufferPointer) -> Bool {
        hasher.update(buffer)
        count += Int64(buffer.count)
        if let forward { return forward.receive(buffer) }
        if let gzip { return gzip.write(buffer) }
        if let zstd { return zstd.write(buffer) }
        if let output {
            do {
                try output.writeAll(buffer)
            } catch {
                failure = error
                return false
            }
        }
        return true
    }
}

private let archiveWriteCallback:
    @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafeRawPointer?, Int) -> Int = {
        _, context, buffer, length in
        guard let context else { return -1 }
        let sink = Unmanaged<DigestSink>.fromOpaque(context).takeUnretainedValue()
        let ok = sink.receive(UnsafeRawBufferPointer(start: buffer, count: length))
        return ok ? length : -1
    }
