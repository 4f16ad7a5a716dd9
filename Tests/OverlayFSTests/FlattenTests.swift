import Foundation
import Glibc
import LayerCore
import OverlayFS
import TestSupport
import Testing

/// `../shared/diffcases/treecmp.sh X Y --mtime --dir-mtime`: paths, types, modes, owners, sizes,
/// content hashes, link targets, device numbers, hard-link groups, xattrs and mtimes.
func treeDifferences(_ x: String, _ y: String) -> ProcessResult {
    run(RealCorpus.sharedDirectory + "/diffcases/treecmp.sh", [x, y, "--mtime", "--dir-mtime"], timeout: 600)
}

/// Extracts a layer tarball with GNU tar, as root keeps it (owners, modes, xattrs, devices).
func extractWithTar(_ archive: String, into directory: String) -> ProcessResult {
    mkdir(directory, 0o755)
    return run(
        "/bin/tar",
        ["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", archive, "-C", directory], timeout: 600)
}

@Suite("flatten: the merged tree as a directory or a layer tarball", .tags(.medium))
struct FlattenTests {
    /// Every kind of entry and metadata flatten must carry.
    static func stack(_ format: WhiteoutFormat) -> [[LayerStep]] {
        var layers = InspectReportTests.craftedStack(format)
        layers[0] += [
            .file("meta/owned", "o"), .chown("meta/owned", uid: 1234, gid: 5678), .file("meta/suid", "s", mode: 0o4755),
            .xattr("meta/owned", name: "user.note", value: "kept"), .fifo("meta/fifo"),
            .charDevice("meta/null", major: 1, minor: 3), .blockDevice("meta/block", major: 7, minor: 0),
            .sparse("meta/sparse", size: 1 << 20, data: "tail", offset: (1 << 20) - 4),
            .file("meta/new\nline name", "n"), .times("meta/owned", seconds: 1_000_000_000, nanoseconds: 5),
            .dir("meta/ro"), .file("meta/ro/inside", "r"), .chmod("meta/ro", 0o555),
            .symlink("meta/dangling", target: "/nowhere"), .times("meta/dangling", seconds: 1_234_567_890),
        ]
        layers[1] += [
            .file("meta/top", "t"), .xattr("meta", name: "user.dir", value: "from layer 2"), .chmod("meta", 0o751),
            .times("meta", seconds: 1_500_000_000),
        ]
        return layers
    }

    @Test(arguments: [WhiteoutFormat.oci, .overlay])
    func everyTargetEqualsTheKernelMount(format: WhiteoutFormat) throws {
        let temp = TemporaryDirectory()
        // The kernel reads the overlay format; the OCI stack, converted from it with the times kept
        // (layertool.py to-oci, as the corpus is), must give the same tree.
        let kernelLayers = makeLayers(Self.stack(.overlay), in: temp, prefix: "k")
        var layers = kernelLayers
        if format == .oci {
            layers = kernelLayers.map { $0 + "-oci" }
            for (source, destination) in zip(kernelLayers, layers) {
                let converted = run(
                    "/usr/bin/python3",
                    [RealCorpus.sharedDirectory + "/corpus/layertool.py", "to-oci", source, destination])
                try #require(converted.status == 0, "\(converted.err)")
            }
        }
        let mount = try KernelOverlayMount(layers: kernelLayers)
        defer { mount.unmount() }
        for (target, isArchive) in [("out", false), ("out.tar", true), ("out.tar.gz", true), ("out.tar.zst", true)] {
            let destination = temp.url(target)
            let result = layermount(
                ["flatten", "--whiteout-format", format.rawValue] + layers + ["--to", destination])
            #expect(result.status == 0, "\(target): \(result.err)")
            #expect(result.err.isEmpty, "\(target): \(result.err)")
            var tree = destination
            if isArchive {
                tree = temp.url(target + ".x")
                let extracted = extractWithTar(destination, into: tree)
                #expect(extracted.status == 0, "\(extracted.err)")
            }
            let comparison = treeDifferences(mount.path, tree)
            #expect(comparison.status == 0, "\(target): \(comparison.out)\(comparison.err)")
        }
        // Holes stay holes in a directory target (to-oci does not keep them in the OCI copy).
        var status = stat()
        if format == .overlay {
            #expect(lstat(temp.url("out/meta/sparse"), &status) == 0 && status.st_blocks * 512 < 1 << 20)
        }
    }

    @Test func tarballsAreReproducibleAndDigestsAreRight() throws {
        let temp = TemporaryDirectory()
        let layers = makeLayers(Self.stack(.oci), in: temp)
        var outputs: [Data] = []
        for round in 0..<2 {
            let file = temp.url("image\(round).tar.gz")
            let result = layermount(["flatten", "--json"] + layers + ["--to", file])
            #expect(result.status == 0, "\(result.err)")
            let object = try jsonObject(result.stdout)
            #expect(object["command"] as? String == "flatten")
            #expect(object["kind"] as? String == "tar+gzip")
            #expect(object["media_type"] as? String == "application/vnd.oci.image.layer.v1.tar+gzip")
            let data = try #require(FileManager.default.contents(atPath: file))
            outputs.append(data)
            let sha = shell("sha256sum \(shellQuote(file))").out.split(separator: " ").first.map(String.init)
            #expect(object["digest"] as? String == "sha256:" + (sha ?? ""))
            let diffID = shell("gzip -dc \(shellQuote(file)) | sha256sum").out.split(separator: " ").first.map(
                String.init)
            #expect(object["diff_id"] as? String == "sha256:" + (diffID ?? ""))
            #expect(object["size"] as? Int == data.count)
            #expect(object["entries"] as? Int == 11 + 12)  // the crafted stack, and meta/ with 11 entries
        }
        #expect(outputs[0] == outputs[1])
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: temp.path).filter { $0.contains(".partial-") } == [])
    }

    @Test func destinationsAreChecked() throws {
        let temp = TemporaryDirectory()
        let layers = makeLayers(Self.stack(.oci), in: temp)
        LayerBuilder.apply([.file("full/something", "x"), .symlink("sneaky", target: "l2/empty")], in: temp.path)
        LayerBuilder.apply([.dir("empty")], in: layers[1])
        let cases: [([String], Int32, String)] = [
            (["--to", temp.url("full")], 1, "Error: \(temp.url("full")): the destination directory is not empty\n"),
            (["--to", layers[1] + "/sub"], 1, "Error: \(layers[1])/sub: the destination is inside layer 2\n"),
            (["--to", layers[0]], 1, "Error: \(layers[0]): the destination is layer 1 itself\n"),
            (["--to", temp.url("sneaky")], 1, "Error: \(temp.url("sneaky")): the destination is inside layer 2\n"),
            (["--to", temp.url("missing/parent/out.tar")], 1, "Error: \(temp.url("missing/parent/out.tar")): "),
            (["--to", temp.url("missing/parent/dir")], 1, "Error: \(temp.url("missing/parent/dir")): "),
        ]
        for (extra, status, message) in cases {
            let result = layermount(["flatten"] + layers + extra)
            #expect(result.status == status, "\(extra): \(result.err)")
            #expect(result.err.hasPrefix(message), "\(extra): \(result.err)")
        }
        #expect(!FileManager.default.fileExists(atPath: layers[1] + "/sub"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: temp.url("full")) == ["something"])
        let usage = layermount(["flatten"] + layers)
        #expect(usage.status == 64)
        #expect(
            usage.err.hasPrefix("Error: Missing expected argument '--to <destination>'\nUsage: layermount flatten "))
    }
}

@Suite("flatten on the real Debian layer stack", .tags(.large), .serialized)
struct FlattenRealStackTests {
    /// The merged tree through the kernel overlay, through our FUSE mount, flattened to a
    /// directory and to a tarball, from directory layers and from layer tarballs: all the same.
    @Test func flattenEqualsCopyingOutOfTheMounts() throws {
        let dir = try RealCorpus.ensure()
        let layers = (1...3).map { "\(dir)/layer\($0)" }
        let temp = TemporaryDirectory()
        let kernel = try KernelOverlayMount(layers: layers)
        defer { kernel.unmount() }

        let directory = temp.url("flat")
        let flattened = layermount(["flatten"] + layers + ["--to", directory], timeout: 600)
        try #require(flattened.status == 0, "\(flattened.err)")
        var comparison = treeDifferences(kernel.path, directory)
        #expect(comparison.status == 0, "kernel vs flatten: \(comparison.out)")
        comparison = treeDifferences(dir + "/rootfs3", directory)
        #expect(comparison.status == 0, "rootfs3 vs flatten: \(comparison.out)")

        // Our own mount of the same layers (layermount returns once the mount is usable).
        let mountPoint = temp.url("fuse")
        mkdir(mountPoint, 0o755)
        let mounted = layermount(layers + [mountPoint], timeout: 60)
        defer {
            for _ in 0..<20 where run("/usr/bin/fusermount3", ["-u", mountPoint], timeout: 10).status != 0 {
                usleep(100_000)
            }
            run("/usr/bin/fusermount3", ["-uz", mountPoint], timeout: 10)
        }
        if mounted.status == 0 {
            comparison = treeDifferences(mountPoint, directory)
            #expect(comparison.status == 0, "layermount mount vs flatten: \(comparison.out)")
        } else {
            Issue.record("layermount could not mount the stack: \(mounted.err)")
        }

        // A layer tarball of the flattened tree, from OCI layer tarballs.
        let oci = (1...3).map { "\(dir)/layer\($0)-oci" }
        let tarballs = [temp.url("l1.tar.zst"), temp.url("l2.tar"), temp.url("l3.tar.gz")]
        for (index, flag) in ["--zstd", "", "-z"].enumerated() {
            let made = shell("tar -C \(shellQuote(oci[index])) \(flag) -cf \(shellQuote(tarballs[index])) .")
            try #require(made.status == 0, "\(made.err)")
        }
        let archive = temp.url("flat.tar.zst")
        let written = layermount(["flatten"] + tarballs + ["--to", archive], timeout: 600)
        try #require(written.status == 0, "\(written.err)")
        let extracted = extractWithTar(archive, into: temp.url("flat-from-tar"))
        try #require(extracted.status == 0, "\(extracted.err)")
        comparison = treeDifferences(kernel.path, temp.url("flat-from-tar"))
        #expect(comparison.status == 0, "kernel vs flatten of tarballs: \(comparison.out)")
    }
}
