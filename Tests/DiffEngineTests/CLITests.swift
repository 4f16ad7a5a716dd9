import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// The `layerdiff` binary: golden text, JSON and stat output, exit statuses, stdout versus
/// stderr, usage errors, refusals.
@Suite("layerdiff command line", .tags(.medium))
struct CLITests {
    static var layerdiff: String { builtExecutable("layerdiff") }

    /// A fixed pair of trees with pinned mtimes: A and B in `temp`.
    static func pair(_ temp: TemporaryDirectory) {
        LayerBuilder.apply([.dir("")] + ChangeListTests.base + ChangeListTests.pinned, in: temp.url("a"))
        copyTree(temp.url("a"), temp.url("b"))
        LayerBuilder.apply(
            [
                .file("etc/config", "config v2 longer\n"), .remove("usr/share"), .file("etc/new\nline", "x"),
                .chmod("bin/tool", 0o700), .times("etc", seconds: 1_600_000_100),
                .times("etc/new\nline", seconds: 1_600_000_100), .times("usr", seconds: 1_600_000_000),
                .times("etc/config", seconds: 1_600_000_100),
            ], in: temp.url("b"))
    }

    @Test("a path that is not UTF-8 is refused (exit 2), not decoded into another path")
    func nonUTF8PathsAreRefused() {
        let temp = TemporaryDirectory()
        // The lossy decoding of the bad name exists and differs from b: a mangled run would exit 1.
        LayerBuilder.apply([.dir("a\u{FFFD}"), .file("a\u{FFFD}/only-here", "x"), .dir("b")], in: temp.path)
        let base = shellQuote(temp.path)
        let result = shell(
            "mkdir \(base)/\"$(printf 'a\\377')\" && \(shellQuote(Self.layerdiff)) \(base)/\"$(printf 'a\\377')\" \(base)/b"
        )
        #expect(result.status == 2, "\(result.err)")
        #expect(result.out.isEmpty)
        #expect(result.err.hasPrefix("Error: argument 1 '\(temp.path)/a\\xff' is not valid UTF-8"), "\(result.err)")
    }

    @Test("apply refuses a damaged .tar.gz / .tar.zst before touching ROOT", arguments: ["tar.gz", "tar.zst"])
    func damagedLayersAreRefused(suffix: String) {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.dir("a"), .dir("b"), .dir("root"), .file("root/keep", "k")], in: temp.path)
        let layer = temp.url("layer." + suffix)
        let made = shell(
            "head -c 3000000 /dev/urandom > \(shellQuote(temp.url("b/rand"))) && \(shellQuote(Self.layerdiff)) "
                + "\(shellQuote(temp.url("a"))) \(shellQuote(temp.url("b"))) -o \(shellQuote(layer)) --quiet; "
                + "python3 -c 'import sys; f = open(sys.argv[1], \"r+b\"); f.seek(2000000); b = f.read(1); "
                + "f.seek(2000000); f.write(bytes([b[0] ^ 0x55]))' \(shellQuote(layer))")
        #expect(made.status == 0, "\(made.err)")
        let result = run(Self.layerdiff, ["apply", layer, temp.url("root")])
        #expect(result.status == 2)
        #expect(result.err.hasPrefix("Error: \(layer): damaged layer"), "\(result.err)")
        #expect(result.err.contains("damaged \(suffix == "tar.gz" ? "gzip" : "zstd") stream"), "\(result.err)")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: temp.url("root"))) == ["keep"], "ROOT changed")
    }

    @Test("apply refuses a layer cut short, inside an entry or between two, before touching ROOT")
    func truncatedLayersAreRefused() {
        let temp = TemporaryDirectory()
        // a's 512-byte header and content fill the first MiB exactly: b's header starts the
        // second 1 MiB gzip member, so a cut between the two members is a clean gzip stream.
        LayerBuilder.apply(
            [
                .dir("a"), .dir("root"), .file("root/keep", "k"),
                .file("b/a", String(repeating: "x", count: 1_048_064)), .file("b/b", "b"),
                .times("b/a", seconds: 1_600_000_000), .times("b/b", seconds: 1_600_000_000),
                .times("a", seconds: 1_600_000_000), .times("b", seconds: 1_600_000_000),
            ], in: temp.path)
        for suffix in ["tar", "tar.gz"] {
            let made = run(Self.layerdiff, [temp.url("a"), temp.url("b"), "-o", temp.url("layer." + suffix), "-q"])
            #expect(made.status == 1, "\(made.err)")
        }
        let firstMember = shell(
            "python3 -c 'import sys, zlib; d = zlib.decompressobj(31); data = open(sys.argv[1], \"rb\").read(); "
                + "d.decompress(data); print(len(data) - len(d.unused_data))' "
                + shellQuote(temp.url("layer.tar.gz")))
        let cuts: [(String, String)] = [
            ("tar", "600000"), ("tar", "1048576"),
            ("tar.gz", firstMember.out.trimmingCharacters(in: .whitespacesAndNewlines)),
        ]
        for (suffix, length) in cuts {
            let cut = temp.url("cut-\(length).\(suffix)")
            _ = shell("head -c \(length) \(shellQuote(temp.url("layer." + suffix))) > \(shellQuote(cut))")
            let result = run(Self.layerdiff, ["apply", cut, temp.url("root")])
            #expect(result.status == 2, "\(suffix) cut at \(length): \(result.err)")
            #expect(result.err.hasPrefix("Error: \(cut): damaged layer"), "\(result.err)")
            #expect(
                (try? FileManager.default.contentsOfDirectory(atPath: temp.url("root"))) == ["keep"], "ROOT changed")
        }
        // The whole layers apply.
        #expect(run(Self.layerdiff, ["apply", temp.url("layer.tar.gz"), temp.url("root")]).status == 0)
        #expect(FileManager.default.contents(atPath: temp.url("root/b")) == Data("b".utf8))
    }

    @Test("apply refuses a layer on a pipe before its whiteouts change ROOT")
    func pipedLayersAreRefused() {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.file("a/gone", "g"), .dir("b"), .file("root/gone", "g")], in: temp.path)
        let layer = temp.url("layer.tar")
        #expect(run(Self.layerdiff, [temp.url("a"), temp.url("b"), "-o", layer, "-q"]).status == 1)
        let result = shell(
            "cat \(shellQuote(layer)) | \(shellQuote(Self.layerdiff)) apply /dev/stdin \(shellQuote(temp.url("root")))")
        #expect(result.status == 2)
        #expect(result.err.contains("/dev/stdin: cannot apply a layer from a pipe"), "\(result.err)")
        #expect(FileManager.default.fileExists(atPath: temp.url("root/gone")), "the whiteout was applied")
    }

    @Test("apply refuses entries after an end-of-archive block (a zeroed header, an appended tar)")
    func entriesAfterTheEndAreRefused() {
        let temp = TemporaryDirectory()
        LayerBuilder.apply(
            [
                .dir("a"), .dir("root"), .file("root/keep", "k"), .file("b/1", "1"), .file("b/2", "2"),
                .file("b/3", "3"),
                .times("b/1", seconds: 1_600_000_000), .times("b/2", seconds: 1_600_000_000),
                .times("b/3", seconds: 1_600_000_000), .times("a", seconds: 1_600_000_000),
                .times("b", seconds: 1_600_000_000),
            ], in: temp.path)
        let layer = temp.url("layer.tar")
        #expect(run(Self.layerdiff, [temp.url("a"), temp.url("b"), "-o", layer, "-q"]).status == 1)
        // Entries of 1 KiB each (header and content block): zero the second header; put a tar
        // after the first one's end.
        let damaged = [
            ("zeroed.tar", "dd if=/dev/zero of=OUT bs=512 seek=2 count=1 conv=notrunc 2>/dev/null"),
            ("appended.tar", "cat \(shellQuote(layer)) >> OUT"),
        ]
        for (name, command) in damaged {
            let path = temp.url(name)
            let made = shell(
                "cp \(shellQuote(layer)) \(shellQuote(path)) && "
                    + command.replacingOccurrences(of: "OUT", with: shellQuote(path)))
            #expect(made.status == 0, "\(made.err)")
            let result = run(Self.layerdiff, ["apply", path, temp.url("root")])
            #expect(result.status == 2, "\(name): \(result.err)")
            #expect(result.err.contains("data follows the end-of-archive block"), "\(result.err)")
            #expect(
                (try? FileManager.default.contentsOfDirectory(atPath: temp.url("root"))) == ["keep"], "ROOT changed")
        }
        // Padding after the end (GNU tar fills a 10 KiB record) is fine.
        let padded = temp.url("padded.tar")
        _ = shell("cp \(shellQuote(layer)) \(shellQuote(padded)) && head -c 8192 /dev/zero >> \(shellQuote(padded))")
        #expect(run(Self.layerdiff, ["apply", padded, temp.url("root")]).status == 0)
        #expect(FileManager.default.contents(atPath: temp.url("root/3")) == Data("3".utf8))
    }

    @Test(
        "without root, read-only directories and files with user xattrs go through -o, --layer-dir and apply",
        .enabled(if: runningAsRoot))
    func readOnlyTreesWithoutRoot() throws {
        let temp = TemporaryDirectory()
        chmod(temp.path, 0o755)
        let a: [LayerStep] = [
            .dir("e"), .file("a/ro/sub/f", "f"), .file("a/ro/gone/deep/g", "g"), .file("a/opq/o1", "1"),
            .file("a/opq/o2", "2"), .file("a/opq/o3", "3"), .file("a/closed/in/i", "i"),
        ]
        // B: a file and a read-only tree deleted, files added in read-only directories, an opaque
        // directory (o1-o3 go), a read-only file with an xattr.
        let b: [LayerStep] = [
            .file("b/ro/sub/new", "n"), .xattr("b/ro/sub/new", name: "user.k", value: "v"), .file("b/opq/k", "k"),
            .file("b/closed/in/i", "i"), .file("b/closed/in/n", "n"), .xattr("b/ro/sub", name: "user.d", value: "d"),
            .chmod("b/ro/sub/new", 0o444),
        ]
        let readOnly = ["ro/sub", "ro/gone/deep", "ro/gone", "ro", "opq", "closed/in", "closed"]
        let modes =
            readOnly.map { LayerStep.chmod("a/" + $0, $0 == "closed/in" || $0 == "closed" ? 0o500 : 0o555) }
            + readOnly.filter { !$0.hasPrefix("ro/gone") }.map {
                LayerStep.chmod("b/" + $0, $0 == "closed/in" || $0 == "closed" ? 0o500 : 0o555)
            }
        LayerBuilder.apply(a + b + modes, in: temp.path)
        for directory in ["r", "r2", "ld2"] { mkdir(temp.url(directory), 0o755) }
        #expect(shell("chown -R 65534:65534 \(shellQuote(temp.path))").status == 0)
        let times = ["a", "b", "e", "r", "r2"].map { LayerStep.times($0, seconds: 1_600_000_000) }
        LayerBuilder.apply(times, in: temp.path)
        func nobody(_ arguments: [String]) -> ProcessResult {
            run(
                "/usr/bin/setpriv",
                ["--reuid=65534", "--regid=65534", "--clear-groups", Self.layerdiff]
                    + arguments.map { $0.hasPrefix("-") || $0 == "apply" ? $0 : temp.url($0) })
        }
        for arguments in [
            ["e", "a", "-o", "l1.tar"], ["a", "b", "-o", "l2.tar"], ["a", "b", "--layer-dir", "ld"],
            ["a", "b", "--layer-dir", "ld2"],
        ] {
            let result = nobody(arguments + ["-q"])
            #expect(result.status == 1, "\(arguments): \(result.err)")
        }
        // Two runs give the same layer directory, whiteout markers and their mtimes included.
        let layerDirectories = try TreeSnapshot(temp.url("ld")).differences(to: TreeSnapshot(temp.url("ld2")))
        #expect(layerDirectories == [], "\(layerDirectories)")
        for (root, second) in [("r", "l2.tar"), ("r2", "ld")] {
            for layer in ["l1.tar", second] {
                let result = nobody(["apply", layer, root])
                #expect(result.status == 0, "\(layer) onto \(root): \(result.err)")
            }
            #expect(try TreeSnapshot(temp.url("b")).differences(to: TreeSnapshot(temp.url(root))) == [])
        }
        _ = shell("chmod -R u+rwx \(shellQuote(temp.path))")
    }

    @Test(
        "without root, a whiteout below a directory its owner can only search is applied", .enabled(if: runningAsRoot))
    func searchOnlyParentWithoutRoot() throws {
        let temp = TemporaryDirectory()
        chmod(temp.path, 0o755)
        // Only the whiteout of x/sub/f: x/sub keeps its mtime, so x is only walked through.
        LayerBuilder.apply(
            [.file("a/x/sub/f", "f"), .dir("b/x/sub"), .file("root/x/sub/f", "f")]
                + ["a", "b", "root"].flatMap { side -> [LayerStep] in
                    [.times("\(side)/x/sub", seconds: 1_000_000), .times("\(side)/x", seconds: 2_000_000)]
                }, in: temp.path)
        #expect(run(Self.layerdiff, [temp.url("a"), temp.url("b"), "-o", temp.url("l.tar"), "-q"]).status == 1)
        #expect(
            shell(
                "chown -R 65534:65534 \(shellQuote(temp.url("root"))) && chmod 0100 \(shellQuote(temp.url("root/x")))"
            ).status == 0)
        let result = run(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", Self.layerdiff, "apply", temp.url("l.tar"),
                temp.url("root"),
            ])
        #expect(result.status == 0, "\(result.err)")
        var status = Glibc.stat()
        #expect(lstat(temp.url("root/x"), &status) == 0 && status.st_mode & 0o7777 == 0o100)
        #expect(lstat(temp.url("root/x/sub"), &status) == 0 && status.st_mtim.tv_sec == 1_000_000)
        #expect(access(temp.url("root/x/sub/f"), F_OK) != 0)
        chmod(temp.url("root/x"), 0o755)
    }

    @Test("apply refuses a layer directory that is ROOT, inside ROOT, or holds ROOT")
    func overlappingLayerAndRootAreRefused() {
        let temp = TemporaryDirectory()
        LayerBuilder.apply(
            [
                .file("x/file", "important"), .file("l/a", "a"), .dir("l/root"), .file("r/inner/file", "i"),
                .symlink("alias", target: "x"),
            ], in: temp.path)
        let cases: [(String, String, String)] = [
            ("x", "x", "the layer directory is ROOT itself"),
            ("alias", "x", "the layer directory is ROOT itself"),
            ("l", "l/root", "ROOT (\(temp.url("l/root"))) is inside the layer directory"),
            ("r/inner", "r", "the layer directory is inside ROOT (\(temp.url("r")))"),
        ]
        for (layer, root, reason) in cases {
            let result = run(Self.layerdiff, ["apply", temp.url(layer), temp.url(root)], timeout: 30)
            #expect(result.status == 2, "\(layer) onto \(root): \(result.err)")
            #expect(result.err == "Error: \(temp.url(layer)): \(reason): a layer must be applied to a separate tree\n")
        }
        #expect(FileManager.default.contents(atPath: temp.url("x/file")) == Data("important".utf8))
        #expect((try? FileManager.default.contentsOfDirectory(atPath: temp.url("l/root"))) == [])
    }

    @Test("golden text output; exit 1 when the trees differ")
    func goldenText() {
        let temp = TemporaryDirectory()
        Self.pair(temp)
        let result = run(Self.layerdiff, [temp.url("a"), temp.url("b")])
        #expect(result.status == 1)
        #expect(
            result.out == """
                C /bin/tool
                C /etc
                C /etc/config
                A /etc/new\\x0aline
                D /usr/share

                """)
        #expect(result.err == "")
    }

    @Test("golden JSON output: one object per line, then the summary")
    func goldenJSON() {
        let temp = TemporaryDirectory()
        Self.pair(temp)
        let result = run(Self.layerdiff, ["--json", temp.url("a"), temp.url("b")])
        #expect(result.status == 1)
        #expect(
            result.out == """
                {"kind":"changed","path":"/bin/tool","type":"file","size":4,"changed":["mode"]}
                {"kind":"changed","path":"/etc","type":"directory","changed":["mtime"]}
                {"kind":"changed","path":"/etc/config","type":"file","size":17,"changed":["content","mtime"]}
                {"kind":"added","path":"/etc/new\\\\x0aline","type":"file","size":1}
                {"kind":"deleted","path":"/usr/share","type":"directory"}
                {"summary":{"added":1,"changed":3,"deleted":1,"bytes":22}}

                """)
        for line in result.out.split(separator: "\n") {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "\(line)")
        }
    }

    @Test("--stat: counts and bytes per kind")
    func stat() {
        let temp = TemporaryDirectory()
        Self.pair(temp)
        let result = run(Self.layerdiff, ["--stat", temp.url("a"), temp.url("b")])
        #expect(result.status == 1)
        #expect(
            result.out == """
                added:          1 entry, 1 bytes
                changed:        3 entries, 21 bytes
                deleted:        1 entry
                total:          5 changes

                """)
    }

    @Test("equal trees exit 0 with no output; --quiet prints nothing")
    func equalAndQuiet() {
        let temp = TemporaryDirectory()
        Self.pair(temp)
        let equal = run(Self.layerdiff, [temp.url("a"), temp.url("a")])
        #expect(equal.status == 0)
        #expect(equal.out == "" && equal.err == "")
        let quiet = run(Self.layerdiff, ["-q", temp.url("a"), temp.url("b")])
        #expect(quiet.status == 1)
        #expect(quiet.out == "" && quiet.err == "")
    }

    @Test("-o writes the layer and prints its digests; the same run twice gives the same bytes")
    func archive() throws {
        let temp = TemporaryDirectory()
        Self.pair(temp)
        let first = run(Self.layerdiff, [temp.url("a"), temp.url("b"), "-o", temp.url("l1.tar.gz")])
        let second = run(
            Self.layerdiff, [temp.url("a"), temp.url("b"), "-o", temp.url("l2.tar.gz")],
            environment: ["SOURCE_DATE_EPOCH": "1600000050"])
        let third = run(
            Self.layerdiff, [temp.url("a"), temp.url("b"), "--mtime-clamp=1600000050", "-o", temp.url("l3.tar.gz")])
        let fast = run(
            Self.layerdiff,
            [
                temp.url("a"), temp.url("b"), "--mtime-clamp=1600000050", "--compression-level", "1", "-o",
                temp.url("l4.tar.gz"),
            ])
        #expect(fast.status == 1)
        #expect(fast.out.split(separator: "\n").first == third.out.split(separator: "\n").first, "same diff_id")
        #expect(first.status == 1 && second.status == 1 && third.status == 1)
        let lines = first.out.split(separator: "\n")
        #expect(lines.count == 4)
        #expect(lines[0].hasPrefix("diff_id: sha256:") && lines[1].hasPrefix("digest: sha256:"))
        #expect(lines[3] == "media_type: application/vnd.oci.image.layer.v1.tar+gzip")
        let blob = try Data(contentsOf: URL(fileURLWithPath: temp.url("l1.tar.gz")))
        #expect(lines[2] == "size: \(blob.count)")
        #expect(lines[1] == "digest: \(SHA256Digest.of(Array(blob)))")
        #expect(second.out == third.out)
        #expect(second.out != first.out)
        let python = run(
            "/usr/bin/python3",
            ["-c", "import tarfile,sys; print(max(m.mtime for m in tarfile.open(sys.argv[1])))", temp.url("l2.tar.gz")])
        #expect(python.out == "1600000050\n")
    }

    @Test("a .wh. name is refused with exit 2 naming it, leaving no file; --skip-unrepresentable lists it")
    func refusal() {
        let temp = TemporaryDirectory()
        Self.pair(temp)
        LayerBuilder.apply([.file("etc/.wh.foo", "oops")], in: temp.url("b"))
        let refused = run(Self.layerdiff, [temp.url("a"), temp.url("b"), "-o", temp.url("l.tar")])
        #expect(refused.status == 2)
        #expect(refused.err.hasPrefix("Error: ") && refused.err.contains("etc/.wh.foo"))
        #expect(refused.out == "")
        #expect(access(temp.url("l.tar"), F_OK) != 0)
        let skipped = run(
            Self.layerdiff, [temp.url("a"), temp.url("b"), "--skip-unrepresentable", "-o", temp.url("l.tar")])
        #expect(skipped.status == 1)
        #expect(skipped.err.contains("skipped") && skipped.err.contains("etc/.wh.foo"))
    }

    @Test("a layer inside a tree being compared is refused")
    func outputInsideTree() {
        let temp = TemporaryDirectory()
        Self.pair(temp)
        let result = run(Self.layerdiff, [temp.url("a"), temp.url("b"), "-o", temp.url("b/etc/layer.tar")])
        #expect(result.status == 2)
        #expect(result.err.contains("inside"), "\(result.err)")
        #expect(access(temp.url("b/etc/layer.tar"), F_OK) != 0)
        let directory = run(Self.layerdiff, [temp.url("a"), temp.url("b"), "--layer-dir", temp.url("a/new-layer")])
        #expect(directory.status == 2)
        #expect(access(temp.url("a/new-layer"), F_OK) != 0)
    }

    @Test("trouble exits 2 with 'Error: path: reason'")
    func trouble() {
        let temp = TemporaryDirectory()
        let result = run(Self.layerdiff, [temp.url("missing"), temp.path])
        #expect(result.status == 2)
        #expect(result.err == "Error: \(temp.url("missing")): no such tree (no such file or directory)\n")
        #expect(result.out == "")
    }

    @Test(
        "usage errors exit 64 with the swift-argument-parser wording",
        arguments: [
            (["--frobnicate", "a", "b"], "Error: Unknown option '--frobnicate'"),
            (["a"], "Error: Missing expected argument '<b>'"),
            ([], "Error: Missing expected argument '<a>'"),
            (["a", "b", "-o"], "Error: Missing value for '-o <file>'"),
            (["a", "b", "-o", "x.zip"], "Error: The value 'x.zip' is invalid for '--output <file>'"),
            (["apply", "layer.tar"], "Error: Missing expected argument '<root>'"),
            (["a", "b", "-o", "l.tar.gz", "--compression-level", "13"], "Error: The value '13' is invalid"),
            (["a", "b", "--compression-level", "3"], "Error: '--compression-level' needs '-o'"),
        ])
    func usage(arguments: [String], message: String) {
        let result = run(Self.layerdiff, arguments)
        #expect(result.status == 64)
        #expect(result.err.hasPrefix(message), "\(result.err)")
        #expect(result.err.contains("\nUsage: layerdiff"))
        #expect(result.err.hasSuffix("  See 'layerdiff --help' for more information.\n"))
        #expect(result.out == "")
    }

    @Test("--help, help apply and --version print to stdout and exit 0")
    func help() {
        let help = run(Self.layerdiff, ["--help"])
        #expect(help.status == 0)
        #expect(help.out.hasPrefix("OVERVIEW: "))
        #expect(help.out.contains("\nUSAGE: layerdiff "))
        #expect(help.out.contains("\nEXIT STATUS:\n  0  the trees are equal\n  1  the trees differ\n  2  trouble"))
        #expect(help.out.contains("\nSUBCOMMANDS:\n  apply "))
        let apply = run(Self.layerdiff, ["help", "apply"])
        #expect(apply.status == 0 && apply.out.hasPrefix("OVERVIEW: Apply an OCI layer"))
        let applyHelp = run(Self.layerdiff, ["apply", "--help"])
        #expect(applyHelp.out == apply.out)
        let version = run(Self.layerdiff, ["--version"])
        #expect(version.status == 0 && version.out == LayerCoreModule.version + "\n")
    }

    @Test("apply exits 0 and reproduces B; the layer directory form too")
    func applyCommand() throws {
        let temp = TemporaryDirectory()
        Self.pair(temp)
        #expect(run(Self.layerdiff, [temp.url("a"), temp.url("b"), "-o", temp.url("l.tar.zst")]).status == 1)
        #expect(run(Self.layerdiff, [temp.url("a"), temp.url("b"), "--layer-dir", temp.url("dir")]).status == 1)
        for layer in ["l.tar.zst", "dir"] {
            copyTree(temp.url("a"), temp.url("r-\(layer)"))
            let applied = run(Self.layerdiff, ["apply", temp.url(layer), temp.url("r-\(layer)")])
            #expect(applied.status == 0, "\(applied.err)")
            #expect(applied.out == "" && applied.err == "")
            #expect(try TreeSnapshot(temp.url("b")).differences(to: TreeSnapshot(temp.url("r-\(layer)"))) == [])
        }
    }
}
