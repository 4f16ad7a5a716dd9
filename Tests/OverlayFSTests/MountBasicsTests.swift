import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

@Suite("Mounting a layer stack", .tags(.mount), .serialized)
struct MountBasicsTests {
    @Test(arguments: [WhiteoutFormat.oci, .overlay])
    func twoLayersMergeWithWhiteouts(format: WhiteoutFormat) throws {
        let stack = try MountedStack([
            [.file("a", "one"), .file("gone", "x"), .file("d/low", "low")],
            [.file("b", "two"), .whiteout("gone", format), .file("d/top", "top")],
        ])
        defer { stack.unmount() }
        #expect(names(stack.path("")) == ["a", "b", "d"])
        #expect(names(stack.path("d")) == ["low", "top"])
        #expect(contents(stack.path("a")) == "one")
        #expect(contents(stack.path("d/top")) == "top")
        #expect(contents(stack.path("d/low")) == "low")
        if case .failure(let error) = lstatus(stack.path("gone")) {
            #expect(error == .noEntry)
        } else {
            Issue.record("a whited-out name must not exist")
        }
    }

    @Test func lowerdirFormIsTopFirst() throws {
        let stack = try MountedStack(
            [[.file("f", "bottom"), .file("only-bottom", "b")], [.file("f", "top")]], lowerdirForm: true)
        defer { stack.unmount() }
        #expect(contents(stack.path("f")) == "top")
        #expect(contents(stack.path("only-bottom")) == "b")
    }

    @Test func writesFailWithReadOnlyFileSystem() throws {
        let stack = try MountedStack([[.file("f", "x")], [.dir("d")]])
        defer { stack.unmount() }
        let fd = open(stack.path("new"), O_WRONLY | O_CREAT, 0o644)
        #expect(fd == -1 && Errno.current == .readOnlyFileSystem)
        #expect(mkdir(stack.path("nd"), 0o755) == -1 && Errno.current == .readOnlyFileSystem)
        #expect(unlink(stack.path("f")) == -1 && Errno.current == .readOnlyFileSystem)
    }
}
