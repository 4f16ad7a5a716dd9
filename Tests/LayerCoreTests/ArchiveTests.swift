import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

@Suite("Archive writer and reader", .tags(.small))
struct ArchiveTests {
    static let entries: [ArchiveEntry] = [
        ArchiveEntry(path: Array("./".utf8), kind: .directory, permissions: 0o755),
        ArchiveEntry(
            path: Array("etc/".utf8), kind: .directory, permissions: 0o1777, userID: 1000, groupID: 100,
            modificationTime: Timestamp(seconds: 1_600_000_000, nanoseconds: 0),
            extendedAttributes: [ExtendedAttribute("user.dir", value: [1, 0, 2])]),
        ArchiveEntry(
            path: Array("etc/config".utf8), kind: .regular, permissions: 0o4755, size: 5,
            modificationTime: Timestamp(seconds: 1_600_000_000, nanoseconds: 123_456_789),
            extendedAttributes: [
                ExtendedAttribute("security.capability", value: [0, 0, 0, 2, 0, 4, 0, 0]),
                ExtendedAttribute("user.note", value: Array("hel\0lo".utf8)),
            ]),
        ArchiveEntry(path: Array("etc/hard".utf8), kind: .hardLink, linkTarget: Array("etc/config".utf8)),
        ArchiveEntry(
            path: Array("etc/only-ns".utf8), kind: .regular,
            modificationTime: Timestamp(seconds: 1_600_000_000, nanoseconds: 5)),
        ArchiveEntry(path: [0x6C, 0x61, 0x74, 0xE9, 0xFF], kind: .regular, size: 0),
        ArchiveEntry(path: Array("n/日本語".utf8), kind: .regular, size: 0),
        ArchiveEntry(path: Array("new\nline".utf8), kind: .symlink, permissions: 0o777, linkTarget: [0x2E, 0xFE]),
        ArchiveEntry(path: Array("dev/null2".utf8), kind: .characterDevice, deviceMajor: 1, deviceMinor: 3),
        ArchiveEntry(path: Array("dev/loop".utf8), kind: .blockDevice, deviceMajor: 7, deviceMinor: 300),
        ArchiveEntry(path: Array("dev/pipe".utf8), kind: .fifo),
        ArchiveEntry(path: Array(String(repeating: "d/", count: 80).utf8) + Array("f".utf8), kind: .regular, size: 0),
    ]

    static func write(_ path: String, _ compression: ArchiveCompression) throws -> ArchiveSummary {
        let fd = try FileDescriptor.open(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        let writer = try ArchiveWriter(output: fd, compression: compression)
        for entry in entries {
            try writer.writeHeader(entry)
            if entry.kind == .regular && entry.size > 0 {
                try Array("hello".utf8).withUnsafeBytes { try writer.writeData($0) }
            }
        }
        return try writer.finish()
    }

    @Test("entries round-trip through libarchive", arguments: ArchiveCompression.allCases)
    func roundTrip(compression: ArchiveCompression) throws {
        let dir = TemporaryDirectory()
        let path = dir.url("layer.tar")
        let summary = try Self.write(path, compression)
        #expect(summary.entryCount == Self.entries.count)
        let fd = try FileDescriptor.open(path: path, flags: O_RDONLY)
        let reader = try ArchiveReader(input: fd)
        var read: [ArchiveEntry] = []
        var contents: [[UInt8]] = []
        while let entry = try reader.next() {
            read.append(entry)
            var buffer = [UInt8](repeating: 0, count: 64)
            let count = try buffer.withUnsafeMutableBytes { try reader.readData(into: $0) }
            contents.append(Array(buffer[0..<count]))
        }
        #expect(reader.compression == compression)
        #expect(read.count == Self.entries.count)
        for (written, got) in zip(Self.entries, read) {
            #expect(got == written, "entry \(escapeForDisplay(written.path))")
        }
        #expect(contents[2] == Array("hello".utf8))
        let stat = try FileDescriptor.open(path: path, flags: O_RDONLY).status()
        #expect(summary.size == stat.size)
    }

    @Test("output is byte-identical for identical input", arguments: ArchiveCompression.allCases)
    func deterministic(compression: ArchiveCompression) throws {
        let dir = TemporaryDirectory()
        let first = try Self.write(dir.url("a"), compression)
        sleep(1)
        let second = try Self.write(dir.url("b"), compression)
        #expect(first == second)
        let a = try Data(contentsOf: URL(fileURLWithPath: dir.url("a")))
        let b = try Data(contentsOf: URL(fileURLWithPath: dir.url("b")))
        #expect(a == b)
        let digest = SHA256Digest.of(Array(a))
        #expect(digest == first.digest)
    }

    @Test("an empty archive is the 1024-byte empty layer")
    func emptyLayer() throws {
        let dir = TemporaryDirectory()
        let fd = try FileDescriptor.open(path: dir.url("e.tar"), flags: O_WRONLY | O_CREAT, mode: 0o644)
        let summary = try ArchiveWriter(output: fd, compression: .none).finish()
        #expect(summary.size == 1024)
        #expect(summary.diffID.description == "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")
    }

    @Test("python's tarfile reads the names, xattrs and nanosecond mtimes")
    func pythonReads() throws {
        let dir = TemporaryDirectory()
        _ = try Self.write(dir.url("l.tar"), .gzip)
        let script = """
            import tarfile,sys
            for m in tarfile.open(sys.argv[1]):
                n = m.name.encode('utf-8','surrogateescape')
                print(n.hex(), m.type.decode(), oct(m.mode), m.mtime, sorted(k for k in m.pax_headers if 'xattr' in k))
            """
        let result = run("/usr/bin/python3", ["-c", script, dir.url("l.tar")])
        #expect(result.status == 0, "\(result.err)")
        let lines = result.out.split(separator: "\n").map(String.init)
        #expect(lines.count == Self.entries.count)
        #expect(lines.contains { $0.hasPrefix("6c6174e9ff ") })
        #expect(lines.contains { $0.hasPrefix("6e65770a6c696e65 2") })
        #expect(lines.contains { $0.contains("1600000000.123456789") || $0.contains("1600000000.1234567") })
        #expect(lines.contains { $0.contains("'SCHILY.xattr.security.capability', 'SCHILY.xattr.user.note'") })
        #expect(!result.out.contains("LIBARCHIVE"))
    }

    @Test("valid UTF-8 names are plain PAX records (GNU tar reads them without warnings), byte for byte")
    func utf8NamesWithoutBinaryCharset() throws {
        let dir = TemporaryDirectory()
        let path = dir.url("u.tar")
        // NFC and NFD spellings of one name must both stay as written (no normalization).
        let names: [[UInt8]] = [Array("caf\u{E9}".utf8), [0x65, 0xCC, 0x81], Array("n/日本語".utf8)]
        let fd = try FileDescriptor.open(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        let writer = try ArchiveWriter(output: fd, compression: .none)
        for name in names { try writer.writeHeader(ArchiveEntry(path: name, kind: .regular, size: 0)) }
        try writer.writeHeader(
            ArchiveEntry(path: Array("link".utf8), kind: .symlink, linkTarget: Array("caf\u{E9}".utf8)))
        _ = try writer.finish()
        let tar = run("/usr/bin/tar", ["-tvf", path])
        #expect(tar.status == 0)
        #expect(tar.err.isEmpty, "GNU tar warned: \(tar.err)")
        let script = """
            import tarfile,sys
            for m in tarfile.open(sys.argv[1], encoding='utf-8', errors='surrogateescape'):
                print(m.name.encode('utf-8','surrogateescape').hex(), 'hdrcharset' in m.pax_headers)
            """
        let result = run("/usr/bin/python3", ["-c", script, path])
        #expect(result.status == 0, "\(result.err)")
        let lines = result.out.split(separator: "\n").map(String.init)
        let expected = (names + [Array("link".utf8)]).map { $0.map { String(format: "%02x", $0) }.joined() + " False" }
        #expect(lines == expected)
    }

    @Test("SHA-256 of known inputs")
    func sha256() {
        #expect(SHA256Digest.of([]).hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(
            SHA256Digest.of(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        )
    }

    @Test(
        "stored paths are normalised and unsafe ones refused",
        arguments: [
            ("./etc/config", "etc/config"), ("etc/", "etc"), ("./", "."), (".", "."), ("a//b/./c", "a/b/c"),
        ])
    func normalise(stored: String, expected: String) throws {
        #expect(try ArchiveEntry.normalize(Array(stored.utf8)).description == expected)
    }

    @Test(
        "unsafe stored paths are refused",
        arguments: [
            ArchivePathProblem.absolute, .parentReference, .nameTooLong, .pathTooLong, .invalidName,
        ])
    func refuse(problem: ArchivePathProblem) {
        let stored: [String] =
            switch problem {
            case .absolute: ["/etc/passwd", "//x"]
            case .parentReference: ["../x", "a/../../x", "a/.."]
            case .nameTooLong: [String(repeating: "n", count: 256)]
            case .pathTooLong: [String(repeating: "a/", count: 33_000)]
            case .invalidName: ["a\0b"]
            }
        for path in stored {
            let bytes = Array(path.utf8)
            #expect(throws: problem) { try ArchiveEntry.normalize(bytes) }
        }
    }
}

@Suite("Parallel gzip", .tags(.small))
struct ParallelGzipTests {
    @Test("a multi-member gzip blob of several MiB reads back with libarchive, gzip and Python")
    func multiMember() throws {
        let dir = TemporaryDirectory()
        let path = dir.url("big.tar.gz")
        let writer = try ArchiveWriter(
            output: try FileDescriptor.open(path: path, flags: O_WRONLY | O_CREAT, mode: 0o644), compression: .gzip)
        var content = [UInt8](repeating: 0, count: 3 * 1_048_576 + 12345)
        for index in content.indices { content[index] = UInt8(truncatingIfNeeded: index &* 2_654_435_761 >> 13) }
        try writer.writeHeader(ArchiveEntry(path: Array("big".utf8), kind: .regular, size: Int64(content.count)))
        try content.withUnsafeBytes { try writer.writeData($0) }
        let summary = try writer.finish()
        #expect(shell("gzip -t \(shellQuote(path))").status == 0)
        let reader = try ArchiveReader(input: try FileDescriptor.open(path: path, flags: O_RDONLY))
        let entry = try #require(try reader.next())
        #expect(entry.size == Int64(content.count))
        var read: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = try buffer.withUnsafeMutableBytes { try reader.readData(into: $0) }
            if count == 0 { break }
            read.append(contentsOf: buffer[0..<count])
        }
        #expect(read == content)
        let python = run(
            "/usr/bin/python3",
            ["-c", "import tarfile,sys; print(tarfile.open(sys.argv[1]).getmembers()[0].size)", path])
        #expect(python.out == "\(content.count)\n")
        let unzipped = shell("zcat \(shellQuote(path)) | sha256sum")
        #expect(unzipped.out.hasPrefix(summary.diffID.hex))
    }
}
