// layerbench: the layermount benchmarks. scripts/bench.sh prepares the corpora, builds the tools
// in release mode and runs this; see README.md, "Benchmarks".
//
// Every figure is a median of timed samples taken after one discarded warm-up, and every ratio
// is against an anchor (kernel overlayfs, diff -rq, rsync, umoci, find) measured in the same run,
// with samples interleaved so machine load hits all tools of a group alike.
import Glibc
import LayerCore

let command = CommandLineParser.Command(
    name: "layerbench",
    overview: "Benchmark layermount against kernel overlayfs and fuse-overlayfs, layerdiff against diff, rsync and "
        + "umoci, and layermount inspect against find. Prints tables of medians and ratios.",
    usage: "[<options>] [<filter> ...]",
    arguments: [
        (
            "<filter>",
            "Run only benchmarks whose name contains one of these (see --list); the anchors of a selected group "
                + "always run too."
        )
    ],
    options: [
        .init("part", value: "<part>", help: "overlay, diff, inspect or requests (repeatable).", repeatable: true),
        .init(
            "stack", value: "<name>=<dir>:<dir>...",
            help: "A layer stack for the overlay and inspect parts, bottom layer first (repeatable).",
            repeatable: true),
        .init(
            "inspect-stack", value: "<name>=<dir>:<dir>...",
            help: "A layer stack for the inspect part only (repeatable).", repeatable: true),
        .init(
            "big-stack", value: "<dir>:<dir>...",
            help: "A stack whose merged tree holds the 1 GiB file (--big-file), bottom first."),
        .init("big-file", value: "<path>", help: "The 1 GiB file in --big-stack.", default: "bench/1GiB.bin"),
        .init(
            "engines", value: "<list>", help: "Overlay engines, comma separated.",
            default: "kernel,fuse-overlayfs,layermount"),
        .init("pair", value: "<name>=<a>:<b>", help: "A tree pair for the diff part (repeatable).", repeatable: true),
        .init(
            "upper", value: "<name>=<label>:<upperdir>",
            help: "An overlay upper dir over pair <name>'s A, for layerdiff --upper (repeatable).", repeatable: true),
        .init(
            "umoci", value: "<name>=<layout>:<bundle>",
            help: "An umoci layout and a bundle of pair <name> (unpacked A, rootfs made equal to B).",
            repeatable: true),
        .init(
            "scale-pair", value: "<name>=<a>:<b>",
            help: "Trees of one directory width and depth with different file counts, for layerdiff's peak RSS "
                + "against the number of files (repeatable, smallest first).", repeatable: true),
        .init("layermount", value: "<path>", help: "The layermount binary.", default: "layermount"),
        .init("layerdiff", value: "<path>", help: "The layerdiff binary.", default: "layerdiff"),
        .init("work", value: "<dir>", help: "Scratch directory for mount points and outputs (must exist)."),
        .init("samples", value: "<n>", help: "Most timed samples per benchmark (warm).", default: "7"),
        .init("min-samples", value: "<n>", help: "Fewest timed samples per benchmark (warm).", default: "3"),
        .init("cold-samples", value: "<n>", help: "Timed samples per cold benchmark.", default: "3"),
        .init(
            "budget", value: "<seconds>",
            help: "Time a group's timed rounds may take; the sample count is chosen from the warm-up round "
                + "(between --min-samples and --samples).", default: "60"),
        .init("no-cold", help: "Skip the cold (caches dropped) runs."),
        .init("raw", value: "<file>", help: "Append every sample to this file (tab-separated)."),
        .init("list", help: "List the benchmark names and exit."),
    ],
    discussion: """
        NAMES:
          overlay/<stack>/<workload>/<warm|cold>/<engine>, diff/<pair>/<tool>, inspect/<stack>/<tool>.
        """)

/// Parses `name=rest`.
func namedValue(_ text: String, option: String) throws(CommandLineParser.UsageError) -> (String, String) {
    guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
        throw CommandLineParser.UsageError("The value '\(text)' is invalid for '--\(option)' (expected <name>=...)")
    }
    return (String(text[..<equals]), String(text[text.index(after: equals)...]))
}

func colonList(_ text: String) -> [String] { text.split(separator: ":").map(String.init) }

func integer(_ parsed: CommandLineParser.Parsed, _ name: String, _ fallback: Int) throws(CommandLineParser.UsageError)
    -> Int
{
    guard let text = parsed.value(name) else { return fallback }
    guard let value = Int(text), value >= 0 else {
        throw CommandLineParser.UsageError("The value '\(text)' is invalid for '--\(name) <n>'")
    }
    return value
}

struct Settings {
    var parts: [String] = ["overlay", "diff", "inspect"]
    var stacks: [LayerStackSpec] = []
    var inspectStacks: [LayerStackSpec] = []
    var bigStack: LayerStackSpec?
    var engines: [Engine] = Engine.allCases
    var pairs: [DiffPair] = []
    var scalePairs: [(name: String, a: String, b: String)] = []
    var layermount = "layermount"
    var layerdiff = "layerdiff"
    var work = ""
    var filters: [String] = []
    var cold = true
    var list = false
    var runner = Runner(samples: 7, minimumSamples: 3, coldSamples: 3, budgetSeconds: 60)
    var parameters = OverlayParameters()
}

func parseSettings(_ arguments: [String]) throws(CommandLineParser.UsageError) -> Settings? {
    let parser = CommandLineParser(command)
    let parsed = try parser.parse(arguments)
    if parsed.wantsHelp {
        emit(parser.helpText)
        return nil
    }
    var settings = Settings()
    if !parsed.all("part").isEmpty {
        settings.parts = parsed.all("part").flatMap { $0.split(separator: ",").map(String.init) }
        for part in settings.parts where !["overlay", "diff", "inspect", "requests"].contains(part) {
            throw CommandLineParser.UsageError("The value '\(part)' is invalid for '--part <part>'")
        }
    }
    for text in parsed.all("stack") {
        let (name, dirs) = try namedValue(text, option: "stack")
        settings.stacks.append(LayerStackSpec(name: name, layers: colonList(dirs)))
    }
    for text in parsed.all("inspect-stack") {
        let (name, dirs) = try namedValue(text, option: "inspect-stack")
        settings.inspectStacks.append(LayerStackSpec(name: name, layers: colonList(dirs)))
    }
    if let big = parsed.value("big-stack") { settings.bigStack = LayerStackSpec(name: "1GiB", layers: colonList(big)) }
    if let file = parsed.value("big-file") { settings.parameters.bigFile = file }
    if let list = parsed.value("engines") {
        settings.engines = try list.split(separator: ",").map { (name) throws(CommandLineParser.UsageError) in
            guard let engine = Engine(rawValue: String(name)) else {
                throw CommandLineParser.UsageError("Unknown engine '\(name)' (kernel, fuse-overlayfs, layermount)")
            }
            return engine
        }
    }
    for text in parsed.all("pair") {
        let (name, trees) = try namedValue(text, option: "pair")
        let parts = colonList(trees)
        guard parts.count == 2 else { throw CommandLineParser.UsageError("--pair \(text): expected <name>=<a>:<b>") }
        settings.pairs.append(DiffPair(name: name, a: parts[0], b: parts[1]))
    }
    for text in parsed.all("upper") {
        let (name, rest) = try namedValue(text, option: "upper")
        let parts = colonList(rest)
        guard parts.count == 2, let index = settings.pairs.firstIndex(where: { $0.name == name }) else {
            throw CommandLineParser.UsageError("--upper \(text): expected <pair>=<label>:<upperdir> for a known pair")
        }
        settings.pairs[index].uppers.append((parts[0], parts[1]))
    }
    for text in parsed.all("umoci") {
        let (name, rest) = try namedValue(text, option: "umoci")
        let parts = colonList(rest)
        guard parts.count == 2, let index = settings.pairs.firstIndex(where: { $0.name == name }) else {
            throw CommandLineParser.UsageError("--umoci \(text): expected <pair>=<layout>:<bundle> for a known pair")
        }
        settings.pairs[index].umoci = (parts[0], parts[1])
    }
    for text in parsed.all("scale-pair") {
        let (name, trees) = try namedValue(text, option: "scale-pair")
        let parts = colonList(trees)
        guard parts.count == 2 else {
            throw CommandLineParser.UsageError("--scale-pair \(text): expected <name>=<a>:<b>")
        }
        settings.scalePairs.append((name, parts[0], parts[1]))
    }
    settings.layermount = parsed.value("layermount") ?? settings.layermount
    settings.layerdiff = parsed.value("layerdiff") ?? settings.layerdiff
    settings.list = parsed.flag("list")
    settings.cold = !parsed.flag("no-cold")
    settings.filters = parsed.positionals + (parsed.afterSeparator ?? [])
    settings.runner.samples = max(1, try integer(parsed, "samples", 7))
    settings.runner.minimumSamples = min(settings.runner.samples, max(1, try integer(parsed, "min-samples", 3)))
    settings.runner.coldSamples = try integer(parsed, "cold-samples", 3)
    settings.runner.budgetSeconds = Double(try integer(parsed, "budget", 60))
    if let work = parsed.value("work") {
        settings.work = work
    } else if !settings.list {
        throw CommandLineParser.UsageError("Missing value for '--work <dir>'")
    }
    if let raw = parsed.value("raw") { settings.runner.rawLog = fopen(raw, "a") }
    return settings
}

/// Keeps the members a filter selects, plus the anchors of a group with any selected member.
func filtered(_ group: BenchmarkGroup, _ filters: [String]) -> BenchmarkGroup? {
    guard !filters.isEmpty else { return group }
    let selected = group.members.filter { member in filters.contains { member.name.contains($0) } }
    guard !selected.isEmpty else { return nil }
    var copy = group
    copy.members = group.members.filter { member in member.isAnchor || selected.contains { $0 === member } }
    return copy
}

/// The overlay groups of one stack: warm workloads, then cold ones.
func overlayGroups(_ fixture: StackFixture, workloads: [OverlayWorkload], settings: Settings) -> [BenchmarkGroup] {
    var groups: [BenchmarkGroup] = []
    let colds = settings.cold && canDropCaches() ? [false, true] : [false]
    for cold in colds {
        for workload in workloads where !cold || OverlayWorkload.cold.contains(workload) {
            let members = settings.engines.map {
                OverlayBenchmark(
                    workload: workload, engine: $0, fixture: fixture, cold: cold, parameters: settings.parameters)
            }
            let group = BenchmarkGroup(
                title: "overlay \(fixture.stack.name) \(workload.rawValue)", members: members, cold: cold)
            if let group = filtered(group, settings.filters) { groups.append(group) }
        }
    }
    return groups
}

func runOverlay(_ settings: Settings, targets: TargetLog) {
    emit("\n=== overlay (\(loadAverage()) at start)\n")
    emit(loadWarning())
    if !(settings.cold && canDropCaches()) {
        emit(
            "cold runs skipped: \(settings.cold ? "cannot write /proc/sys/vm/drop_caches (not root?)" : "--no-cold")\n")
    }
    var subjects: [(LayerStackSpec, [OverlayWorkload])] = settings.stacks.map {
        ($0, OverlayWorkload.allCases.filter { !$0.needsBigFile })
    }
    if let big = settings.bigStack { subjects.append((big, OverlayWorkload.allCases.filter(\.needsBigFile))) }
    var memory: [MemoryProbe] = []
    for (stack, workloads) in subjects {
        let fixture = StackFixture(stack: stack, work: settings.work, layermount: settings.layermount)
        let groups = overlayGroups(fixture, workloads: workloads, settings: settings)
        let wantsMemory =
            !workloads.contains(where: \.needsBigFile)
            && (settings.filters.isEmpty || settings.filters.contains { "overlay/\(stack.name)/memory".contains($0) })
        guard !groups.isEmpty || wantsMemory, !interruptRequested.load(ordering: .relaxed) else { continue }
        if wantsMemory {
            progress("overlay \(stack.name): daemon memory")
            for engine in settings.engines where engine.isFUSE {
                memory.append(
                    MemoryProbe.measure(
                        engine: engine, stack: stack, work: settings.work, layermount: settings.layermount))
            }
        }
        var rows: [OverlayRow] = []
        for group in groups {
            if interruptRequested.load(ordering: .relaxed) { break }
            let results = settings.runner.run(group)
            var byEngine: [Engine: BenchmarkResult] = [:]
            for (member, result) in zip(group.members, results) {
                if let member = member as? OverlayBenchmark { byEngine[member.engine] = result }
            }
            if let first = group.members.first as? OverlayBenchmark {
                rows.append(OverlayRow(workload: first.workload, cold: group.cold, results: byEngine))
            }
        }
        fixture.unmountAll()
        endProgress()
        guard !rows.isEmpty else { continue }
        let layers = stack.layers.map { $0.split(separator: "/").last.map(String.init) ?? $0 }.joined(separator: " ")
        let size = treeSize(stack.layers).map {
            ", layers hold \(formatCount($0.entries)) entries, \(formatBytes($0.bytes))"
        }
        printOverlayTable(
            "overlay · \(stack.name) (\(stack.layers.count) layers, bottom first: \(layers)\(size ?? ""))", rows: rows,
            engines: settings.engines, targets: targets, subject: "overlay \(stack.name)")
    }
    printMemoryTable(memory, targets: targets)
    emit("(\(loadAverage()) at the end of the overlay part)\n")
}

func runRequests(_ settings: Settings) {
    emit("\n=== FUSE requests (\(loadAverage()))\n")
    emit(loadWarning())
    var probes: [RequestProbe] = []
    let workloads: [OverlayWorkload] = [.find, .findStat, .lsLR, .readAll, .stat, .smallReads]
    for stack in settings.stacks {
        for engine in settings.engines where engine.isFUSE {
            if interruptRequested.load(ordering: .relaxed) { break }
            progress("requests \(stack.name) \(engine.rawValue)")
            probes += RequestProbe.measure(
                engine: engine, stack: stack, workloads: workloads, work: settings.work,
                layermount: settings.layermount, parameters: settings.parameters)
        }
    }
    endProgress()
    printRequestTable(probes)
}

func runDiff(_ settings: Settings, targets: TargetLog) {
    emit("\n=== diff (\(loadAverage()) at start; warm page cache: every tool runs once untimed first)\n")
    emit(loadWarning())
    for pair in settings.pairs {
        if interruptRequested.load(ordering: .relaxed) { break }
        guard
            let group = filtered(diffGroup(pair, layerdiff: settings.layerdiff, work: settings.work), settings.filters)
        else { continue }
        let results = settings.runner.run(group)
        endProgress()
        var details: [String: String] = [:]
        for member in group.members {
            if let member = member as? CommandBenchmark, !member.detail.isEmpty { details[member.tool] = member.detail }
        }
        if let size = treeSize([pair.a]) {
            details[DiffTool.diff] = "A: \(formatCount(size.entries)) entries, \(formatBytes(size.bytes))"
        }
        printDiffTable(pair, results: results, details: details, targets: targets)
    }
    var scale: [(String, [BenchmarkResult], [String: String])] = []
    for pair in settings.scalePairs {
        if interruptRequested.load(ordering: .relaxed) { break }
        let group = scaleGroup(
            name: pair.name, a: pair.a, b: pair.b, layerdiff: settings.layerdiff, work: settings.work)
        guard let selected = filtered(group, settings.filters) else { continue }
        let results = settings.runner.run(selected)
        endProgress()
        var details: [String: String] = [:]
        for member in selected.members {
            if let member = member as? CommandBenchmark, !member.detail.isEmpty { details[member.tool] = member.detail }
        }
        scale.append((pair.name, results, details))
    }
    printScaleTable(scale, targets: targets)
    emit("(\(loadAverage()) at the end of the diff part)\n")
}

func runInspect(_ settings: Settings, targets: TargetLog) {
    emit("\n=== inspect (\(loadAverage()) at start)\n")
    emit(loadWarning())
    var groups: [(LayerStackSpec, [BenchmarkResult])] = []
    for stack in settings.stacks + settings.inspectStacks {
        if interruptRequested.load(ordering: .relaxed) { break }
        guard let group = filtered(inspectGroup(stack, layermount: settings.layermount), settings.filters) else {
            continue
        }
        groups.append((stack, settings.runner.run(group)))
        endProgress()
    }
    printInspectTable(groups, targets: targets)
}

func listBenchmarks(_ settings: Settings) {
    var names: [String] = []
    var subjects: [(LayerStackSpec, [OverlayWorkload])] = settings.stacks.map {
        ($0, OverlayWorkload.allCases.filter { !$0.needsBigFile })
    }
    if let big = settings.bigStack { subjects.append((big, OverlayWorkload.allCases.filter(\.needsBigFile))) }
    for (stack, workloads) in subjects {
        let fixture = StackFixture(stack: stack, work: settings.work, layermount: settings.layermount)
        for group in overlayGroups(fixture, workloads: workloads, settings: settings) {
            names += group.members.map(\.name)
        }
    }
    for pair in settings.pairs {
        if let group = filtered(diffGroup(pair, layerdiff: settings.layerdiff, work: settings.work), settings.filters) {
            names += group.members.map(\.name)
        }
    }
    for pair in settings.scalePairs {
        let group = scaleGroup(
            name: pair.name, a: pair.a, b: pair.b, layerdiff: settings.layerdiff, work: settings.work)
        if let group = filtered(group, settings.filters) { names += group.members.map(\.name) }
    }
    for stack in settings.stacks + settings.inspectStacks {
        if let group = filtered(inspectGroup(stack, layermount: settings.layermount), settings.filters) {
            names += group.members.map(\.name)
        }
    }
    emit(names.joined(separator: "\n") + "\n")
}

func main() -> Int32 {
    let settings: Settings
    do {
        guard let parsed = try parseSettings(Array(CommandLine.arguments.dropFirst())) else { return 0 }
        settings = parsed
    } catch {
        emitError(CommandLineParser(command).usageErrorText(error))
        return ExitCode.usage
    }
    if settings.list {
        listBenchmarks(settings)
        return 0
    }
    signal(SIGPIPE, SIG_IGN)
    let onSignal: @convention(c) (CInt) -> Void = { _ in interruptRequested.store(true, ordering: .relaxed) }
    signal(SIGINT, onSignal)
    signal(SIGTERM, onSignal)
    mkdir(settings.work + "/mnt", 0o755)

    let targets = TargetLog()
    for part in settings.parts {
        if interruptRequested.load(ordering: .relaxed) { break }
        switch part {
        case "overlay": runOverlay(settings, targets: targets)
        case "requests": runRequests(settings)
        case "diff": runDiff(settings, targets: targets)
        case "inspect": runInspect(settings, targets: targets)
        default: break
        }
    }
    Mounts.unmountAll()
    if let raw = settings.runner.rawLog { fclose(raw) }
    if !targets.lines.isEmpty {
        emit("\n=== targets (\(targets.met) met, \(targets.missed) missed; \(loadAverage()) at the end)\n")
        emit(targets.lines.joined(separator: "\n") + "\n")
    }
    if interruptRequested.load(ordering: .relaxed) {
        emitError("layerbench: interrupted; everything it mounted is unmounted\n")
        return 130
    }
    return 0
}

exit(main())
