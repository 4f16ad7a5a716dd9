import Glibc

/// Daemon memory of a FUSE engine: a fresh mount, its RSS once the top directory is listed, a
/// full metadata walk, its RSS again, then a read of every file. The walk leaves every entry in the kernel's dentry cache, so the
/// daemon holds one node per entry: (RSS after the walk - RSS at mount) / entries is the cost of
/// a cached inode.
struct MemoryProbe {
    /// The engine.
    var engine: Engine
    /// The stack's name.
    var stack: String
    /// RSS after mounting and listing the top directory (the baseline), KiB.
    var mountedKiB = 0
    /// RssAnon at the baseline, KiB.
    var mountedAnonKiB = 0
    /// RSS after the walk, KiB.
    var walkedKiB = 0
    /// RssAnon after the walk, KiB.
    var walkedAnonKiB = 0
    /// Entries the walk added to the cache (lines of find output, less those of the baseline).
    var entries = 0
    /// RSS after reading every file (descriptor caches filled), KiB.
    var readKiB = 0
    /// Peak RSS (VmHWM) at the end, KiB.
    var peakKiB = 0
    /// Threads at the end.
    var threads = 0
    /// Why it could not be measured.
    var failure: String?

    /// Bytes of RSS per cached inode.
    var bytesPerInode: Double? {
        entries > 0 ? Double(walkedKiB - mountedKiB) * 1024 / Double(entries) : nil
    }
    /// Bytes of anonymous RSS per cached inode.
    var anonBytesPerInode: Double? {
        entries > 0 ? Double(walkedAnonKiB - mountedAnonKiB) * 1024 / Double(entries) : nil
    }

    /// Mounts `stack` afresh with `engine` under `work` and measures.
    static func measure(engine: Engine, stack: LayerStackSpec, work: String, layermount: String) -> MemoryProbe {
        var probe = MemoryProbe(engine: engine, stack: stack.name)
        let mount: MountedStack
        do {
            mount = try MountedStack(
                engine: engine, stack: stack, mountPoint: "\(work)/mnt/\(stack.name)-\(engine.rawValue)-rss",
                binary: layermount)
        } catch {
            probe.failure = "\(error)"
            return probe
        }
        defer { mount.unmount() }
        do {
            // Touch the code paths of the walk (lookup, readdirplus, getattr) on the top directory
            // first, so that the baseline holds the daemon's code pages and the delta is the
            // cost of the nodes alone.
            let warm = try Subprocess.run(
                ["find", ".", "-maxdepth", "1", "-printf", "%y %s %P\\n"], directory: mount.mountPoint)
            guard let start = settledStatus(mount) else { throw CommandError(description: "daemon pid not found") }
            probe.mountedKiB = start.rssKiB
            probe.mountedAnonKiB = start.anonKiB
            let walk = try Subprocess.run(["find", ".", "-printf", "%y %s %P\\n"], directory: mount.mountPoint)
            probe.entries = walk.outputLines - warm.outputLines
            guard let walked = settledStatus(mount) else { throw CommandError(description: "daemon gone") }
            probe.walkedKiB = walked.rssKiB
            probe.walkedAnonKiB = walked.anonKiB
            try Subprocess.run(["tar", "-cf", "-", "."], directory: mount.mountPoint)
            guard let read = settledStatus(mount) else { throw CommandError(description: "daemon gone") }
            probe.readKiB = read.rssKiB
            probe.peakKiB = read.peakKiB
            probe.threads = read.threads
        } catch {
            probe.failure = "\(error)"
        }
        return probe
    }

    /// The daemon's status once in-flight requests (FORGETs, releases) have been answered.
    private static func settledStatus(_ mount: MountedStack) -> DaemonStatus? {
        usleep(300_000)
        return mount.daemonStatus()
    }
}

/// FUSE requests per workload, counted from the `-d` log of a foreground daemon: what the kernel
/// asks the engine for on the first run after mounting (a fresh mount per workload) and on the
/// same run repeated (warm). Debug
/// logging slows the daemon, so these runs are never timed; an engine with short cache timeouts
/// may see more requests here than in a timed run.
struct RequestProbe {
    /// The engine.
    var engine: Engine
    /// The stack's name.
    var stack: String
    /// The workload.
    var workload: OverlayWorkload
    /// Requests by opcode on the first run after mounting.
    var first: [String: Int] = [:]
    /// Requests by opcode on the second run.
    var again: [String: Int] = [:]
    /// Why it could not be counted.
    var failure: String?

    /// Counts requests for each of `workloads` on a fresh `-d` mount of `stack` with `engine`
    /// (the path lists of the in-process workloads come from a kernel mount, so that the
    /// first run really is the first access through the FUSE mount).
    static func measure(
        engine: Engine, stack: LayerStackSpec, workloads: [OverlayWorkload], work: String, layermount: String,
        parameters: OverlayParameters
    ) -> [RequestProbe] {
        let log = "\(work)/requests-\(stack.name)-\(engine.rawValue).log"
        var probes: [RequestProbe] = []
        for workload in workloads {
            if interruptRequested.load(ordering: .relaxed) { break }
            unlink(log)
            var probe = RequestProbe(engine: engine, stack: stack.name, workload: workload)
            let fixture = DebugFixture(stack: stack, work: work, layermount: layermount, engine: engine, log: log)
            let benchmark = OverlayBenchmark(
                workload: workload, engine: engine, fixture: fixture, cold: false, parameters: parameters)
            do {
                try benchmark.setUp()
                defer { benchmark.tearDown() }
                var offset = settledLogSize(log)
                _ = try benchmark.run()
                probe.first = countRequests(log, from: offset)
                offset = settledLogSize(log)
                _ = try benchmark.run()
                probe.again = countRequests(log, from: offset)
            } catch {
                probe.failure = "\(error)"
            }
            fixture.unmountAll()
            probes.append(probe)
        }
        unlink(log)
        return probes
    }

    private static func settledLogSize(_ log: String) -> Int {
        var previous = -1
        while true {
            usleep(200_000)
            var status = stat()
            let size = stat(log, &status) == 0 ? Int(status.st_size) : 0
            if size == previous { return size }
            previous = size
        }
    }

    /// Counts `opcode: NAME` in libfuse's debug log after `offset`.
    private static func countRequests(_ log: String, from offset: Int) -> [String: Int] {
        let end = settledLogSize(log)
        guard let bytes = readFile(log), end <= bytes.count, offset <= end else { return [:] }
        var counts: [String: Int] = [:]
        let marker = Array("opcode: ".utf8)
        for line in bytes[offset..<end].split(separator: 0x0A) {
            guard let start = line.firstRange(of: marker)?.upperBound else { continue }
            let name = line[start...].prefix { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: ",") }
            counts[String(decoding: name, as: UTF8.self), default: 0] += 1
        }
        return counts
    }
}

/// A ``StackFixture`` whose FUSE engine runs in the foreground with `-d`; the kernel mount (for
/// path lists) is an ordinary one.
final class DebugFixture: StackFixture {
    let engine: Engine
    let log: String
    private var mount: MountedStack?

    init(stack: LayerStackSpec, work: String, layermount: String, engine: Engine, log: String) {
        self.engine = engine
        self.log = log
        super.init(stack: stack, work: work, layermount: layermount)
    }

    override func mounted(_ engine: Engine) throws -> MountedStack {
        guard engine == self.engine else { return try super.mounted(engine) }
        if let mount { return mount }
        let mount = try MountedStack(
            engine: engine, stack: stack, mountPoint: "\(work)/mnt/\(stack.name)-\(engine.rawValue)-debug",
            binary: layermount, debugLog: log)
        self.mount = mount
        return mount
    }

    override func unmountAll() {
        mount?.unmount()
        mount = nil
        super.unmountAll()
    }
}
