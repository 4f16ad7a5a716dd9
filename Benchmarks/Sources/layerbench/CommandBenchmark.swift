import Glibc

/// A benchmark that runs one command per sample (no shell) and times it to its exit, with the
/// child's peak RSS and CPU time from `wait4(2)`.
final class CommandBenchmark: Benchmark {
    /// What ``run()`` returns.
    enum Count {
        /// Lines the command printed.
        case lines
        /// Bytes the command printed.
        case bytes
        /// The size of the file at this path after the run (`{n}` is the sample number).
        case fileSize(String)
    }

    let name: String
    let tool: String
    let isAnchor: Bool
    /// Extra text for tables (input sizes), set by `describe` at set-up.
    private(set) var detail = ""
    private let describe: (() -> String)?
    private let measureMemory: Bool
    private let arguments: [String]
    private let allowedStatus: Set<Int32>
    private let count: Count
    private let prepare: (() throws -> Void)?
    private let cleanUp: ((Int) -> Void)?
    private var sample = 0
    private var cost = Cost()

    /// - Parameters:
    ///   - arguments: the command; `{n}` in an argument is replaced by the sample number, so each
    ///     run can write a file of its own.
    ///   - allowedStatus: exit statuses that mean success.
    ///   - setUp: untimed work before the first run (throws to skip the benchmark with a reason).
    ///   - tearDown: untimed clean-up, given the number of runs made.
    ///   - describe: computes ``detail`` at set-up.
    ///   - measureMemory: run the command under GNU time (`/usr/bin/time -f %M`) for its peak
    ///     RSS. wait4's ru_maxrss cannot be used directly: posix_spawn's vfork child starts on
    ///     this process's address space, and exec records that address space's high-water mark,
    ///     so every child would report at least this process's RSS. GNU time is small, so its
    ///     child's figure is the command's own. Costs one extra fork+exec (about a millisecond)
    ///     per run, for anchors and layerdiff alike.
    init(
        name: String, tool: String, anchor: Bool = false, arguments: [String], allowedStatus: Set<Int32> = [0],
        count: Count = .lines, setUp: (() throws -> Void)? = nil, tearDown: ((Int) -> Void)? = nil,
        describe: (() -> String)? = nil, measureMemory: Bool = true
    ) {
        self.describe = describe
        self.measureMemory = measureMemory && access(Self.timeProgram, X_OK) == 0
        self.name = name
        self.tool = tool
        self.isAnchor = anchor
        self.arguments = arguments
        self.allowedStatus = allowedStatus
        self.count = count
        self.prepare = setUp
        self.cleanUp = tearDown
    }

    var lastCost: Cost { cost }

    func setUp() throws {
        try prepare?()
        if let describe { detail = describe() }
    }

    func tearDown() { cleanUp?(sample) }

    static let timeProgram = "/usr/bin/time"

    func run() throws -> Int {
        sample += 1
        let number = String(sample)
        var command = arguments.map { $0.replacingAll("{n}", with: number) }
        let memoryFile = "/tmp/layerbench-\(getpid())-time.txt"
        if measureMemory { command = [Self.timeProgram, "-o", memoryFile, "-f", "%M"] + command }
        let result = try Subprocess.run(command, allowedStatus: allowedStatus)
        cost = Cost(peakRSSKiB: nil, cpuSeconds: result.cpuSeconds)
        if measureMemory {
            // GNU time writes "Command exited with non-zero status N" first when it does.
            let text = readTextFile(memoryFile) ?? ""
            cost.peakRSSKiB = text.split(separator: "\n").last.flatMap { Int($0) }
            unlink(memoryFile)
        }
        switch count {
        case .lines: return result.outputLines
        case .bytes: return result.outputBytes
        case .fileSize(let template):
            var status = stat()
            let path = template.replacingAll("{n}", with: number)
            guard stat(path, &status) == 0 else { throw CommandError(description: "\(path) was not written") }
            return Int(status.st_size)
        }
    }
}

extension String {
    /// This string with every occurrence of `target` replaced by `replacement`.
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = self[...]
        while let range = rest.range(of: target) {
            out += rest[..<range.lowerBound]
            out += replacement
            rest = rest[range.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    /// The first range of `target`, by characters.
    func range(of target: String) -> Range<Index>? {
        guard let first = target.first else { return nil }
        var index = startIndex
        while let found = self[index...].firstIndex(of: first) {
            if self[found...].hasPrefix(target) {
                return found..<(self.index(found, offsetBy: target.count))
            }
            index = self.index(after: found)
        }
        return nil
    }
}

/// Entry count and bytes of regular files of one or more trees (`find -printf '%y %s\n'`).
func treeSize(_ paths: [String]) -> (entries: Int, bytes: Int)? {
    guard let result = try? Subprocess.run(["find"] + paths + ["-printf", "%y %s\\n"], keepOutput: 1 << 28) else {
        return nil
    }
    var bytes = 0
    for line in result.output.split(separator: 0x0A) where line.first == UInt8(ascii: "f") {
        bytes += Int(String(decoding: line.dropFirst(2), as: UTF8.self)) ?? 0
    }
    return (result.outputLines, bytes)
}
