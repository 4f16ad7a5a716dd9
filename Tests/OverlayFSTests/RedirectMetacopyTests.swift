import Foundation
import Glibc
import LayerCore
import OverlayFS
import TestSupport
import Testing

/// Makes an upper layer the way a build step does: mounts kernel overlayfs with `upperdir=` over
/// `lowers` (bottom first) with `metacopy=on,redirect_dir=on`, runs `commands` (sh, in the merged
/// tree) and unmounts, always.
func kernelUpper(over lowers: [String], at upper: String, _ commands: String) throws {
    let work = upper + ".work"
    let merged = upper + ".merged"
    for path in [upper, work, merged] { mkdir(path, 0o755) }
    let options =
        "lowerdir=\(lowers.reversed().joined(separator: ":")),upperdir=\(upper),workdir=\(work),"
        + "metacopy=on,redirect_dir=on"
    let mounted = run("/bin/mount", ["-t", "overlay", "overlay", "-o", options, merged], timeout: 30)
    try #require(mounted.status == 0, "mount: \(mounted.err)")
    defer {
        if run("/bin/umount", [merged], timeout: 30).status != 0 { run("/bin/umount", ["-l", merged], timeout: 30) }
    }
    let result = shell("set -e; cd \(shellQuote(merged)); \(commands)")
    try #require(result.status == 0, "\(commands): \(result.err)")
}

/// What a program sees of a tree: every path with its type, mode, owner, size, blocks and an
/// MD5 of its content, and each stat or read error.
func observeTree(_ root: String) -> [String] {
    let listing = shell(
        "cd \(shellQuote(root)) && find . -printf '%p %y %m %U:%G %s %b\\n' 2>&1 | sort"
            + " && find . -type f -print0 | sort -z | xargs -0 -r md5sum 2>&1")
    return listing.out.split(separator: "\n").map(String.init) + ["status \(listing.status)"]
}

@Suite("Kernel-made layers with redirects and metacopy, against kernel overlayfs", .tags(.mount), .serialized)
struct RedirectMetacopyTests {
    struct Scenario: CustomStringConvertible, Sendable {
        var name: String
        /// The base layer.
        var base: [LayerStep]
        /// Build steps: each makes one upper layer over the layers so far, through the kernel.
        var steps: [String]
        var description: String { name }
    }

    static let scenarios: [Scenario] = [
        Scenario(
            name: "metacopy: chmod and chown keep the data in the lower layer",
            base: [
                .file("f", "important data\n"), .file("d/g", String(repeating: "g", count: 70000)),
                .sparse("s", size: 1 << 20, data: "tail", offset: (1 << 20) - 4),
            ],
            steps: ["chmod 600 f; chown 7:8 d/g; chmod 640 s"]),
        Scenario(
            name: "metacopy with an absolute redirect: chmod, then rename to another directory",
            base: [.file("f", "moved data\n"), .file("a/h", "h data\n"), .dir("b")],
            steps: ["chmod 600 f a/h; mkdir new; mv f new/f2; mv a/h b/h2"]),
        Scenario(
            name: "directory renamed in place (relative redirect)",
            base: [.file("dirA/file", "c\n"), .file("dirA/sub/x", "s\n"), .file("keep", "k\n")],
            steps: ["mv dirA dirB"]),
        Scenario(
            name: "directory moved to another parent (absolute redirect)",
            base: [.file("p/q/z", "deep\n"), .file("p/other", "o\n"), .dir("r")],
            steps: ["mv p/q r/q2; mkdir fresh; mv r fresh/r2"]),
        Scenario(
            name: "nested: a rename inside a renamed directory, and a renamed directory re-created",
            base: [.file("top/mid/leaf/f", "leaf\n"), .file("top/mid/g", "g\n"), .file("top/t", "t\n")],
            steps: ["mv top top2; mv top2/mid top2/mid2; mv top2/mid2/leaf top2/leaf2; mkdir top; echo new > top/n"]),
        Scenario(
            name: "a redirect in the middle layer of three",
            base: [.file("dirA/file", "base\n"), .file("dirA/sub/x", "x\n"), .file("m", "m\n")],
            steps: ["mv dirA dirB", "chmod 600 dirB/file; echo more > dirB/new; mv dirB/sub dirB/sub2; chmod 700 m"]),
    ]

    @Test(arguments: scenarios)
    func layermountServesWhatTheKernelServes(scenario: Scenario) throws {
        let temp = TemporaryDirectory()
        var layers = makeLayers([scenario.base], in: temp)
        for (index, step) in scenario.steps.enumerated() {
            let upper = temp.url("u\(index + 1)")
            try kernelUpper(over: layers, at: upper, step)
            layers.append(upper)
        }
        let kernel = try KernelOverlayMount(layers: layers, options: "metacopy=on")
        defer { kernel.unmount() }
        let stack = try MountedStack(existing: layers)
        defer { stack.unmount() }
        let expected = observeTree(kernel.path)
        #expect(observeTree(stack.mountPoint) == expected, "\(scenario.name)")
        #expect(expected.count > 3)

        // flatten writes the same tree (contents, modes, owners).
        let flat = temp.url("flat")
        let flattened = run(builtExecutable("layermount"), ["flatten"] + layers + ["--to", flat])
        try #require(flattened.status == 0, "\(flattened.err)")
        #expect(treeDifferences(kernel.path, flat).status == 0, "\(treeDifferences(kernel.path, flat).out)")
    }

    @Test func whichHashesTheDataOfAMetacopyFile() throws {
        let temp = TemporaryDirectory()
        let layers = makeLayers([[.file("f", "important data\n")]], in: temp)
        let upper = temp.url("u")
        try kernelUpper(over: layers, at: upper, "chmod 600 f")
        let result = run(builtExecutable("layermount"), ["which"] + layers + [upper, "--", "/f"])
        #expect(result.status == 0, "\(result.err)")
        let lines = result.out.split(separator: "\n").map(String.init)
        try #require(lines.count == 3, "\(result.out)")
        #expect(lines[1].contains("0600") && lines[1].contains("metadata only (data from layer 1)"), "\(lines[1])")
        // The visible version's hash is the data's, the same as the lower file's.
        let hash = { (line: String) in line.split(separator: " ").drop { $0 != "xxh3" }.dropFirst().first }
        #expect(hash(lines[1]) != nil && hash(lines[1]) == hash(lines[2]), "\(result.out)")
        let json = run(builtExecutable("layermount"), ["which", "--json"] + layers + [upper, "--", "/f"])
        #expect(json.out.contains("\"metacopy\": true") && json.out.contains("\"data_layer\": 1"), "\(json.out)")
    }
}

/// Hand-made (malicious or broken) redirect and metacopy xattrs: each gives the kernel's answer
/// (checked against kernel overlayfs 6.x by hand: `mount -t overlay -o lowerdir=U:L,metacopy=on`),
/// never a crash or a read outside the layers.
@Suite("Malformed redirects and metacopy files", .tags(.small))
struct MalformedRedirectTests {
    struct Case: CustomStringConvertible, Sendable {
        var name: String
        var top: [LayerStep]
        /// The errno of looking `entry` up, or nil when found.
        var errno: Errno?
        /// When found: the names of the merged directory (nil for a file).
        var names: [String]?
        /// When found: the file's content through the data file.
        var content: String?
        var description: String { name }
    }

    static let bottom: [LayerStep] = [.file("src/f", "data\n"), .file("plain", "plain data\n"), .dir("dir")]

    static func redirect(_ value: String) -> [LayerStep] {
        [.dir("dst"), .xattr("dst", name: "trusted.overlay.redirect", value: value)]
    }

    static func metacopy(_ name: String, _ value: String, size: Int64 = 11) -> [LayerStep] {
        [
            .sparse(name, size: size, data: "", offset: 0),
            .xattr(name, name: "trusted.overlay.metacopy", value: value),
        ]
    }

    static let long = String(repeating: "a", count: 300)

    static let cases: [Case] = [
        Case(name: "relative", top: redirect("src"), errno: nil, names: ["f"]),
        Case(name: "absolute", top: redirect("/src"), errno: nil, names: ["f"]),
        Case(name: "relative with ..", top: redirect("../src"), errno: .invalidArgument),
        Case(name: "absolute through ..", top: redirect("/src/.."), errno: .permissionDenied),
        Case(name: "absolute through .", top: redirect("/./src"), errno: .permissionDenied),
        Case(name: "absolute with //", top: redirect("//src"), errno: .invalidArgument),
        Case(name: "trailing slash", top: redirect("/src/"), errno: .invalidArgument),
        Case(name: "lone slash", top: redirect("/"), errno: .invalidArgument),
        Case(name: "relative with a slash", top: redirect("a/b"), errno: .invalidArgument),
        Case(name: "a name too long: nothing below", top: redirect("/" + long), errno: nil, names: []),
        Case(name: "relative too long", top: redirect(long), errno: nil, names: []),
        Case(name: "missing target: nothing below", top: redirect("/missing"), errno: nil, names: []),
        Case(name: "through a missing directory", top: redirect("/missing/.."), errno: nil, names: []),
        Case(name: "to a file: nothing below", top: redirect("plain"), errno: nil, names: []),
        Case(name: "to itself", top: redirect("/dst"), errno: nil, names: []),
        Case(name: "ignored on an opaque directory", top: redirect("src") + [.opaque("dst", .overlay)], names: []),
        Case(name: "metacopy, empty xattr", top: metacopy("plain", ""), content: "plain data\n"),
        Case(name: "metacopy, 4-byte header", top: metacopy("plain", "\u{1}abc"), content: "plain data\n"),
        Case(name: "metacopy, xattr too short", top: metacopy("plain", "ab"), errno: .ioError),
        Case(name: "metacopy, no data below", top: metacopy("nodata", ""), errno: .ioError),
        Case(name: "metacopy over a directory", top: metacopy("dir", ""), errno: .ioError),
        Case(name: "empty metacopy over a directory", top: metacopy("dir", "", size: 0), errno: .ioError),
        Case(name: "empty metacopy, no data below", top: metacopy("nodata", "", size: 0), errno: .ioError),
        Case(
            name: "metacopy renamed, redirect to the data",
            top: metacopy("moved", "") + [.xattr("moved", name: "trusted.overlay.redirect", value: "/src/f")],
            content: "data\n"),
        Case(
            name: "metacopy with a redirect to a directory",
            top: metacopy("moved", "") + [.xattr("moved", name: "trusted.overlay.redirect", value: "/src")],
            errno: .ioError),
    ]

    /// The entry each case looks up.
    static func entry(of testCase: Case) -> String {
        testCase.top.first.map { step -> String in
            switch step {
            case .dir(let path, _), .sparse(let path, _, _, _): return path
            default: return "dst"
            }
        } ?? "dst"
    }

    @Test(arguments: cases)
    func lookupGivesTheKernelsAnswer(testCase: Case) throws {
        let temp = TemporaryDirectory()
        let layers = makeLayers([Self.bottom, testCase.top], in: temp)
        let stack = try LayerStack(paths: layers, format: .auto)
        let overlay = OverlayFileSystem(stack: stack)
        let name = try FileName(Self.entry(of: testCase))
        do {
            let entry = try overlay.lookup(parent: .root, name: name)
            #expect(testCase.errno == nil, "found, expected \(String(describing: testCase.errno))")
            if let names = testCase.names {
                let (listing, start) = try overlay.readdir(entry.node, offset: 0)
                let listed = (start..<listing.count).map { listing[$0].name.description }.filter {
                    $0 != "." && $0 != ".."
                }
                #expect(listed.sorted() == names)
            }
            if let content = testCase.content {
                let source = try overlay.read(entry.node, size: 100, offset: 0)
                var buffer = [UInt8](repeating: 0, count: source.size)
                let count = try buffer.withUnsafeMutableBytes { (raw) throws(Errno) in
                    try source.descriptor.read(into: raw, at: source.offset)
                }
                #expect(String(decoding: buffer[0..<count], as: UTF8.self) == content)
            }
        } catch {
            #expect((error as? Errno) == testCase.errno, "\(testCase.name)")
        }
    }

    @Test(arguments: cases)
    func theKernelAgrees(testCase: Case) throws {
        let temp = TemporaryDirectory()
        let layers = makeLayers([Self.bottom, testCase.top], in: temp)
        let kernel = try KernelOverlayMount(layers: layers, options: "metacopy=on")
        defer { kernel.unmount() }
        let path = kernel.path + "/" + Self.entry(of: testCase)
        var s = stat()
        let status = lstat(path, &s)
        #expect((status == 0 ? nil : Errno.current) == testCase.errno, "\(testCase.name)")
    }

    @Test func ociLayersKeepOverlayXattrsAsData() throws {
        let temp = TemporaryDirectory()
        let layers = makeLayers([Self.bottom, Self.redirect("src") + Self.metacopy("plain", "")], in: temp)
        let overlay = OverlayFileSystem(stack: try LayerStack(paths: layers, format: .oci))
        let dst = try overlay.lookup(parent: .root, name: try FileName("dst"))
        let (listing, _) = try overlay.readdir(dst.node, offset: 0)
        #expect(listing.count == 2)  // . and .. only: no redirect followed
        let plain = try overlay.lookup(parent: .root, name: try FileName("plain"))
        let source = try overlay.read(plain.node, size: 100, offset: 0)
        var buffer = [UInt8](repeating: 1, count: source.size)
        let count = try buffer.withUnsafeMutableBytes { (raw) throws(Errno) in
            try source.descriptor.read(into: raw, at: source.offset)
        }
        #expect(buffer[0..<count].allSatisfy { $0 == 0 })  // the sparse file itself
    }
}
