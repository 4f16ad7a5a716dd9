import DiffEngine
import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// Error messages name the right file: A's path for a deletion, the output file for a write
/// failure, `''` for an empty path argument.
@Suite("layerdiff messages name the right path", .tags(.medium))
struct MessageTests {
    static var layerdiff: String { builtExecutable("layerdiff") }

    @Test("a deletion the layer cannot store names A's path")
    func deletionNamesA() {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.dir("a"), .file("a/.wh.foo", "x"), .dir("b")], in: temp.path)
        let result = run(Self.layerdiff, [temp.url("a"), temp.url("b"), "-o", temp.url("layer.tar")])
        #expect(result.status == 2)
        #expect(
            result.err
                == "Error: \(temp.url("a"))/.wh.foo: its deletion cannot be stored in an OCI layer: the whiteout '.wh..wh.foo' is a marker name (--skip-unrepresentable leaves it out)\n"
        )
    }

    @Test("an empty path argument is named '' and said to be empty")
    func emptyPaths() {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.dir("a"), .file("b/f", "x")], in: temp.path)
        let cases: [([String], String)] = [
            (["", temp.url("b")], "Error: '': no such tree (empty path)\n"),
            ([temp.url("a"), ""], "Error: '': no such tree (empty path)\n"),
            (["--upper", "", temp.url("a")], "Error: '': no such upper dir (empty path)\n"),
            (
                [temp.url("a"), temp.url("b"), "--layer-dir", ""],
                "Error: '': cannot create the layer directory (empty path)\n"
            ),
            (["apply", "", temp.url("a")], "Error: '': no such layer (empty path)\n"),
        ]
        for (arguments, message) in cases {
            let result = run(Self.layerdiff, arguments)
            #expect(result.status == 2, "\(arguments)")
            #expect(result.err == message, "\(arguments)")
        }
    }

    @Test("a full file system names the output file, and leaves nothing", .tags(.mount), .enabled(if: runningAsRoot))
    func noSpaceNamesTheOutput() throws {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.dir("a"), .dir("b"), .dir("full")], in: temp.path)
        let made = shell("head -c 3000000 /dev/urandom > \(shellQuote(temp.url("b/big")))")
        try #require(made.status == 0)
        let mount = shell("mount -t tmpfs -o size=1m tmpfs \(shellQuote(temp.url("full")))")
        try #require(mount.status == 0, "\(mount.err)")
        defer { _ = shell("umount \(shellQuote(temp.url("full"))) || umount -l \(shellQuote(temp.url("full")))") }
        for name in ["layer.tar", "layer.tar.zst"] {
            let result = run(Self.layerdiff, [temp.url("a"), temp.url("b"), "-o", temp.url("full/" + name)])
            #expect(result.status == 2)
            #expect(result.err.hasPrefix("Error: \(temp.url("full/" + name)): cannot "), "\(result.err)")
            #expect(result.err.contains("No space left on device"), "\(result.err)")
        }
        let directory = run(Self.layerdiff, [temp.url("a"), temp.url("b"), "--layer-dir", temp.url("full/dir")])
        #expect(directory.status == 2)
        #expect(directory.err == "Error: \(temp.url("full/dir"))/big: cannot write: No space left on device\n")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: temp.url("full"))) == [])
    }

    @Test("an overlay-format layer dir holding a real .wh. file warns, and applies with --whiteout-format overlay")
    func overlayLayerWithMarkerNames() throws {
        let temp = TemporaryDirectory()
        LayerBuilder.apply(
            [
                .dir("a"), .file("a/.wh.keep", "lower"), .file("b/.wh.keep", "lower"), .file("b/.wh.new", "real"),
                .times("a/.wh.keep", seconds: 1_600_000_000), .times("b/.wh.keep", seconds: 1_600_000_000),
            ],
            in: temp.path)
        let layer = temp.url("layer")
        let result = run(
            Self.layerdiff, [temp.url("a"), temp.url("b"), "--layer-dir", layer, "--whiteout-format", "overlay"])
        #expect(result.status == 1, "\(result.err)")
        #expect(
            result.err
                == "layerdiff: warning: \(layer) holds 1 real file named .wh.* (\(temp.url("b"))/.wh.new); apply it with 'layerdiff apply --whiteout-format overlay', which does not take them for whiteouts\n"
        )
        copyTree(temp.url("a"), temp.url("root"))
        let applied = run(Self.layerdiff, ["apply", "--whiteout-format", "overlay", layer, temp.url("root")])
        #expect(applied.status == 0, "\(applied.err)")
        #expect(try TreeSnapshot(temp.url("b")).differences(to: TreeSnapshot(temp.url("root"))) == [])
        let quiet = run(Self.layerdiff, [temp.url("a"), temp.url("b"), "--layer-dir", temp.url("oci-layer")])
        #expect(quiet.status == 2)
        #expect(!quiet.err.contains("warning"))
    }
}
