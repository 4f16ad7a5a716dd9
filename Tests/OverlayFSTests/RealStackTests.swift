import Foundation
import LayerCore
import TestSupport
import Testing

/// `scripts/treedump.py` of the repository.
func treeDumpScript() -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/treedump.py").path
}

/// Compares trees with `treedump.py compare` (paths, types, modes, owners, sizes, content
/// hashes, link targets, hard-link groups, xattrs minus overlay-private, and with `mtime`
/// the mtimes of non-directories); records the diff on a difference.
func expectEqualTrees(_ trees: [String], mtime: Bool, _ comment: String) {
    let result = run(
        "/usr/bin/python3", [treeDumpScript(), "compare"] + trees + (mtime ? ["--mtime"] : []), timeout: 600)
    #expect(result.status == 0, "\(comment):\n\(result.out)\(result.err)")
    #expect(result.out.hasPrefix("equal: "), "\(comment)")
}

/// The merged tree of the real Debian stack through layermount equals the kernel overlayfs
/// mount of the same layers and the recorded rootfs, in both whiteout formats.
@Suite("Real Debian layer stack", .tags(.mount, .large), .serialized)
struct RealStackTests {
    @Test(arguments: [(3, "rootfs3"), (2, "rootfs2")])
    func mergedTreeEqualsKernelOverlayAndRootfs(depth: Int, rootfs: String) throws {
        let corpus = try RealCorpus.ensure()
        let kernelLayers = (1...depth).map { "\(corpus)/layer\($0)" }
        let ociLayers = (1...depth).map { "\(corpus)/layer\($0)-oci" }
        let kernel = try KernelOverlayMount(layers: kernelLayers)
        defer { kernel.unmount() }
        var mounts = [try MountedStack(existing: kernelLayers), try MountedStack(existing: ociLayers)]
        if depth == 3 {
            mounts.append(try MountedStack(existing: kernelLayers, arguments: ["--whiteout-format", "overlay"]))
            mounts.append(try MountedStack(existing: ociLayers, arguments: ["--whiteout-format", "oci"]))
        }
        defer { for mount in mounts { mount.unmount() } }
        expectEqualTrees(
            [kernel.path] + mounts.map(\.mountPoint) + ["\(corpus)/\(rootfs)"], mtime: true,
            "layer1..\(depth): kernel overlay, layermount (auto; oci layers auto; forced formats), \(rootfs)")
    }
}

/// Programs run from the mounted Debian stack (mmap of binaries and libraries, the dynamic
/// loader, Python importing its standard library), in both whiteout formats.
@Suite("Running programs from the mounted Debian stack", .tags(.mount, .large), .serialized)
struct RealStackChrootTests {
    @Test(arguments: ["", "-oci"])
    func programsRunInAChroot(suffix: String) throws {
        let corpus = try RealCorpus.ensure()
        let stack = try MountedStack(existing: (1...3).map { "\(corpus)/layer\($0)\(suffix)" })
        defer { stack.unmount() }
        let script = "ls /app && python3 -c 'import json, sqlite3; print(json.dumps({\"ok\": 1}))' && id -un app"
        let result = run(
            "/usr/sbin/chroot",
            [stack.mountPoint, "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "/bin/sh", "-c", script],
            timeout: 60)
        #expect(result.status == 0, "\(result.err)")
        #expect(result.out == "bin\ndata\netc\nsrc\n{\"ok\": 1}\napp\n", "\(result.out)")
    }
}

/// The 100k-file synthetic stack (opt-in: `LAYERMOUNT_FULL_CORPUS=1`, built under
/// `$LAYERMOUNT_SYNTHETIC`, default /var/tmp/layermount-synth100k, about a minute per format).
@Suite(
    "Synthetic 100k-file stack", .tags(.mount, .large), .serialized,
    .enabled(if: ProcessInfo.processInfo.environment["LAYERMOUNT_FULL_CORPUS"] == "1"))
struct SyntheticStackTests {
    static func ensure(_ format: String) throws -> String {
        let base = ProcessInfo.processInfo.environment["LAYERMOUNT_SYNTHETIC"] ?? "/var/tmp/layermount-synth100k"
        let dir = base + "-" + format
        if !FileManager.default.fileExists(atPath: dir + "/manifest.json") {
            let script = RealCorpus.sharedDirectory + "/corpus/make-synthetic.py"
            let made = shell(
                "flock \(shellQuote(dir + ".lock")) python3 \(shellQuote(script)) \(shellQuote(dir)) --files 100000 "
                    + "--format \(format) 2>&1 | tail -n 20", timeout: 1800)
            #expect(made.status == 0, "\(made.out)")
        }
        return dir
    }

    @Test func bothFormatsEqualTheKernelOverlay() throws {
        let overlay = try Self.ensure("overlay")
        let oci = try Self.ensure("oci")
        let overlayLayers = (1...3).map { "\(overlay)/layer\($0)" }
        let kernel = try KernelOverlayMount(layers: overlayLayers)
        defer { kernel.unmount() }
        let mounts = [
            try MountedStack(existing: overlayLayers),
            try MountedStack(existing: (1...3).map { "\(oci)/layer\($0)" }),
        ]
        defer { for mount in mounts { mount.unmount() } }
        expectEqualTrees([kernel.path] + mounts.map(\.mountPoint), mtime: true, "synthetic 100k")
    }
}
