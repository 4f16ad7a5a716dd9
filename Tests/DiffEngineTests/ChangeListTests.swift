import DiffEngine
import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// Expected change lists for hand-built trees: the change-detection order and its policies.
@Suite("Change lists", .tags(.small))
struct ChangeListTests {
    /// The standard lower tree, every mtime pinned.
    static let base: [LayerStep] = [
        .file("etc/config", "config v1\n"), .file("etc/app.d/a.conf", "a\n"), .file("bin/tool", "tool", mode: 0o755),
        .file("data/blob", String(repeating: "blob ", count: 2000)), .symlink("link", target: "bin/tool"),
        .file("usr/share/doc/readme", "readme\n"),
    ]
    static let pinned: [LayerStep] = [
        "etc/config", "etc/app.d/a.conf", "etc/app.d", "etc", "bin/tool", "bin", "data/blob", "data", "link",
        "usr/share/doc/readme", "usr/share/doc", "usr/share", "usr", "",
    ].map { .times($0, seconds: 1_600_000_000) }

    /// Builds A from `base`, B as `cp -a` of A changed by `change`, and returns B's lines.
    static func changes(
        _ change: [LayerStep], options: DiffOptions = DiffOptions(), extra: [LayerStep] = [],
        in temp: TemporaryDirectory
    ) throws -> [String] {
        let a = temp.url("a")
        LayerBuilder.apply([.dir("")] + base + extra + pinned, in: a)
        copyTree(a, temp.url("b"))
        LayerBuilder.apply(change, in: temp.url("b"))
        var diff = LayerDiff(a: a, b: temp.url("b"))
        diff.options = options
        var lines: [String] = []
        _ = try diff.run { change in
            let aspects = change.aspects.names.joined(separator: ",")
            lines.append("\(change.kind.letter) \(change.displayPath)" + (aspects.isEmpty ? "" : " [\(aspects)]"))
        }
        return lines
    }

    @Test("add, delete, type change and a deleted directory as one change, in path order")
    func basics() throws {
        let temp = TemporaryDirectory()
        let lines = try Self.changes(
            [
                .file("etc/new", "new\n"), .remove("etc/config"), .remove("usr/share"), .remove("bin/tool"),
                .dir("bin/tool"), .file("bin/tool/inside", "x"), .times("etc", seconds: 1_600_000_000),
                .times("bin", seconds: 1_600_000_000), .times("usr", seconds: 1_600_000_000),
                .times("bin/tool", seconds: 1_600_000_000), .times("bin/tool/inside", seconds: 1_600_000_000),
                .times("etc/new", seconds: 1_600_000_000),
            ], in: temp)
        #expect(
            lines == [
                "C /bin/tool [type]", "A /bin/tool/inside", "D /etc/config", "A /etc/new", "D /usr/share",
            ])
    }

    @Test("a same-size change with the mtime put back is caught by content; --trust-mtime skips the check")
    func sneakyChange() throws {
        let temp = TemporaryDirectory()
        let change: [LayerStep] = [
            .file("etc/config", "config v2\n"), .times("etc/config", seconds: 1_600_000_000),
        ]
        #expect(try Self.changes(change, in: temp) == ["C /etc/config [content]"])
        var trusting = DiffOptions()
        trusting.trustModificationTime = true
        #expect(try Self.changes(change, options: trusting, in: TemporaryDirectory()) == [])
    }

    @Test("metadata aspects are reported: mode, owner, mtime, xattrs, symlink target, root")
    func aspects() throws {
        let temp = TemporaryDirectory()
        var change: [LayerStep] = [
            .chmod("bin/tool", 0o4755), .times("data/blob", seconds: 1_600_000_001),
            .xattr("etc/config", name: "user.note", value: "hi"), .remove("link"),
            .symlink("link", target: "etc/config"), .times("link", seconds: 1_600_000_000), .chmod("", 0o700),
            .times("", seconds: 1_600_000_000),
        ]
        if runningAsRoot { change.append(.chown("usr/share/doc/readme", uid: 1000, gid: 1000)) }
        var expected = [
            "C / [mode]", "C /bin/tool [mode]", "C /data/blob [mtime]", "C /etc/config [xattrs]", "C /link [target]",
        ]
        if runningAsRoot { expected.append("C /usr/share/doc/readme [owner]") }
        #expect(try Self.changes(change, in: temp) == expected)
    }

    @Test("--ignore-mtime: a touched file or directory is unchanged; a touched and changed one is reported")
    func ignoreMtime() throws {
        var options = DiffOptions()
        options.ignoreModificationTime = true
        let lines = try Self.changes(
            [
                .times("data/blob", seconds: 1_700_000_000), .times("usr", seconds: 1_700_000_000),
                .chmod("bin/tool", 0o700), .times("bin/tool", seconds: 1_700_000_000),
            ], options: options, in: TemporaryDirectory())
        #expect(lines == ["C /bin/tool [mode,mtime]"])
    }

    @Test("hard links: a new name re-sends the group, a removed name re-sends nothing")
    func hardLinks() throws {
        let added = try Self.changes(
            [.hardlink("bin/tool2", existing: "bin/tool"), .times("bin", seconds: 1_600_000_000)],
            in: TemporaryDirectory())
        #expect(added == ["C /bin/tool [links]", "A /bin/tool2"])
        let removed = try Self.changes(
            [.remove("bin/alias"), .times("bin", seconds: 1_600_000_000)],
            extra: [.hardlink("bin/alias", existing: "bin/tool")], in: TemporaryDirectory())
        #expect(removed == ["D /bin/alias"])
    }

    @Test("identical trees: nothing changes, and the same inode is never read")
    func sameInodes() throws {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.dir("")] + Self.base, in: temp.url("a"))
        let result = try LayerDiff(a: temp.url("a"), b: temp.url("a")).run()
        #expect(!result.summary.differs)
        #expect(result.summary.hashedBytes == 0)
    }

    @Test("files of different sizes are never hashed")
    func sizeDecides() throws {
        let temp = TemporaryDirectory()
        let a = temp.url("a")
        LayerBuilder.apply([.dir("")] + Self.base + Self.pinned, in: a)
        copyTree(a, temp.url("b"))
        LayerBuilder.apply(
            [.file("data/blob", "short"), .times("data/blob", seconds: 1_600_000_000)], in: temp.url("b"))
        var diff = LayerDiff(a: a, b: temp.url("b"))
        diff.options.trustModificationTime = true
        let result = try diff.run()
        #expect(result.summary.counts[.changed] == 1)
        #expect(result.summary.hashedBytes == 0)
    }

    @Test("a missing tree is an error naming it")
    func missingTree() throws {
        let temp = TemporaryDirectory()
        #expect(throws: DiffError.self) { try LayerDiff(a: temp.url("nope"), b: temp.path).run() }
    }
}
