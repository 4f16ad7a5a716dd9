import Foundation
import Glibc
import LayerCore
import OverlayFS
import TestSupport
import Testing

/// One entry of a tarball crafted by ``writeTar(_:_:)``.
enum TarEntry {
    case file(String, String, mode: Int = 0o644)
    case dir(String, mode: Int = 0o755)
    case symlink(String, target: String)
    case hardlink(String, target: String)

    var json: [String: Any] {
        switch self {
        case .file(let name, let data, let mode): ["name": name, "type": "file", "data": data, "mode": mode]
        case .dir(let name, let mode): ["name": name, "type": "dir", "mode": mode]
        case .symlink(let name, let target): ["name": name, "type": "symlink", "link": target]
        case .hardlink(let name, let target): ["name": name, "type": "hardlink", "link": target]
        }
    }
}

/// Writes a PAX tarball with exactly `entries`, in order (entries GNU tar would never write, such
/// as a symlink replacing a directory, included), every mtime 1700000000.
func writeTar(_ path: String, _ entries: [TarEntry]) throws {
    let spec = try JSONSerialization.data(withJSONObject: entries.map(\.json))
    let script = """
        import io, json, sys, tarfile
        types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}
        with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as tar:
            for e in json.load(sys.stdin):
                info = tarfile.TarInfo(e["name"])
                info.type = types[e["type"]]
                info.mode = e.get("mode", 0o644)
                info.mtime = 1700000000
                info.linkname = e.get("link", "")
                data = e.get("data", "").encode()
                info.size = len(data) if e["type"] == "file" else 0
                tar.addfile(info, io.BytesIO(data) if e["type"] == "file" else None)
        """
    let result = run("/usr/bin/python3", ["-c", script, path], stdin: spec)
    try #require(result.status == 0, "python3 tarfile: \(result.err)")
}

/// The entries of a tarball as LayerCore's reader sees them.
func readTar(_ path: String) throws -> [ArchiveEntry] {
    let file = try FileDescriptor.open(path: path, flags: O_RDONLY)
    let reader = try ArchiveReader(input: file)
    var entries: [ArchiveEntry] = []
    while let entry = try reader.next() { entries.append(entry) }
    return entries
}

/// `lstat(2)` of `path`, or nil.
func linkStatus(_ path: String) -> stat? {
    var status = stat()
    return lstat(path, &status) == 0 ? status : nil
}

/// The `which --json` version objects of `path`.
func whichVersions(_ layers: [String], _ path: String) throws -> [[String: Any]] {
    let result = layermount(["which", "--json"] + layers + ["--", path])
    let object = try jsonObject(result.stdout)
    let paths = try #require(object["paths"] as? [[String: Any]], "\(result.err)")
    return try #require(paths.first?["versions"] as? [[String: Any]])
}

@Suite("tarball layers: one reader for ls, which, inspect and flatten", .tags(.medium))
struct ArchiveLayerTests {
    /// A tarball without a `./` entry or parent entries gets an implied root and implied parents
    /// (0755, 0:0, mtime 0) that every command shows alike, and flatten writes the same bytes for
    /// the same input whenever it runs.
    @Test func impliedRootAndParentsAreFixed() throws {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.file("s/etc/a", "a\n"), .file("s/a/b/c", "c\n")], in: temp.path)
        let tarball = temp.url("noroot.tar")
        let made = shell("tar -C \(shellQuote(temp.url("s"))) -cf \(shellQuote(tarball)) etc/a a/b/c")
        try #require(made.status == 0, "\(made.err)")
        #expect(try readTar(tarball).map { String(decoding: $0.path, as: UTF8.self) } == ["etc/a", "a/b/c"])

        for path in ["/", "/etc", "/a", "/a/b"] {
            let version = try #require(try whichVersions([tarball], path).first)
            #expect(version["mode"] as? String == "0755", "\(path)")
            #expect(version["uid"] as? Int == 0 && version["gid"] as? Int == 0, "\(path)")
            #expect(version["mtime"] as? Int == 0, "\(path)")
        }
        let listing = try jsonObject(layermount(["ls", "-lR", "--json", tarball]).stdout)
        let entries = try #require(listing["entries"] as? [[String: Any]])
        for path in ["/etc", "/a", "/a/b"] {
            let entry = entries.first { $0["path"] as? String == path }
            #expect(entry?["mode"] as? String == "0755" && entry?["mtime"] as? Int == 0, "\(path)")
        }

        let directory = temp.url("flat")
        let flattened = layermount(["flatten", tarball, "--to", directory])
        #expect(flattened.status == 0, "\(flattened.err)")
        for path in ["", "/etc", "/a", "/a/b"] {
            let status = try #require(linkStatus(directory + path))
            #expect(status.st_mode & 0o7777 == 0o755, "\(path)")
            #expect(status.st_mtim.tv_sec == 0, "\(path)")
            if getuid() == 0 { #expect(status.st_uid == 0 && status.st_gid == 0, "\(path)") }
        }

        var outputs: [Data] = []
        for round in 0..<2 {
            if round == 1 { usleep(1_100_000) }  // another second: a current time would show
            let output = temp.url("out\(round).tar")
            let result = layermount(["flatten", tarball, "--to", output])
            #expect(result.status == 0, "\(result.err)")
            outputs.append(try #require(FileManager.default.contents(atPath: output)))
        }
        #expect(outputs[0] == outputs[1])
        let root = try #require(try readTar(temp.url("out0.tar")).first)
        #expect(root.path == Array("./".utf8) && root.permissions == 0o755 && root.modificationTime.seconds == 0)
        #expect(root.userID == 0 && root.groupID == 0)
    }

    /// Every kind of tar sparse entry (old GNU, PAX 0.0, 0.1, 1.0) is hashed by its logical
    /// content, holes as zeros, like a directory layer's file; so the metadata-only copy-up
    /// flag sees through sparseness, and flatten stores the same bytes (holes kept).
    @Test func sparseEntriesHashTheirLogicalContent() throws {
        let temp = TemporaryDirectory()
        let size = 8 << 20
        var logical = [UInt8](repeating: 0, count: size)
        for (offset, text) in [(3 << 20, "data in the middle\n"), (size - 5, "tail\n")] {
            logical.replaceSubrange(offset..<offset + text.utf8.count, with: Array(text.utf8))
        }
        let source = temp.url("src")
        LayerBuilder.apply(
            [.sparse("src/big", size: Int64(size), data: "data in the middle\n", offset: 3 << 20)], in: temp.path)
        let tail = shell(
            "printf 'tail\\n' | dd of=\(shellQuote(source + "/big")) bs=1 seek=\(size - 5) conv=notrunc status=none")
        try #require(tail.status == 0, "\(tail.err)")
        #expect(FileManager.default.contents(atPath: source + "/big") == Data(logical))
        let expected = ContentHash.of(logical).description
        #expect(try whichVersions([source], "/big").first?["xxh3_128"] as? String == expected)

        let variants: [(String, String)] = [
            ("gnu", "--sparse --format=gnu"), ("pax00", "--sparse --format=pax --sparse-version=0.0"),
            ("pax01", "--sparse --format=pax --sparse-version=0.1"),
            ("pax10", "--sparse --format=pax --sparse-version=1.0"), ("dense", "--format=pax"),
        ]
        for (name, flags) in variants {
            let tarball = temp.url("\(name).tar")
            let made = shell("tar \(flags) -C \(shellQuote(source)) -cf \(shellQuote(tarball)) big")
            try #require(made.status == 0, "\(made.err)")
            let version = try #require(try whichVersions([tarball], "/big").first)
            #expect(version["xxh3_128"] as? String == expected, "\(name)")
            #expect(version["size"] as? Int == size, "\(name)")

            // Over a chmod-only copy of the same file, the tarball's version is a metadata-only copy-up.
            let upper = temp.url("upper-\(name)")
            LayerBuilder.apply([.dir(""), .bytes("big", logical, mode: 0o600)], in: upper)
            let report = try jsonObject(layermount(["inspect", "--json", tarball, upper]).stdout)
            let wasted = try #require(report["wasted"] as? [[String: Any]])
            #expect(wasted.first?["path"] as? String == "/big", "\(name)")
            #expect(wasted.first?["same_content"] as? Bool == true, "\(name)")

            let flat = temp.url("flat-\(name)")
            let flattened = layermount(["flatten", tarball, "--to", flat])
            #expect(flattened.status == 0, "\(flattened.err)")
            #expect(FileManager.default.contents(atPath: flat + "/big") == Data(logical), "\(name)")
            if name != "dense" {
                let status = try #require(linkStatus(flat + "/big"))
                #expect(status.st_blocks * 512 < 1 << 20, "\(name): holes are kept")
            }
        }
    }

    /// A later entry of a path replaces the earlier one the same way in every command: a symlink
    /// over a directory drops the directory's children (flatten used to fail with ELOOP), a
    /// directory over a file replaces it, a directory over a directory keeps the children.
    @Test func laterEntriesReplaceEarlierOnes() throws {
        let temp = TemporaryDirectory()
        let tarball = temp.url("replace.tar")
        try writeTar(
            tarball,
            [
                .dir("d/"), .file("d/x", "x"), .symlink("d", target: "target"), .file("f", "file"), .dir("f/"),
                .file("f/y", "y"), .dir("e/", mode: 0o700), .file("e/z", "z"), .dir("e/", mode: 0o750),
            ])
        let listing = layermount(["ls", "-lR", "--json", tarball])
        #expect(listing.status == 0, "\(listing.err)")
        let entries = try #require(try jsonObject(listing.stdout)["entries"] as? [[String: Any]])
        #expect(entries.compactMap { $0["path"] as? String }.sorted() == ["/d", "/e", "/e/z", "/f", "/f/y"])
        #expect(entries.first { $0["path"] as? String == "/d" }?["type"] as? String == "symlink")
        #expect(entries.first { $0["path"] as? String == "/e" }?["mode"] as? String == "0750")

        for target in ["flat", "flat.tar"] {
            let output = temp.url(target)
            let result = layermount(["flatten", tarball, "--to", output])
            #expect(result.status == 0, "\(target): \(result.err)")
            var tree = output
            if target.hasSuffix(".tar") {
                tree = temp.url("flat-x")
                #expect(extractWithTar(output, into: tree).status == 0)
            }
            let found = shell("cd \(shellQuote(tree)) && find . -mindepth 1 -printf '%P %y %m\\n' | sort")
            #expect(found.out == "d l 777\ne d 750\ne/z f 644\nf d 755\nf/y f 644\n", "\(target)")
            #expect(
                (try? FileManager.default.destinationOfSymbolicLink(atPath: tree + "/d")) == "target", "\(target)")
        }
    }

    /// Paths longer than PATH_MAX (400 nested 45-byte names) written by flatten are read back by
    /// every command, and `which` finds the deep file.
    @Test func pathsLongerThanPathMaxRoundTrip() throws {
        let temp = TemporaryDirectory()
        let layer = temp.url("deep")
        mkdir(layer, 0o755)
        let name = String(repeating: "d", count: 45)
        var directory = open(layer, O_RDONLY | O_DIRECTORY)
        for _ in 0..<400 {
            #expect(mkdirat(directory, name, 0o755) == 0)
            let next = openat(directory, name, O_RDONLY | O_DIRECTORY)
            close(directory)
            directory = next
        }
        let file = openat(directory, "f", O_WRONLY | O_CREAT, 0o644)
        #expect(write(file, "deep\n", 5) == 5)
        close(file)
        close(directory)
        let deepPath = "/" + Array(repeating: name, count: 400).joined(separator: "/") + "/f"
        #expect(deepPath.utf8.count > 4096)

        let tarball = temp.url("deep.tar")
        let written = layermount(["flatten", layer, "--to", tarball])
        #expect(written.status == 0, "\(written.err)")
        let inspected = layermount(["inspect", "--json", tarball])
        #expect(inspected.status == 0, "\(inspected.err)")
        #expect((try jsonObject(inspected.stdout)["merged"] as? [String: Any])?["files"] as? Int == 1)
        let which = layermount(["which", "--json", tarball, layer, "--", deepPath])
        #expect(which.status == 0, "\(which.err)")
        let hash = ContentHash.of(Array("deep\n".utf8)).description
        let versions = try #require(
            (try jsonObject(which.stdout)["paths"] as? [[String: Any]])?.first?["versions"] as? [[String: Any]])
        #expect(versions.map { $0["xxh3_128"] as? String } == [hash, hash])
        let back = temp.url("back")
        let flattened = layermount(["flatten", tarball, "--to", back])
        #expect(flattened.status == 0, "\(flattened.err)")
        // (treecmp and find cannot stat paths this long: read the copy fd-relatively.)
        var copy = open(back, O_RDONLY | O_DIRECTORY)
        for _ in 0..<400 {
            let next = openat(copy, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            close(copy)
            copy = next
        }
        let copied = openat(copy, "f", O_RDONLY)
        var buffer = [UInt8](repeating: 0, count: 16)
        #expect(read(copied, &buffer, 16) == 5 && buffer.prefix(5).elementsEqual(Array("deep\n".utf8)))
        close(copied)
        close(copy)
    }

    /// A hard link to a symlink (in a tarball or a directory layer) stays one inode in both
    /// kinds of flatten output, as it is in the kernel overlay.
    @Test func hardLinksToSymlinksStayLinks() throws {
        let temp = TemporaryDirectory()
        let tarball = temp.url("links.tar")
        try writeTar(tarball, [.symlink("s", target: "somewhere"), .hardlink("h", target: "s")])
        let layers = makeLayers([[.file("x", "x")], [.symlink("s", target: "somewhere")]], in: temp)
        #expect(linkat(AT_FDCWD, layers[1] + "/s", AT_FDCWD, layers[1] + "/h", 0) == 0)
        let mount = try KernelOverlayMount(layers: layers)
        defer { mount.unmount() }
        for (sources, label) in [([tarball], "tarball"), (layers, "directories")] {
            for target in ["flat", "flat.tar"] {
                let output = temp.url("\(label)-\(target)")
                let result = layermount(["flatten"] + sources + ["--to", output])
                #expect(result.status == 0, "\(label) \(target): \(result.err)")
                var tree = output
                if target.hasSuffix(".tar") {
                    let kinds = try readTar(output).map { "\(String(decoding: $0.path, as: UTF8.self)) \($0.kind)" }
                    #expect(kinds.contains("s hard link") || kinds.contains("h hard link"), "\(label): \(kinds)")
                    tree = output + ".x"
                    #expect(extractWithTar(output, into: tree).status == 0)
                }
                let first = try #require(linkStatus(tree + "/s"))
                let second = try #require(linkStatus(tree + "/h"))
                #expect(first.st_ino == second.st_ino && first.st_nlink == 2, "\(label) \(target)")
                #expect((first.st_mode & S_IFMT) == S_IFLNK, "\(label) \(target)")
            }
        }
        let compared = treeDifferences(mount.path, temp.url("directories-flat"))
        #expect(compared.status == 0, "\(compared.out)")
    }

    /// Link counts are what the mount reports: a hard link left alone by a later entry of its
    /// other name has one link; a directory merged from several layers has one link; a
    /// single-layer directory its own.
    @Test func linkCountsMatchTheMount() throws {
        let temp = TemporaryDirectory()
        let tarball = temp.url("nlink.tar")
        try writeTar(tarball, [.file("a", "one"), .hardlink("b", target: "a"), .file("a", "two!"), .file("c", "c")])
        try writeTar(temp.url("pair.tar"), [.file("p", "p"), .hardlink("q", target: "p")])
        let listed = try #require(
            try jsonObject(layermount(["ls", "-l", "--json", tarball, temp.url("pair.tar")]).stdout)["entries"]
                as? [[String: Any]])
        let links = Dictionary(uniqueKeysWithValues: listed.map { ($0["name"] as? String ?? "", $0["nlink"] as? Int) })
        #expect(links == ["a": 1, "b": 1, "c": 1, "p": 2, "q": 2])
        let b = try #require(try whichVersions([tarball], "/b").first)
        #expect(b["nlink"] as? Int == 1 && b["size"] as? Int == 3)

        let layers = makeLayers(
            [
                [.file("merged/a", "a"), .dir("merged/sub1"), .dir("single/s1"), .dir("single/s2")],
                [.file("merged/b", "b")],
            ],
            in: temp)
        let mount = try KernelOverlayMount(layers: layers)
        defer { mount.unmount() }
        let entries = try #require(
            try jsonObject(layermount(["ls", "-l", "--json"] + layers).stdout)["entries"] as? [[String: Any]])
        let merged = entries.first { $0["name"] as? String == "merged" }?["nlink"] as? Int
        let single = entries.first { $0["name"] as? String == "single" }?["nlink"] as? Int
        #expect(merged == 1)
        #expect(merged.map(UInt64.init) == linkStatus(mount.path + "/merged").map { UInt64($0.st_nlink) })
        #expect(single == 4)
        #expect(single.map(UInt64.init) == linkStatus(mount.path + "/single").map { UInt64($0.st_nlink) })
    }

    /// A compressed tarball cut short (the end of a zstd frame, a gzip trailer, the middle) is a
    /// damaged layer tarball in every command, not "not a tar archive".
    @Test func damagedCompressedTarballsAreNamedSo() throws {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.file("s/etc/a", "a\n")], in: temp.path)
        let source = shellQuote(temp.url("s"))
        #expect(shell("head -c 200000 /dev/urandom > \(source)/big").status == 0)  // does not compress
        let cuts: [(String, String)] = [
            ("small.tar.zst", "tar -C \(source) --zstd -cf - etc | head -c -10"),
            ("small.tar.gz", "tar -C \(source) -czf - etc | head -c -4"),
            ("big.tar.zst", "tar -C \(source) --zstd -cf - . | head -c -10"),
            ("big.tar.gz", "tar -C \(source) -czf - . | head -c -4"),
            ("middle.tar.gz", "tar -C \(source) -czf - . | head -c 4000"),
        ]
        for (name, command) in cuts {
            let path = temp.url(name)
            #expect(shell("\(command) > \(shellQuote(path))").status == 0)
            for sub in [["inspect"], ["ls"], ["which"], ["flatten", "--to", temp.url("out")]] {
                var arguments = sub + [path]
                if sub == ["which"] { arguments += ["--", "/etc/a"] }
                let result = layermount(arguments)
                #expect(result.status == 1, "\(arguments): \(result.err)")
                #expect(result.err.hasPrefix("Error: \(path): damaged layer tarball: "), "\(arguments): \(result.err)")
                #expect(!result.err.contains("libarchive error"), "\(result.err)")
            }
            #expect(!FileManager.default.fileExists(atPath: temp.url("out")))
        }
        LayerBuilder.apply([.file("junk.bin", "\u{1}\u{2}not an archive at all")], in: temp.path)
        let junk = layermount(["inspect", temp.url("junk.bin")])
        #expect(
            junk.err.hasPrefix("Error: \(temp.url("junk.bin")): not a layer: neither a directory nor a tar archive"))
    }

    /// A crafted sparse map claiming 2^62 bytes of hole: inspect, ls and which answer (the entry
    /// is left unhashed) instead of hashing zeros for ever.
    @Test func absurdSparseHolesAreNotHashed() throws {
        let temp = TemporaryDirectory()
        let made = shell(
            "cd \(shellQuote(temp.path)) && python3 -c '"
                + "import tarfile, io\n"
                + "ti = tarfile.TarInfo(\"f\"); ti.size = 5\n"
                + "ti.pax_headers = {\"GNU.sparse.major\": \"0\", \"GNU.sparse.minor\": \"1\", "
                + "\"GNU.sparse.map\": \"4611686018427387904,5\", \"GNU.sparse.realsize\": \"9223372036854775807\"}\n"
                + "t = tarfile.open(\"p.tar\", \"w\", format=tarfile.PAX_FORMAT); t.addfile(ti, io.BytesIO(b\"hello\")); t.close()'"
        )
        #expect(made.status == 0, "\(made.err)")
        for command in [["inspect"], ["ls", "-l"], ["which"]] {
            var arguments = command + [temp.url("p.tar")]
            if command == ["which"] { arguments += ["--", "/f"] }
            // The timeout only guards the run: a hang fails the test instead of stalling CI.
            let result = run(builtExecutable("layermount"), arguments, timeout: 120)
            #expect(result.status == 0, "\(command): \(result.status) \(result.err)")
        }
    }
}
