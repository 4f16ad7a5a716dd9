import DiffEngine
import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// `--upper U A` against the kernel: for every case the change list, the layer's size (entries,
/// whiteouts, opaque markers) and the round trip must equal those of the full diff of A against
/// the real overlay mount `lowerdir=U:A`. The cases are the ones where the upper hides A below a
/// directory: opaque directories (by xattr or `.wh..wh..opq`) and their subdirectories at any
/// depth, whiteouts below them, upper directories replacing A files.
@Suite("Overlay upper dir: opaque subtrees against kernel overlayfs", .tags(.medium, .mount))
struct UpperOpaqueTests {
    /// One case: A, then the upper dir's steps built with the given marker format.
    struct Case: CustomStringConvertible, Sendable {
        var name: String
        var a: [LayerStep]
        var upper: @Sendable (WhiteoutFormat) -> [LayerStep]
        var description: String { name }
    }

    static let cases: [Case] = [
        Case(
            name: "deletions below a subdirectory of an opaque directory",
            a: [.file("d/sub/f", "f"), .file("d/g", "g"), .file("d/sub/deep/x/y", "y"), .file("keep", "k")],
            upper: { [.opaque("d", $0), .dir("d/sub")] }),
        Case(
            name: "a subdirectory that stays below an opaque directory loses A's entries at every depth",
            a: [.file("d/sub/deep/x/y", "y"), .file("d/sub/deep/z", "z"), .file("d/sub/same", "s")],
            upper: { [.opaque("d", $0), .file("d/sub/deep/new", "n"), .file("d/sub/same", "s")] }),
        Case(
            name: "an opaque directory inside an opaque directory",
            a: [.file("d/e/f", "f"), .file("d/e/g/h", "h"), .file("d/i", "i")],
            upper: { [.opaque("d", $0), .opaque("d/e", $0), .file("d/e/new", "n"), .dir("d/e/g")] }),
        Case(
            name: "a whiteout of a directory below an opaque directory",
            a: [.file("d/sub/gone/f", "f"), .file("d/sub/stays", "s")],
            upper: { [.opaque("d", $0), .whiteout("d/sub/gone", $0), .file("d/sub/stays", "s")] }),
        Case(
            name: "many deletions below an opaque directory: one opaque marker, as the full diff does",
            a: (0..<12).map { .file("d/sub/f\($0)", "\($0)") } + [.file("d/sub/stay", "s")],
            upper: { [.opaque("d", $0), .file("d/sub/stay", "s")] }),
        Case(
            name: "a deleted directory below an opaque directory is one whiteout",
            a: (0..<12).map { .file("d/sub/gone/f\($0)", "\($0)") } + [.file("d/sub/stay", "s")],
            upper: { [.opaque("d", $0), .file("d/sub/stay", "s")] }),
        Case(
            name: "an upper directory replacing an A file, with markers inside it",
            a: [.file("d", "a file"), .file("e/f", "f")],
            upper: { [.file("d/new", "n"), .whiteout("d/none", $0), .opaque("e", $0), .dir("e/f")] }),
        Case(
            name: "an opaque upper directory replacing an A file",
            a: [.file("d", "a file")],
            upper: { [.opaque("d", $0), .file("d/sub/new", "n")] }),
    ]

    /// `path` with the directories' and files' mtimes pinned, so the change list is fixed.
    static func pinned(_ steps: [LayerStep]) -> [LayerStep] {
        var paths = Set<String>([""])
        for step in steps {
            switch step {
            case .file(let path, _, _), .dir(let path, _), .opaque(let path, _):
                var components = path.split(separator: "/").map(String.init)
                while !components.isEmpty {
                    paths.insert(components.joined(separator: "/"))
                    components.removeLast()
                }
            case .whiteout(let path, _):
                var components = path.split(separator: "/").map(String.init).dropLast()
                while !components.isEmpty {
                    paths.insert(components.joined(separator: "/"))
                    components.removeLast()
                }
            default: continue
            }
        }
        return steps + paths.sorted { $0.count > $1.count }.map { .times($0, seconds: 1_600_000_000) }
    }

    struct Outcome: Equatable, CustomStringConvertible {
        var lines: [String]
        var entries: Int
        var whiteouts: Int
        var opaqueMarkers: Int
        var description: String { "\(lines) entries \(entries) whiteouts \(whiteouts) opaque \(opaqueMarkers)" }
    }

    /// The change lines and layer size of `diff`, writing its layer to `layer`.
    static func outcome(_ diff: LayerDiff, layer: String) throws -> Outcome {
        var diff = diff
        diff.output = .archive(layer, .none)
        var lines: [String] = []
        let result = try diff.run { change in
            lines.append("\(change.kind.letter) \(change.displayPath) \(change.aspects.names.joined(separator: ","))")
        }
        return Outcome(
            lines: lines, entries: result.summary.layerEntries, whiteouts: result.summary.whiteouts,
            opaqueMarkers: result.summary.opaqueMarkers)
    }

    @Test(
        "--upper equals the full diff against the kernel mount", .enabled(if: runningAsRoot),
        arguments: cases, [WhiteoutFormat.overlay, .oci])
    func againstKernel(_ scenario: Case, _ format: WhiteoutFormat) throws {
        let temp = TemporaryDirectory()
        let a = temp.url("a")
        LayerBuilder.apply(Self.pinned([.dir("")] + scenario.a), in: a)
        // The kernel reads only its own markers: the mount gets the same upper in kernel format,
        // without the whiteouts that hide nothing (below an opaque directory, or of a path A does
        // not have): the kernel lists those in a directory it does not merge but finds no entry
        // there, so cp would fail.
        let kernelUpper = scenario.upper(.overlay)
        let opaque = kernelUpper.compactMap { step -> String? in
            if case .opaque(let path, _) = step { return path + "/" }
            return nil
        }
        let reference = kernelUpper.filter { step in
            guard case .whiteout(let path, _) = step else { return true }
            var status = stat()
            return !opaque.contains { path.hasPrefix($0) } && lstat(a + "/" + path, &status) == 0
        }
        LayerBuilder.apply(Self.pinned([.dir("")] + reference), in: temp.url("upper-kernel"))
        LayerBuilder.apply(Self.pinned([.dir("")] + scenario.upper(format)), in: temp.url("upper"))
        let mount = try KernelOverlayMount(layers: [a, temp.url("upper-kernel")])
        do {
            defer { mount.unmount() }
            copyTree(mount.path, temp.url("merged"))
        }
        let full = try Self.outcome(LayerDiff(a: a, b: temp.url("merged")), layer: temp.url("full.tar"))
        var overlay = LayerDiff(a: a, b: temp.url("upper"))
        overlay.upperFormat = format == .overlay ? .overlay : .oci
        let upper = try Self.outcome(overlay, layer: temp.url("upper.tar"))
        #expect(upper == full)
        #expect(!full.lines.isEmpty)
        copyTree(a, temp.url("result"))
        try LayerApplier(root: temp.url("result")).apply(layer: temp.url("upper.tar"))
        let differences = try TreeSnapshot(temp.url("merged")).differences(to: TreeSnapshot(temp.url("result")))
        #expect(differences == [])
    }

    @Test(
        "redirects, metacopy and xattr whiteouts in an upper dir are refused naming the entry",
        arguments: [
            "trusted.overlay.redirect", "user.overlay.redirect", "trusted.overlay.metacopy",
            "trusted.overlay.whiteout",
        ])
    func refusals(_ attribute: String) throws {
        guard runningAsRoot || attribute.hasPrefix("user.") else { return }
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.dir(""), .file("x/f", "f")], in: temp.url("a"))
        LayerBuilder.apply(
            [.dir(""), .file("y/f", "g"), .xattr("y", name: attribute, value: "/x")], in: temp.url("upper"))
        var overlay = LayerDiff(a: temp.url("a"), b: temp.url("upper"))
        overlay.upperFormat = .auto
        let error = #expect(throws: DiffError.self) { try overlay.run() }
        #expect(error?.path == temp.url("upper") + "/y")
        let kind = attribute.split(separator: ".").last.map(String.init) ?? ""
        #expect(error?.reason.contains("overlay \(kind)") == true, "\(error?.reason ?? "")")
    }
}
