import Foundation
import Glibc
import LayerCore
import OverlayFS
import TestSupport
import Testing

/// `which` on layers made by kernel overlayfs (`redirect_dir=on,metacopy=on`): every version is
/// the one the merged lookup looks up, at its path in its layer.
@Suite("which through kernel-made redirects and metacopy files", .tags(.mount, .medium), .serialized)
struct WhichRedirectTests {
    /// The base layer, then one upper layer per step, each made through a kernel overlay mount.
    func stack(_ base: [LayerStep], steps: [String], in temp: TemporaryDirectory) throws -> [String] {
        var layers = makeLayers([base], in: temp)
        for (index, step) in steps.enumerated() {
            let upper = temp.url("u\(index + 1)")
            try kernelUpper(over: layers, at: upper, step)
            layers.append(upper)
        }
        return layers
    }

    /// The text line of a regular file version holding `content`.
    func file(_ label: String, _ content: String, mode: String = "0644", _ state: String) -> String {
        let hash = ContentHash.of(Array(content.utf8)).description
        return "  \(label)  regular file, \(content.utf8.count) bytes, \(mode) 0:0, xxh3 \(hash)  [\(state)]\n"
    }

    /// The `which --json` object of `path`.
    func whichJSON(_ layers: [String], _ path: String) throws -> [String: Any] {
        let result = layermount(["which", "--json"] + layers + ["--", path])
        let paths = try #require(try jsonObject(result.stdout)["paths"] as? [[String: Any]])
        return try #require(paths.first)
    }

    /// `(layer, layer_path, state)` of each JSON version.
    func summary(_ object: [String: Any]) -> [String] {
        ((object["versions"] as? [[String: Any]]) ?? []).map {
            "\($0["layer"] as? Int ?? 0) \($0["layer_path"] as? String ?? "-") \($0["state"] as? String ?? "?")"
        }
    }

    @Test func renamedDirectoryChildAndTheOldName() throws {
        let temp = TemporaryDirectory()
        // Layer 1 also holds a file at the new name's literal path, which the lookup never reads.
        let layers = try stack(
            [.file("d/x", "x\n"), .file("d/y", "y\n"), .file("e/x", "decoy\n"), .file("e/only", "o\n")],
            steps: ["rm -r e; mv d e; echo new > e/y"], in: temp)
        #expect(shell("getfattr -n trusted.overlay.redirect --only-values \(shellQuote(layers[1]))/e").out == "d")
        let result = layermount(["which"] + layers + ["--", "/e/x", "/e/y", "/e", "/d/x", "/e/only"])
        #expect(result.status == 1, "\(result.err)")  // /d/x and /e/only are not in the merged tree
        #expect(result.err.isEmpty, "\(result.err)")
        let expected =
            "/e/x: layer 1\n" + file("L1 /d/x", "x\n", "visible")
            + "/e/y: layer 2\n" + file("L2", "new\n", "visible") + file("L1 /d/y", "y\n", "shadowed by layer 2")
            + "/e: layer 2\n  L2  directory, 0755 0:0  [visible]\n  L1 /d  directory, 0755 0:0  [visible]\n"
            + "/d/x: not in the merged tree: deleted by a whiteout of /d in layer 2\n"
            + file("L1", "x\n", "deleted by layer 2: whiteout of /d")
            + "/e/only: not in the merged tree: no layer provides it\n"
        #expect(result.out == expected, "\(result.out)")

        let child = try whichJSON(layers, "/e/x")
        #expect(child["layer"] as? Int == 1)
        #expect(summary(child) == ["1 /d/x visible"])
        #expect(summary(try whichJSON(layers, "/e/y")) == ["2 - visible", "1 /d/y shadowed"])
        let old = try whichJSON(layers, "/d/x")
        #expect(old["deleted_by"] as? Int == 2)
        #expect(summary(old) == ["1 - deleted"])
        #expect(summary(try whichJSON(layers, "/e/only")).isEmpty)
    }

    @Test func directoryMovedToAnotherParent() throws {
        let temp = TemporaryDirectory()
        let layers = try stack(
            [.file("p/q/z", "deep\n"), .file("p/other", "o\n"), .dir("r")], steps: ["mv p/q r/q2"], in: temp)
        #expect(shell("getfattr -n trusted.overlay.redirect --only-values \(shellQuote(layers[1]))/r/q2").out == "/p/q")
        let result = layermount(["which"] + layers + ["--", "/r/q2/z", "/p/q/z"])
        #expect(result.status == 1, "\(result.err)")
        #expect(
            result.out
                == "/r/q2/z: layer 1\n" + file("L1 /p/q/z", "deep\n", "visible")
                + "/p/q/z: not in the merged tree: deleted by a whiteout of /p/q in layer 2\n"
                + file("L1", "deep\n", "deleted by layer 2: whiteout of /p/q"), "\(result.out)")
        let moved = try whichJSON(layers, "/r/q2/z")
        #expect(moved["present"] as? Bool == true)
        #expect(summary(moved) == ["1 /p/q/z visible"])
    }

    @Test func renameInsideARenamedDirectory() throws {
        let temp = TemporaryDirectory()
        let layers = try stack(
            [.file("top/mid/f", "leaf\n"), .file("top/g", "g\n")],
            steps: ["mv top top2; mv top2/mid top2/mid2"], in: temp)
        let result = layermount(["which"] + layers + ["--", "/top2/mid2/f", "/top2/mid2", "/top2/mid/f"])
        #expect(result.status == 1, "\(result.err)")
        #expect(
            result.out
                == "/top2/mid2/f: layer 1\n" + file("L1 /top/mid/f", "leaf\n", "visible")
                + "/top2/mid2: layer 2\n  L2  directory, 0755 0:0  [visible]\n"
                + "  L1 /top/mid  directory, 0755 0:0  [visible]\n"
                + "/top2/mid/f: not in the merged tree: deleted by a whiteout of /top2/mid in layer 2\n"
                + file("L1 /top/mid/f", "leaf\n", "deleted by layer 2: whiteout of /top2/mid"), "\(result.out)")
        #expect(summary(try whichJSON(layers, "/top2/mid2/f")) == ["1 /top/mid/f visible"])
    }

    @Test func metacopyFileInsideARenamedDirectory() throws {
        let temp = TemporaryDirectory()
        let big = filler(300 * 1024, "b")
        let layers = try stack(
            [.file("a/big", big), .file("a/other", "o\n")],
            steps: ["mv a a2; chmod 600 a2/big; chmod 600 a2/other; mv a2/other a2/moved"], in: temp)
        let hash = ContentHash.of(Array(big.utf8)).description
        let result = layermount(["which"] + layers + ["--", "/a2/big", "/a2/moved"])
        #expect(result.status == 0, "\(result.err)")
        let otherHash = ContentHash.of(Array("o\n".utf8)).description
        #expect(
            result.out
                == "/a2/big: layer 2\n  L2  regular file, \(big.utf8.count) bytes, 0600 0:0, metadata only "
                + "(data from layer 1), xxh3 \(hash)  [visible]\n"
                + file("L1 /a/big", big, "shadowed by layer 2")
                + "/a2/moved: layer 2\n  L2  regular file, 2 bytes, 0600 0:0, metadata only (data from layer 1), "
                + "xxh3 \(otherHash)  [visible]\n" + file("L1 /a/other", "o\n", "shadowed by layer 2"),
            "\(result.out)")
        let object = try whichJSON(layers, "/a2/big")
        let versions = try #require(object["versions"] as? [[String: Any]])
        #expect(versions.first?["metacopy"] as? Bool == true)
        #expect(versions.first?["data_layer"] as? Int == 1)
        #expect(versions.first?["xxh3_128"] as? String == hash)
        #expect(versions.last?["layer_path"] as? String == "/a/big")
        #expect(versions.last?["xxh3_128"] as? String == hash)
        #expect(summary(object) == ["2 - visible", "1 /a/big shadowed"])
    }

    @Test func redirectInTheMiddleLayer() throws {
        let temp = TemporaryDirectory()
        let layers = try stack(
            [.file("d/x", "x\n")], steps: ["mv d e", "chmod 600 e/x; mv e f"], in: temp)
        let result = layermount(["which"] + layers + ["--", "/f/x", "/e/x", "/f"])
        #expect(result.status == 1, "\(result.err)")
        #expect(
            result.out
                == "/f/x: layer 3\n  L3  regular file, 2 bytes, 0600 0:0, metadata only (data from layer 1), xxh3 "
                + "\(ContentHash.of(Array("x\n".utf8)))  [visible]\n" + file("L1 /d/x", "x\n", "shadowed by layer 3")
                + "/e/x: not in the merged tree: deleted by a whiteout of /e in layer 3\n"
                + file("L1 /d/x", "x\n", "deleted by layer 3: whiteout of /e")
                + "/f: layer 3\n  L3  directory, 0755 0:0  [visible]\n  L2 /e  directory, 0755 0:0  [visible]\n"
                + "  L1 /d  directory, 0755 0:0  [visible]\n", "\(result.out)")
        #expect(summary(try whichJSON(layers, "/f")) == ["3 - visible", "2 /e visible", "1 /d visible"])
    }
}
