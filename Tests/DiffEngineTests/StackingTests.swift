import DiffEngine
import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// `--layer-dir` output stacked for real: on A as a read-only kernel overlayfs mount (overlay
/// format) and as a layermount mount (both formats), the merged tree must be B.
@Suite("Layer directories stack on A", .tags(.mount), .serialized, .enabled(if: runningAsRoot))
struct StackingTests {
    /// A and B with every kind of change, and the layer directory in `format`.
    static func prepare(_ temp: TemporaryDirectory, format: LayerFormat) throws -> String {
        let a = temp.url("a")
        LayerBuilder.apply(
            [.dir("")] + ChangeListTests.base
                + [.file("cache/c1", "1"), .file("cache/c2", "2"), .file("cache/c3", "3"), .file("cache/keep", "k")]
                + ChangeListTests.pinned, in: a)
        copyTree(a, temp.url("b"))
        LayerBuilder.apply(
            [
                .remove("etc/config"), .file("data/blob", "rewritten"), .chmod("bin/tool", 0o4755),
                .remove("etc/app.d"), .file("etc/app.d", "now a file"), .remove("cache/c1"), .remove("cache/c2"),
                .remove("cache/c3"), .xattr("usr/share/doc/readme", name: "user.note", value: "hi"),
                .file("new/dir/f", "f"), .symlink("new/link", target: "../data/blob"), .remove("usr/share/doc"),
            ], in: temp.url("b"))
        var diff = LayerDiff(a: a, b: temp.url("b"))
        diff.output = .directory(temp.url("layer"), format)
        _ = try diff.run()
        return temp.url("layer")
    }

    /// Compares the mounted tree with B (directory mtimes too: the top layer's directories win).
    static func compare(_ mounted: String, _ b: String) throws {
        let differences = try TreeSnapshot(b).differences(to: TreeSnapshot(mounted))
        #expect(differences == [], "\(differences.prefix(10))")
    }

    @Test("kernel overlayfs: lowerdir=LAYER:A gives B (overlay format)")
    func kernelOverlay() throws {
        let temp = TemporaryDirectory()
        let layer = try Self.prepare(temp, format: .overlay)
        let mountPoint = temp.url("mnt")
        mkdir(mountPoint, 0o755)
        let mount = run(
            "/bin/mount", ["-t", "overlay", "overlay", "-o", "ro,lowerdir=\(layer):\(temp.url("a"))", mountPoint])
        guard mount.status == 0 else {
            Issue.record("kernel overlayfs unavailable: \(mount.err)")
            return
        }
        defer { if run("/bin/umount", [mountPoint]).status != 0 { run("/bin/umount", ["-l", mountPoint]) } }
        try Self.compare(mountPoint, temp.url("b"))
    }

    @Test("layermount A LAYER gives B", arguments: [LayerFormat.oci, .overlay])
    func layermount(format: LayerFormat) throws {
        let temp = TemporaryDirectory()
        let layer = try Self.prepare(temp, format: format)
        let mountPoint = temp.url("mnt")
        mkdir(mountPoint, 0o755)
        let mount = run(
            builtExecutable("layermount"),
            ["--whiteout-format", format == .oci ? "oci" : "overlay", temp.url("a"), layer, mountPoint], timeout: 30)
        #expect(mount.status == 0, "\(mount.err)")
        guard mount.status == 0 else { return }
        defer {
            if run("/bin/fusermount3", ["-u", mountPoint]).status != 0 {
                run("/bin/fusermount3", ["-uz", mountPoint])
            }
        }
        try Self.compare(mountPoint, temp.url("b"))
    }

    /// Every top-level name replaced: the layer must not rely on an opaque marker at its root,
    /// which the kernel and layermount ignore there, so stacking it still gives B.
    @Test("a replaced tree stacks to B on the kernel and on layermount", arguments: [LayerFormat.oci, .overlay])
    func wholeTreeReplaced(format: LayerFormat) throws {
        let temp = TemporaryDirectory()
        LayerBuilder.apply(
            [.dir(""), .file("a", "a"), .file("dir/x", "x"), .symlink("sym", target: "a"), .file("z", "z")],
            in: temp.url("a"))
        LayerBuilder.apply([.dir(""), .file("opt/x", "new"), .file("opt/sub/y", "y")], in: temp.url("b"))
        _ = shell("touch -r \(shellQuote(temp.url("a"))) \(shellQuote(temp.url("b")))")
        var diff = LayerDiff(a: temp.url("a"), b: temp.url("b"))
        diff.output = .directory(temp.url("layer"), format)
        _ = try diff.run()
        #expect(access(temp.url("layer/.wh..wh..opq"), F_OK) != 0, "an opaque marker on the layer root")
        let mountPoint = temp.url("mnt")
        mkdir(mountPoint, 0o755)
        let mount = run(
            builtExecutable("layermount"),
            ["--whiteout-format", format == .oci ? "oci" : "overlay", temp.url("a"), temp.url("layer"), mountPoint],
            timeout: 30)
        #expect(mount.status == 0, "\(mount.err)")
        guard mount.status == 0 else { return }
        defer {
            if run("/bin/fusermount3", ["-u", mountPoint]).status != 0 {
                run("/bin/fusermount3", ["-uz", mountPoint])
            }
        }
        #expect((try? FileManager.default.contentsOfDirectory(atPath: mountPoint))?.sorted() == ["opt"])
        if format == .overlay {
            let kernel = try KernelOverlayMount(layers: [temp.url("a"), temp.url("layer")])
            defer { kernel.unmount() }
            #expect((try? FileManager.default.contentsOfDirectory(atPath: kernel.path))?.sorted() == ["opt"])
        }
    }
}
