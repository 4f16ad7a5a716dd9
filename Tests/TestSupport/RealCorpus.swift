import Foundation
import Glibc

/// The real Debian layer stack built by `../shared/corpus/make-layers.sh` (debootstrap, then
/// build steps in a kernel overlay): `layer1..3` (kernel whiteout format), `layer1-oci..3-oci`,
/// `rootfs1..3`.
///
/// It lives in `$LAYERMOUNT_CORPUS` (default /var/tmp/layermount-corpus), outside the repository,
/// and is built on first use (about a minute; needs root and the Debian mirror), with an `flock`
/// on `<dir>.lock` so that parallel tests build it once.
public enum RealCorpus {
    /// Where the corpus lives.
    public static var directory: String {
        ProcessInfo.processInfo.environment["LAYERMOUNT_CORPUS"] ?? "/var/tmp/layermount-corpus"
    }

    /// `../shared` of the repository (or `$LAYERMOUNT_SHARED`).
    public static var sharedDirectory: String {
        if let shared = ProcessInfo.processInfo.environment["LAYERMOUNT_SHARED"] { return shared }
        // This file is Tests/TestSupport/RealCorpus.swift in the repository.
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return repository.deletingLastPathComponent().appendingPathComponent("shared").path
    }

    /// Why the corpus could not be built.
    public struct Unavailable: Error, CustomStringConvertible {
        /// What make-layers.sh said.
        public var description: String
    }

    /// The corpus directory, built first when incomplete.
    ///
    /// - Throws: ``Unavailable`` with the builder's output when the build fails.
    public static func ensure() throws -> String {
        let dir = directory
        if isComplete(dir) { return dir }
        let script = sharedDirectory + "/corpus/make-layers.sh"
        let result = shell(
            "flock \(shellQuote(dir + ".lock")) \(shellQuote(script)) \(shellQuote(dir)) 2>&1 | tail -n 30",
            timeout: 1800)
        guard isComplete(dir) else {
            throw Unavailable(description: "make-layers.sh \(dir) failed (status \(result.status)):\n\(result.out)")
        }
        return dir
    }

    /// `directory/name`.
    public static func path(_ name: String) -> String { directory + "/" + name }

    private static func isComplete(_ dir: String) -> Bool {
        FileManager.default.fileExists(atPath: dir + "/.done-layer3-oci")
            && FileManager.default.fileExists(atPath: dir + "/summary.txt")
    }
}

/// A kernel overlayfs mount (read-only, lower layers only) of `layers` (bottom first), for
/// comparisons; unmounted by ``unmount()`` (call it in a `defer`).
public final class KernelOverlayMount {
    /// The mount point.
    public let path: String
    private let temp: TemporaryDirectory

    /// Mounts `layers` (bottom first, at least two), with `options` added to the mount options
    /// (e.g. `metacopy=on`).
    ///
    /// - Throws: ``RealCorpus/Unavailable`` with mount's message when it fails.
    public init(layers: [String], options: String = "") throws {
        temp = TemporaryDirectory(prefix: "layermount-kovl")
        path = temp.url("mnt")
        mkdir(path, 0o755)
        let lowers = layers.reversed().joined(separator: ":")
        let result = run(
            "/bin/mount",
            ["-t", "overlay", "overlay", "-o", "ro,lowerdir=\(lowers)" + (options.isEmpty ? "" : "," + options), path],
            timeout: 30)
        guard result.status == 0 else {
            throw RealCorpus.Unavailable(description: "mount -t overlay failed: \(result.err)")
        }
    }

    /// Unmounts (idempotent; lazily if busy).
    public func unmount() {
        if run("/bin/umount", [path], timeout: 30).status != 0 { run("/bin/umount", ["-l", path], timeout: 30) }
    }
}
