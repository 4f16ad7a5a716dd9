import Glibc
import Synchronization

/// One timed operation.
///
/// The ``Runner`` calls ``setUp()`` once, then ``run()`` once as a discarded warm-up, then
/// ``run()`` for each timed sample, then ``tearDown()`` once (also after a failure).
protocol Benchmark: AnyObject {
    /// The unique name, `part/subject/workload/cache/tool` (filters from the command line match
    /// substrings of it).
    var name: String { get }
    /// The tool or engine column this benchmark fills (`kernel`, `layermount`, `diff -rq`).
    var tool: String { get }
    /// Whether the others in its group are compared with it (anchors always run when a filter
    /// selects any member of their group).
    var isAnchor: Bool { get }
    /// Untimed preparation (path lists, output directories).
    func setUp() throws
    /// The timed operation. Returns a count (bytes or entries read, lines printed) that the
    /// runner consumes: it is recorded and compared across the tools of a group, so a tool that
    /// silently does less work shows up.
    func run() throws -> Int
    /// Untimed work right before each timed ``run()`` (after caches are dropped, for cold runs).
    func prepareSample()
    /// Untimed work right after each timed ``run()``.
    func finishSample()
    /// What the last ``run()`` cost besides wall time (child peak RSS, CPU, daemon CPU), read
    /// after ``finishSample()``.
    var lastCost: Cost { get }
    /// Untimed clean-up.
    func tearDown()
}

extension Benchmark {
    func setUp() throws {}
    func tearDown() {}
    var isAnchor: Bool { false }
    func prepareSample() {}
    func finishSample() {}
    var lastCost: Cost { Cost() }
}

/// Costs of one sample besides wall time; nil when not measured.
struct Cost {
    /// Peak RSS of the measured child process tree, KiB.
    var peakRSSKiB: Int?
    /// CPU seconds of the measured child process tree.
    var cpuSeconds: Double?
    /// CPU seconds the FUSE daemon spent during the sample.
    var daemonCPUSeconds: Double?
}

/// The benchmarks that are timed together: their samples are interleaved (one round runs each
/// member once, in an order that rotates from round to round), so that load from other work on
/// the machine hits them alike and ratios between them stay fair.
struct BenchmarkGroup {
    /// A title for progress lines.
    var title: String
    /// The members; the anchors they are compared with are members too.
    var members: [any Benchmark]
    /// Drop the page, dentry and inode caches before every run (cold); no warm-up then.
    var cold = false
}

/// The measurements of one benchmark.
struct BenchmarkResult {
    /// The benchmark's name.
    var name: String
    /// The tool column.
    var tool: String
    /// Wall-clock seconds of each timed sample.
    var seconds: [Double] = []
    /// The costs of each timed sample.
    var costs: [Cost] = []
    /// The count the warm-up returned, and any different count a later sample returned.
    var counts: [Int] = []
    /// Why it could not run, if it could not.
    var failure: String?

    /// The median of the samples.
    var median: Double? { seconds.median }
    /// Median absolute deviation relative to the median: a noise figure.
    var relativeSpread: Double? {
        guard let median = seconds.median, median > 0 else { return nil }
        return seconds.map { abs($0 - median) }.median.map { $0 / median }
    }
    /// The median peak RSS of the child, KiB.
    var medianPeakRSSKiB: Double? { costs.compactMap { $0.peakRSSKiB.map(Double.init) }.median }
    /// The median CPU seconds of the child.
    var medianCPU: Double? { costs.compactMap(\.cpuSeconds).median }
    /// The median CPU seconds of the FUSE daemon.
    var medianDaemonCPU: Double? { costs.compactMap(\.daemonCPUSeconds).median }
}

extension Array where Element == Double {
    /// The median, or nil when empty.
    var median: Double? {
        guard !isEmpty else { return nil }
        let sorted = self.sorted()
        return count % 2 == 1 ? sorted[count / 2] : (sorted[count / 2 - 1] + sorted[count / 2]) / 2
    }
}

/// Set by SIGINT / SIGTERM: the runner stops after the current sample and cleans up.
let interruptRequested = Atomic<Bool>(false)

/// Runs groups: set-up, one discarded warm-up per member (warm groups), samples, tear-down.
struct Runner {
    /// The most timed samples per benchmark.
    var samples: Int
    /// The fewest timed samples per benchmark (when the time budget is tight).
    var minimumSamples: Int
    /// Samples per benchmark in cold groups.
    var coldSamples: Int
    /// Seconds a group's timed rounds may take together; the sample count is chosen from the
    /// warm-up round, between ``minimumSamples`` and ``samples``.
    var budgetSeconds: Double
    /// Writes one line per sample here (tab-separated raw data), when set.
    var rawLog: UnsafeMutablePointer<FILE>?

    /// Runs `group` and returns one result per member, in member order.
    func run(_ group: BenchmarkGroup) -> [BenchmarkResult] {
        var results = group.members.map { BenchmarkResult(name: $0.name, tool: $0.tool) }
        var live: [Int] = []
        for (index, member) in group.members.enumerated() {
            do {
                try member.setUp()
                live.append(index)
            } catch {
                results[index].failure = "\(error)"
                member.tearDown()
            }
        }
        defer { for index in live { group.members[index].tearDown() } }
        progress("\(group.title): \(group.cold ? "cold" : "warm-up")")

        var rounds = group.cold ? coldSamples : samples
        if !group.cold {
            let start = now()
            for index in live where !interruptRequested.load(ordering: .relaxed) {
                do {
                    group.members[index].prepareSample()
                    results[index].counts = [try group.members[index].run()]
                    group.members[index].finishSample()
                } catch {
                    results[index].failure = "\(error)"
                }
            }
            let round = now() - start
            if round > 0 { rounds = Swift.max(minimumSamples, Swift.min(samples, Int(budgetSeconds / round))) }
        }
        live.removeAll { results[$0].failure != nil }

        for round in 0..<rounds {
            if interruptRequested.load(ordering: .relaxed) || live.isEmpty { break }
            progress("\(group.title): sample \(round + 1)/\(rounds)", detail: true)
            for position in 0..<live.count {
                let index = live[(position + round) % live.count]
                guard results[index].failure == nil, !interruptRequested.load(ordering: .relaxed) else { continue }
                if group.cold { dropCaches() }
                let member = group.members[index]
                member.prepareSample()
                let start = now()
                do {
                    let count = try member.run()
                    let elapsed = now() - start
                    member.finishSample()
                    results[index].seconds.append(elapsed)
                    results[index].costs.append(member.lastCost)
                    if !results[index].counts.contains(count) { results[index].counts.append(count) }
                    if let rawLog {
                        fputs(
                            "\(member.name)\t\(group.cold ? "cold" : "warm")\t\(round + 1)\t\(elapsed)\t\(count)\n",
                            rawLog)
                    }
                } catch {
                    results[index].failure = "\(error)"
                }
            }
        }
        return results
    }
}

/// Seconds on the monotonic clock.
func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// Writes back dirty data, then drops the page cache, dentries and inodes
/// (`echo 3 > /proc/sys/vm/drop_caches`); FUSE mounts forget their kernel-side inodes too.
func dropCaches() {
    sync()
    let fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = write(fd, "3\n", 2)
    close(fd)
}

/// Whether caches can be dropped here (root, writable /proc/sys/vm/drop_caches).
func canDropCaches() -> Bool { access("/proc/sys/vm/drop_caches", W_OK) == 0 }

/// A progress line on stderr (overwritten in place on a terminal). Detail lines are shown only
/// on a terminal.
func progress(_ text: String, detail: Bool = false) {
    if isatty(STDERR_FILENO) != 0 {
        let line = "\r\u{1B}[K" + String(text.prefix(150))
        emitError(line)
    } else if !detail {
        emitError(text + "\n")
    }
}

/// Ends a progress line on a terminal.
func endProgress() {
    if isatty(STDERR_FILENO) != 0 { emitError("\r\u{1B}[K") }
}
