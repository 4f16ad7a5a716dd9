import CLayerSys
import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// Conformance-style scenarios the shared harness does not cover: each is a named function
/// that observes a mounted tree and returns what a program would see; it runs on the kernel
/// overlay mount of the layers (the oracle) and on layermount's, and the observations must be
/// equal.
@Suite("Differential scenarios: layermount against kernel overlayfs", .tags(.mount), .serialized)
struct DifferentialScenarioTests {
    struct Scenario: CustomStringConvertible, Sendable {
        var name: String
        var layers: [[LayerStep]]
        var observe: @Sendable (String) -> [String]
        var description: String { name }
    }

    static func errnoText(_ call: () -> Int32) -> String {
        call() >= 0 ? "ok" : "ERR \(Errno.current)"
    }

    static let scenarios: [Scenario] = [
        Scenario(
            name: "open flags and errnos",
            layers: [
                [.file("f", "data"), .dir("d"), .symlink("l", target: "f"), .fifo("p")],
                [.file("g", "top"), .whiteout("gone", .overlay)],
            ],
            observe: { root in
                var out: [String] = []
                for (label, path, flags) in [
                    ("rdonly", "f", O_RDONLY), ("wronly", "f", O_WRONLY), ("rdwr", "g", O_RDWR),
                    ("creat", "new", O_WRONLY | O_CREAT), ("dir-on-file", "f", O_RDONLY | O_DIRECTORY),
                    ("nofollow-link", "l", O_RDONLY | O_NOFOLLOW), ("follow-link", "l", O_RDONLY),
                    ("trunc", "f", O_RDONLY | O_TRUNC), ("missing", "gone", O_RDONLY),
                    ("dir", "d", O_RDONLY | O_DIRECTORY), ("append", "f", O_WRONLY | O_APPEND),
                ] {
                    let fd = open(root + "/" + path, flags, 0o644)
                    out.append("\(label): \(fd >= 0 ? "ok" : "ERR \(Errno.current)")")
                    if fd >= 0 { close(fd) }
                }
                var buffer = [CChar](repeating: 0, count: 64)
                out.append("readlink f: \(errnoText { Int32(readlink(root + "/f", &buffer, 64)) })")
                out.append("utimensat: \(errnoText { utimensat(AT_FDCWD, root + "/f", nil, 0) })")
                out.append("link: \(errnoText { link(root + "/f", root + "/f2") })")
                out.append("rename: \(errnoText { rename(root + "/f", root + "/f3") })")
                out.append("mkfifo: \(errnoText { mkfifo(root + "/q", 0o644) })")
                out.append("chown: \(errnoText { lchown(root + "/f", 1, 1) })")
                out.append("access W: \(errnoText { access(root + "/f", W_OK) })")
                out.append("access R: \(errnoText { access(root + "/f", R_OK) })")
                return out
            }),
        Scenario(
            name: "mmap of a lower file, private write allowed",
            layers: [[.bytes("m", Array(repeating: 0x61, count: 10000))], [.file("x", "x")]],
            observe: { root in
                let fd = open(root + "/m", O_RDONLY)
                defer { close(fd) }
                guard let map = mmap(nil, 10000, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0), map != MAP_FAILED
                else { return ["mmap: ERR \(Errno.current)"] }
                defer { munmap(map, 10000) }
                let bytes = map.assumingMemoryBound(to: UInt8.self)
                let before = bytes[9999]
                bytes[0] = 0x62
                let shared = mmap(nil, 10000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                let sharedResult = shared == MAP_FAILED ? "ERR \(Errno.current)" : "ok"
                if let shared, shared != MAP_FAILED { munmap(shared, 10000) }
                var again = [UInt8](repeating: 0, count: 1)
                _ = pread(fd, &again, 1, 0)
                return [
                    "last byte \(before)", "private write ok", "file still \(again[0])", "shared rw: \(sharedResult)",
                ]
            }),
        Scenario(
            name: "statfs of a read-only stack",
            layers: [[.file("f", "x")], [.dir("d")]],
            observe: { root in
                var s = statvfs()
                guard statvfs(root, &s) == 0 else { return ["statvfs: ERR \(Errno.current)"] }
                return [
                    "namemax \(s.f_namemax)", "rdonly \(s.f_flag & UInt(ST_RDONLY) != 0)",
                    "blocks>0 \(s.f_blocks > 0)",
                ]
            }),
        Scenario(
            name: "dot-dot and directory identities across merged directories",
            layers: [[.dir("a/b/c"), .file("a/b/c/f", "1")], [.dir("a/b"), .file("a/x", "2")], [.dir("a/b/c")]],
            observe: { root in
                func ino(_ path: String) -> UInt64 {
                    if case .success(let s) = lstatus(root + "/" + path) { return s.inode }
                    return 0
                }
                return [
                    "c/.. is b: \(ino("a/b/c/..") == ino("a/b"))", "b/.. is a: \(ino("a/b/..") == ino("a"))",
                    "a/.. is root: \(ino("a/..") == ino("."))",
                    "distinct: \(Set([ino("a"), ino("a/b"), ino("a/b/c")]).count)",
                    "f via ..: \(contents(root + "/a/b/c/../c/f") ?? "nil")",
                ]
            }),
        Scenario(
            name: "xattrs of symlinks, devices and fifos",
            layers: [
                [
                    .symlink("l", target: "t"), .fifo("p"), .charDevice("c", major: 1, minor: 3), .file("t", "t"),
                    .xattr("t", name: "trusted.note", value: "n"),
                ],
                [.dir("d")],
            ],
            observe: { root in
                var out: [String] = []
                for name in ["l", "p", "c", "t"] {
                    var buffer = [CChar](repeating: 0, count: 256)
                    let list = llistxattr(root + "/" + name, &buffer, 256)
                    let names = list < 0 ? "ERR \(Errno.current)" : "\(list) bytes"
                    let get = lgetxattr(root + "/" + name, "user.x", &buffer, 256)
                    let trusted = lgetxattr(root + "/" + name, "trusted.note", &buffer, 256)
                    out.append(
                        "\(name): list \(names), user.x \(get < 0 ? "ERR \(Errno.current)" : "ok"), "
                            + "trusted.note \(trusted < 0 ? "ERR" : "\(trusted)")")
                }
                return out
            }),
        Scenario(
            // Linux 6.7: a regular file of size 0 with overlay.whiteout is a whiteout; a directory
            // (or layer root) whose overlay.opaque is "x" holds such whiteouts and is not opaque.
            // A lookup honours one anywhere; a listing only in a directory marked "x".
            name: "xattr whiteouts",
            layers: [
                [
                    .file("d/a", "a"), .file("d/b", "b"), .file("d/c", "c"), .file("e/a", "a"), .file("top", "t"),
                    .file("keep", "k"),
                ],
                [
                    .xattr("", name: "trusted.overlay.opaque", value: "x"),
                    .file("top", ""), .xattr("top", name: "trusted.overlay.whiteout", value: ""),
                    .dir("d"), .xattr("d", name: "trusted.overlay.opaque", value: "x"),
                    .file("d/a", ""), .xattr("d/a", name: "trusted.overlay.whiteout", value: ""),
                    .file("d/b", "not empty"), .xattr("d/b", name: "trusted.overlay.whiteout", value: ""),
                    .file("d/new", ""), .xattr("d/new", name: "trusted.overlay.whiteout", value: ""),
                    .file("e/a", ""), .xattr("e/a", name: "trusted.overlay.whiteout", value: ""),
                ],
            ],
            observe: { root in
                var out = [
                    "/: \(names(root) ?? [])", "d: \(names(root + "/d") ?? [])", "e: \(names(root + "/e") ?? [])",
                ]
                for path in ["top", "keep", "d/a", "d/b", "d/c", "d/new", "e/a"] {
                    switch lstatus(root + "/" + path) {
                    case .success(let status): out.append("\(path): \(status.type) \(status.size)")
                    case .failure(let error): out.append("\(path): ERR \(error)")
                    }
                }
                return out
            }),
        Scenario(
            // Linux 6.7: a layer's escaped overlay xattr trusted.overlay.overlay.X shows as
            // trusted.overlay.X (a layer made for a nested overlay); it is no marker here.
            name: "escaped overlay xattrs",
            layers: [
                [.file("d/low", "l"), .file("f", "f")],
                [
                    .file("f", "top"), .xattr("f", name: "trusted.overlay.overlay.opaque", value: "y"),
                    .xattr("f", name: "trusted.overlay.overlay.foo", value: "bar"),
                    .xattr("f", name: "trusted.plain", value: "p"),
                    .dir("d"), .xattr("d", name: "trusted.overlay.overlay.opaque", value: "y"), .file("d/top", "t"),
                ],
            ],
            observe: { root in
                var out = ["d: \(names(root + "/d") ?? [])"]
                for path in ["f", "d"] {
                    var buffer = [CChar](repeating: 0, count: 1024)
                    let size = llistxattr(root + "/" + path, &buffer, buffer.count)
                    let listed =
                        size < 0
                        ? ["ERR \(Errno.current)"]
                        : buffer[..<size].split(separator: 0).map {
                            String(decoding: $0.map(UInt8.init), as: UTF8.self)
                        }
                    out.append("\(path) lists \(listed.sorted())")
                    for name in ["trusted.overlay.opaque", "trusted.overlay.foo", "trusted.overlay.overlay.foo"] {
                        var value = [CChar](repeating: 0, count: 64)
                        let got = lgetxattr(root + "/" + path, name, &value, value.count)
                        let text = String(decoding: value.prefix(max(got, 0)).map(UInt8.init), as: UTF8.self)
                        out.append("\(path) \(name): \(got < 0 ? "ERR \(Errno.current)" : text)")
                    }
                }
                return out
            }),
    ]

    @Test(arguments: scenarios)
    func layermountObservesWhatTheKernelObserves(scenario: Scenario) throws {
        let stack = try MountedStack(scenario.layers)
        defer { stack.unmount() }
        let kernel = try KernelOverlayMount(layers: stack.layers)
        defer { kernel.unmount() }
        let expected = scenario.observe(kernel.path)
        let observed = scenario.observe(stack.mountPoint)
        #expect(observed == expected, "\(scenario.name)")
        #expect(!expected.isEmpty)
    }
}
