import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

@testable import OverlayFS

/// A layer stack built from steps and mounted with the built `layermount` binary. Call
/// ``unmount()`` in a `defer`: it runs `fusermount3 -u`, then `-uz`, with bounded waits.
final class MountedStack {
    let temp: TemporaryDirectory
    /// The layer directories, bottom first.
    let layers: [String]
    /// The mount point.
    let mountPoint: String
    /// The result of the mount command.
    let mountResult: ProcessResult

    /// Builds `layers` (bottom first) and mounts them with `arguments` before the paths; with
    /// `openFileLimit`, under that hard and soft `RLIMIT_NOFILE` (the daemon inherits it).
    init(
        _ layers: [[LayerStep]], arguments: [String] = [], lowerdirForm: Bool = false, openFileLimit: Int? = nil
    ) throws {
        temp = TemporaryDirectory()
        var paths: [String] = []
        for (index, steps) in layers.enumerated() {
            let path = temp.url("l\(index + 1)")
            LayerBuilder.apply([.dir("")] + steps, in: path)
            paths.append(path)
        }
        self.layers = paths
        mountPoint = temp.url("mnt")
        LayerBuilder.apply([.dir("")], in: mountPoint)
        let layerArguments =
            lowerdirForm ? ["-o", "lowerdir=" + paths.reversed().joined(separator: ":")] : paths
        let command = [builtExecutable("layermount")] + arguments + layerArguments + [mountPoint]
        if let openFileLimit {
            // dash's `ulimit -n` sets the hard and the soft limit.
            mountResult = run(
                "/bin/sh", ["-c", "ulimit -n \(openFileLimit) && exec \"$@\"", "sh"] + command, timeout: 30)
        } else {
            mountResult = run(command[0], Array(command.dropFirst()), timeout: 30)
        }
        guard mountResult.status == 0, Self.isMounted(mountPoint) else {
            unmount()
            throw MountFailure(result: mountResult)
        }
    }

    /// Mounts existing layer directories (bottom first) on a fresh mount point.
    init(existing layers: [String], arguments: [String] = []) throws {
        temp = TemporaryDirectory()
        self.layers = layers
        mountPoint = temp.url("mnt")
        LayerBuilder.apply([.dir("")], in: mountPoint)
        mountResult = run(builtExecutable("layermount"), arguments + layers + [mountPoint], timeout: 30)
        guard mountResult.status == 0, Self.isMounted(mountPoint) else {
            unmount()
            throw MountFailure(result: mountResult)
        }
    }

    /// `mountPoint/relative`.
    func path(_ relative: String) -> String { relative.isEmpty ? mountPoint : mountPoint + "/" + relative }

    /// Unmounts (idempotent): `fusermount3 -u`, retried briefly, then a lazy `-uz`.
    func unmount() {
        for _ in 0..<20 where Self.isMounted(mountPoint) {
            run("/usr/bin/fusermount3", ["-u", mountPoint], timeout: 10)
            if !Self.isMounted(mountPoint) { break }
            usleep(100_000)
        }
        if Self.isMounted(mountPoint) { run("/usr/bin/fusermount3", ["-uz", mountPoint], timeout: 10) }
    }

    /// Whether something is mounted at `path` (per /proc/self/mountinfo).
    static func isMounted(_ path: String) -> Bool {
        // Foundation's file readers stop after the first chunk of a /proc file: read it all.
        guard let bytes = readWholeFile("/proc/self/mountinfo") else { return false }
        return MountTable(parsing: String(decoding: bytes, as: UTF8.self)).mount(at: path) != nil
    }

    struct MountFailure: Error, CustomStringConvertible {
        var result: ProcessResult
        var description: String { "layermount failed with status \(result.status): \(result.err)" }
    }
}

/// The contents of a file as text, or nil.
func contents(_ path: String) -> String? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    return String(decoding: data, as: UTF8.self)
}

/// The sorted names in a directory (as `ls -A`), or nil when it cannot be read.
func names(_ path: String) -> [String]? {
    (try? FileManager.default.contentsOfDirectory(atPath: path))?.sorted()
}

/// `lstat(2)` of a path, or the errno.
func lstatus(_ path: String) -> Result<FileStatus, Errno> {
    var s = stat()
    guard lstat(path, &s) == 0 else { return .failure(Errno.current) }
    return .success(FileStatus(s))
}
