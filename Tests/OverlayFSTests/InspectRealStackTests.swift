import Foundation
import Glibc
import LayerCore
import OverlayFS
import TestSupport
import Testing

/// Whether `root/relative` exists in the layer directory itself: every parent a real directory
/// (no symlink followed), the entry not a kernel whiteout.
func layerHoldsEntry(_ root: String, _ relative: String) -> Bool {
    var path = root
    let parts = relative.split(separator: "/")
    var status = stat()
    for (index, part) in parts.enumerated() {
        path += "/" + part
        guard lstat(path, &status) == 0 else { return false }
        let isLast = index == parts.count - 1
        if !isLast && (status.st_mode & S_IFMT) != S_IFDIR { return false }
    }
    return !((status.st_mode & S_IFMT) == S_IFCHR && status.st_rdev == 0)
}

/// The inode `path` resolves to (lstat), or nil.
func inode(of path: String) -> UInt64? {
    var status = stat()
    return lstat(path, &status) == 0 ? UInt64(status.st_ino) : nil
}

@Suite("inspect on the real Debian layer stack", .tags(.large), .serialized)
struct InspectRealStackTests {
    static func layers(_ suffix: String = "") throws -> [String] {
        let dir = try RealCorpus.ensure()
        return (1...3).map { "\(dir)/layer\($0)\(suffix)" }
    }

    /// The report, checked against figures computed here without the Resolver: `find` over each
    /// layer for stored bytes, a kernel overlay mount for the merged tree, and kernel mounts of
    /// the bottom 1, 2, 3 layers for who hides what.
    @Test func figuresAgreeWithTheKernelAndPlainWalks() throws {
        let layers = try Self.layers()
        let stack = try InspectedStack(paths: layers, format: .auto)
        defer { stack.close() }
        let report = try StackReport.compute(stack, top: 10)

        // Stored bytes: regular files, each inode once per layer.
        var stored: [Int64] = []
        var filesByLayer: [[UInt64: [(String, Int64)]]] = []
        for layer in layers {
            var byInode: [UInt64: [(String, Int64)]] = [:]
            for file in regularFiles(under: layer) { byInode[file.inode, default: []].append((file.path, file.size)) }
            filesByLayer.append(byInode)
            stored.append(byInode.values.reduce(0) { $0 + $1[0].1 })
        }
        #expect(report.layers.map(\.bytes) == stored)

        // The merged tree: the kernel's, each inode once.
        let full = try KernelOverlayMount(layers: layers)
        defer { full.unmount() }
        var seen = Set<UInt64>()
        var merged: Int64 = 0
        for file in regularFiles(under: full.path) where seen.insert(file.inode).inserted { merged += file.size }
        let entries = shell("find \(shellQuote(full.path)) -mindepth 1 -printf '%s\\n' 2>/dev/null | wc -l").out
        #expect(report.merged.bytes == merged)
        #expect(Int(entries.trimmingCharacters(in: .whitespacesAndNewlines)) == report.merged.entries)
        let efficiency = Double(merged) / Double(stored.reduce(0, +))
        #expect(report.efficiency == efficiency)
        #expect(efficiency > 0.3 && efficiency < 0.9)  // the stack really wastes space

        // Who hides what: a layer's inode is dead from the first prefix mount that no longer shows it.
        let prefix = try KernelOverlayMount(layers: Array(layers[0...1]))
        defer { prefix.unmount() }
        let views = [layers[0], prefix.path, full.path]
        let visible = views.map { Set(regularFiles(under: $0).map(\.inode)) }
        var dead = [Int64](repeating: 0, count: 3)
        var shadowed = [Int64](repeating: 0, count: 3)
        var deleted = [Int64](repeating: 0, count: 3)
        for j in 0..<3 {
            for (number, names) in filesByLayer[j] {
                guard let k = ((j + 1)..<3).first(where: { !visible[$0].contains(number) }) else { continue }
                let size = names[0].1
                dead[j] += size
                // The names still visible just below layer k are the ones k hides; the smallest decides.
                let last = names.map(\.0).sorted().first { name in
                    inode(of: views[k - 1] + "/" + name) == number
                }
                if let last, layerHoldsEntry(layers[k], last) { shadowed[k] += size } else { deleted[k] += size }
            }
        }
        #expect(report.layers.map(\.deadBytes) == dead)
        #expect(report.layers.map(\.shadowedBytes) == shadowed)
        #expect(report.layers.map(\.deletedBytes) == deleted)
        #expect(deleted[1] > 0 && deleted[2] > 0 && shadowed[2] > 0)
    }

    /// OCI directories and OCI layer tarballs (plain, gzip, zstd) of the same stack give the same
    /// figures as the kernel-format directories.
    @Test func everyLayerFormatGivesTheSameReport() throws {
        let kernel = try InspectedStack(paths: try Self.layers(), format: .auto)
        defer { kernel.close() }
        let expected = try StackReport.compute(kernel, top: 10)
        let oci = try Self.layers("-oci")
        let ociStack = try InspectedStack(paths: oci, format: .oci)
        defer { ociStack.close() }
        let fromOCI = try StackReport.compute(ociStack, top: 10)
        #expect(fromOCI.layers == expected.layers)
        #expect(fromOCI.merged == expected.merged)
        #expect(fromOCI.wasted == expected.wasted)

        let temp = TemporaryDirectory()
        let tarballs = [temp.url("layer1.tar.zst"), temp.url("layer2.tar"), temp.url("layer3.tar.gz")]
        let flags = ["--zstd", "", "-z"]
        for index in 0..<3 {
            let result = shell("tar -C \(shellQuote(oci[index])) \(flags[index]) -cf \(shellQuote(tarballs[index])) .")
            try #require(result.status == 0, "\(result.err)")
        }
        let archives = try InspectedStack(paths: tarballs, format: .auto)
        defer { archives.close() }
        let fromArchives = try StackReport.compute(archives, top: 10)
        #expect(fromArchives.layers == expected.layers)
        #expect(fromArchives.merged == expected.merged)
        #expect(fromArchives.wasted == expected.wasted)
    }

    /// The python3 binary comes from the layer whose build step installed it; a file removed by a
    /// later step is a deleted version of the lower layer.
    @Test func whichNamesTheInstallingLayer() throws {
        let dir = try RealCorpus.ensure()
        let layers = try Self.layers()
        // What the corpus says: the step that installed python3.11, and what rootfs snapshots show.
        let installer = (2...3).first { step in
            (try? String(contentsOfFile: "\(dir)/logs/layer\(step).log", encoding: .utf8))?
                .contains("Setting up python3.11") ?? false
        }
        let step = try #require(installer)
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/rootfs\(step - 1)/usr/bin/python3.11"))
        #expect(FileManager.default.fileExists(atPath: "\(dir)/rootfs\(step)/usr/bin/python3.11"))

        let stack = try InspectedStack(paths: layers, format: .auto)
        defer { stack.close() }
        let merged = MergedPath(stack: stack)
        let python = try merged.report(Array("/usr/bin/python3.11".utf8))
        #expect(python.provider == LayerIndex(step - 1))
        #expect(python.versions.count == 1)
        let bytes = try #require(FileManager.default.contents(atPath: "\(layers[step - 1])/usr/bin/python3.11"))
        #expect(python.versions.first?.contentHash == ContentHash.of(Array(bytes)))

        // Removed by step 3 (rm -rf /usr/share/doc/*): present after step 2, gone after step 3.
        let doc = "usr/share/doc/bash/copyright"
        #expect(FileManager.default.fileExists(atPath: "\(dir)/rootfs2/\(doc)"))
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/rootfs3/\(doc)"))
        let removed = try merged.report(Array(doc.utf8))
        #expect(removed.provider == nil && removed.deletedBy == LayerIndex(2))
        let version = try #require(removed.versions.first)
        #expect(version.layer == LayerIndex(0))
        #expect(version.hiding == Hiding(layer: LayerIndex(2), isShadowing: false))
    }
}
