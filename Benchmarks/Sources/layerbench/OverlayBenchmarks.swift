import Glibc

/// What the overlay part runs through each mount.
enum OverlayWorkload: String, CaseIterable {
    /// `find .`: readdir of every directory (names and d_type only).
    case find
    /// `find . -printf ...`: a full metadata walk (lstat of every entry).
    case findStat = "find-printf"
    /// `ls -lR .`: lstat, readlink and the xattr probes ls makes for every entry.
    case lsLR = "ls-lR"
    /// `tar -cf - . | wc -c`: read every file.
    case readAll = "tar"
    /// lstat of 100k paths in a shuffled order (paths repeat when the tree has fewer).
    case stat = "stat-100k"
    /// 20k times: open a random file, pread 4 KiB at a random aligned offset, close.
    case smallReads = "pread-4k-files"
    /// Read a 1 GiB file sequentially, 1 MiB at a time.
    case sequential = "read-1GiB"
    /// 20k random 4 KiB preads in a 1 GiB file (one open descriptor).
    case randomReads = "pread-4k-1GiB"

    /// The row label in tables.
    var label: String {
        switch self {
        case .find: return "find . (names)"
        case .findStat: return "find -printf (lstat all)"
        case .lsLR: return "ls -lR"
        case .readAll: return "tar -cf - . | wc -c"
        case .stat: return "lstat 100k paths"
        case .smallReads: return "20k open+pread 4K+close"
        case .sequential: return "read 1 GiB file"
        case .randomReads: return "20k pread 4K in 1 GiB"
        }
    }

    /// Whether the workload runs on the stack holding the 1 GiB file.
    var needsBigFile: Bool { self == .sequential || self == .randomReads }

    /// The workloads that also run cold.
    static let cold: [OverlayWorkload] = [.findStat, .lsLR, .readAll, .stat, .smallReads, .sequential, .randomReads]
}

/// Sizes of the in-process workloads.
struct OverlayParameters {
    /// Paths to lstat in ``OverlayWorkload/stat``.
    var statCount = 100_000
    /// Reads in ``OverlayWorkload/smallReads`` and ``OverlayWorkload/randomReads``.
    var readCount = 20_000
    /// The 1 GiB file, relative to the root of the big stack.
    var bigFile = "bench/1GiB.bin"
}

/// One workload through one engine's mount of one stack.
final class OverlayBenchmark: Benchmark {
    let workload: OverlayWorkload
    let engine: Engine
    let fixture: StackFixture
    let cold: Bool
    let parameters: OverlayParameters
    private var mount: MountedStack?
    private var pathPointers: [UnsafeMutablePointer<CChar>] = []
    private var reads: [(path: Int, offset: Int)] = []
    private var readPaths: [UnsafeMutablePointer<CChar>] = []
    private var bigPath: String = ""
    private var bigOffsets: [Int] = []
    private var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
    private var daemonBefore: DaemonStatus?
    private var cost = Cost()
    private var childCost = Cost()

    init(
        workload: OverlayWorkload, engine: Engine, fixture: StackFixture, cold: Bool, parameters: OverlayParameters
    ) {
        self.workload = workload
        self.engine = engine
        self.fixture = fixture
        self.cold = cold
        self.parameters = parameters
    }

    deinit { buffer.deallocate() }

    var name: String {
        "overlay/\(fixture.stack.name)/\(workload.rawValue)/\(cold ? "cold" : "warm")/\(engine.rawValue)"
    }
    var tool: String { engine.rawValue }
    var isAnchor: Bool { engine == .kernel }
    var lastCost: Cost { cost }

    func setUp() throws {
        let mount = try fixture.mounted(engine)
        self.mount = mount
        switch workload {
        case .stat:
            let index = try fixture.index(via: mount)
            var generator = SplitMix64(seed: 42)
            var order = index.paths
            order.shuffle(using: &generator)
            pathPointers = (0..<parameters.statCount).compactMap { strdup(mount.path(order[$0 % order.count])) }
        case .smallReads:
            let index = try fixture.index(via: mount)
            guard !index.files.isEmpty else { throw CommandError(description: "no regular files to read") }
            var generator = SplitMix64(seed: 4242)
            readPaths = index.files.compactMap { strdup(mount.path($0.path)) }
            reads = (0..<parameters.readCount).map { _ in
                let file = Int.random(in: 0..<index.files.count, using: &generator)
                let pages = Swift.max(1, (index.files[file].size + 4095) / 4096)
                return (file, Int.random(in: 0..<pages, using: &generator) * 4096)
            }
        case .sequential, .randomReads:
            bigPath = mount.path(parameters.bigFile)
            var status = stat()
            guard lstat(bigPath, &status) == 0, status.st_mode & S_IFMT == S_IFREG, status.st_size >= 1 << 30 else {
                throw CommandError(description: "\(bigPath): missing or smaller than 1 GiB")
            }
            var generator = SplitMix64(seed: 777)
            let pages = Int(status.st_size) / 4096
            bigOffsets = (0..<parameters.readCount).map { _ in Int.random(in: 0..<pages, using: &generator) * 4096 }
        default:
            break
        }
    }

    func tearDown() {
        for pointer in pathPointers + readPaths { free(pointer) }
        pathPointers = []
        readPaths = []
    }

    func prepareSample() {
        daemonBefore = mount?.daemonStatus()
        childCost = Cost()
    }

    func finishSample() {
        cost = childCost
        if let before = daemonBefore, let after = mount?.daemonStatus() {
            cost.daemonCPUSeconds = after.cpuSeconds - before.cpuSeconds
        }
    }

    func run() throws -> Int {
        guard let mount else { throw CommandError(description: "not set up") }
        switch workload {
        case .find:
            return try command(["find", "."], in: mount)
        case .findStat:
            // Directory sizes differ between engines by design; everything else must match.
            return try command(
                [
                    "find", ".", "(", "-type", "d", "-printf", "%y %m %U %G %T@ %P\\n", ")", "-o", "-printf",
                    "%y %m %U %G %T@ %s %n %P\\n",
                ], in: mount)
        case .lsLR:
            return try command(["ls", "-lR", "."], in: mount)
        case .readAll:
            return try command(["tar", "-cf", "-", "."], in: mount)
        case .stat:
            var total = 0
            var status = stat()
            for pointer in pathPointers {
                guard lstat(pointer, &status) == 0 else { throw errnoError("lstat", pointer) }
                total &+= Int(status.st_mode & S_IFMT) >> 12
                if status.st_mode & S_IFMT != S_IFDIR { total &+= Int(status.st_size) }
            }
            return total
        case .smallReads:
            var total = 0
            for read in reads {
                let fd = open(readPaths[read.path], O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw errnoError("open", readPaths[read.path]) }
                let count = pread(fd, buffer.baseAddress, 4096, off_t(read.offset))
                close(fd)
                guard count >= 0 else { throw errnoError("pread", readPaths[read.path]) }
                total &+= count
            }
            return total
        case .sequential:
            let fd = open(bigPath, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw errnoError("open", bigPath) }
            defer { close(fd) }
            var total = 0
            while true {
                let count = read(fd, buffer.baseAddress, buffer.count)
                if count < 0 && errno == EINTR { continue }
                guard count >= 0 else { throw errnoError("read", bigPath) }
                if count == 0 { break }
                total += count
            }
            return total
        case .randomReads:
            let fd = open(bigPath, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw errnoError("open", bigPath) }
            defer { close(fd) }
            var total = 0
            for offset in bigOffsets {
                let count = pread(fd, buffer.baseAddress, 4096, off_t(offset))
                guard count >= 0 else { throw errnoError("pread", bigPath) }
                total &+= count &+ Int(buffer.load(as: UInt8.self))
            }
            return total
        }
    }

    private func command(_ arguments: [String], in mount: MountedStack) throws -> Int {
        let result = try Subprocess.run(arguments, directory: mount.mountPoint)
        childCost.peakRSSKiB = result.peakRSSKiB
        childCost.cpuSeconds = result.cpuSeconds
        return result.outputBytes
    }

    private func errnoError(_ call: String, _ path: UnsafeMutablePointer<CChar>) -> CommandError {
        let error = errno
        return errnoError(call, String(cString: path), error)
    }

    private func errnoError(_ call: String, _ path: String, _ error: CInt = errno) -> CommandError {
        CommandError(description: "\(call) \(path): \(String(cString: strerror(error)))")
    }
}
