import DiffEngine
import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// `--upper`: B is A under an overlay upper dir. The change list must equal the full diff of A
/// against the merged tree, the layer must round-trip, and only the upper dir (and A where it
/// touches it) is examined.
@Suite("Overlay upper dir input", .tags(.medium))
struct UpperDirTests {
    static func lines(_ diff: LayerDiff) throws -> [String] {
        var lines: [String] = []
        _ = try diff.run { change in
            lines.append("\(change.kind.letter) \(change.displayPath) \(change.aspects.names.joined(separator: ","))")
        }
        return lines
    }

    /// Compares `--upper upper a` with the full diff `a` → `merged`, and round-trips the layer.
    static func check(a: String, upper: String, merged: String, format: WhiteoutFormat, temp: TemporaryDirectory) throws
    {
        var overlay = LayerDiff(a: a, b: upper)
        overlay.upperFormat = format
        let full = try lines(LayerDiff(a: a, b: merged))
        #expect(try lines(overlay) == full)
        #expect(!full.isEmpty)
        overlay.output = .archive(temp.url("upper-layer.tar"), .none)
        _ = try overlay.run()
        copyTree(a, temp.url("result"))
        try LayerApplier(root: temp.url("result")).apply(layer: temp.url("upper-layer.tar"))
        #expect(try TreeSnapshot(merged).differences(to: TreeSnapshot(temp.url("result"))) == [])
    }

    @Test("an OCI-format upper dir gives the same changes as the merged tree")
    func ociUpper() throws {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.dir("")] + ChangeListTests.base + ChangeListTests.pinned, in: temp.url("a"))
        LayerBuilder.apply(
            [
                .dir(""), .whiteout("etc/config", .oci), .opaque("etc/app.d", .oci), .file("etc/app.d/b.conf", "b"),
                .file("data/blob", "rewritten"), .file("usr/share/doc/new", "new"), .file("newdir/x", "x"),
                .whiteout("usr/share/nothing-below", .oci), .dir("bin", mode: 0o700),
                .times("bin", seconds: 1_600_000_000), .times("", seconds: 1_600_000_000),
            ], in: temp.url("upper"))
        // The merged tree: the upper dir applied as a layer (whiteouts first, dirs merged).
        copyTree(temp.url("a"), temp.url("merged"))
        try LayerApplier(root: temp.url("merged")).apply(layer: temp.url("upper"), directoryFormat: .oci)
        try Self.check(a: temp.url("a"), upper: temp.url("upper"), merged: temp.url("merged"), format: .oci, temp: temp)
    }

    @Test("a kernel overlayfs upper dir after a build step", .tags(.mount), .enabled(if: runningAsRoot))
    func kernelUpper() throws {
        let temp = TemporaryDirectory()
        let a = temp.url("a")
        LayerBuilder.apply(
            [.dir("")] + ChangeListTests.base + [
                .file("cache/c1", "1"), .file("cache/c2", "2"), .file("cache/keep", "k"),
            ]
                + ChangeListTests.pinned, in: a)
        for directory in ["upper", "work", "merged"] { mkdir(temp.url(directory), 0o755) }
        let mount = shell(
            "mount -t overlay overlay -o redirect_dir=off,metacopy=off,lowerdir=\(a),upperdir=\(temp.url("upper")),workdir=\(temp.url("work")) \(temp.url("merged"))"
        )
        guard mount.status == 0 else {
            Issue.record("kernel overlayfs unavailable: \(mount.err)")
            return
        }
        defer { _ = shell("umount \(temp.url("merged")) || umount -l \(temp.url("merged"))") }
        let step = shell(
            """
            set -e; cd \(temp.url("merged"))
            rm etc/config; echo changed > data/blob; chmod 4755 bin/tool
            rm -rf etc/app.d; mkdir etc/app.d; echo b > etc/app.d/b.conf
            mkdir -p opt/new/deep; echo deep > opt/new/deep/f; ln -s ../data/blob opt/link
            setfattr -n user.note -v hi usr/share/doc/readme
            rm cache/c1 cache/c2; mv usr/share/doc usr/share/moved
            """)
        #expect(step.status == 0, "\(step.err)")
        copyTree(temp.url("merged"), temp.url("b"))
        _ = shell("umount \(temp.url("merged"))")
        try Self.check(a: a, upper: temp.url("upper"), merged: temp.url("b"), format: .overlay, temp: temp)
    }

    @Test(
        "a hard link copied up under index=on is refused, a lone file is not", .tags(.mount),
        .enabled(if: runningAsRoot))
    func indexedHardLinks() throws {
        let temp = TemporaryDirectory()
        let a = temp.url("a")
        LayerBuilder.apply(
            [.dir(""), .file("x/linked", "l"), .hardlink("y/other", existing: "x/linked"), .file("x/lone", "1")], in: a)
        for directory in ["upper", "work", "merged"] { mkdir(temp.url(directory), 0o755) }
        let merged = temp.url("merged")
        let mount = shell(
            "mount -t overlay overlay -o index=on,redirect_dir=off,metacopy=off,lowerdir=\(a),"
                + "upperdir=\(temp.url("upper")),workdir=\(temp.url("work")) \(merged)")
        guard mount.status == 0 else {
            Issue.record("kernel overlayfs with index=on unavailable: \(mount.err)")
            return
        }
        defer { _ = shell("umount \(merged) || umount -l \(merged)") }
        // Under index=on the lone file is copied up alone; the linked one is indexed, and the
        // merged tree shows the new mode at y/other too, which the upper dir does not hold.
        #expect(shell("chmod 600 \(merged)/x/lone").status == 0)
        copyTree(merged, temp.url("b1"))
        var overlay = LayerDiff(a: a, b: temp.url("upper"))
        overlay.upperFormat = .overlay
        #expect(try Self.lines(overlay) == Self.lines(LayerDiff(a: a, b: temp.url("b1"))))
        #expect(shell("chmod 600 \(merged)/x/linked").status == 0)
        let status = shell("stat -c %a \(merged)/y/other")
        #expect(status.out == "600\n", "the kernel did not index the hard link: \(status.out)")
        let error = #expect(throws: DiffError.self) { try overlay.run() }
        #expect(error?.path == temp.url("upper") + "/x/linked")
        #expect(error?.reason.contains("overlay nlink") == true, "\(error?.reason ?? "")")
    }

    @Test("only the upper dir and the parts of A it touches are examined")
    func costFollowsUpper() throws {
        let temp = TemporaryDirectory()
        let a = temp.url("a")
        LayerBuilder.apply(
            [.dir(""), .file("touched/f", "f")] + (0..<1500).map { .file("big/f\($0)", "\($0)") }, in: a)
        LayerBuilder.apply([.dir(""), .file("touched/f", "g")], in: temp.url("upper"))
        var overlay = LayerDiff(a: a, b: temp.url("upper"))
        overlay.upperFormat = .overlay
        let upperRun = try overlay.run()
        let fullRun = try LayerDiff(a: a, b: a).run()
        #expect(upperRun.summary.examined < 10)
        #expect(fullRun.summary.examined > 1500)
    }
}
