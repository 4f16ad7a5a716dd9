import DiffEngine
import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// Trees deeper than `PATH_MAX` (4096 bytes): the diff, every output and `apply` work on them,
/// since every path is opened a run of components at a time.
@Suite("Paths longer than PATH_MAX", .tags(.medium))
struct DeepPathTests {
    /// 25 levels of 200-byte names: about 5 KB of path.
    static let levels = (0..<25).map { String(repeating: "d", count: 199) + String($0 % 10) }

    /// Builds A under `root` (one level at a time: `cp -a` and GNU tar cannot copy such a tree):
    /// the chain, files `changed`, `kept` and `gone/inside` at its bottom, and every mtime pinned
    /// so that two builds are equal.
    static func buildA(_ root: String) {
        LayerBuilder.apply([.dir("")], in: root)
        var chain = [open(root, O_RDONLY | O_DIRECTORY)]
        for name in levels {
            _ = mkdirat(chain[chain.count - 1], name, 0o755)
            chain.append(openat(chain[chain.count - 1], name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW))
        }
        precondition(!chain.contains(-1), "cannot build the deep chain under \(root)")
        let bottom = chain[chain.count - 1]
        write(bottom, "changed", "before\n")
        write(bottom, "kept", "same\n")
        _ = mkdirat(bottom, "gone", 0o755)
        let gone = openat(bottom, "gone", O_RDONLY | O_DIRECTORY)
        write(gone, "inside", "x")
        for fd in [gone] + chain.reversed() {
            pin(fd)
            close(fd)
        }
    }

    /// Runs `body` with the bottom directory of the chain under `root`.
    static func inDeepDirectory(_ root: String, _ body: (CInt) -> Void) {
        var fd = open(root, O_RDONLY | O_DIRECTORY)
        for name in levels {
            let next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
            close(fd)
            fd = next
        }
        precondition(fd >= 0, "no deep chain under \(root)")
        body(fd)
        close(fd)
    }

    /// Sets the mtime of the directory `fd` and of the regular files in it to a fixed time.
    static func pin(_ fd: CInt) {
        var times = [timespec(tv_sec: 1_600_000_000, tv_nsec: 0), timespec(tv_sec: 1_600_000_000, tv_nsec: 0)]
        for name in ["changed", "kept", "inside"] { _ = utimensat(fd, name, &times, AT_SYMLINK_NOFOLLOW) }
        _ = futimens(fd, &times)
    }

    static func write(_ directory: CInt, _ name: String, _ text: String) {
        let fd = openat(directory, name, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0)
        _ = Array(text.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    @Test(
        "apply(A, diff(A, B)) == B with changes 5 KB deep, through every output",
        arguments: RoundTripTests.Way.allCases)
    func deepRoundTrip(way: RoundTripTests.Way) throws {
        if way == .overlayDirectory && !runningAsRoot { return }
        let temp = TemporaryDirectory(prefix: "layerdiff-deep")
        let a = temp.url("a")
        let b = temp.url("b")
        Self.buildA(a)
        Self.buildA(b)
        Self.inDeepDirectory(b) { directory in
            Self.write(directory, "changed", "after, longer\n")
            Self.write(directory, "new", "new\n")
            _ = unlinkat(openat(directory, "gone", O_RDONLY | O_DIRECTORY), "inside", 0)
            _ = unlinkat(directory, "gone", AT_REMOVEDIR)
        }
        var diff = LayerDiff(a: a, b: b)
        let layer: String
        switch way {
        case .tar: layer = temp.url("layer.tar"); diff.output = .archive(layer, .none)
        case .gzip: layer = temp.url("layer.tar.gz"); diff.output = .archive(layer, .gzip)
        case .zstd: layer = temp.url("layer.tar.zst"); diff.output = .archive(layer, .zstd)
        case .ociDirectory: layer = temp.url("layer"); diff.output = .directory(layer, .oci)
        case .overlayDirectory: layer = temp.url("layer"); diff.output = .directory(layer, .overlay)
        }
        var changes: [Change] = []
        _ = try diff.run { changes.append($0) }
        // The bottom directory (its mtime moved), `changed`, `new`, and `gone` as one whiteout.
        #expect(changes.count == 4, "\(changes.map(\.displayPath))")
        let result = temp.url("result")
        Self.buildA(result)
        #expect(try TreeSnapshot(a).differences(to: TreeSnapshot(result)) == [], "two builds of A differ")
        try LayerApplier(root: result).apply(layer: layer, directoryFormat: way == .overlayDirectory ? .overlay : .oci)
        #expect(try TreeSnapshot(b).differences(to: TreeSnapshot(result)) == [])
    }
}
