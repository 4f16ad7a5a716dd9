import Glibc
import Synchronization

/// An overlay implementation under test.
enum Engine: String, CaseIterable {
    /// Linux overlayfs: `mount -t overlay overlay -o lowerdir=TOP:...:BOTTOM MNT`. The anchor.
    case kernel
    /// `fuse-overlayfs -o lowerdir=TOP:...:BOTTOM MNT` (Debian's fuse-overlayfs).
    case fuseOverlayfs = "fuse-overlayfs"
    /// `layermount -o lowerdir=TOP:...:BOTTOM MNT`.
    case layermount

    /// Whether the engine is a FUSE daemon (it has a pid, an RSS and a request log).
    var isFUSE: Bool { self != .kernel }
}

/// A layer stack: a name for the tables and its layer directories, bottom first.
struct LayerStackSpec {
    /// The name in tables and benchmark names (`real`, `synth100k`).
    var name: String
    /// Layer directories, bottom (base) first.
    var layers: [String]

    /// `TOP:...:BOTTOM`, as lowerdir= takes them.
    var lowerdir: String { layers.reversed().joined(separator: ":") }
}

/// Every mount this process made and has not unmounted yet, so that an interrupted run cleans up.
let liveMounts = Mutex<[String]>([])

/// A stack mounted with one engine, read-only, at a mount point of its own.
final class MountedStack {
    let engine: Engine
    let stack: LayerStackSpec
    let mountPoint: String
    /// The FUSE daemon's pid (nil for the kernel, or while it runs in the foreground under us).
    private(set) var daemonPID: pid_t?
    /// A foreground daemon started by us (profiling mounts with `-d`).
    private var childPID: pid_t?

    /// Mounts `stack` with `engine` at `mountPoint` (created if missing).
    ///
    /// - Parameters:
    ///   - binary: the engine's program (layermount's path; ignored for the kernel).
    ///   - debugLog: when set, a FUSE engine runs in the foreground with `-d`, logging every
    ///     request to this file (for request counts; much slower, never timed).
    /// - Throws: ``CommandError`` when the mount fails.
    init(engine: Engine, stack: LayerStackSpec, mountPoint: String, binary: String, debugLog: String? = nil) throws {
        self.engine = engine
        self.stack = stack
        self.mountPoint = mountPoint
        mkdir(mountPoint, 0o755)
        if isMountPoint(mountPoint) { throw CommandError(description: "\(mountPoint) is already a mount point") }
        let lower = "lowerdir=" + stack.lowerdir
        switch (engine, debugLog) {
        case (.kernel, _):
            try Subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "ro," + lower, mountPoint])
        case (.fuseOverlayfs, nil):
            try Subprocess.run(["fuse-overlayfs", "-o", lower, mountPoint])
        case (.layermount, nil):
            try Subprocess.run([binary, "-o", lower, mountPoint])
        case (_, let log?):
            let program = engine == .layermount ? binary : "fuse-overlayfs"
            childPID = try Subprocess.start([program, "-f", "-d", "-o", lower, mountPoint], logPath: log)
            let deadline = now() + 30
            while !isMountPoint(mountPoint) {
                if let childPID, Subprocess.hasExited(childPID) {
                    self.childPID = nil
                    throw CommandError(description: "\(program) -d exited before mounting (log: \(log))")
                }
                if now() > deadline { throw CommandError(description: "\(program) -d did not mount in 30 s") }
                usleep(20_000)
            }
        }
        liveMounts.withLock { $0.append(mountPoint) }
        guard isMountPoint(mountPoint) else {
            throw CommandError(description: "\(engine.rawValue) returned but \(mountPoint) is not mounted")
        }
        if engine.isFUSE {
            daemonPID = childPID ?? findDaemon(engine == .layermount ? binary : "fuse-overlayfs", mountPoint)
        }
    }

    /// `mountPoint/relative`.
    func path(_ relative: String) -> String { relative.isEmpty ? mountPoint : mountPoint + "/" + relative }

    /// The daemon's memory and CPU figures, from /proc/PID/status and /proc/PID/stat.
    func daemonStatus() -> DaemonStatus? { daemonPID.flatMap(DaemonStatus.init(pid:)) }

    /// Unmounts (`umount` or `fusermount3 -u`, lazily if busy) and waits for the daemon to exit.
    func unmount() {
        Mounts.unmount(mountPoint, fuse: engine.isFUSE)
        if let pid = daemonPID {
            let deadline = now() + 10
            while kill(pid, 0) == 0 && now() < deadline {
                if let childPID, Subprocess.hasExited(childPID) { break }
                usleep(10_000)
            }
        }
        if let childPID { Subprocess.reap(childPID) }
        childPID = nil
        daemonPID = nil
    }

    /// The pid of the process whose argv[0] ends in `program` and that has `mountPoint` as an
    /// argument (the daemon forked by the mount command).
    private func findDaemon(_ program: String, _ mountPoint: String) -> pid_t? {
        let base = program.split(separator: "/").last.map(String.init) ?? program
        guard let directory = opendir("/proc") else { return nil }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let pid = pid_t(name), let arguments = readProcessArguments(pid), let first = arguments.first
            else { continue }
            let firstBase = first.split(separator: "/").last.map(String.init) ?? first
            if firstBase == base && arguments.dropFirst().contains(mountPoint) { return pid }
        }
        return nil
    }
}

/// Memory and CPU of a daemon.
struct DaemonStatus {
    /// VmRSS, KiB.
    var rssKiB: Int
    /// RssAnon (heap and stacks), KiB.
    var anonKiB: Int
    /// VmHWM (peak RSS), KiB.
    var peakKiB: Int
    /// Threads.
    var threads: Int
    /// User plus system CPU seconds so far (all threads, exited ones too).
    var cpuSeconds: Double

    /// Reads /proc/PID/status and /proc/PID/stat; nil when the process is gone.
    init?(pid: pid_t) {
        guard let status = readTextFile("/proc/\(pid)/status"), let stat = readTextFile("/proc/\(pid)/stat") else {
            return nil
        }
        func field(_ key: String) -> Int {
            for line in status.split(separator: "\n") where line.hasPrefix(key + ":") {
                let value = line.dropFirst(key.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first
                return Int(value ?? "") ?? 0
            }
            return 0
        }
        rssKiB = field("VmRSS")
        anonKiB = field("RssAnon")
        peakKiB = field("VmHWM")
        threads = field("Threads")
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        cpuSeconds = (user + system) / ticks
    }
}

/// Mount-table helpers.
enum Mounts {
    /// Unmounts `mountPoint` if it is mounted: `fusermount3 -u` (FUSE) or `umount`, then lazily.
    static func unmount(_ mountPoint: String, fuse: Bool) {
        defer { liveMounts.withLock { $0.removeAll { $0 == mountPoint } } }
        guard isMountPoint(mountPoint) else { return }
        let first = fuse ? ["fusermount3", "-u", mountPoint] : ["umount", mountPoint]
        if (try? Subprocess.run(first)) != nil, !isMountPoint(mountPoint) { return }
        usleep(200_000)
        if (try? Subprocess.run(first)) != nil, !isMountPoint(mountPoint) { return }
        _ = try? Subprocess.run(fuse ? ["fusermount3", "-uz", mountPoint] : ["umount", "-l", mountPoint])
    }

    /// Unmounts everything this process mounted and still holds (after an interruption).
    static func unmountAll() {
        let points = liveMounts.withLock { $0 }
        for point in points.reversed() {
            unmount(point, fuse: mountFileSystemType(point)?.hasPrefix("fuse") ?? false)
        }
    }
}

/// Whether `path` is a mount point (listed in /proc/self/mountinfo).
func isMountPoint(_ path: String) -> Bool { mountFileSystemType(path) != nil }

/// The file system type of the mount at `path` (`overlay`, `fuse.layermount`), or nil.
func mountFileSystemType(_ path: String) -> String? {
    guard let table = readTextFile("/proc/self/mountinfo") else { return nil }
    for line in table.split(separator: "\n") {
        let fields = line.split(separator: " ")
        // mount point is field 5; after the "-" separator come fstype and source.
        guard fields.count > 6, unescapeMountField(fields[4]) == path,
            let separator = fields.firstIndex(of: "-"), separator + 1 < fields.count
        else { continue }
        return String(fields[separator + 1])
    }
    return nil
}

private func unescapeMountField(_ field: Substring) -> String {
    var bytes: [UInt8] = []
    var iterator = Array(field.utf8)[...]
    while let byte = iterator.popFirst() {
        if byte == UInt8(ascii: "\\"), iterator.count >= 3,
            let value = UInt8(String(decoding: iterator.prefix(3), as: UTF8.self), radix: 8)
        {
            bytes.append(value)
            iterator = iterator.dropFirst(3)
        } else {
            bytes.append(byte)
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The NUL-separated arguments of process `pid`, or nil.
func readProcessArguments(_ pid: pid_t) -> [String]? {
    guard let bytes = readFile("/proc/\(pid)/cmdline"), !bytes.isEmpty else { return nil }
    return bytes.split(separator: 0, omittingEmptySubsequences: false).dropLast().map {
        String(decoding: $0, as: UTF8.self)
    }
}

/// A whole file as text, or nil.
func readTextFile(_ path: String) -> String? { readFile(path).map { String(decoding: $0, as: UTF8.self) } }

/// A whole file, or nil.
func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { break }
        out.append(contentsOf: buffer.prefix(count))
    }
    return out
}
