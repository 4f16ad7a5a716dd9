import DiffEngine
import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// The OCI layer tarball: minimal entries, documented order, determinism, digests.
@Suite("Layer tarball output", .tags(.small))
struct LayerOutputTests {
    /// Writes the layer for `change` applied to the base tree and returns its entries in
    /// archive order as `name kind` strings.
    static func layer(
        _ change: [LayerStep], extra: [LayerStep] = [], clamp: Int64? = nil, in temp: TemporaryDirectory
    ) throws -> (entries: [String], result: LayerDiff.Result, path: String) {
        let a = temp.url("a")
        LayerBuilder.apply([.dir("")] + ChangeListTests.base + extra + ChangeListTests.pinned, in: a)
        copyTree(a, temp.url("b"))
        LayerBuilder.apply(change, in: temp.url("b"))
        var diff = LayerDiff(a: a, b: temp.url("b"))
        let path = temp.url("layer.tar")
        diff.output = .archive(path, .none)
        diff.mtimeClamp = clamp
        let result = try diff.run()
        return (try entries(path), result, path)
    }

    static func entries(_ path: String) throws -> [String] {
        let reader = try ArchiveReader(input: try FileDescriptor.open(path: path, flags: O_RDONLY))
        var names: [String] = []
        while let entry = try reader.next() { names.append("\(escapeForDisplay(entry.path)) \(entry.kind.letter)") }
        return names
    }

    @Test("a deleted directory is one whiteout; whiteouts come before their siblings")
    func whiteouts() throws {
        let (entries, _, _) = try Self.layer(
            [
                .remove("usr/share"), .remove("etc/config"), .file("etc/0first", "x"), .file("etc/zlast", "y"),
                .times("usr", seconds: 1_600_000_000), .times("etc/0first", seconds: 1_600_000_000),
                .times("etc/zlast", seconds: 1_600_000_000),
            ], in: TemporaryDirectory())
        #expect(entries == ["etc/ d", "etc/.wh.config f", "etc/0first f", "etc/zlast f", "usr/.wh.share f"])
    }

    @Test("no whiteouts below a path whose type changed")
    func typeChange() throws {
        let (entries, _, _) = try Self.layer(
            [.remove("etc/app.d"), .file("etc/app.d", "now a file"), .times("etc", seconds: 1_600_000_000)],
            in: TemporaryDirectory())
        #expect(entries == ["etc/app.d f"])
    }

    @Test("an opaque marker replaces whiteouts when smaller; the kept child is re-sent")
    func opaque() throws {
        let children: [LayerStep] =
            (0..<6).map { .file("cache/c\($0)", "c\($0)") } + [
                .times("cache/c0", seconds: 1_600_000_000)
            ]
        let (entries, result, _) = try Self.layer(
            (1..<6).map { .remove("cache/c\($0)") }, extra: children, in: TemporaryDirectory())
        #expect(entries == ["cache/ d", "cache/.wh..wh..opq f", "cache/c0 f"])
        #expect(result.summary.counts[.deleted] == 5)
        #expect(result.summary.opaqueMarkers == 1)
    }

    @Test("a deleted name too long for a .wh. whiteout is deleted by an opaque marker (refused at the root)")
    func longDeletedName() throws {
        let long = String(repeating: "n", count: 252)
        let temp = TemporaryDirectory()
        let (entries, result, path) = try Self.layer(
            [.remove("etc/" + long), .times("etc", seconds: 1_600_000_000)],
            extra: [.file("etc/" + long, "x"), .times("etc/" + long, seconds: 1_600_000_000)], in: temp)
        #expect(entries == ["etc/.wh..wh..opq f", "etc/app.d/ d", "etc/app.d/a.conf f", "etc/config f"])
        #expect(result.summary.counts[.deleted] == 1)
        #expect(result.summary.skipped.isEmpty)
        copyTree(temp.url("a"), temp.url("result"))
        try LayerApplier(root: temp.url("result")).apply(layer: path)
        #expect(try TreeSnapshot(temp.url("b")).differences(to: TreeSnapshot(temp.url("result"))) == [])
        // A name of 251 bytes still gets its whiteout; at the root only a whiteout would do.
        let (short, _, _) = try Self.layer(
            [.remove("etc/" + long.dropLast()), .times("etc", seconds: 1_600_000_000)],
            extra: [.file("etc/" + long.dropLast(), "x")], in: TemporaryDirectory())
        #expect(short == ["etc/.wh.\(long.dropLast()) f"])
        do {
            _ = try Self.layer([.remove(long)], extra: [.file(long, "x")], in: TemporaryDirectory())
            Issue.record("a root whiteout longer than 255 bytes was written")
        } catch {
            #expect("\(error)".contains("the whiteout name is longer than 255 bytes"), "\(error)")
        }
    }

    @Test("a directory is emitted only when its own metadata changed; the root only when it changed")
    func noParentChain() throws {
        let (entries, _, _) = try Self.layer(
            [.file("usr/share/doc/readme", "readme v2\n"), .times("usr/share/doc/readme", seconds: 1_600_000_000)],
            in: TemporaryDirectory())
        #expect(entries == ["usr/share/doc/readme f"])
        let (rootOnly, _, _) = try Self.layer([.chmod("", 0o700)], in: TemporaryDirectory())
        #expect(rootOnly == ["./ d"])
    }

    @Test("no change is an empty layer: 1024 zero bytes, the well-known diff_id")
    func emptyLayer() throws {
        let temp = TemporaryDirectory()
        let (entries, result, path) = try Self.layer([], in: temp)
        #expect(entries.isEmpty)
        #expect(result.archive?.size == 1024)
        #expect(
            result.archive?.diffID.description
                == "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")
        #expect((try? Data(contentsOf: URL(fileURLWithPath: path)))?.count == 1024)
    }

    @Test("the same inputs give byte-identical layers; mtimes are clamped")
    func deterministic() throws {
        let temp = TemporaryDirectory()
        let a = temp.url("a")
        LayerBuilder.apply([.dir("")] + ChangeListTests.base + ChangeListTests.pinned, in: a)
        copyTree(a, temp.url("b"))
        LayerBuilder.apply([.file("etc/new", "new"), .xattr("etc/new", name: "user.x", value: "1")], in: temp.url("b"))
        var digests: [ArchiveSummary] = []
        for (index, compression) in [ArchiveCompression.gzip, .gzip, .zstd, .zstd].enumerated() {
            var diff = LayerDiff(a: a, b: temp.url("b"))
            diff.output = .archive(temp.url("l\(index).tar"), compression)
            diff.mtimeClamp = 1_650_000_000
            digests.append(try #require(try diff.run().archive))
        }
        #expect(digests[0] == digests[1])
        #expect(digests[2] == digests[3])
        #expect(digests[0].diffID == digests[2].diffID)
        #expect(digests[0].digest != digests[2].digest)
        let reader = try ArchiveReader(input: try FileDescriptor.open(path: temp.url("l0.tar"), flags: O_RDONLY))
        while let entry = try reader.next() {
            #expect(entry.modificationTime.seconds <= 1_650_000_000, "\(escapeForDisplay(entry.path))")
        }
    }

    @Test("times before 1970 keep their fraction, written and read as GNU tar, Python and Go do")
    func fractionalTimesBefore1970() throws {
        let temp = TemporaryDirectory()
        let (_, _, path) = try Self.layer(
            [
                .file("old", "o"), .times("old", seconds: -302_486_400, nanoseconds: 500_000_000),
                .file("older", "o"), .times("older", seconds: -5, nanoseconds: 250_000_000),
            ], in: temp)
        // Python reads the PAX records as written.
        let python = shell(
            "python3 -c 'import sys, tarfile; print(*[m.pax_headers.get(\"mtime\") for m in tarfile.open(sys.argv[1]) if m.name.startswith(\"old\")])' "
                + shellQuote(path))
        #expect(python.out == "-302486399.5 -4.75\n", "\(python.out)\(python.err)")
        copyTree(temp.url("a"), temp.url("result"))
        try LayerApplier(root: temp.url("result")).apply(layer: path)
        #expect(try TreeSnapshot(temp.url("b")).differences(to: TreeSnapshot(temp.url("result"))) == [])
        // A layer written by Python (or Go, or GNU tar) applies with its times.
        let written = temp.url("python.tar")
        let made = shell(
            "python3 -c 'import io, sys, tarfile; t = tarfile.open(sys.argv[1], \"w\", format=tarfile.PAX_FORMAT); "
                + "i = tarfile.TarInfo(\"f\"); i.mtime = -4.75; t.addfile(i); t.close()' " + shellQuote(written))
        #expect(made.status == 0, "\(made.err)")
        try LayerApplier(root: temp.url("result")).apply(layer: written)
        var status = stat()
        #expect(lstat(temp.url("result/f"), &status) == 0)
        #expect(status.st_mtim.tv_sec == -5 && status.st_mtim.tv_nsec == 250_000_000, "\(status.st_mtim)")
    }

    @Test("an xattr name libarchive would write URL-encoded is refused in a tarball, kept in a layer directory")
    func attributeNamesLibarchiveEncodes() throws {
        for name in ["user.a b", "user.x=y", "user.100%", "user.\u{E9}"] {
            let temp = TemporaryDirectory()
            let a = temp.url("a")
            LayerBuilder.apply([.dir(""), .file("etc/config", "x")], in: a)
            copyTree(a, temp.url("b"))
            LayerBuilder.apply([.file("etc/f", "f"), .xattr("etc/f", name: name, value: "v")], in: temp.url("b"))
            var diff = LayerDiff(a: a, b: temp.url("b"))
            diff.output = .archive(temp.url("l.tar"), .none)
            do {
                _ = try diff.run()
                Issue.record("\(name): stored (it would come back as another name)")
            } catch {
                #expect("\(error)".contains("etc/f: cannot be stored in a layer tarball: its xattr"), "\(error)")
            }
            #expect(access(temp.url("l.tar"), F_OK) != 0)
            diff.output = .directory(temp.url("layer"), .oci)
            _ = try diff.run()
            copyTree(a, temp.url("result"))
            try LayerApplier(root: temp.url("result")).apply(layer: temp.url("layer"))
            #expect(try TreeSnapshot(temp.url("b")).differences(to: TreeSnapshot(temp.url("result"))) == [], "\(name)")
        }
    }

    @Test("a name starting with .wh. is refused, naming the path, and no layer is left")
    func unrepresentable() throws {
        let temp = TemporaryDirectory()
        let a = temp.url("a")
        LayerBuilder.apply([.dir(""), .file("etc/config", "x")], in: a)
        copyTree(a, temp.url("b"))
        LayerBuilder.apply([.file("etc/.wh.foo", "oops")], in: temp.url("b"))
        var diff = LayerDiff(a: a, b: temp.url("b"))
        diff.output = .archive(temp.url("l.tar"), .none)
        do {
            _ = try diff.run()
            Issue.record("no refusal")
        } catch {
            #expect(error.description.contains("etc/.wh.foo"))
        }
        #expect(access(temp.url("l.tar"), F_OK) != 0)
        #expect(try TreeWalker.names(of: try FileDescriptor.open(path: temp.path, flags: O_RDONLY)).count == 2)
        diff.options.skipUnrepresentable = true
        let result = try diff.run()
        #expect(result.summary.skipped.count == 1)
        #expect(try Self.entries(temp.url("l.tar")) == ["etc/ d"])
    }
}
