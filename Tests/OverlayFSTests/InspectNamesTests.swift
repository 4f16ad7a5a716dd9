import Foundation
import Glibc
import LayerCore
import OverlayFS
import TestSupport
import Testing

@Suite("names that are not UTF-8, and hard links across layers", .tags(.medium))
struct InspectNamesTests {
    /// Two layers; the first holds `\xff\xfe` (not UTF-8), `back\slash` and a name with a newline.
    static func layers(_ temp: TemporaryDirectory) -> [String] {
        let paths = makeLayers([[.dir("d")], [.file("top", "t")]], in: temp)
        let made = shell(
            "cd \(shellQuote(paths[0])) && printf x > \"$(printf '\\377\\376')\" && printf y > 'back\\slash' "
                + "&& printf z > \"$(printf 'new\\nline')\"")
        #expect(made.status == 0, "\(made.err)")
        return paths
    }

    @Test func oddNamesRoundTripThroughEveryCommand() throws {
        let temp = TemporaryDirectory()
        let paths = Self.layers(temp)
        let ls = layermount(["ls"] + paths)
        #expect(ls.status == 0, "\(ls.err)")
        #expect(ls.out.contains("L1  \\xff\\xfe\n"), "\(ls.out)")
        #expect(ls.out.contains("L1  back\\x5cslash\n"), "\(ls.out)")
        #expect(ls.out.contains("L1  new\\x0aline\n"), "\(ls.out)")
        let json = try jsonObject(layermount(["ls", "--json"] + paths).stdout)
        let names = try #require(json["entries"] as? [[String: Any]]).compactMap { $0["path"] as? String }
        #expect(names.contains("/\\xff\\xfe") && names.contains("/back\\x5cslash"))

        let binary = shellQuote(builtExecutable("layermount"))
        let layers = paths.map(shellQuote).joined(separator: " ")
        // The raw bytes, as a shell passes them.
        let raw = shell("\(binary) which \(layers) -- \"$(printf '/\\377\\376')\"")
        #expect(raw.status == 0, "\(raw.out)\(raw.err)")
        #expect(raw.out.hasPrefix("/\\xff\\xfe: layer 1\n"), "\(raw.out)")
        // The escaped form the output prints, copied back.
        for form in ["/\\xff\\xfe", "/back\\x5cslash", "/back\\slash", "/new\\x0aline"] {
            let result = layermount(["which"] + paths + ["--", form])
            #expect(result.status == 0, "\(form): \(result.out)\(result.err)")
        }
        #expect(try jsonObject(layermount(["inspect", "--json"] + paths).stdout)["command"] as? String == "inspect")

        // flatten writes the very bytes (the kernel mount shows the same tree).
        let mount = try KernelOverlayMount(layers: paths)
        defer { mount.unmount() }
        let out = temp.url("flat")
        #expect(layermount(["flatten"] + paths + ["--to", out]).status == 0)
        let comparison = treeDifferences(mount.path, out)
        #expect(comparison.status == 0, "\(comparison.out)")
        #expect(shell("test -f \(shellQuote(out))/\"$(printf '\\377\\376')\"").status == 0)
    }

    @Test func hardLinksAcrossLayersStayOneFile() throws {
        let temp = TemporaryDirectory()
        let paths = makeLayers([[.file("a", "shared bytes"), .file("x", "1")], [.file("y", "2")]], in: temp)
        // Layers built with cp -al share inodes: the kernel shows one file under both names.
        #expect(link(paths[0] + "/a", paths[1] + "/b") == 0)
        let mount = try KernelOverlayMount(layers: paths)
        defer { mount.unmount() }
        for target in ["flat", "flat.tar"] {
            let out = temp.url(target)
            let result = layermount(["flatten"] + paths + ["--to", out])
            #expect(result.status == 0, "\(result.err)")
            var tree = out
            if target.hasSuffix(".tar") {
                tree = temp.url("flat-x")
                #expect(extractWithTar(out, into: tree).status == 0)
            }
            let comparison = treeDifferences(mount.path, tree)
            #expect(comparison.status == 0, "\(target): \(comparison.out)")
            var first = stat()
            var second = stat()
            #expect(
                lstat(tree + "/a", &first) == 0 && lstat(tree + "/b", &second) == 0 && first.st_ino == second.st_ino)
        }
        // inspect counts the inode once in each layer holding a name of it.
        let stack = try InspectedStack(paths: paths, format: .auto)
        defer { stack.close() }
        let report = try StackReport.compute(stack, top: 0)
        #expect(report.layers.map(\.bytes) == [13, 13])
        // The merged tree holds the shared inode once (12 + 1 + 1 bytes), as flatten writes it.
        #expect(report.merged.bytes == 14)
        let flattened = try jsonObject(layermount(["flatten", "--json"] + paths + ["--to", temp.url("again")]).stdout)
        #expect(flattened["bytes"] as? Int == 14)
        let inspected = try jsonObject(layermount(["inspect", "--json"] + paths).stdout)
        #expect((inspected["merged"] as? [String: Any])?["bytes"] as? Int == 14)
    }
}
