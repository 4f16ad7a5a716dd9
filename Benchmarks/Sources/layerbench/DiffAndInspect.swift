import Glibc

/// A tree pair for the diff part: A (before) and B (after), the overlay upper dirs that turn A
/// into a B (for `layerdiff --upper`), and an umoci bundle prepared for the same change.
struct DiffPair {
    /// The name in tables (`real`, `synth100k`).
    var name: String
    /// The tree before.
    var a: String
    /// The tree after.
    var b: String
    /// Upper dirs over A: a label (the change size) and the directory.
    var uppers: [(label: String, directory: String)] = []
    /// An umoci image layout and a bundle unpacked from A whose rootfs was then made equal to B.
    var umoci: (layout: String, bundle: String)?
}

/// The tools of the diff part, in table order.
enum DiffTool {
    static let diff = "diff -rq --no-dereference A B"
    static let rsyncChecksum = "rsync -an --delete --checksum B/ A/"
    static let rsync = "rsync -an --delete B/ A/"
    static let umoci = "umoci repack (B bundle over A)"
    static let layerdiff = "layerdiff A B"
    static let trustMtime = "layerdiff --trust-mtime A B"
    static let tar = "layerdiff -o layer.tar A B"
    static let tarGz = "layerdiff -o layer.tar.gz A B"
    static func upper(_ label: String) -> String { "layerdiff --upper U(\(label)) A" }
}

/// The diff part's group for one pair: every tool on the same A and B, samples interleaved.
func diffGroup(_ pair: DiffPair, layerdiff: String, work: String) -> BenchmarkGroup {
    let prefix = "diff/\(pair.name)/"
    let outputs = "\(work)/diff-\(pair.name)"
    let a = pair.a
    let b = pair.b
    var members: [any Benchmark] = [
        CommandBenchmark(
            name: prefix + "diff-rq", tool: DiffTool.diff, anchor: true,
            // --no-dereference: compare symlinks as links (plain -r follows them and fails with
            // status 2 on dangling ones, which the trees hold).
            arguments: ["diff", "-rq", "--no-dereference", a, b],
            allowedStatus: [0, 1]),
        CommandBenchmark(
            name: prefix + "rsync-checksum", tool: DiffTool.rsyncChecksum, anchor: true,
            arguments: ["rsync", "-an", "--delete", "--checksum", b + "/", a + "/"]),
        CommandBenchmark(
            name: prefix + "rsync", tool: DiffTool.rsync, anchor: true,
            arguments: ["rsync", "-an", "--delete", b + "/", a + "/"]),
    ]
    if let umoci = pair.umoci {
        let tag = "bench-\(getpid())-{n}"
        members.append(
            CommandBenchmark(
                name: prefix + "umoci-repack", tool: DiffTool.umoci, anchor: true,
                arguments: ["umoci", "repack", "--no-history", "--image", "\(umoci.layout):\(tag)", umoci.bundle],
                setUp: {
                    try Subprocess.run(["umoci", "--version"])
                    guard access(umoci.bundle + "/umoci.json", R_OK) == 0 else {
                        throw CommandError(description: "\(umoci.bundle) is not an umoci bundle")
                    }
                },
                tearDown: { runs in
                    for run in 0...runs {
                        let name = tag.replacingAll("{n}", with: String(run))
                        _ = try? Subprocess.run(["umoci", "rm", "--image", "\(umoci.layout):\(name)"])
                    }
                    _ = try? Subprocess.run(["umoci", "gc", "--layout", umoci.layout])
                }))
    }
    // The layerdiff on main may predate a feature: check its help rather than time a stub.
    func available(_ option: String) -> () throws -> Void {
        {
            let help = try Subprocess.run([layerdiff, "--help"], keepOutput: 1 << 16, allowedStatus: Set(0...255))
            guard help.status == 0, help.outputText.contains("USAGE:") else {
                throw CommandError(description: "\(layerdiff) is not built yet (no usable --help)")
            }
            guard help.outputText.contains(option) else {
                throw CommandError(description: "this layerdiff has no \(option) yet")
            }
            mkdir(outputs, 0o755)
        }
    }
    let removeOutputs: (Int) -> Void = { runs in
        for run in 0...runs {
            for suffix in [".tar", ".tar.gz"] { unlink("\(outputs)/layer-\(run)\(suffix)") }
        }
        rmdir(outputs)
    }
    members += [
        CommandBenchmark(
            name: prefix + "layerdiff", tool: DiffTool.layerdiff, arguments: [layerdiff, a, b],
            allowedStatus: [0, 1], setUp: available("<b>")),
        CommandBenchmark(
            name: prefix + "layerdiff-trust-mtime", tool: DiffTool.trustMtime,
            arguments: [layerdiff, "--trust-mtime", a, b], allowedStatus: [0, 1], setUp: available("--trust-mtime")),
        CommandBenchmark(
            name: prefix + "layerdiff-tar", tool: DiffTool.tar,
            arguments: [layerdiff, "-o", "\(outputs)/layer-{n}.tar", a, b], allowedStatus: [0, 1],
            count: .fileSize("\(outputs)/layer-{n}.tar"), setUp: available("--output"), tearDown: removeOutputs),
        CommandBenchmark(
            name: prefix + "layerdiff-tar-gz", tool: DiffTool.tarGz,
            arguments: [layerdiff, "-o", "\(outputs)/layer-{n}.tar.gz", a, b], allowedStatus: [0, 1],
            count: .fileSize("\(outputs)/layer-{n}.tar.gz"), setUp: available("--output"), tearDown: removeOutputs),
    ]
    for upper in pair.uppers {
        members.append(
            CommandBenchmark(
                name: prefix + "layerdiff-upper-\(upper.label)", tool: DiffTool.upper(upper.label),
                arguments: [layerdiff, "--upper", upper.directory, a], allowedStatus: [0, 1],
                setUp: available("--upper"),
                describe: {
                    treeSize([upper.directory]).map { "\($0.entries) entries, \(formatBytes($0.bytes))" } ?? ""
                }))
    }
    return BenchmarkGroup(title: "diff \(pair.name)", members: members)
}

/// The inspect part's group for one stack: `layermount inspect` against a bare metadata walk of
/// the same layer directories.
func inspectGroup(_ stack: LayerStackSpec, layermount: String) -> BenchmarkGroup {
    let prefix = "inspect/\(stack.name)/"
    let available: () throws -> Void = {
        let result = try Subprocess.run(
            [layermount, "inspect", "--help"], keepOutput: 1 << 16, allowedStatus: Set(0...255))
        guard result.status == 0, result.outputText.contains("USAGE: layermount inspect") else {
            throw CommandError(
                description: "layermount has no inspect subcommand yet ('layermount inspect --help' exited "
                    + "\(result.status))")
        }
    }
    return BenchmarkGroup(
        title: "inspect \(stack.name)",
        members: [
            CommandBenchmark(
                name: prefix + "find", tool: "find L... -printf '%s %p\\n'", anchor: true,
                arguments: ["find"] + stack.layers + ["-printf", "%s %p\\n"], count: .bytes),
            CommandBenchmark(
                name: prefix + "inspect", tool: "layermount inspect L...",
                arguments: [layermount, "inspect"] + stack.layers, count: .bytes, setUp: available),
            CommandBenchmark(
                name: prefix + "inspect-json", tool: "layermount inspect --json L...",
                arguments: [layermount, "inspect", "--json"] + stack.layers, count: .bytes, setUp: available),
        ])
}

/// A group for layerdiff's memory against the number of files: trees of the same directory width
/// and depth with more files (`--scale-pair`).
func scaleGroup(name: String, a: String, b: String, layerdiff: String, work: String) -> BenchmarkGroup {
    let prefix = "diff/scale-\(name)/"
    let output = "\(work)/scale-\(name)"
    return BenchmarkGroup(
        title: "diff scale \(name)",
        members: [
            CommandBenchmark(
                name: prefix + "layerdiff", tool: DiffTool.layerdiff, arguments: [layerdiff, a, b],
                allowedStatus: [0, 1],
                describe: { treeSize([a]).map { "A: \(formatCount($0.entries)) entries" } ?? "" }),
            CommandBenchmark(
                name: prefix + "layerdiff-tar", tool: DiffTool.tar,
                arguments: [layerdiff, "-o", "\(output)/layer-{n}.tar", a, b], allowedStatus: [0, 1],
                count: .fileSize("\(output)/layer-{n}.tar"), setUp: { mkdir(output, 0o755) },
                tearDown: { runs in
                    for run in 0...runs { unlink("\(output)/layer-\(run).tar") }
                    rmdir(output)
                }),
        ])
}
