import Foundation
import Glibc
import LayerCore
import OverlayFS
import TestSupport
import Testing

/// Runs the built `layermount` with `arguments`.
func layermount(_ arguments: [String], timeout: TimeInterval = 120) -> ProcessResult {
    run(builtExecutable("layermount"), arguments, timeout: timeout)
}

/// Parses JSON output into a dictionary.
func jsonObject(_ data: Data) throws -> [String: Any] {
    let value = try JSONSerialization.jsonObject(with: data)
    return try #require(value as? [String: Any])
}

@Suite("inspect, which, ls: command line", .tags(.medium))
struct InspectCLITests {
    static func stack(_ temp: TemporaryDirectory) -> [String] {
        makeLayers(InspectReportTests.craftedStack(.overlay), in: temp)
    }

    @Test func helpFollowsTheLayout() {
        for sub in ["inspect", "which", "ls", "flatten"] {
            let help = layermount([sub, "--help"])
            #expect(help.status == 0)
            #expect(help.err.isEmpty)
            #expect(help.out.hasPrefix("OVERVIEW: "))
            #expect(help.out.contains("\n\nUSAGE: layermount \(sub) "))
            #expect(help.out.contains("\nARGUMENTS:\n  <layer> ..."))
            #expect(help.out.contains("\nOPTIONS:\n"))
            #expect(help.out.contains("\n  -h, --help              Show help information.\n"))
            #expect(layermount(["help", sub]).out == help.out)
        }
    }

    @Test func usageErrorsExit64() {
        let temp = TemporaryDirectory()
        let layers = Self.stack(temp)
        let cases: [([String], String)] = [
            (["inspect"], "Error: Missing expected argument '<layer> ...'"),
            (["inspect", "--frobnicate", layers[0]], "Error: Unknown option '--frobnicate'"),
            (["inspect", "--top", "many", layers[0]], "Error: The value 'many' is invalid for '--top <n>'"),
            (
                ["inspect", "--whiteout-format=xyz", layers[0]],
                "Error: The value 'xyz' is invalid for '--whiteout-format <format>'"
            ),
            (["which", layers[0]], "Error: Missing expected argument '-- <path> ...'"),
            (["ls", layers[0], "--", "/a", "/b"], "Error: Unexpected argument '/b': give one path after '--'"),
            (["inspect", "--top"], "Error: Missing value for '--top <n>'"),
        ]
        for (arguments, message) in cases {
            let result = layermount(arguments)
            #expect(result.status == 64, "\(arguments)")
            #expect(result.out.isEmpty, "\(arguments)")
            let lines = result.err.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            #expect(lines.first?.hasPrefix(message) == true, "\(arguments): \(result.err)")
            #expect(lines.count >= 3 && lines[1].hasPrefix("Usage: layermount \(arguments[0]) "), "\(result.err)")
            #expect(lines.count >= 3 && lines[2] == "  See 'layermount --help' for more information.", "\(result.err)")
        }
    }

    @Test func badLayersAreRuntimeErrorsNamingThePath() throws {
        let temp = TemporaryDirectory()
        let layers = Self.stack(temp)
        LayerBuilder.apply(
            [.file("notes.txt", "just text, not a tar archive\n"), .fifo("pipe"), .file("empty", "")], in: temp.path)
        // A tarball that is an image archive (docker save), not a layer.
        LayerBuilder.apply(
            [
                .file("image/manifest.json", "[]"), .file("image/blobs/sha256/abc", "x"),
                .file("image/oci-layout", "{}"),
            ],
            in: temp.path)
        _ = shell("tar -C \(shellQuote(temp.url("image"))) -cf \(shellQuote(temp.url("image.tar"))) .")
        // A tarball whose entry climbs out of the root.
        _ = shell(
            "cd \(shellQuote(temp.path)) && mkdir -p esc/sub && echo x > esc/evil && "
                + "tar -C esc/sub -cf esc.tar --absolute-names ../evil")
        // A tarball whose entry goes through a whiteout marker name used as a directory.
        _ = shell(
            "cd \(shellQuote(temp.path)) && mkdir -p marker/.wh.x && echo f > marker/.wh.x/f && "
                + "tar -C marker -cf marker.tar ./.wh.x/f")
        // A truncated zstd layer.
        _ = shell(
            "cd \(shellQuote(temp.path)) && tar -C marker -cf - . | zstd -q -c | head -c 40 > cut.tar.zst")
        let cases: [(String, String)] = [
            (temp.url("missing"), "no such layer (no such file or directory)"),
            (temp.url("notes.txt"), "not a layer: neither a directory nor a tar archive"),
            (temp.url("empty"), "not a layer: neither a directory nor a tar archive"),
            (temp.url("pipe"), "not a layer: a fifo is neither a layer directory nor a layer tarball"),
            (temp.url("image.tar"), "not a layer: this is an image archive"),
            (temp.url("esc.tar"), "not a layer: entry ../evil: path has a '..' component"),
            (
                temp.url("marker.tar"),
                "not a layer: entry ./.wh.x/f: goes through '.wh.x', a whiteout marker name used as a directory"
            ),
            (temp.url("cut.tar.zst"), "damaged layer tarball: damaged zstd stream"),
        ]
        // Scratch space (tarball skeletons) goes to $TMPDIR and must be gone after a failure too.
        let scratch = temp.url("scratch")
        mkdir(scratch, 0o700)
        for (bad, reason) in cases {
            for sub in [["inspect"], ["ls"], ["which"], ["flatten", "--to", temp.url("out")]] {
                var arguments = sub + [layers[0], bad]
                if sub == ["which"] { arguments += ["--", "/keep.txt"] }
                let result = run(builtExecutable("layermount"), arguments, environment: ["TMPDIR": scratch])
                #expect((try? FileManager.default.contentsOfDirectory(atPath: scratch)) == [], "\(arguments)")
                #expect(result.status == 1, "\(arguments): \(result.err)")
                #expect(result.out.isEmpty, "\(arguments)")
                #expect(result.err.hasPrefix("Error: \(bad): \(reason)"), "\(arguments): \(result.err)")
            }
        }
        #expect(
            FileManager.default.contents(atPath: temp.url("notes.txt")) == Data("just text, not a tar archive\n".utf8))
    }

    /// `crane pull`, `ko`, Jib and kaniko (go-containerregistry's tarball format) write an image
    /// archive with flat blob names: `sha256:<hex>` or `config.json` for the config, `<hex>.tar.gz`
    /// for each layer, and `manifest.json`; no `blobs/` and no `*/layer.tar`.
    @Test func flatImageArchivesAreRefused() throws {
        let temp = TemporaryDirectory()
        let layers = Self.stack(temp)
        let hex = String(repeating: "5e", count: 32)
        let layouts: [(String, [String])] = [
            ("crane", ["manifest.json", "sha256:\(hex)", "\(String(repeating: "a1", count: 32)).tar.gz"]),
            ("jib", ["config.json", "manifest.json", "\(hex).tar.gz"]),
            ("archive", ["manifest.json", "repositories", "\(hex).json", "\(hex).tar"]),
        ]
        for (name, files) in layouts {
            LayerBuilder.apply(files.map { .file("\(name)/\($0)", "{}") }, in: temp.path)
            _ = shell("tar -C \(shellQuote(temp.url(name))) -cf \(shellQuote(temp.url("\(name).tar"))) .")
            for sub in [["inspect"], ["ls"], ["flatten", "--to", temp.url("out")]] {
                let result = layermount(sub + [layers[0], temp.url("\(name).tar")])
                #expect(result.status == 1, "\(name) \(sub): \(result.out)")
                #expect(
                    result.err.hasPrefix("Error: \(temp.url("\(name).tar")): not a layer: this is an image archive"),
                    "\(name) \(sub): \(result.err)")
            }
        }
        // A layer holding a manifest.json and ordinary files at its root is still a layer.
        LayerBuilder.apply(
            [.file("rootfs/manifest.json", "{}"), .file("rootfs/app.tar.gz", "x"), .file("rootfs/\(hex)x", "y")],
            in: temp.path)
        _ = shell("tar -C \(shellQuote(temp.url("rootfs"))) -cf \(shellQuote(temp.url("rootfs.tar"))) .")
        let listed = layermount(["ls", temp.url("rootfs.tar")])
        #expect(listed.status == 0, "\(listed.err)")
        #expect(listed.out.contains("L1  manifest.json\n"), "\(listed.out)")
    }

    @Test func unreadableEntriesAreNamed() throws {
        guard getuid() == 0 else { return }  // needs another user to lose access
        let temp = TemporaryDirectory()
        chmod(temp.path, 0o755)
        let layers = Self.stack(temp)
        LayerBuilder.apply([.file("secret/inside", "s"), .chmod("secret", 0o700)], in: layers[1])
        for layer in layers { chmod(layer, 0o755) }
        let result = run(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", builtExecutable("layermount"), "inspect"] + layers)
        #expect(result.status == 1, "\(result.out) \(result.err)")
        #expect(result.err.hasPrefix("Error: \(layers[1])/secret: "), "\(result.err)")
        #expect(result.err.contains("permission denied"), "\(result.err)")

        // An unreadable file: which cannot hash it, flatten cannot copy it.
        LayerBuilder.apply([.remove("secret"), .file("private.key", "k", mode: 0o600)], in: layers[1])
        let nobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        let which = run(
            nobody[0],
            Array(nobody.dropFirst()) + [builtExecutable("layermount"), "which"] + layers + ["--", "/private.key"])
        #expect(which.status == 1, "\(which.out) \(which.err)")
        #expect(which.err.hasPrefix("Error: \(layers[1])/private.key: "), "\(which.err)")
        #expect(which.err.contains("permission denied"), "\(which.err)")
        let output = temp.url("flat")
        mkdir(output, 0o777)
        chmod(output, 0o777)
        let flatten = run(
            nobody[0],
            Array(nobody.dropFirst()) + [builtExecutable("layermount"), "flatten"] + layers + ["--to", output])
        #expect(flatten.status == 1, "\(flatten.out) \(flatten.err)")
        #expect(flatten.err.hasPrefix("Error: \(layers[1])/private.key: "), "\(flatten.err)")
        #expect(flatten.err.contains("permission denied"), "\(flatten.err)")
    }

    @Test func inspectTextAndJSON() throws {
        let temp = TemporaryDirectory()
        let layers = Self.stack(temp)
        let text = layermount(["inspect"] + layers)
        #expect(text.status == 0, "\(text.err)")
        #expect(text.err.isEmpty)
        let lines = text.out.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("LAYER  ENTRIES") == true)
        #expect(text.out.contains("merged tree: 11 entries (8 files, 2 directories, 1 symlink, 0 other), 1.3 KiB\n"))
        #expect(
            text.out.contains("efficiency: 23.1% (1370 bytes visible / 5920 bytes stored; 4550 bytes of dead weight)"))
        #expect(text.out.contains("  1000 B  layer 1, deleted by layer 3  /hx2\n"))

        let json = layermount(["inspect", "--json", "--top", "2"] + layers)
        #expect(json.status == 0)
        // The number of threads changes nothing.
        for jobs in ["-j1", "--jobs=2", "--jobs=5"] {
            let other = layermount(["inspect", "--json", "--top", "2", jobs] + layers)
            #expect(other.status == 0, "\(other.err)")
            #expect(other.stdout == json.stdout, "\(jobs)")
        }
        #expect(layermount(["inspect", "-j", "0"] + layers).status == 64)
        let object = try jsonObject(json.stdout)
        #expect(object["schema"] as? String == "layermount-inspect/1")
        #expect(object["command"] as? String == "inspect")
        let described = try #require(object["layers"] as? [[String: Any]])
        #expect(described.map { $0["path"] as? String } == layers)
        #expect(described.map { $0["whiteout_format"] as? String } == ["auto", "auto", "auto"])
        let figures = try #require(object["figures"] as? [[String: Any]])
        #expect(figures.map { $0["bytes"] as? Int } == [5550, 90, 280])
        #expect(figures.map { $0["dead_bytes"] as? Int } == [4550, 0, 0])
        #expect(figures.map { $0["deleted_bytes"] as? Int } == [0, 1400, 2200])
        #expect((object["merged"] as? [String: Any])?["bytes"] as? Int == 1370)
        #expect(object["efficiency"] as? Double == 0.231419)
        let wasted = try #require(object["wasted"] as? [[String: Any]])
        #expect(wasted.count == 2)
        #expect(wasted.first?["path"] as? String == "/hx2")
        #expect(wasted.first?["hidden_by"] as? Int == 3)
        #expect(wasted.first?["how"] as? String == "deleted")
    }

    @Test func whichTextJSONAndExitStatus() throws {
        let temp = TemporaryDirectory()
        let layers = Self.stack(temp)
        let found = layermount(["which"] + layers + ["--", "/shadow.txt", "opq/y"])
        #expect(found.status == 0, "\(found.err)")
        let hash210 = ContentHash.of(Array(filler(210).utf8)).description
        #expect(
            found.out.hasPrefix(
                "/shadow.txt: layer 3\n  L3  regular file, 210 bytes, 0644 0:0, xxh3 \(hash210)  [visible]\n"),
            "\(found.out)")
        #expect(found.out.contains("  L1  regular file, 200 bytes, 0644 0:0, xxh3 "))
        #expect(found.out.contains("[shadowed by layer 3]\n/opq/y: layer 2\n"))

        let missing = layermount(["which"] + layers + ["--", "/keep.txt", "/dir/a"])
        #expect(missing.status == 1)
        #expect(missing.err.isEmpty)
        #expect(missing.out.contains("/dir/a: not in the merged tree: deleted by a whiteout of /dir in layer 3\n"))
        #expect(missing.out.contains("[deleted by layer 3: whiteout of /dir]"))

        let json = layermount(["which", "--json"] + layers + ["--", "/dir/b"])
        #expect(json.status == 1)
        let object = try jsonObject(json.stdout)
        let paths = try #require(object["paths"] as? [[String: Any]])
        #expect(paths.first?["present"] as? Bool == false)
        #expect(paths.first?["deleted_by"] as? Int == 3)  // the merged tree lost /dir to layer 3
        #expect(paths.first?["absence"] as? String == "deleted by a whiteout of /dir in layer 3")
        let versions = try #require(paths.first?["versions"] as? [[String: Any]])
        #expect(versions.map { $0["state"] as? String } == ["whiteout", "deleted"])
        #expect(versions.last?["hidden_by"] as? Int == 2)
        #expect(versions.last?["size"] as? Int == 500)
        #expect(versions.last?["xxh3_128"] as? String == ContentHash.of(Array(filler(500).utf8)).description)
    }

    @Test func lsListsWithLayers() throws {
        let temp = TemporaryDirectory()
        let layers = Self.stack(temp)
        let plain = layermount(["ls"] + layers)
        #expect(plain.status == 0, "\(plain.err)")
        #expect(
            plain.out
                == "L3  d2f\nL2  f2d\nL1  hl2\nL1  keep.txt\nL1  link\nL2  new2.txt\nL3  new3\nL2  opq\nL3  shadow.txt\n"
        )
        let long = layermount(["ls", "-l"] + layers + ["--", "/"])
        #expect(long.out.contains(" L1 link -> keep.txt\n"), "\(long.out)")
        #expect(long.out.contains("-rw-r--r-- 1 0 0  210 "), "\(long.out)")
        let recursive = layermount(["ls", "-R"] + layers + ["--", "opq"])
        #expect(recursive.out == "/opq:\nL2  y\n")
        let json = layermount(["ls", "-lR", "--json"] + layers)
        let object = try jsonObject(json.stdout)
        let entries = try #require(object["entries"] as? [[String: Any]])
        #expect(
            entries.compactMap { $0["path"] as? String }.sorted() == [
                "/d2f", "/f2d", "/f2d/n", "/hl2", "/keep.txt", "/link", "/new2.txt", "/new3", "/opq", "/opq/y",
                "/shadow.txt",
            ])
        #expect(entries.first { $0["path"] as? String == "/link" }?["target"] as? String == "keep.txt")
        #expect(entries.first { $0["path"] as? String == "/opq/y" }?["layer"] as? Int == 2)
        let gone = layermount(["ls"] + layers + ["--", "/dir"])
        #expect(gone.status == 1)
        #expect(gone.err == "Error: /dir: not in the merged tree (deleted by a whiteout of /dir in layer 3)\n")
    }
}
