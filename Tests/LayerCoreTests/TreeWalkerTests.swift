import Glibc
import LayerCore
import TestSupport
import Testing

@Suite("Tree walker", .tags(.small))
struct TreeWalkerTests {
    @Test("walks depth-first in bytewise order, never through symlinks")
    func order() throws {
        let dir = TemporaryDirectory()
        let outside = TemporaryDirectory()
        LayerBuilder.apply(
            [
                .file("tree/b", "b"), .file("tree/a/z", "z"), .dir("tree/a/y"), .file("tree/B", "B"),
                .symlink("tree/link", target: outside.path), .symlink("tree/a/up", target: ".."),
                .file("tree/\u{00e9}", "e"),
            ], in: dir.path)
        LayerBuilder.apply([.file("secret", "s")], in: outside.path)
        let walker = try TreeWalker(path: dir.url("tree"))
        var visited: [String] = []
        var left: [String] = []
        try walker.walk { visit in
            visited.append("\(visit.path) \(visit.status.type.letter) \(visit.depth)")
            return .descend
        } leave: { visit in
            left.append(visit.path.description)
        }
        #expect(
            visited == [
                ". d 0", "B f 1", "a d 1", "a/up l 2", "a/y d 2", "a/z f 2", "b f 1", "link l 1", "\u{00e9} f 1",
            ])
        #expect(left == ["a/y", "a", "."])
    }

    @Test("skipChildren prunes a directory")
    func prune() throws {
        let dir = TemporaryDirectory()
        LayerBuilder.apply([.file("x/deep/f", "f"), .file("y", "y")], in: dir.path)
        var visited: [String] = []
        try TreeWalker(path: dir.path).walk { visit in
            visited.append(visit.path.description)
            return visit.path.description == "x" ? .skipChildren : .descend
        }
        #expect(visited == [".", "x", "y"])
    }

    @Test("a missing root is a path error naming it")
    func missingRoot() {
        #expect(throws: PathError.self) { try TreeWalker(path: "/nonexistent/layermount-tree") }
    }

    @Test("xattrs of entries are read without following symlinks")
    func attributes() throws {
        let dir = TemporaryDirectory()
        LayerBuilder.apply(
            [
                .file("f", "x"), .xattr("f", name: "user.b", value: "2"), .xattr("f", name: "user.a", value: "1"),
                .symlink("l", target: "f"),
            ], in: dir.path)
        let root = try FileDescriptor.open(path: dir.path, flags: O_RDONLY | O_DIRECTORY)
        let attributes = try root.extendedAttributes(of: FileName("f"))
        #expect(attributes == [ExtendedAttribute("user.a", value: [0x31]), ExtendedAttribute("user.b", value: [0x32])])
        #expect(try root.extendedAttributes(of: FileName("l")).isEmpty)
        #expect(throws: Errno.noEntry) { try root.extendedAttributes(of: FileName("missing")) }
    }
}
