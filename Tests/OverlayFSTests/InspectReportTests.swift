import Foundation
import LayerCore
import OverlayFS
import TestSupport
import Testing

/// Builds layers (bottom first) from steps in `temp` and returns their paths.
func makeLayers(_ layers: [[LayerStep]], in temp: TemporaryDirectory, prefix: String = "l") -> [String] {
    var paths: [String] = []
    for (index, steps) in layers.enumerated() {
        let path = temp.url("\(prefix)\(index + 1)")
        LayerBuilder.apply([.dir("")] + steps, in: path)
        paths.append(path)
    }
    return paths
}

/// `count` bytes of text (so sizes are easy to add up).
func filler(_ count: Int, _ letter: Character = "x") -> String { String(repeating: letter, count: count) }

@Suite("inspect figures on temp-dir layers", .tags(.small))
struct InspectReportTests {
    /// Every rule the report must get right, with sizes chosen so that each sum identifies its
    /// files (see the expectations below).
    static func craftedStack(_ format: WhiteoutFormat) -> [[LayerStep]] {
        [
            [
                .file("keep.txt", filler(100)), .file("shadow.txt", filler(200)), .file("gone.txt", filler(300)),
                .file("dir/a", filler(400)), .file("dir/b", filler(500)), .file("opq/x", filler(600)),
                .file("opq/y", filler(50)), .file("f2d", filler(700)), .file("d2f/z", filler(800)),
                .file("hl1", filler(900)), .hardlink("hl2", existing: "hl1"), .file("hx1", filler(1000)),
                .hardlink("hx2", existing: "hx1"), .symlink("link", target: "keep.txt"),
            ],
            [
                .whiteout("gone.txt", format), .whiteout("dir/b", format), .opaque("opq", format),
                .file("opq/y", filler(60)), .file("f2d/n", filler(10)), .whiteout("hl1", format),
                .whiteout("hx1", format), .file("new2.txt", filler(20)),
            ],
            [
                .file("shadow.txt", filler(210)), .whiteout("dir", format), .file("d2f", filler(30)),
                .whiteout("hx2", format), .file("new3", filler(40)),
            ],
        ]
    }

    @Test(arguments: [WhiteoutFormat.oci, .overlay], [1, 2])
    func craftedStackFigures(format: WhiteoutFormat, workers: Int) throws {
        let temp = TemporaryDirectory()
        let paths = makeLayers(Self.craftedStack(format), in: temp)
        let stack = try InspectedStack(paths: paths, format: format)
        defer { stack.close() }
        let report = try StackReport.compute(stack, top: 20, workers: workers)
        let (l1, l2, l3) = (report.layers[0], report.layers[1], report.layers[2])

        #expect(l1.files == 13 && l1.directories == 3 && l1.symlinks == 1 && l1.entries == 17)
        #expect(l1.extraHardLinks == 2)
        #expect(l1.bytes == 5550)
        #expect(l1.deadBytes == 4550)  // all but keep.txt and the hl inode (one name still visible)
        #expect(l1.visibleBytes == 1000)
        #expect(l1.deadEntries == 14 && l1.visibleEntries == 3)

        #expect(l2.bytes == 90 && l2.whiteouts == 4 && l2.opaqueDirectories == 1)
        #expect(l2.files == 3 && l2.directories == 3)
        #expect(l2.shadowedBytes == 750)  // opq/y (re-created in the opaque dir) and f2d (file -> dir)
        #expect(l2.deletedBytes == 1400)  // gone.txt, dir/b (before layer 3 deletes dir), opq/x
        #expect(l2.shadowedEntries == 3 && l2.deletedEntries == 5)
        #expect(l2.deadEntries == 1 && l2.deadBytes == 0)  // its dir/, deleted by layer 3

        #expect(l3.bytes == 280 && l3.whiteouts == 2 && l3.opaqueDirectories == 0)
        #expect(l3.shadowedBytes == 200)  // shadow.txt
        #expect(l3.deletedBytes == 2200)  // dir/a, d2f/z, the hx inode (its last name)
        #expect(l3.shadowedEntries == 2 && l3.deletedEntries == 5)

        #expect(report.merged.entries == 11)
        #expect(report.merged.files == 8 && report.merged.directories == 2 && report.merged.symlinks == 1)
        #expect(report.merged.bytes == 1370)
        #expect(report.total.bytes == 5920)
        #expect(report.efficiency == 1370.0 / 5920.0)
        let total = report.total
        #expect(total.deadBytes == total.shadowedBytes + total.deletedBytes)
        #expect(total.bytes == total.visibleBytes + total.deadBytes)

        let wasted = report.wasted.map {
            "\($0.path) \($0.size) L\($0.layer.rawValue + 1) by L\($0.hiding.layer.rawValue + 1) \($0.hiding.isShadowing ? "shadowed" : "deleted")"
        }
        #expect(
            wasted == [
                "/hx2 1000 L1 by L3 deleted", "/d2f/z 800 L1 by L3 deleted", "/f2d 700 L1 by L2 shadowed",
                "/opq/x 600 L1 by L2 deleted", "/dir/b 500 L1 by L2 deleted", "/dir/a 400 L1 by L3 deleted",
                "/gone.txt 300 L1 by L2 deleted", "/shadow.txt 200 L1 by L3 shadowed", "/opq/y 50 L1 by L2 shadowed",
            ])
    }

    @Test func metadataOnlyCopyUpsAreFlagged() throws {
        let temp = TemporaryDirectory()
        let paths = makeLayers(
            [
                [.file("bin/tool", filler(1500, "t"), mode: 0o4755), .file("etc/conf", filler(900, "a"))],
                [.file("bin/tool", filler(1500, "t"), mode: 0o755), .file("etc/conf", filler(900, "b"))],
            ], in: temp)
        let stack = try InspectedStack(paths: paths, format: .auto)
        defer { stack.close() }
        let report = try StackReport.compute(stack, top: 5)
        #expect(report.wasted.map(\.path) == ["/bin/tool", "/etc/conf"])
        #expect(report.wasted.map(\.sameContentAsHider) == [true, false])
        let text = layermount(["inspect"] + paths)
        #expect(text.out.contains("layer 1, shadowed by layer 2 (same content: a metadata-only copy-up)  /bin/tool\n"))
    }

    /// Wasted files of the same size and path (one version per layer) are listed bottom layer
    /// first, whatever the walk order: a version under a deleted directory is walked apart from
    /// the merged one, so with several workers either could come first and the JSON changed from
    /// run to run.
    @Test func wastedTiesAreOrderedByLayer() throws {
        let temp = TemporaryDirectory()
        var layers: [[LayerStep]] = []
        for round in 0..<4 {
            layers.append([.file("d/f", filler(100, "a")), .file("d/g\(round)", filler(10))])
            layers.append([.whiteout("d", .oci)])
        }
        layers.append([.file("d/f", filler(100, "b"))])
        let paths = makeLayers(layers, in: temp)
        let stack = try InspectedStack(paths: paths, format: .auto)
        defer { stack.close() }
        for workers in [1, 2, 4] {
            let report = try StackReport.compute(stack, top: 3, workers: workers)
            #expect(report.wasted.map(\.path) == ["/d/f", "/d/f", "/d/f"], "\(workers)")
            #expect(report.wasted.map(\.layer.rawValue) == [0, 2, 4], "\(workers)")
        }
        let first = layermount(["inspect", "--json", "-j", "1"] + paths)
        for _ in 0..<10 {
            #expect(layermount(["inspect", "--json", "-j", "4"] + paths).stdout == first.stdout)
        }
    }

    @Test func tarballLayersGiveTheSameFigures() throws {
        let temp = TemporaryDirectory()
        let paths = makeLayers(Self.craftedStack(.oci), in: temp)
        let compressions = ["", "z", "--zstd"]
        var tarballs: [String] = []
        for (index, path) in paths.enumerated() {
            let suffixes = [".tar", ".tar.gz", ".tar.zst"]
            let tarball = temp.url("layer\(index + 1)\(suffixes[index])")
            let flag = compressions[index]
            let result = shell(
                "tar -C \(shellQuote(path)) \(flag.isEmpty ? "" : flag == "z" ? "-z" : flag) -cf \(shellQuote(tarball)) ."
            )
            #expect(result.status == 0, "\(result.err)")
            tarballs.append(tarball)
        }
        let directories = try InspectedStack(paths: paths, format: .oci)
        defer { directories.close() }
        let archives = try InspectedStack(paths: tarballs, format: .auto)
        defer { archives.close() }
        #expect(archives.layers.map(\.kind.label) == ["tar", "tar+gzip", "tar+zstd"])
        let expected = try StackReport.compute(directories, top: 20)
        let actual = try StackReport.compute(archives, top: 20)
        #expect(actual.layers == expected.layers)
        #expect(actual.merged == expected.merged)
        #expect(actual.wasted == expected.wasted)
    }

    @Test(arguments: [WhiteoutFormat.oci, .overlay])
    func whichNamesEveryVersionAndItsHider(format: WhiteoutFormat) throws {
        let temp = TemporaryDirectory()
        let paths = makeLayers(Self.craftedStack(format), in: temp)
        let stack = try InspectedStack(paths: paths, format: format)
        defer { stack.close() }
        let merged = MergedPath(stack: stack)
        func summary(_ path: String) throws -> [String] {
            let report = try merged.report(Array(path.utf8))
            var lines = ["provider \(report.provider.map { "L\($0.rawValue + 1)" } ?? "none")"]
            for version in report.versions {
                switch version.kind {
                case .whiteout: lines.append("L\(version.layer.rawValue + 1) whiteout")
                case .entry(let status):
                    let state =
                        version.hiding.map {
                            "\($0.isShadowing ? "shadowed" : "deleted") by L\($0.layer.rawValue + 1): \(version.reason ?? "")"
                        } ?? "visible"
                    lines.append("L\(version.layer.rawValue + 1) \(status.type.letter) \(status.size) \(state)")
                }
            }
            return lines
        }
        #expect(try summary("/shadow.txt") == ["provider L3", "L3 f 210 visible", "L1 f 200 shadowed by L3: shadowed"])
        #expect(try summary("dir/b") == ["provider none", "L2 whiteout", "L1 f 500 deleted by L2: whiteout"])
        #expect(try summary("/dir/a") == ["provider none", "L1 f 400 deleted by L3: whiteout of /dir"])
        #expect(try summary("/opq/x") == ["provider none", "L1 f 600 deleted by L2: opaque directory /opq"])
        #expect(try summary("/opq/y") == ["provider L2", "L2 f 60 visible", "L1 f 50 shadowed by L2: shadowed"])
        #expect(try summary("/d2f/z") == ["provider none", "L1 f 800 deleted by L3: /d2f is a regular file there"])
        #expect(try summary("/hl2") == ["provider L1", "L1 f 900 visible"])
        #expect(try summary("/nothing") == ["provider none"])
        // The content hash is XXH3-128 of the bytes.
        let report = try merged.report(Array("/shadow.txt".utf8))
        #expect(report.versions.first?.contentHash == ContentHash.of(Array(filler(210).utf8)))
        // Intermediate symlinks of the merged tree are followed, the last one is not.
        let viaLink = try merged.report(Array("/link".utf8))
        #expect(viaLink.path.description == "link")
        #expect(viaLink.versions.first?.linkTarget == Array("keep.txt".utf8))
    }
}
