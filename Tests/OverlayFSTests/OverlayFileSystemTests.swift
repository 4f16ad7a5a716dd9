import CLayerSys
import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

@testable import OverlayFS

/// The core on real temp-dir layers, without a mount.
@Suite("Overlay core without a mount")
struct OverlayFileSystemTests {
    final class Fixture {
        let temp = TemporaryDirectory()
        let layers: [String]
        let fileSystem: OverlayFileSystem

        init(_ steps: [[LayerStep]], format: WhiteoutFormat = .auto, options: OverlayOptions = OverlayOptions()) throws
        {
            var paths: [String] = []
            for (index, layer) in steps.enumerated() {
                let path = temp.url("l\(index + 1)")
                LayerBuilder.apply([.dir("")] + layer, in: path)
                paths.append(path)
            }
            layers = paths
            fileSystem = OverlayFileSystem(stack: try LayerStack(paths: paths, format: format), options: options)
        }

        /// Looks a `/`-separated path up from the root (each component +1).
        func lookup(_ path: String) throws(Errno) -> Entry {
            var node = NodeID.root
            var entry: Entry?
            for component in path.split(separator: "/") {
                entry = try fileSystem.lookup(parent: node, name: try FileName(String(component)))
                node = entry?.node ?? node
            }
            guard let entry else { throw .invalidArgument }
            return entry
        }

        /// Every name of a directory through readdir, `.` and `..` included.
        func list(_ node: NodeID) throws -> [String] {
            let (listing, start) = try fileSystem.readdir(node, offset: 0)
            return (start..<listing.count).map { listing[$0].name.description }
        }

        func read(_ node: NodeID, size: Int = 1 << 16, at offset: Int64 = 0) throws -> String {
            let source = try fileSystem.read(node, size: size, offset: offset)
            var buffer = [UInt8](repeating: 0, count: source.size)
            let count = try buffer.withUnsafeMutableBytes { raw in
                try source.descriptor.read(into: raw, at: source.offset)
            }
            return String(decoding: buffer[0..<count], as: UTF8.self)
        }
    }

    static func realStatus(_ path: String) -> FileStatus {
        var s = stat()
        _ = lstat(path, &s)
        return FileStatus(s)
    }

    @Test func lookupReadAndListAcrossLayers() throws {
        let fixture = try Fixture([
            [.file("a", "one"), .file("d/low", "l"), .dir("d/sub"), .dir("pure/x"), .dir("pure/y")],
            [.file("a", "shadow"), .file("d/top", "t"), .symlink("link", target: "a")],
        ])
        let fs = fixture.fileSystem
        #expect(Set(try fixture.list(.root)) == [".", "..", "a", "d", "link", "pure"])
        let a = try fixture.lookup("a")
        #expect(try fixture.read(a.node) == "shadow")
        #expect(try fixture.read(a.node, size: 3, at: 2) == "ado")
        #expect(try fs.read(a.node, size: 4096, offset: 0).size == 6, "reads stop at the end of the file")
        #expect(try fs.read(a.node, size: 4096, offset: 100).size == 0)
        let d = try fixture.lookup("d")
        #expect(d.attributes.linkCount == 1, "a merged directory reports nlink 1, as the kernel does")
        #expect(Set(try fixture.list(d.node)) == [".", "..", "low", "top", "sub"])
        let pure = try fixture.lookup("pure")
        #expect(pure.attributes.linkCount == 4, "a one-layer directory reports its real nlink")
        let link = try fixture.lookup("link")
        #expect(try fs.readlink(link.node) == Array("a".utf8))
        #expect(throws: Errno.invalidArgument) { try fs.readlink(a.node) }
        #expect(throws: Errno.noEntry) { try fixture.lookup("missing") }
        #expect(throws: Errno.notDirectory) { try fs.lookup(parent: a.node, name: try FileName("x")) }
        #expect(throws: Errno.isDirectory) { try fs.read(d.node, size: 1, offset: 0) }
    }

    @Test func inodeNumbersAreTheLayersOwnAndHardLinksShareANode() throws {
        let fixture = try Fixture([
            [.file("h1", "shared"), .hardlink("h2", existing: "h1"), .file("dup", "low")],
            [.file("dup", "top"), .dir("d")],
        ])
        let h1 = try fixture.lookup("h1")
        let h2 = try fixture.lookup("h2")
        #expect(h1.node == h2.node)
        #expect(h1.attributes.inode == Self.realStatus(fixture.layers[0] + "/h1").inode)
        #expect(h1.attributes.linkCount == 2)
        let dup = try fixture.lookup("dup")
        #expect(dup.attributes.inode == Self.realStatus(fixture.layers[1] + "/dup").inode)
        #expect(dup.attributes.inode != h1.attributes.inode)
        // readdir's d_ino equals st_ino
        let (listing, _) = try fixture.fileSystem.readdir(.root, offset: 0)
        for index in 2..<listing.count {
            let entry = try fixture.fileSystem.lookup(parent: .root, name: listing[index].name)
            #expect(listing.inode(at: index) == entry.attributes.inode, "\(listing[index].name)")
        }
        #expect(try fixture.fileSystem.getattr(.root).inode == Self.realStatus(fixture.layers[1]).inode)
    }

    @Test(arguments: [WhiteoutFormat.oci, .overlay])
    func whiteoutsOpaqueAndMarkersFollowTheKernel(format: WhiteoutFormat) throws {
        let fixture = try Fixture(
            [
                [.file("gone", "x"), .file("op/old", "o"), .file("keep", "k"), .dir("wd/sub")],
                [.whiteout("gone", format), .opaque("op", format), .file("op/new", "n"), .whiteout("wd", format)],
                [.file("wd", "now a file")],
            ], format: format)
        #expect(Set(try fixture.list(.root)) == [".", "..", "keep", "op", "wd"])
        #expect(throws: Errno.noEntry) { try fixture.lookup("gone") }
        let op = try fixture.lookup("op")
        #expect(Set(try fixture.list(op.node)) == [".", "..", "new"])
        #expect(op.attributes.linkCount == 2, "an opaque dir over nothing else is not merged")
        #expect(try fixture.lookup("wd").attributes.type == .regular)
    }

    @Test func ociWhiteoutWithContentStillDeletesAndRealDevicesShow() throws {
        let fixture = try Fixture([
            [.file("victim", "v")],
            [.file(".wh.victim", "not empty"), .charDevice("null", major: 1, minor: 3)],
        ])
        #expect(throws: Errno.noEntry) { try fixture.lookup("victim") }
        let null = try fixture.lookup("null")
        #expect(null.attributes.type == .characterDevice)
        #expect(null.attributes.deviceMajor == 1 && null.attributes.deviceMinor == 3)
        #expect(Set(try fixture.list(.root)) == [".", "..", "null"])
    }

    @Test func readdirOffsetsAreStableAcrossRebuilds() throws {
        let count = 3000
        var low: [LayerStep] = []
        var high: [LayerStep] = []
        for index in 0..<count { low.append(.file("big/e\(index)", "")) }
        for index in stride(from: 0, to: count, by: 7) { high.append(.whiteout("big/e\(index)", .oci)) }
        for index in 0..<500 { high.append(.file("big/n\(index)", "")) }
        let fixture = try Fixture([low, high])
        let big = try fixture.lookup("big")
        let fs = fixture.fileSystem
        let (first, _) = try fs.readdir(big.node, offset: 0)
        let whole = (0..<first.count).map { first[$0] }
        #expect(whole.count == 2 + count - (count + 6) / 7 + 500)
        #expect(Set(whole.map(\.name)).count == whole.count, "every name once")
        // Continue at arbitrary offsets after the cache was dropped: same entries.
        for offset in [1, 2, 17, 1000, whole.count - 1] {
            fs.listings.removeAll()
            let (again, start) = try fs.readdir(big.node, offset: Int64(offset))
            #expect(start == offset)
            #expect(again[start] == whole[offset])
        }
        // Reading to the end drops the listing.
        _ = try fs.readdir(big.node, offset: Int64(whole.count))
        #expect(fs.listings.listing(of: big.node) == nil)
    }

    @Test func forgetReleasesNodesAndTheirDescriptors() throws {
        let fixture = try Fixture([[.file("d/f", "data")], [.dir("d")]])
        let fs = fixture.fileSystem
        let d = try fixture.lookup("d")
        let f = try fs.lookup(parent: d.node, name: try FileName("f"))
        #expect(try fixture.read(f.node) == "data")
        #expect(fs.descriptors.count == 3)  // d in two layers, f's read descriptor
        fs.forget(d.node, count: 1)
        #expect(fs.inodes.count == 3, "d stays while its child is known")
        fs.forget(f.node, count: 1)
        #expect(fs.inodes.count == 1)
        #expect(fs.descriptors.count == 0)
        #expect(throws: Errno.stale) { try fs.getattr(f.node) }
    }

    @Test func boundedDescriptorCacheStillServesEverything() throws {
        var steps: [LayerStep] = []
        for index in 0..<60 { steps.append(.file("d\(index)/deep/f", "content \(index)")) }
        var options = OverlayOptions()
        options.descriptorCacheCapacity = 8
        let fixture = try Fixture([steps, [.dir("d0")]], options: options)
        for round in 0..<2 {
            for index in 0..<60 {
                let f = try fixture.lookup("d\(index)/deep/f")
                #expect(try fixture.read(f.node) == "content \(index)", "round \(round)")
                #expect(try fixture.fileSystem.getattr(f.node).size == Int64("content \(index)".utf8.count))
            }
        }
        #expect(fixture.fileSystem.descriptors.count <= 8)
    }

    @Test func extendedAttributesHidePrivateNamesAndNameTheLayer() throws {
        let fixture = try Fixture(
            [
                [.file("f", "x"), .xattr("f", name: "user.color", value: "blue"), .dir("d")],
                [
                    .dir("d"), .xattr("d", name: "user.top", value: "1"),
                    .xattr("d", name: "trusted.overlay.origin", value: "junk"),
                    .symlink("l", target: "f"),
                ],
            ], format: .auto)
        let fs = fixture.fileSystem
        let f = try fixture.lookup("f")
        #expect(try fs.getxattr(f.node, name: Array("user.color".utf8)) == Array("blue".utf8))
        #expect(try fs.listxattr(f.node) == [Array("user.color".utf8)])
        #expect(
            String(decoding: try fs.getxattr(f.node, name: OverlayFileSystem.layerAttributeName), as: UTF8.self)
                == "1:\(fixture.layers[0])")
        let d = try fixture.lookup("d")
        #expect(try fs.listxattr(d.node) == [Array("user.top".utf8)])
        #expect(throws: Errno.noData) { try fs.getxattr(d.node, name: Array("trusted.overlay.origin".utf8)) }
        #expect(
            String(decoding: try fs.getxattr(d.node, name: OverlayFileSystem.layerAttributeName), as: UTF8.self)
                == "2:\(fixture.layers[1])")
        let l = try fixture.lookup("l")
        #expect(try fs.listxattr(l.node).isEmpty)
        #expect(throws: Errno.noData) { try fs.getxattr(l.node, name: Array("user.color".utf8)) }
    }

    @Test func sparseFilesSeekDataAndHoles() throws {
        let fixture = try Fixture([[.sparse("sp", size: 16 << 20, data: "data", offset: 8 << 20)], [.dir("x")]])
        let sp = try fixture.lookup("sp")
        let fs = fixture.fileSystem
        #expect(try fs.lseek(sp.node, offset: 0, whence: CLS_SEEK_DATA) == 8 << 20)
        #expect(try fs.lseek(sp.node, offset: 0, whence: CLS_SEEK_HOLE) == 0)
        #expect(throws: Errno(rawValue: ENXIO)) {
            try fs.lseek(sp.node, offset: (8 << 20) + 8192, whence: CLS_SEEK_DATA)
        }
    }

    @Test func layersChangedUnderneathGiveStaleNotACrash() throws {
        let fixture = try Fixture([[.file("f", "old"), .dir("d/sub"), .file("g", "g")], [.dir("x")]])
        let fs = fixture.fileSystem
        let f = try fixture.lookup("f")
        let sub = try fixture.lookup("d/sub")
        let g = try fixture.lookup("g")
        fs.descriptors.removeAll()
        // replace f by another file (the old one kept, so the inode number differs), remove the
        // directory, turn g into a directory
        #expect(rename(fixture.layers[0] + "/f", fixture.temp.url("f.old")) == 0)
        LayerBuilder.apply([.file("f", "new"), .remove("d"), .remove("g"), .dir("g")], in: fixture.layers[0])
        #expect(throws: Errno.stale) { try fs.read(f.node, size: 10, offset: 0) }
        #expect(throws: Errno.stale) { try fs.getattr(f.node) }
        #expect(throws: Errno.stale) { try fs.readdir(sub.node, offset: 0) }
        #expect(throws: Errno.stale) { try fs.getattr(g.node) }
        // A fresh lookup sees the new file.
        fs.forget(f.node, count: 1)
        #expect(try fixture.read(try fixture.lookup("f").node) == "new")
    }

    @Test func longAndNonUTF8Names() throws {
        let long = String(repeating: "L", count: 255)
        let odd: [UInt8] = Array("bad".utf8) + [0xFF, 0xFE] + Array("utf8".utf8)
        let fixture = try Fixture([[.file(long, "long")], [.bytes("placeholder", [])]])
        let fd = open(fixture.layers[1], O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        let created = odd.withUnsafeBufferPointer { buffer -> Int32 in
            var name = buffer.map { CChar(bitPattern: $0) }
            name.append(0)
            return openat(fd, name, O_CREAT | O_WRONLY, 0o644)
        }
        close(created)
        let entry = try fixture.lookup(long)
        #expect(try fixture.read(entry.node) == "long")
        let oddEntry = try fixture.fileSystem.lookup(parent: .root, name: try FileName(validating: odd))
        #expect(oddEntry.attributes.type == .regular)
        #expect(throws: Errno.nameTooLong) { try FileName(validating: Array((long + "X").utf8)) }
    }
}
