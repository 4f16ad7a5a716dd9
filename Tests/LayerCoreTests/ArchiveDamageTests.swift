import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// A damaged compressed layer is an error, never wrong content: the gzip CRC-32 of every
/// member and the zstd frame checksum are verified, up to the end of the stream (past the tar's
/// end-of-archive blocks), and a stream cut short is "truncated".
@Suite("Damaged compressed layers", .tags(.small))
struct ArchiveDamageTests {
    /// A layer holding one 3 MB file of pseudo-random bytes (incompressible, so damage in the
    /// middle of the stream lands in its content), and the bytes written.
    static func layer(_ path: String, _ compression: ArchiveCompression) throws -> [UInt8] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let content = (0..<3_000_000).map { _ -> UInt8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
        let fd = try FileDescriptor.open(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        let writer = try ArchiveWriter(output: fd, compression: compression)
        try writer.writeHeader(ArchiveEntry(path: Array("rand".utf8), kind: .regular, size: Int64(content.count)))
        try content.withUnsafeBytes { try writer.writeData($0) }
        _ = try writer.finish()
        return content
    }

    /// Reads every entry and its content; returns the content of `rand`.
    static func readAll(_ path: String) throws -> [UInt8] {
        let reader = try ArchiveReader(input: try FileDescriptor.open(path: path, flags: O_RDONLY))
        var content: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while try reader.next() != nil {
            while true {
                let count = try buffer.withUnsafeMutableBytes { try reader.readData(into: $0) }
                if count == 0 { break }
                content += buffer[0..<count]
            }
        }
        return content
    }

    static func damage(_ path: String, at offset: Int64) {
        let fd = open(path, O_RDWR)
        var byte: UInt8 = 0
        _ = pread(fd, &byte, 1, off_t(offset))
        byte ^= 0x55
        _ = pwrite(fd, &byte, 1, off_t(offset))
        close(fd)
    }

    static func size(_ path: String) -> Int64 {
        var s = stat()
        _ = stat(path, &s)
        return Int64(s.st_size)
    }

    @Test(
        "a flipped byte in the data, in the last trailer, or a cut stream is refused",
        arguments: [ArchiveCompression.gzip, .zstd])
    func damageIsDetected(compression: ArchiveCompression) throws {
        let temp = TemporaryDirectory()
        let path = temp.url("layer")
        let content = try Self.layer(path, compression)
        #expect(try Self.readAll(path) == content, "the undamaged layer reads back")
        let length = Self.size(path)
        let name = compression == .gzip ? "gzip" : "zstd"
        // The middle of the data; the last 4 bytes (gzip: the length of the last member, zstd:
        // the frame checksum), which lie after the tar's end-of-archive blocks.
        for offset in [length / 2, length - 2] {
            let copy = temp.url("damaged-\(offset)")
            _ = shell("cp \(shellQuote(path)) \(shellQuote(copy))")
            Self.damage(copy, at: offset)
            do {
                _ = try Self.readAll(copy)
                Issue.record("\(name): a byte flipped at \(offset) of \(length) was not detected")
            } catch {
                #expect("\(error)".contains("damaged \(name) stream"), "\(error)")
            }
        }
        let cut = temp.url("cut")
        _ = shell("head -c \(length - 100) \(shellQuote(path)) > \(shellQuote(cut))")
        do {
            _ = try Self.readAll(cut)
            Issue.record("\(name): a truncated stream was not detected")
        } catch {
            #expect("\(error)".contains("truncated"), "\(error)")
        }
    }

    @Test("zstd layers carry the frame checksum (zstd -lv: Check: XXH64)")
    func zstdFramesHaveAChecksum() throws {
        let temp = TemporaryDirectory()
        _ = try Self.layer(temp.url("layer.tar.zst"), .zstd)
        let listed = shell("zstd -lv \(shellQuote(temp.url("layer.tar.zst")))")
        #expect(listed.out.contains("Check: XXH64"), "\(listed.out)\(listed.err)")
        // The zstd CLI verifies it too.
        #expect(shell("zstd -t -q \(shellQuote(temp.url("layer.tar.zst")))").status == 0)
    }
}

@Suite("PAX times before 1970", .tags(.small))
struct ArchiveNegativeTimeTests {
    /// libarchive would write -0.25 s as "mtime=-1.75"; the writer stores the whole second
    /// before instead, which GNU tar and Python read alike. (Earlier times keep their fraction:
    /// see DiffEngineTests' "times before 1970 keep their fraction".)
    @Test func fractionalTimesBefore1970AreStoredAtTheWholeSecond() throws {
        let temp = TemporaryDirectory()
        let path = temp.url("neg.tar")
        let fd = try FileDescriptor.open(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        let writer = try ArchiveWriter(output: fd, compression: .none)
        try writer.writeHeader(
            ArchiveEntry(
                path: Array("neg".utf8), kind: .regular, size: 0,
                modificationTime: Timestamp(seconds: -1, nanoseconds: 750_000_000)))
        try writer.writeHeader(
            ArchiveEntry(
                path: Array("pos".utf8), kind: .regular, size: 0,
                modificationTime: Timestamp(seconds: 5, nanoseconds: 250_000_000)))
        _ = try writer.finish()
        let python = shell(
            "python3 -c 'import tarfile,sys; print(*[repr(m.mtime) for m in tarfile.open(sys.argv[1])])' "
                + shellQuote(path))
        #expect(python.out == "-1 5.25\n" || python.out == "-1.0 5.25\n", "\(python.out)\(python.err)")
        let reader = try ArchiveReader(input: try FileDescriptor.open(path: path, flags: O_RDONLY))
        #expect(try reader.next()?.modificationTime == Timestamp(seconds: -1, nanoseconds: 0))
        #expect(try reader.next()?.modificationTime == Timestamp(seconds: 5, nanoseconds: 250_000_000))
    }
}
