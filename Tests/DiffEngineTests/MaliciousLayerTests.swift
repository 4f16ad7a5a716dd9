import DiffEngine
import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// Hostile layers for `apply`: every one is refused with a clear error and nothing outside ROOT
/// changes (a snapshot of the tree around ROOT, mtimes included, is compared).
@Suite("Malicious layers", .tags(.small))
struct MaliciousLayerTests {
    /// A workspace: `outside/` with a canary, `root/` (the target), optional symlinks in ROOT
    /// pointing outside.
    final class Workspace {
        let temp = TemporaryDirectory(prefix: "layerdiff-evil")
        var root: String { temp.url("root") }
        var outside: String { temp.url("outside") }

        init(rootSteps: [LayerStep] = []) {
            LayerBuilder.apply(
                [
                    .file("secret", "do not touch"), .dir("sub"), .file("sub/y", "y"),
                    .times("sub", seconds: 1_500_000_000),
                ],
                in: outside)
            LayerBuilder.apply([.dir(""), .file("etc/passwd", "root:x:0:0")] + rootSteps, in: root)
        }

        /// Writes a layer with `entries` (content "pwned" for regular files).
        func layer(_ entries: [ArchiveEntry]) throws -> String {
            let path = temp.url("layer-\(UInt32.random(in: 0...UInt32.max)).tar")
            let writer = try ArchiveWriter(
                output: try FileDescriptor.open(path: path, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o644),
                compression: .none)
            for var entry in entries {
                if entry.kind == .regular { entry.size = 5 }
                try writer.writeHeader(entry)
                if entry.kind == .regular { try Array("pwned".utf8).withUnsafeBytes { try writer.writeData($0) } }
            }
            _ = try writer.finish()
            return path
        }

        /// Applies `entries` and returns the error message (nil when it was applied).
        func apply(_ entries: [ArchiveEntry]) throws -> String? {
            let layer = try layer(entries)
            let before = try TreeSnapshot(outside)
            defer {
                if let after = try? TreeSnapshot(outside) {
                    #expect(before.differences(to: after) == [], "outside changed")
                }
            }
            do {
                try LayerApplier(root: root).apply(layer: layer)
                return nil
            } catch {
                return error.description
            }
        }
    }

    static func file(_ path: String) -> ArchiveEntry { ArchiveEntry(path: Array(path.utf8), kind: .regular) }

    @Test("'..' and absolute names are refused before anything is written")
    func climbing() throws {
        let space = Workspace()
        let refused1 = try space.apply([Self.file("ok"), Self.file("../outside/secret")])
        #expect(refused1?.contains("'..'") == true)
        #expect(access(space.root + "/ok", F_OK) != 0, "written before the refusal")
        let refused2 = try space.apply([Self.file(space.outside + "/secret")])
        #expect(refused2?.contains("absolute") == true)
        let refused3 = try space.apply([Self.file("a/b/../../../outside/secret")])
        #expect(refused3 != nil)
    }

    @Test("a file through a symlink the layer creates is refused")
    func throughLayerSymlink() throws {
        let space = Workspace()
        let message = try space.apply([
            ArchiveEntry(path: Array("evil".utf8), kind: .symlink, linkTarget: Array(space.outside.utf8)),
            Self.file("evil/secret"),
        ])
        #expect(message?.contains("symlink") == true)
    }

    @Test("a file through a symlink already in ROOT is refused")
    func throughRootSymlink() throws {
        let space = Workspace()
        LayerBuilder.apply([.symlink("link", target: space.outside)], in: space.root)
        let message = try space.apply([Self.file("link/secret")])
        #expect(message?.contains("symlink") == true)
        let whiteout = try space.apply([Self.file("link/.wh.secret")])
        #expect(whiteout?.contains("symlink") == true)
        let opaque = try space.apply([Self.file("link/sub/.wh..wh..opq")])
        #expect(opaque?.contains("symlink") == true)
    }

    @Test("an entry replacing a symlink in ROOT replaces the symlink, not its target")
    func replaceSymlink() throws {
        let space = Workspace()
        LayerBuilder.apply([.symlink("link", target: space.outside + "/secret")], in: space.root)
        #expect(try space.apply([Self.file("link")]) == nil)
        var status = stat()
        #expect(lstat(space.root + "/link", &status) == 0 && (status.st_mode & S_IFMT) == S_IFREG)
    }

    @Test("hard links pointing out are refused; one to a symlink links the symlink itself")
    func hardLinks() throws {
        let space = Workspace()
        let out1 = try space.apply([
            ArchiveEntry(path: Array("h".utf8), kind: .hardLink, linkTarget: Array("../outside/secret".utf8))
        ])
        #expect(out1?.contains("'..'") == true)
        let out2 = try space.apply([
            ArchiveEntry(path: Array("h".utf8), kind: .hardLink, linkTarget: Array((space.outside + "/secret").utf8))
        ])
        #expect(out2?.contains("absolute") == true)
        LayerBuilder.apply([.symlink("escape", target: space.outside + "/secret")], in: space.root)
        #expect(
            try space.apply([ArchiveEntry(path: Array("h".utf8), kind: .hardLink, linkTarget: Array("escape".utf8))])
                == nil)
        var status = stat()
        #expect(lstat(space.root + "/h", &status) == 0 && (status.st_mode & S_IFMT) == S_IFLNK)
    }

    @Test("whiteouts of '.' or '..' are refused")
    func climbingWhiteouts() throws {
        let space = Workspace()
        #expect(try space.apply([Self.file("etc/.wh..")])?.contains("climb") == true)
        #expect(try space.apply([Self.file(".wh...")])?.contains("climb") == true)
        #expect(access(space.root + "/etc/passwd", F_OK) == 0)
    }

    @Test("a whiteout marker name used as a directory is refused, naming the layer")
    func markerNamesAsDirectories() throws {
        let space = Workspace()
        let message = try space.apply([Self.file("x/.wh.../canary")])
        #expect(message?.contains("a whiteout marker name used as a directory") == true, "\(message ?? "")")
        #expect(message?.contains("x/.wh.../canary") == true)
        #expect(access(space.root + "/x", F_OK) != 0, "written before the refusal")
    }

    @Test("an entry below a non-directory (the layer's own or ROOT's) is refused before anything is written")
    func entriesBelowNonDirectories() throws {
        let space = Workspace(rootSteps: [.file("d/keep/file", "precious"), .file("f", "f")])
        let directory = ArchiveEntry(path: Array("d".utf8), kind: .directory, permissions: 0o755)
        let own = try space.apply([directory, Self.file("d/x"), Self.file("d"), Self.file("d/y")])
        #expect(own?.contains("d/y: refused: its parent 'd' is not a directory in the layer") == true, "\(own ?? "")")
        let inRoot = try space.apply([Self.file("new"), Self.file("f/y")])
        #expect(inRoot?.contains("f/y: refused: 'f' in \(space.root) is a regular file") == true, "\(inRoot ?? "")")
        #expect(FileManager.default.contents(atPath: space.root + "/d/keep/file") == Data("precious".utf8))
        #expect(access(space.root + "/new", F_OK) != 0, "written before the refusal")
        // Whited out first, the file is no obstacle.
        #expect(try space.apply([Self.file(".wh.f"), Self.file("f/y")]) == nil)
    }

    @Test("a layer tarball inside ROOT is read whole even when it whites itself out")
    func layerInsideRoot() throws {
        let space = Workspace()
        let layer = try space.layer([Self.file(".wh.layer.tar"), Self.file("after")])
        let inside = space.root + "/layer.tar"
        #expect(rename(layer, inside) == 0)
        try LayerApplier(root: space.root).apply(layer: inside)
        #expect(access(space.root + "/after", F_OK) == 0)
        #expect(access(inside, F_OK) != 0, "the layer deletes its own name, as it says")
    }

    @Test("overlay-private xattrs in a tarball are not planted in ROOT", .enabled(if: runningAsRoot))
    func overlayAttributesAreDropped() throws {
        let space = Workspace()
        var entry = Self.file("f")
        entry.extendedAttributes = [
            ExtendedAttribute(name: Array("trusted.overlay.redirect".utf8), value: Array("/etc".utf8)),
            ExtendedAttribute(name: Array("trusted.overlay.opaque".utf8), value: Array("y".utf8)),
            ExtendedAttribute(name: Array("user.keep".utf8), value: Array("v".utf8)),
            ExtendedAttribute(name: Array("user.overlay.metacopy".utf8), value: []),
        ]
        #expect(try space.apply([entry]) == nil)
        let listed = shell("getfattr -h -d -m - \(shellQuote(space.root + "/f"))").out
        #expect(listed.contains("user.keep=\"v\""), "\(listed)")
        #expect(!listed.contains("overlay"), "\(listed)")
    }

    @Test("an image archive (docker save, OCI layout) is refused, not unpacked into ROOT")
    func imageArchivesAreRefused() throws {
        let space = Workspace()
        for names in [
            ["manifest.json", "repositories", "abc123/layer.tar"], ["oci-layout", "index.json", "blobs/sha256/x"],
        ] {
            let message = try space.apply(names.map(Self.file))
            #expect(message?.contains("not a layer: this is an image archive") == true, "\(message ?? "")")
            #expect(access(space.root + "/" + names[0], F_OK) != 0, "written before the refusal")
        }
    }

    @Test("a symlink target longer than PATH_MAX - 1 is refused before anything is written")
    func overlongSymlinkTargets() throws {
        let space = Workspace()
        let link = ArchiveEntry(
            path: Array("l".utf8), kind: .symlink, linkTarget: Array(String(repeating: "t", count: 5000).utf8))
        let message = try space.apply([Self.file("first"), link])
        #expect(message?.contains("l: refused: symlink target longer than 4095 bytes") == true, "\(message ?? "")")
        #expect(access(space.root + "/first", F_OK) != 0, "written before the refusal")
    }

    @Test("huge names are refused")
    func hugeNames() throws {
        let space = Workspace()
        #expect(try space.apply([Self.file(String(repeating: "n", count: 300))])?.contains("255") == true)
        #expect(try space.apply([Self.file(String(repeating: "d/", count: 33_000) + "f")])?.contains("65536") == true)
    }

    @Test("device nodes are refused when not running as root", .enabled(if: runningAsRoot))
    func devicesNeedRoot() throws {
        let temp = TemporaryDirectory(prefix: "layerdiff-evil")
        chmod(temp.path, 0o755)
        LayerBuilder.apply([.dir("root")], in: temp.path)
        chown(temp.url("root"), 65534, 65534)
        let layer = temp.url("dev.tar")
        let writer = try ArchiveWriter(
            output: try FileDescriptor.open(path: layer, flags: O_WRONLY | O_CREAT, mode: 0o644), compression: .none)
        try writer.writeHeader(
            ArchiveEntry(path: Array("null".utf8), kind: .characterDevice, deviceMajor: 1, deviceMinor: 3))
        _ = try writer.finish()
        let result = run(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", builtExecutable("layerdiff"), "apply", layer,
                temp.url("root"),
            ])
        #expect(result.status == 2)
        #expect(result.err.contains("device nodes are only created when running as root"), "\(result.err)")
        #expect(try TreeWalker.names(of: try FileDescriptor.open(path: temp.url("root"), flags: O_RDONLY)).isEmpty)
    }

    @Test("a hard link to what neither the layer (before it) nor ROOT holds is refused before anything is written")
    func hardLinkTargetsMustExist() throws {
        let space = Workspace(rootSteps: [.file("keep", "k"), .dir("dir")])
        func link(_ path: String, _ target: String) -> ArchiveEntry {
            ArchiveEntry(path: Array(path.utf8), kind: .hardLink, linkTarget: Array(target.utf8))
        }
        let refused: [([ArchiveEntry], String)] = [
            ([Self.file("first"), link("x", "missing")], "'missing' is neither in the layer before it nor in"),
            ([Self.file("first"), link("x", "later"), Self.file("later")], "'later' is neither in the layer"),
            ([Self.file("first"), Self.file(".wh.keep"), link("x", "keep")], "'keep' is removed by the layer"),
            ([Self.file("first"), link("x", "dir")], "'dir' is a directory in"),
        ]
        for (entries, reason) in refused {
            let message = try space.apply(entries)
            #expect(message?.contains("x: refused: hard link target \(reason)") == true, "\(message ?? "applied")")
            #expect(access(space.root + "/first", F_OK) != 0, "written before the refusal")
            #expect(access(space.root + "/keep", F_OK) == 0, "whited out before the refusal")
        }
        // A target in ROOT, or created by the layer before the link, is linked.
        #expect(try space.apply([link("x", "keep"), Self.file("new"), link("y", "new")]) == nil)
        var x = stat()
        var keep = stat()
        #expect(lstat(space.root + "/x", &x) == 0 && lstat(space.root + "/keep", &keep) == 0 && x.st_ino == keep.st_ino)
    }

    @Test("thousands of nested directories apply in memory that does not grow with the square of the depth")
    func nestedDirectories() throws {
        // 1000 nested directories with a file in each: a 4.5 MB layer (50 KB gzipped). Sets of
        // whole paths made this cost minutes and 100+ MB (4000 levels: 7.5 minutes, 1 GB).
        let space = Workspace()
        let layer = space.temp.url("nested.tar")
        let writer = try ArchiveWriter(
            output: try FileDescriptor.open(path: layer, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o644),
            compression: .none)
        var path: [UInt8] = []
        for level in 0..<1000 {
            path += (path.isEmpty ? [] : [0x2F]) + [0x64]
            let time = Timestamp(seconds: 1_000_000 + Int64(level), nanoseconds: 0)
            try writer.writeHeader(
                ArchiveEntry(path: path, kind: .directory, permissions: 0o755, modificationTime: time))
            try writer.writeHeader(ArchiveEntry(path: path + Array("/f".utf8), kind: .regular, modificationTime: time))
        }
        _ = try writer.finish()
        let result = run(
            "/usr/bin/time", ["-f", "%M", builtExecutable("layerdiff"), "apply", layer, space.root], timeout: 600)
        #expect(result.status == 0, "\(result.err)")
        let kilobytes = Int(result.err.split(separator: "\n").last ?? "") ?? .max
        #expect(kilobytes < 64 * 1024, "peak RSS \(kilobytes) KB")
        var status = stat()
        let middle = space.root + "/" + Array(repeating: "d", count: 500).joined(separator: "/")
        #expect(stat(middle, &status) == 0 && status.st_mtim.tv_sec == 1_000_499)
        #expect(stat(middle + "/f", &status) == 0)
    }

    @Test("a uid or gid that is not a 32-bit id is refused, not truncated (2^32 would be root)")
    func idsOutOfRange() throws {
        let space = Workspace()
        for (field, value) in [("uid", "4294967296"), ("gid", "1099511627776"), ("uid", "4294967295"), ("uid", "-1")] {
            let path = space.temp.url("ids-\(field)\(value).tar")
            let made = shell(
                "python3 -c 'import io, sys, tarfile; t = tarfile.open(sys.argv[1], \"w\", format=tarfile.PAX_FORMAT); "
                    + "i = tarfile.TarInfo(\"owned\"); i.size = 1; i.pax_headers = {sys.argv[2]: sys.argv[3]}; "
                    + "t.addfile(i, io.BytesIO(b\"x\")); t.close()' \(shellQuote(path)) \(field) \(value)")
            #expect(made.status == 0, "\(made.err)")
            do {
                try LayerApplier(root: space.root).apply(layer: path)
                Issue.record("\(field) \(value) was applied")
            } catch {
                #expect(error.description.contains("owned: \(field) \(value) is out of range"), "\(error)")
            }
            #expect(access(space.root + "/owned", F_OK) != 0, "written before the refusal")
        }
    }

    @Test("a damaged archive is an error naming the layer")
    func damaged() throws {
        let space = Workspace()
        let path = space.temp.url("junk.tar")
        _ = FileManager.default.createFile(atPath: path, contents: Data(repeating: 0x41, count: 3000))
        do {
            try LayerApplier(root: space.root).apply(layer: path)
            Issue.record("applied junk")
        } catch {
            #expect(error.description.contains(path))
        }
    }
}
