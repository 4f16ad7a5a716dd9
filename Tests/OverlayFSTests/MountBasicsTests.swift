import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

@testable import OverlayFS

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

    /// The descriptor cache leaves room for the layer roots and a merged directory's
    /// descriptors: 40 layers under a hard limit of 128 descriptors serve every file (the cache
    /// used to take three quarters of the limit on top of the 40 roots, and reads failed with
    /// EMFILE once it filled).
    @Test func manyLayersUnderALowOpenFileLimit() throws {
        let count = 40
        let layers = (1...count).map { index -> [LayerStep] in
            [.file("common/f\(index)", "c\(index)")] + (1...3).map { .file("d\(index)/f\($0)", "\(index).\($0)") }
        }
        let stack = try MountedStack(layers, openFileLimit: 128)
        defer { stack.unmount() }
        var failures: [String] = []
        for index in 1...count {
            for file in 1...3 where contents(stack.path("d\(index)/f\(file)")) != "\(index).\(file)" {
                failures.append("d\(index)/f\(file)")
            }
        }
        #expect(failures.isEmpty, "unreadable through the mount: \(failures)")
        #expect(names(stack.path("common"))?.count == count)
        #expect(contents(stack.path("common/f1")) == "c1")
    }

    @Test func descriptorCacheLeavesRoomForTheLayers() {
        #expect(LayerMount.descriptorCacheCapacity(openFileLimit: 1_048_576, layers: 3) == 16_384)
        #expect(LayerMount.descriptorCacheCapacity(openFileLimit: 1024, layers: 3) == 737)
        // 500 layers (the kernel's most) under 1024: the roots and two merged directories fill it.
        #expect(LayerMount.descriptorCacheCapacity(openFileLimit: 1024, layers: 500) == 16)
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
