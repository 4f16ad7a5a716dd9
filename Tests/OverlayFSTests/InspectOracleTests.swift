import Foundation
import Glibc
import LayerCore
import OverlayFS
import TestSupport
import Testing

/// A small deterministic generator (SplitMix64), so a failing seed can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random layer stacks in a small name space (so that names collide across layers), each layer
/// consistent in itself: files, directories, symlinks, hard links, whiteouts, opaque directories.
enum RandomStack {
    static func layer(_ random: inout SeededGenerator, format: WhiteoutFormat) -> [LayerStep] {
        let names = ["a", "b", "c", "d"]
        var kinds: [String: Character] = [:]  // path -> f file, d dir, l symlink, w whiteout
        var files: [String] = []
        var steps: [LayerStep] = []
        for _ in 0..<Int.random(in: 4...14, using: &random) {
            let depth = Int.random(in: 1...3, using: &random)
            let parts = (0..<depth).map { _ in names.randomElement(using: &random) ?? "a" }
            let path = parts.joined(separator: "/")
            // Every prefix must be a directory (or absent) in this layer; the path itself new and
            // without anything below it.
            var ok = kinds[path] == nil && !kinds.keys.contains { $0.hasPrefix(path + "/") }
            for length in 1..<depth where ok {
                let prefix = parts[0..<length].joined(separator: "/")
                if let kind = kinds[prefix], kind != "d" { ok = false }
            }
            guard ok else { continue }
            for length in 1..<depth { kinds[parts[0..<length].joined(separator: "/"), default: "d"] = "d" }
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<40:
                let size = Int.random(in: 0...3000, using: &random)
                steps.append(.file(path, String(repeating: "z", count: size)))
                kinds[path] = "f"
                files.append(path)
            case 40..<60:
                steps.append(.whiteout(path, format))
                kinds[path] = "w"
            case 60..<70:
                steps.append(.dir(path))
                kinds[path] = "d"
            case 70..<80:
                steps.append(.opaque(path, format))
                kinds[path] = "d"
            case 80..<90:
                steps.append(.symlink(path, target: "../x"))
                kinds[path] = "l"
            default:
                if let existing = files.randomElement(using: &random) {
                    steps.append(.hardlink(path, existing: existing))
                    kinds[path] = "f"
                }
            }
        }
        return steps
    }
}

/// `find ROOT -type f -printf ...` as (relative path, inode, size).
func regularFiles(under root: String) -> [(path: String, inode: UInt64, size: Int64)] {
    let result = shell("cd \(shellQuote(root)) && find . -type f -printf '%P\\t%i\\t%s\\n'")
    return result.out.split(separator: "\n").compactMap { line in
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
        guard fields.count == 3, let inode = UInt64(fields[1]), let size = Int64(fields[2]) else { return nil }
        return (String(fields[0]), inode, size)
    }
}

@Suite("inspect against which and the kernel on random stacks", .tags(.medium))
struct InspectOracleTests {
    @Test(arguments: Array(UInt64(1)...UInt64(40)))
    func randomStack(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let temp = TemporaryDirectory()
        let count = Int.random(in: 2...4, using: &random)
        var steps: [[LayerStep]] = []
        var ociSteps: [[LayerStep]] = []
        for _ in 0..<count {
            var copy = random
            steps.append(RandomStack.layer(&random, format: .overlay))
            ociSteps.append(RandomStack.layer(&copy, format: .oci))
        }
        let paths = makeLayers(steps, in: temp)
        let stack = try InspectedStack(paths: paths, format: .overlay)
        defer { stack.close() }
        let report = try StackReport.compute(stack, top: 0, workers: 2)

        // 1. The merged tree equals the kernel's (entry count and bytes, each inode once).
        let mount = try KernelOverlayMount(layers: paths)
        defer { mount.unmount() }
        // Entries that exist (lstat succeeds): the kernel's readdir of a directory that is not merged
        // passes whiteouts through, but looking them up fails (ENOENT).
        let entries = shell("find \(shellQuote(mount.path)) -mindepth 1 -printf '%s\\n' 2>/dev/null | wc -l").out
            .trimmingCharacters(in: .whitespacesAndNewlines)
        if Int(entries) != report.merged.entries {
            var collector = PathCollector()
            try StackWalker(stack: stack, includeHidden: false).walk(&collector)
            let kernel = shell(
                "cd \(shellQuote(mount.path)) && find . -mindepth 1 -printf '/%P %Y\\n' 2>/dev/null | sort"
            ).out
            let ours = collector.paths.sorted().joined(separator: "\n")
            Issue.record(
                "seed \(seed): kernel \(entries) entries, inspect \(report.merged.entries)\nkernel:\n\(kernel)\nours:\n\(ours)\nlayers:\n\(shell("cd \(shellQuote(temp.path)) && find . -printf '%p %y\\n' | sort").out)"
            )
        }
        var seen = Set<UInt64>()
        var mergedBytes: Int64 = 0
        for file in regularFiles(under: mount.path) where seen.insert(file.inode).inserted { mergedBytes += file.size }
        #expect(mergedBytes == report.merged.bytes, "seed \(seed)")

        var collector = HiddenCollector()
        try StackWalker(stack: stack, includeHidden: true).walk(&collector)
        let merged = MergedPath(stack: stack)
        for (key, hiding) in collector.hidden {
            let parts = key.split(separator: " ", maxSplits: 1)
            let layer = Int(parts[0].dropFirst()).map { $0 - 1 } ?? -1
            let answer = try merged.report(Array(parts[1].utf8), hashContent: false)
            let versions = answer.literalPath == nil ? answer.versions : answer.literalVersions
            let which = versions.first { $0.layer.rawValue == layer }?.hiding
            #expect(
                which == hiding,
                "seed \(seed): \(key): inspect \(hiding), which \(String(describing: which)) \(versions.first { $0.layer.rawValue == layer }?.reason ?? "")\n\(shell("cd \(shellQuote(temp.path)) && find . -printf '%p %y\\n' | sort").out)"
            )
        }

        // 2. Who hides what, by the kernel: the first prefix mount in which a layer's inode is gone.
        var visibleSets: [Set<UInt64>] = []  // index k: inodes visible in layers 1...k+1
        for k in 0..<count {
            if k == 0 {
                visibleSets.append(Set(regularFiles(under: paths[0]).map(\.inode)))
                continue
            }
            let prefix = try KernelOverlayMount(layers: Array(paths[0...k]))
            visibleSets.append(Set(regularFiles(under: prefix.path).map(\.inode)))
            prefix.unmount()
        }
        var kernelHidden = Array(repeating: Int64(0), count: count)  // bytes each layer hides first
        var kernelDead = Array(repeating: Int64(0), count: count)
        var whichShadowed = Array(repeating: Int64(0), count: count)
        var whichDeleted = Array(repeating: Int64(0), count: count)
        for j in 0..<count {
            var byInode: [UInt64: [(String, Int64)]] = [:]
            for file in regularFiles(under: paths[j]) {
                byInode[file.inode, default: []].append((file.path, file.size))
            }
            for (inode, names) in byInode {
                let size = names[0].1
                if let k = ((j + 1)..<count).first(where: { !visibleSets[$0].contains(inode) }) {
                    kernelHidden[k] += size
                    kernelDead[j] += size
                }
                // 3. The same by `which`: dead when no name is visible; the name hidden last decides.
                var last: Hiding?
                var anyVisible = false
                // The name hidden last decides; among names the same layer hides, the smallest path.
                for (name, _) in names.sorted(by: { $0.0 < $1.0 }) {
                    let answer = try merged.report(Array(name.utf8), hashContent: false)
                    let versions = answer.literalPath == nil ? answer.versions : answer.literalVersions
                    guard let version = versions.first(where: { $0.layer.rawValue == j }) else {
                        Issue.record("seed \(seed): which lost /\(name) of layer \(j + 1): \(versions)")
                        continue
                    }
                    if let hiding = version.hiding {
                        if last.map({ $0.layer < hiding.layer }) ?? true { last = hiding }
                    } else {
                        anyVisible = true
                    }
                }
                if !anyVisible, let last {
                    if last.isShadowing {
                        whichShadowed[last.layer.rawValue] += size
                    } else {
                        whichDeleted[last.layer.rawValue] += size
                    }
                }
            }
        }
        #expect(report.layers.map(\.deadBytes) == kernelDead, "seed \(seed)")
        #expect(report.layers.map { $0.shadowedBytes + $0.deletedBytes } == kernelHidden, "seed \(seed)")
        #expect(report.layers.map(\.shadowedBytes) == whichShadowed, "seed \(seed)")
        #expect(report.layers.map(\.deletedBytes) == whichDeleted, "seed \(seed)")

        // 4. The same stack in OCI format gives the same report.
        let ociPaths = makeLayers(ociSteps, in: temp, prefix: "oci")
        let ociStack = try InspectedStack(paths: ociPaths, format: .oci)
        defer { ociStack.close() }
        let ociReport = try StackReport.compute(ociStack, top: 0, workers: 1)
        #expect(ociReport.layers == report.layers, "seed \(seed)")
        #expect(ociReport.merged == report.merged, "seed \(seed)")
    }
}

/// Collects the visible paths of a walk, with their type letter.
struct PathCollector: StackVisitor {
    var paths: [String] = []
    mutating func visit(_ entry: WalkEntry) throws(PathError) -> Bool {
        if entry.hiding == nil { paths.append("\(entry.displayPath) \(entry.status.type.letter)") }
        return true
    }
    mutating func leave(_ entry: WalkEntry) throws(PathError) {}
    mutating func marker(_ kind: MarkerKind, layer: LayerIndex, in directory: TreePath, isHidden: Bool) {}
    mutating func opaque(layer: LayerIndex, at directory: TreePath) {}
}

/// Collects every hidden regular file of a walk with its attribution.
struct HiddenCollector: StackVisitor {
    var hidden: [String: Hiding] = [:]  // "L<layer> /path"
    mutating func visit(_ entry: WalkEntry) throws(PathError) -> Bool {
        if let hiding = entry.hiding, entry.status.type == .regular {
            hidden["L\(entry.layer.rawValue + 1) \(entry.displayPath)"] = hiding
        }
        return true
    }
    mutating func leave(_ entry: WalkEntry) throws(PathError) {}
    mutating func marker(_ kind: MarkerKind, layer: LayerIndex, in directory: TreePath, isHidden: Bool) {}
    mutating func opaque(layer: LayerIndex, at directory: TreePath) {}
}
