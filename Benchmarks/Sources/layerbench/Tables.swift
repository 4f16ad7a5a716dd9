/// The issue targets, checked against the figures of this run and listed at the end.
final class TargetLog {
    private(set) var lines: [String] = []
    private(set) var met = 0
    private(set) var missed = 0

    /// Records one check: `what` in words, the measured figure and whether it meets the target.
    func check(_ subject: String, _ what: String, figure: String, met isMet: Bool) {
        if isMet { met += 1 } else { missed += 1 }
        lines.append("\(isMet ? "  met   " : "  MISSED") \(subject): \(what): \(figure)")
    }

    /// Records a target that could not be checked.
    func unchecked(_ subject: String, _ what: String, because reason: String) {
        lines.append("  n/a    \(subject): \(what): \(reason)")
    }
}

/// One row of an overlay table: a workload, warm or cold, and each engine's result.
struct OverlayRow {
    var workload: OverlayWorkload
    var cold: Bool
    var results: [Engine: BenchmarkResult]
}

/// Prints the overlay table of one stack and checks the issue's targets.
func printOverlayTable(_ title: String, rows: [OverlayRow], engines: [Engine], targets: TargetLog, subject: String) {
    var header = ["workload", "cache", "n"]
    for engine in engines {
        header.append(engine.rawValue)
        header.append("±")
        if engine != .kernel { header.append("/kernel") }
    }
    if engines.contains(.fuseOverlayfs) && engines.contains(.layermount) { header.append("lm/fo") }
    var table = TextTable(header, leftColumns: 2)
    var notes: [String] = []
    var cpu = TextTable(
        ["workload", "cache"] + engines.filter(\.isFUSE).flatMap { ["\($0.rawValue) client", "daemon"] }
            + (engines.contains(.kernel) ? ["kernel client"] : []), leftColumns: 2)
    for row in rows {
        let counts = row.results.values.map(\.seconds.count).filter { $0 > 0 }
        var cells = [row.workload.label, row.cold ? "cold" : "warm", counts.min().map(String.init) ?? "0"]
        let kernel = row.results[.kernel]?.median
        for engine in engines {
            guard let result = row.results[engine] else {
                cells += ["-", ""] + (engine != .kernel ? ["-"] : [])
                continue
            }
            if let failure = result.failure, result.seconds.isEmpty {
                cells += ["failed", ""] + (engine != .kernel ? ["-"] : [])
                notes.append("\(row.workload.rawValue) \(row.cold ? "cold" : "warm") \(engine.rawValue): \(failure)")
                continue
            }
            cells += [formatSeconds(result.median), formatSpread(result.relativeSpread)]
            if engine != .kernel { cells.append(formatRatio(ratio(result.median, kernel))) }
        }
        let lmOverFo = ratio(row.results[.layermount]?.median, row.results[.fuseOverlayfs]?.median)
        if engines.contains(.fuseOverlayfs) && engines.contains(.layermount) { cells.append(formatRatio(lmOverFo)) }
        table.add(cells)

        // The count each run returned must agree across engines (and across samples).
        let anchor = row.results[.kernel]?.counts.first
        for engine in engines {
            guard let counts = row.results[engine]?.counts, !counts.isEmpty else { continue }
            if counts.count > 1 {
                notes.append("\(row.workload.rawValue) \(engine.rawValue): runs returned different counts \(counts)")
            } else if let anchor, engine != .kernel, counts[0] != anchor {
                notes.append(
                    "\(row.workload.rawValue) \(row.cold ? "cold" : "warm"): \(engine.rawValue) returned "
                        + "\(formatCount(counts[0])), the kernel \(formatCount(anchor)) (bytes of output, bytes read "
                        + "or lstat checksum): this engine shows something different from the kernel")
            }
        }

        var cpuCells = [row.workload.label, row.cold ? "cold" : "warm"]
        for engine in engines.filter(\.isFUSE) {
            cpuCells.append(formatMilliseconds(row.results[engine]?.medianCPU))
            cpuCells.append(formatMilliseconds(row.results[engine]?.medianDaemonCPU))
        }
        if engines.contains(.kernel) { cpuCells.append(formatMilliseconds(row.results[.kernel]?.medianCPU)) }
        cpu.add(cpuCells)

        // Targets: warm workloads at least as fast as fuse-overlayfs; read-all and small-file
        // reads within 1.2x of the kernel.
        let name = "\(row.workload.rawValue) \(row.cold ? "cold" : "warm")"
        if !row.cold, let lmOverFo {
            targets.check(
                subject, "\(name) layermount time / fuse-overlayfs time <= 1.00",
                figure: formatRatio(lmOverFo)
                    + (lmOverFo > 1 ? String(format: " (%.0f%% slower)", (lmOverFo - 1) * 100) : "")
                    + noise(row.results[.layermount], row.results[.fuseOverlayfs]),
                met: lmOverFo <= 1.0)
        }
        if !row.cold && (row.workload == .readAll || row.workload == .smallReads),
            let lmOverKernel = ratio(row.results[.layermount]?.median, kernel)
        {
            targets.check(
                subject, "\(name) layermount time / kernel time <= 1.20",
                figure: formatRatio(lmOverKernel) + noise(row.results[.layermount], row.results[.kernel]),
                met: lmOverKernel <= 1.2)
        }
    }
    emit("\n\(title)\n")
    emit(table.text)
    emit(
        "median wall time over n timed samples (after one discarded warm-up; cold: caches dropped before each sample, no warm-up); ± = median absolute deviation; /kernel = engine time / kernel time (lower is better); lm/fo = layermount time / fuse-overlayfs time.\n"
    )
    emit(
        "\nCPU per run, median ms (client = the find/ls/tar process; daemon = the FUSE daemon's user+sys during the run; in-process workloads have no client figure):\n"
    )
    emit(cpu.text)
    for note in notes { emit("note: \(note)\n") }
}

/// Prints the daemon memory table and checks the RSS target.
func printMemoryTable(_ probes: [MemoryProbe], targets: TargetLog) {
    guard !probes.isEmpty else { return }
    var table = TextTable(
        [
            "stack", "engine", "RSS at start", "RSS after walk", "entries walked", "B/inode (RSS)", "B/inode (anon)",
            "RSS after read-all", "VmHWM", "threads",
        ], leftColumns: 2)
    for probe in probes {
        if let failure = probe.failure {
            table.add([probe.stack, probe.engine.rawValue, "failed: \(failure)"])
            continue
        }
        table.add([
            probe.stack, probe.engine.rawValue, formatBytes(probe.mountedKiB * 1024),
            formatBytes(probe.walkedKiB * 1024),
            formatCount(probe.entries), formatNumber(probe.bytesPerInode), formatNumber(probe.anonBytesPerInode),
            formatBytes(probe.readKiB * 1024), formatBytes(probe.peakKiB * 1024), String(probe.threads),
        ])
        if probe.engine == .layermount, let perInode = probe.bytesPerInode {
            targets.check(
                "overlay \(probe.stack)", "layermount RSS per cached inode < 300 B",
                figure: formatNumber(perInode, "%.0f B") + " (" + formatNumber(probe.anonBytesPerInode, "%.0f B anon")
                    + ")", met: perInode < 300)
        }
    }
    emit(
        "\nFUSE daemon memory (fresh mount; VmRSS and RssAnon from /proc/PID/status; start = after listing the top directory, so code pages are in; walk = find -printf of the whole tree, which leaves every entry cached in the kernel and so in the daemon; B/inode = RSS growth over the walk / entries it added):\n"
    )
    emit(table.text)
}

/// Prints FUSE request counts per workload.
func printRequestTable(_ probes: [RequestProbe]) {
    guard !probes.isEmpty else { return }
    emit(
        "\nFUSE requests per run, from a `-d` mount (first = the first run on a fresh mount, again = the same run repeated; untimed; the in-process workloads list their paths through a kernel mount):\n"
    )
    var table = TextTable(["stack", "workload", "engine", "run", "total", "by opcode"], leftColumns: 4, lastLeft: true)
    for probe in probes {
        if let failure = probe.failure {
            table.add([probe.stack, probe.workload.rawValue, probe.engine.rawValue, "-", "-", "failed: \(failure)"])
            continue
        }
        for (run, counts) in [("first", probe.first), ("again", probe.again)] {
            let total = counts.values.reduce(0, +)
            let top = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
                .map { "\($0.key) \(formatCount($0.value))" }.joined(separator: ", ")
            table.add([probe.stack, probe.workload.rawValue, probe.engine.rawValue, run, formatCount(total), top])
        }
    }
    emit(table.text)
}

/// Prints the diff table of one pair and checks the issue's targets.
func printDiffTable(_ pair: DiffPair, results: [BenchmarkResult], details: [String: String], targets: TargetLog) {
    let byTool = Dictionary(results.map { ($0.tool, $0) }, uniquingKeysWith: { first, _ in first })
    let anchors = [DiffTool.diff, DiffTool.rsyncChecksum, DiffTool.rsync, DiffTool.umoci]
    let anchorNames = ["diff -rq", "rsync -c", "rsync", "umoci"]
    var table = TextTable(
        ["tool", "n", "median", "±", "CPU s", "peak RSS", "output"] + anchorNames.map { "vs \($0)" }, leftColumns: 1)
    var notes: [String] = []
    for result in results {
        if let failure = result.failure, result.seconds.isEmpty {
            table.add([result.tool, "0", "failed"])
            notes.append("\(result.tool): \(failure)")
            continue
        }
        var cells = [
            result.tool + (details[result.tool].map { " [\($0)]" } ?? ""), String(result.seconds.count),
            formatSeconds(result.median), formatSpread(result.relativeSpread), formatNumber(result.medianCPU, "%.2f"),
            result.medianPeakRSSKiB.map { formatBytes(Int($0) * 1024) } ?? "-",
            result.counts.first.map { formatOutput($0, tool: result.tool) } ?? "-",
        ]
        for anchor in anchors {
            cells.append(
                anchors.contains(result.tool) ? "" : formatRatio(ratio(byTool[anchor]?.median, result.median)))
        }
        table.add(cells)
    }
    emit("\ndiff · \(pair.name): A = \(pair.a), B = \(pair.b)\n")
    emit(table.text)
    emit(
        "vs X = X's time / this tool's time (how many times faster; higher is better). CPU s = user+sys of the process tree (above the wall time = parallel); peak RSS = maximum resident set size from GNU time (%M). output = lines printed, or bytes of the layer file. umoci: only `umoci repack` is timed (its mtree walk with sha256 of every file, then tar+gzip of the changes); the image layout and bundle are prepared beforehand.\n"
    )
    for note in notes { emit("note: \(note)\n") }

    // Targets.
    let subject = "diff \(pair.name)"
    func speedup(_ tool: String, over anchor: String) -> Double? { ratio(byTool[anchor]?.median, byTool[tool]?.median) }
    func check(_ tool: String, _ label: String, over anchor: String, _ anchorLabel: String, atLeast bound: Double) {
        guard let value = speedup(tool, over: anchor) else {
            targets.unchecked(
                subject, "\(label) >= \(formatRatio(bound)) faster than \(anchorLabel)", because: "not measured")
            return
        }
        targets.check(
            subject, "\(label) >= \(formatRatio(bound)) faster than \(anchorLabel)",
            figure: formatRatio(value) + " faster",
            met: value >= bound)
    }
    check(DiffTool.layerdiff, "layerdiff (default, verifies content)", over: DiffTool.diff, "diff -rq", atLeast: 2)
    check(DiffTool.layerdiff, "layerdiff (default)", over: DiffTool.rsyncChecksum, "rsync --checksum", atLeast: 2)
    check(DiffTool.trustMtime, "layerdiff --trust-mtime", over: DiffTool.diff, "diff -rq", atLeast: 10)
    if let value = speedup(DiffTool.trustMtime, over: DiffTool.rsync) {
        targets.check(
            subject, "layerdiff --trust-mtime faster than rsync (size+mtime)", figure: formatRatio(value) + " faster",
            met: value > 1)
    }
    check(
        DiffTool.tarGz, "layerdiff -o layer.tar.gz (umoci's output)", over: DiffTool.umoci, "umoci repack", atLeast: 5)
    check(DiffTool.tar, "layerdiff -o layer.tar", over: DiffTool.umoci, "umoci repack", atLeast: 5)

    // --upper: cost against the size of the upper dir.
    let uppers = results.filter { $0.tool.hasPrefix("layerdiff --upper") && !$0.seconds.isEmpty }
    if !uppers.isEmpty {
        var upperTable = TextTable(["upper dir", "size", "median", "µs per upper entry", "vs full layerdiff A B"])
        let full = byTool[DiffTool.layerdiff]?.median
        for result in uppers {
            let detail = details[result.tool] ?? ""
            let entries = Int(detail.split(separator: " ").first ?? "") ?? 0
            upperTable.add([
                result.tool, detail, formatSeconds(result.median),
                entries > 0 ? formatNumber(result.median.map { $0 * 1e6 / Double(entries) }, "%.1f") : "-",
                formatRatio(ratio(full, result.median)) + " faster",
            ])
        }
        emit("\n--upper cost against the size of the upper dir (should grow with the upper dir, not with A):\n")
        emit(upperTable.text)
    }
}

/// Prints the inspect table of the stacks and checks the 1.5x target.
func printInspectTable(_ groups: [(LayerStackSpec, [BenchmarkResult])], targets: TargetLog) {
    guard !groups.isEmpty else { return }
    var table = TextTable(["stack", "tool", "n", "median", "±", "CPU s", "peak RSS", "output", "/ find"])
    var notes: [String] = []
    for (stack, results) in groups {
        let find = results.first(where: \.isAnchorResult)?.median
        for result in results {
            if let failure = result.failure, result.seconds.isEmpty {
                table.add([stack.name, result.tool, "0", "failed"])
                notes.append("\(stack.name) \(result.tool): \(failure)")
                continue
            }
            let over = result.isAnchorResult ? nil : ratio(result.median, find)
            table.add([
                stack.name, result.tool, String(result.seconds.count), formatSeconds(result.median),
                formatSpread(result.relativeSpread), formatNumber(result.medianCPU, "%.2f"),
                result.medianPeakRSSKiB.map { formatBytes(Int($0) * 1024) } ?? "-",
                result.counts.first.map { formatBytes($0) } ?? "-", over.map(formatRatio) ?? "",
            ])
            if let over, !result.tool.contains("--json") {
                targets.check(
                    "inspect \(stack.name)", "layermount inspect time / find -printf time <= 1.50",
                    figure: formatRatio(over), met: over <= 1.5)
            }
        }
        if results.allSatisfy({ $0.isAnchorResult || $0.seconds.isEmpty }) {
            targets.unchecked(
                "inspect \(stack.name)", "layermount inspect within 1.5x of find", because: "not measured")
        }
    }
    emit(
        "\ninspect (the layer directories themselves, no mount; / find = time over the find walk of the same layers, lower is better):\n"
    )
    emit(table.text)
    for note in notes { emit("note: \(note)\n") }
}

extension BenchmarkResult {
    /// Whether this is the find anchor of an inspect group.
    var isAnchorResult: Bool { name.hasSuffix("/find") }
}

/// `a / b`, or nil.
func ratio(_ a: Double?, _ b: Double?) -> Double? {
    guard let a, let b, b > 0 else { return nil }
    return a / b
}

private func formatMilliseconds(_ seconds: Double?) -> String { formatNumber(seconds.map { $0 * 1000 }) }

private func formatOutput(_ count: Int, tool: String) -> String {
    tool.contains(" -o ") ? formatBytes(count) : "\(formatCount(count)) lines"
}

/// Prints layerdiff's peak RSS on trees of one width and depth with more and more files, and
/// checks that it stays bounded.
func printScaleTable(_ rows: [(String, [BenchmarkResult], [String: String])], targets: TargetLog) {
    guard !rows.isEmpty else { return }
    var table = TextTable(["files", "tree", "tool", "n", "median", "peak RSS"], leftColumns: 3)
    var peaks: [String: [(String, Double)]] = [:]
    for (name, results, details) in rows {
        for result in results {
            let tree = details[DiffTool.layerdiff] ?? ""
            if let failure = result.failure, result.seconds.isEmpty {
                table.add([name, tree, result.tool, "0", "failed: \(failure)"])
                continue
            }
            table.add([
                name, tree, result.tool, String(result.seconds.count), formatSeconds(result.median),
                result.medianPeakRSSKiB.map { formatBytes(Int($0) * 1024) } ?? "-",
            ])
            if let peak = result.medianPeakRSSKiB { peaks[result.tool, default: []].append((name, peak)) }
        }
    }
    emit(
        "\nlayerdiff memory against the number of files (trees of 100-entry directories, 3 deep, 1% of the files rewritten; the same width and depth for every size):\n"
    )
    emit(table.text)
    for (tool, points) in peaks.sorted(by: { $0.key < $1.key }) {
        guard let first = points.first, let last = points.last, points.count > 1, first.1 > 0 else { continue }
        let growth = last.1 / first.1
        targets.check(
            "diff scale",
            "\(tool): peak RSS bounded by depth and width, not file count (criterion: grows < 1.5x "
                + "from \(first.0) to \(last.0) files)",
            figure: formatRatio(growth)
                + " (\(formatBytes(Int(first.1) * 1024)) -> \(formatBytes(Int(last.1) * 1024)))",
            met: growth < 1.5)
    }
}

/// `  [n=7, spread ±3% / ±5%]`: the sample count and both spreads, so a verdict near 1.00 can be
/// judged against the noise.
private func noise(_ a: BenchmarkResult?, _ b: BenchmarkResult?) -> String {
    guard let a, let b else { return "" }
    return "  [n=\(min(a.seconds.count, b.seconds.count)), spread \(formatSpread(a.relativeSpread)) / "
        + "\(formatSpread(b.relativeSpread))]"
}
