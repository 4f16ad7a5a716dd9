import DiffEngine
import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// The real Debian pair from ../shared/corpus/make-layers.sh (rootfs1 = debootstrap, rootfs2 =
/// after `apt-get install python3`, layer2 = the kernel overlay upper dir of that step), under
/// `$LAYERMOUNT_CORPUS` (default /var/tmp/layermount-corpus), built on first use.
@Suite("Real rootfs pair", .tags(.large), .serialized)
struct RealPairTests {

    @Test("diff(rootfs1, rootfs2) round-trips exactly")
    func roundTrip() throws {
        let corpus = try RealCorpus.ensure()
        let temp = TemporaryDirectory(prefix: "layerdiff-real")
        var diff = LayerDiff(a: corpus + "/rootfs1", b: corpus + "/rootfs2")
        diff.output = .archive(temp.url("layer2.tar.zst"), .zstd)
        let result = try diff.run()
        print(
            "real pair: \(result.summary.changeCount) changes, \(result.summary.layerEntries) layer entries, diff_id \(result.archive?.diffID.description ?? "-")"
        )
        copyTree(corpus + "/rootfs1", temp.url("result"))
        try LayerApplier(root: temp.url("result")).apply(layer: temp.url("layer2.tar.zst"))
        let differences = try TreeSnapshot(corpus + "/rootfs2").differences(to: TreeSnapshot(temp.url("result")))
        #expect(differences == [], "\(differences.prefix(20))")
    }

    @Test("the overlay upper dir layer2 gives exactly the changes of the full diff")
    func upperMatchesFull() throws {
        let corpus = try RealCorpus.ensure()
        var full: [Change] = []
        _ = try LayerDiff(a: corpus + "/rootfs1", b: corpus + "/rootfs2").run { full.append($0) }
        var overlay = LayerDiff(a: corpus + "/rootfs1", b: corpus + "/layer2")
        overlay.upperFormat = .overlay
        var upper: [Change] = []
        let result = try overlay.run { upper.append($0) }
        #expect(upper == full)
        #expect(result.summary.examined < 3 * 1704)
    }

    /// layer3 has opaque directories (`var/cache/apt`, whose subdirectory `archives` lost its
    /// `lock` file): the deletions below them must be in the layer too, in both marker formats.
    @Test("the upper dirs layer3 and layer3-oci over rootfs2 round-trip to rootfs3, as the full diff does")
    func upperWithOpaqueDirectories() throws {
        let corpus = try RealCorpus.ensure()
        let temp = TemporaryDirectory(prefix: "layerdiff-real")
        var full: [Change] = []
        var fullDiff = LayerDiff(a: corpus + "/rootfs2", b: corpus + "/rootfs3")
        fullDiff.output = .archive(temp.url("full.tar"), .none)
        let fullResult = try fullDiff.run { full.append($0) }
        for (layer, format) in [("layer3", WhiteoutFormat.overlay), ("layer3-oci", .oci)] {
            var overlay = LayerDiff(a: corpus + "/rootfs2", b: corpus + "/" + layer)
            overlay.upperFormat = format
            overlay.output = .archive(temp.url(layer + ".tar"), .none)
            var upper: [Change] = []
            let result = try overlay.run { upper.append($0) }
            #expect(upper == full, "\(layer)")
            #expect(result.summary.layerEntries == fullResult.summary.layerEntries, "\(layer)")
            #expect(result.archive?.diffID == fullResult.archive?.diffID, "\(layer)")
            copyTree(corpus + "/rootfs2", temp.url("result-" + layer))
            try LayerApplier(root: temp.url("result-" + layer)).apply(layer: temp.url(layer + ".tar"))
            let differences = try TreeSnapshot(corpus + "/rootfs3").differences(
                to: TreeSnapshot(temp.url("result-" + layer)))
            #expect(differences == [], "\(layer): \(differences.prefix(20))")
        }
    }

    /// How our layer differs from layer2 (the upper dir the kernel wrote), and why:
    /// - layer2 carries copy-up noise: parent directories whose own metadata did not change and
    ///   files opened for writing that ended identical (content and mtime); we emit neither;
    /// - layer2 deletes with one kernel whiteout per file; where that is smaller we use one
    ///   opaque marker and re-send the few children that stay (apt's archives/ and lists/);
    /// - layer2 marks the directories it created opaque (35 xattrs); a new directory needs no
    ///   marker in an OCI layer;
    /// - our layer has the root entry because the root's mtime changed (a layer directory always
    ///   has its root).
    /// Every change of ours is in layer2 (or under one of its opaque directories), never more.
    @Test("our layer against the real layer2: only copy-up noise and marker form differ")
    func againstRealLayer() throws {
        let corpus = try RealCorpus.ensure()
        let temp = TemporaryDirectory(prefix: "layerdiff-real")
        var diff = LayerDiff(a: corpus + "/rootfs1", b: corpus + "/rootfs2")
        diff.output = .directory(temp.url("ours"), .overlay)
        let result = try diff.run()
        let ours = try Self.paths(temp.url("ours"))
        let theirs = try Self.paths(corpus + "/layer2")
        let onlyOurs = ours.entries.subtracting(theirs.entries)
        let onlyTheirs = theirs.entries.subtracting(ours.entries)
        print(
            "real pair vs layer2: ours \(ours.entries.count) entries, \(ours.whiteouts.count) whiteouts, \(ours.opaque.count) opaque; layer2 \(theirs.entries.count) entries, \(theirs.whiteouts.count) whiteouts, \(theirs.opaque.count) opaque"
        )
        print("  only in layer2 (copy-up noise): \(onlyTheirs.sorted())")
        print("  only in ours: \(onlyOurs.sorted())")
        print("  our opaque dirs: \(ours.opaque.sorted())")
        // Every entry we emit is one the overlay wrote too.
        #expect(onlyOurs.isEmpty)
        // What layer2 has beyond ours carries no change: identical in rootfs1 and rootfs2.
        var noise: [String] = []
        _ = try LayerDiff(a: corpus + "/rootfs1", b: corpus + "/rootfs2").run { noise.append($0.path.description) }
        #expect(onlyTheirs.allSatisfy { !noise.contains($0) })
        // Each kernel whiteout is one of ours or lies in a directory we made opaque.
        for path in theirs.whiteouts {
            let parent = (path as NSString).deletingLastPathComponent
            #expect(ours.whiteouts.contains(path) || ours.opaque.contains(parent), "\(path)")
        }
        #expect(result.summary.layerEntries <= theirs.entries.count + theirs.whiteouts.count)
    }

    struct Paths {
        var entries = Set<String>()
        var whiteouts = Set<String>()
        var opaque = Set<String>()
    }

    /// The entries, whiteouts (char 0/0) and opaque directories of an overlay-format layer dir.
    static func paths(_ root: String) throws -> Paths {
        var paths = Paths()
        try TreeWalker(path: root).walk { visit in
            guard let name = visit.name else { return .descend }
            let path = visit.path.description
            if Whiteout.isOverlayWhiteout(visit.status) {
                paths.whiteouts.insert(path)
            } else {
                paths.entries.insert(path)
            }
            if visit.status.type == .directory,
                let value = try? visit.parent.extendedAttribute(Array("trusted.overlay.opaque".utf8), of: name),
                Whiteout.isOpaqueValue(value)
            {
                paths.opaque.insert(path)
            }
            return .descend
        }
        return paths
    }
}
