import Foundation
import Glibc
import LayerCore
import OverlayFS
import TestSupport
import Testing

/// One regular file or other entry of a layer directory, as `find` and `getfattr` see it.
private struct StoredEntry {
    var path: String
    var type: Character
    var inode: UInt64
    var size: Int64
    var isWhiteout: Bool
    var xattrs: [String: String]
}

/// A layer directory as stored: every entry, its type, inode, size and overlay xattrs.
private func storedEntries(of layer: String) -> [String: StoredEntry] {
    let listing = shell("cd \(shellQuote(layer)) && find . -mindepth 1 -printf '%y\\t%i\\t%s\\t%Hr\\t%P\\n'").out
    // Whiteouts are char devices 0/0 (kernel-made layers hold no other char devices).
    let devices = Set(
        shell("cd \(shellQuote(layer)) && find . -type c -exec stat -c '%t:%T %n' {} + | sed -n 's|^0:0 \\./||p'")
            .out.split(separator: "\n").map(String.init))
    var result: [String: StoredEntry] = [:]
    for line in listing.split(separator: "\n") {
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        guard fields.count == 5, let type = fields[0].first, let inode = UInt64(fields[1]),
            let size = Int64(fields[2])
        else { continue }
        result[fields[4]] = StoredEntry(
            path: fields[4], type: type, inode: inode, size: size, isWhiteout: devices.contains(fields[4]), xattrs: [:])
    }
    let dump = shell(
        "cd \(shellQuote(layer)) && getfattr -R -P -d -m '^trusted\\.overlay\\.' -e text . 2>/dev/null"
    ).out
    var current: String?
    for line in dump.split(separator: "\n") {
        if line.hasPrefix("# file: ") {
            var name = String(line.dropFirst("# file: ".count))
            if name.hasPrefix("./") { name.removeFirst(2) }
            current = name
        } else if let current, let equals = line.firstIndex(of: "=") {
            let key = String(line[..<equals])
            let value = String(line[line.index(after: equals)...]).trimmingCharacters(
                in: CharacterSet(charactersIn: "\""))
            result[current]?.xattrs[key] = value
        }
    }
    return result
}

/// The path in the layers below `layer` that the entry at `path` of `layer` maps to: each
/// directory on the way with `trusted.overlay.redirect` moves it (absolute: from the root;
/// relative: a new last name), as overlayfs.rst describes.
private func lowerPath(of path: String, in layer: [String: StoredEntry]) -> String {
    var mapped: [String] = []
    var prefix = ""
    for component in path.split(separator: "/").map(String.init) {
        prefix = prefix.isEmpty ? component : prefix + "/" + component
        if let redirect = layer[prefix]?.xattrs["trusted.overlay.redirect"] {
            if redirect.hasPrefix("/") {
                mapped = redirect.split(separator: "/").map(String.init)
            } else {
                mapped.append(redirect)
            }
        } else {
            mapped.append(component)
        }
    }
    return mapped.joined(separator: "/")
}

/// The inodes of regular files visible through a kernel mount of `layers`, with the data file of
/// every visible metacopy file (the kernel shows the metacopy file's own inode).
private func visibleInodes(
    _ layers: [String], stored: [[String: StoredEntry]]
) throws -> (inodes: Set<UInt64>, entries: Int, bytes: Int64) {
    let root: String
    var mount: KernelOverlayMount?
    if layers.count == 1 {
        root = layers[0]
    } else {
        let mounted = try KernelOverlayMount(layers: layers, options: "metacopy=on")
        mount = mounted
        root = mounted.path
    }
    defer { mount?.unmount() }
    let entries =
        Int(shell("find \(shellQuote(root)) -mindepth 1 | wc -l").out.trimmingCharacters(in: .whitespacesAndNewlines))
        ?? -1
    var inodes = Set<UInt64>()
    var bytes: Int64 = 0
    for file in regularFiles(under: root) where inodes.insert(file.inode).inserted { bytes += file.size }
    // A metacopy file's data: the first lower regular file, not metadata only, at its lower path.
    for index in stride(from: layers.count - 1, through: 1, by: -1) {
        for entry in stored[index].values
        where entry.type == "f" && entry.xattrs["trusted.overlay.metacopy"] != nil && inodes.contains(entry.inode) {
            // A redirect in a layer applies to the layers below it.
            var path = lowerPath(of: entry.path, in: stored[index])
            for lower in stride(from: index - 1, through: 0, by: -1) {
                defer { path = lowerPath(of: path, in: stored[lower]) }
                guard let candidate = stored[lower][path], candidate.type == "f" else { continue }
                if candidate.xattrs["trusted.overlay.metacopy"] != nil { continue }
                inodes.insert(candidate.inode)
                break
            }
        }
    }
    return (inodes, entries, bytes)
}

@Suite("inspect on kernel-made redirects and metacopy, against the kernel", .tags(.mount), .serialized)
struct InspectRedirectOracleTests {
    static let scenarios: [RedirectMetacopyTests.Scenario] =
        RedirectMetacopyTests.scenarios + [
            .init(name: "tester: a directory renamed", base: [.file("d/x", "x\n")], steps: ["mv d e"]),
            .init(
                name: "tester: renamed, then the big file replaced",
                base: [.file("a/big", String(repeating: "b", count: 300 * 1024)), .file("a/s", "s\n")],
                steps: ["mv a a2", "echo new > a2/big"]),
            .init(
                name: "renamed, then chmod (metacopy under a redirect), then deleted",
                base: [.file("a/big", String(repeating: "b", count: 300 * 1024)), .file("a/t", "t\n")],
                steps: ["mv a a2", "chmod 600 a2/big a2/t", "rm a2/t"]),
            .init(
                name: "renamed twice and whited out",
                base: [.file("p/q", "q\n"), .file("p/r/s", "rs\n")],
                steps: ["mv p p2", "mv p2 p3; mv p3/r p3/r2", "rm -r p3/r2"]),
        ]

    @Test(arguments: scenarios)
    func figuresMatchTheKernel(scenario: RedirectMetacopyTests.Scenario) throws {
        let temp = TemporaryDirectory()
        var layers = makeLayers([scenario.base], in: temp)
        for (index, step) in scenario.steps.enumerated() {
            let upper = temp.url("u\(index + 1)")
            try kernelUpper(over: layers, at: upper, step)
            layers.append(upper)
        }
        let count = layers.count
        let stored = layers.map(storedEntries(of:))
        var prefixes: [Set<UInt64>] = []
        var merged = (entries: 0, bytes: Int64(0))
        for k in 0..<count {
            let visible = try visibleInodes(Array(layers[0...k]), stored: Array(stored[0...k]))
            prefixes.append(visible.inodes)
            merged = (visible.entries, visible.bytes)
        }
        var entries: [Int] = []
        var bytes: [Int64] = []
        var visibleBytes: [Int64] = []
        var hidden = Array(repeating: Int64(0), count: count)  // bytes each layer hides first
        for j in 0..<count {
            entries.append(stored[j].values.filter { !$0.isWhiteout }.count)
            var sizes: [UInt64: Int64] = [:]
            for entry in stored[j].values
            where entry.type == "f" && entry.xattrs["trusted.overlay.metacopy"] == nil {
                sizes[entry.inode] = entry.size
            }
            bytes.append(sizes.values.reduce(0, +))
            visibleBytes.append(sizes.filter { prefixes[count - 1].contains($0.key) }.values.reduce(0, +))
            for (inode, size) in sizes {
                if let k = ((j + 1)..<count).first(where: { !prefixes[$0].contains(inode) }) { hidden[k] += size }
            }
        }

        let stack = try InspectedStack(paths: layers, format: .auto)
        defer { stack.close() }
        for workers in [1, 2] {
            let report = try StackReport.compute(stack, top: 20, workers: workers)
            let name = "\(scenario.name), \(workers) workers"
            #expect(report.layers.map(\.entries) == entries, "\(name)")
            #expect(report.layers.map(\.bytes) == bytes, "\(name)")
            #expect(report.layers.map(\.visibleBytes) == visibleBytes, "\(name)")
            #expect(report.layers.map(\.deadBytes) == zip(bytes, visibleBytes).map { $0 - $1 }, "\(name)")
            #expect(report.layers.map { $0.shadowedBytes + $0.deletedBytes } == hidden, "\(name)")
            #expect(report.merged.entries == merged.entries, "\(name)")
            #expect(report.merged.bytes == merged.bytes, "\(name)")
            let keys = report.wasted.map { "L\($0.layer.rawValue) \($0.path)" }
            #expect(Set(keys).count == keys.count, "\(name): \(keys)")
            #expect(report.wasted.map(\.size).reduce(0, +) == report.total.deadBytes, "\(name)")
        }
    }

    /// A file of a renamed directory that the same layer rewrites is hidden by that layer twice:
    /// shadowed at the new name (the redirect), deleted at the old one (its whiteout). It counts
    /// as shadowed (the old name is not "deleted"), whichever worker meets which name first.
    @Test func aRewrittenFileUnderARedirectIsShadowedWithAnyWorkers() throws {
        let temp = TemporaryDirectory()
        var base: [LayerStep] = []
        for name in ["a", "c", "e"] { base += [.file("\(name)/f", filler(1000)), .file("\(name)/g", "g")] }
        for index in 0..<50 { base.append(.file("z\(index)/y/v", "v")) }
        let layers = makeLayers([base], in: temp)
        let upper = temp.url("u")
        try kernelUpper(
            over: layers, at: upper, "mv a b; echo new > b/f; mv c d; echo new > d/f; mv e h; echo new > h/f")
        let stack = try InspectedStack(paths: layers + [upper], format: .auto)
        defer { stack.close() }
        for workers in [1, 2, 4] {
            for _ in 0..<10 {
                let report = try StackReport.compute(stack, top: 5, workers: workers)
                #expect(report.layers[1].shadowedBytes == 3000, "\(workers) workers")
                #expect(report.layers[1].deletedBytes == 0, "\(workers) workers")
                #expect(report.wasted.map(\.hiding.isShadowing) == [true, true, true], "\(workers) workers")
            }
        }
    }

    @Test func testersStackReportsEachEntryOnce() throws {
        let temp = TemporaryDirectory()
        let layers = makeLayers([[.file("d/x", "x\n")]], in: temp)
        let upper = temp.url("u")
        try kernelUpper(over: layers, at: upper, "mv d e")
        let alone = run(builtExecutable("layermount"), ["inspect", "--json"] + layers)
        let stacked = run(builtExecutable("layermount"), ["inspect", "--json"] + layers + [upper])
        #expect(alone.status == 0 && stacked.status == 0, "\(alone.err)\(stacked.err)")
        let first = { (json: String) in
            json.components(separatedBy: "\"figures\"").dropFirst().first?.components(separatedBy: "}").first ?? ""
        }
        // Layer 1's own figures do not depend on the layer above.
        for field in ["\"entries\": 2", "\"bytes\": 2"] {
            #expect(first(alone.out).contains(field) && first(stacked.out).contains(field), "\(stacked.out)")
        }
        #expect(stacked.out.contains("\"efficiency\": 1"), "\(stacked.out)")
    }
}
