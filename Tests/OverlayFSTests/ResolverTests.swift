import LayerCore
import OverlayFS
import TestSupport
import Testing

@Suite("Resolver policy on temp-dir layers")
struct ResolverTests {
    /// Builds layers (bottom first) from steps and returns a resolver over them.
    static func stack(_ layers: [[LayerStep]], format: WhiteoutFormat, in temp: TemporaryDirectory) throws -> Resolver {
        var paths: [String] = []
        for (index, steps) in layers.enumerated() {
            let path = temp.url("l\(index + 1)")
            LayerBuilder.apply([.dir("")] + steps, in: path)
            paths.append(path)
        }
        return Resolver(stack: try LayerStack(paths: paths, format: format))
    }

    static func names(_ resolver: Resolver, _ path: String) throws -> [String] {
        var dirs = try resolver.rootDirectories()
        for component in path.split(separator: "/") {
            guard case .found(let entry) = try resolver.lookup(try FileName(String(component)), in: dirs) else {
                Issue.record("\(component) not found")
                return []
            }
            dirs = entry.directories
        }
        return try resolver.list(dirs).map(\.name.description).sorted()
    }

    @Test(arguments: [WhiteoutFormat.oci, .overlay])
    func whiteoutHidesLowerOnly(format: WhiteoutFormat) throws {
        let temp = TemporaryDirectory()
        let resolver = try Self.stack(
            [
                [.file("a", "1"), .file("b", "2"), .dir("d"), .file("d/x", "x")],
                [.whiteout("a", format), .whiteout("d", format)],
                [.file("a", "again")],
            ], format: format, in: temp)
        #expect(try Self.names(resolver, "") == ["a", "b"])
        let root = try resolver.rootDirectories()
        guard case .found(let a) = try resolver.lookup(try FileName("a"), in: root) else {
            Issue.record("a must be visible (re-created above its whiteout)")
            return
        }
        #expect(a.layer == LayerIndex(2))
        guard case .whitedOut(let by) = try resolver.lookup(try FileName("d"), in: root) else {
            Issue.record("d must be whited out")
            return
        }
        #expect(by == LayerIndex(1))
    }

    @Test(arguments: [WhiteoutFormat.oci, .overlay])
    func opaqueDirectoryStopsMerge(format: WhiteoutFormat) throws {
        let temp = TemporaryDirectory()
        let resolver = try Self.stack(
            [
                [.file("d/low", "l"), .file("m/low", "l")],
                [.opaque("d", format), .file("d/mid", "m"), .file("m/mid", "m")],
                [.file("d/top", "t")],
            ], format: format, in: temp)
        #expect(try Self.names(resolver, "d") == ["mid", "top"])
        #expect(try Self.names(resolver, "m") == ["low", "mid"])
        #expect(try Self.names(resolver, "") == ["d", "m"])
    }

    @Test func typesShadowWithoutMerging() throws {
        let temp = TemporaryDirectory()
        let resolver = try Self.stack(
            [
                [.file("f2d", "file"), .file("d2f/child", "c")],
                [.file("f2d/new", "n"), .file("d2f", "now a file")],
            ], format: .auto, in: temp)
        #expect(try Self.names(resolver, "f2d") == ["new"])
        guard case .found(let entry) = try resolver.lookup(try FileName("d2f"), in: try resolver.rootDirectories())
        else {
            Issue.record("d2f missing")
            return
        }
        #expect(entry.status.type == .regular)
        #expect(entry.directories.isEmpty)
    }

    @Test func markersNeverListedAndCharDeviceIsNotAWhiteoutUnlessZero() throws {
        let temp = TemporaryDirectory()
        let resolver = try Self.stack(
            [
                [.file("a", "1"), .file("b", "2")],
                [.whiteout("a", .oci), .charDevice("null", major: 1, minor: 3), .opaque("", .oci)],
            ], format: .auto, in: temp)
        // the opaque marker on a layer root is ignored, as the kernel does
        #expect(try Self.names(resolver, "") == ["b", "null"])
    }
}

@Suite("Resolver lookups of listed entries")
struct ResolverListedLookupTests {
    /// A lookup that skips the layers above the one a listing named gives what a full lookup
    /// gives, for every entry of every directory, on random stacks.
    @Test(arguments: [WhiteoutFormat.oci, .overlay], [UInt64(7), 11, 23, 99])
    func listedLookupEqualsFullLookup(format: WhiteoutFormat, seed: UInt64) throws {
        let temp = TemporaryDirectory()
        var random = SeededGenerator(seed: seed)
        var layers: [[LayerStep]] = []
        for _ in 0..<4 { layers.append(RandomStack.layer(&random, format: format)) }
        let resolver = try ResolverTests.stack(layers, format: format, in: temp)
        var pending = [try resolver.rootDirectories()]
        var checked = 0
        while let directories = pending.popLast() {
            for entry in try resolver.list(directories) {
                let full = try resolver.lookup(entry.name, in: directories)
                let listed = try resolver.lookup(entry.name, in: directories, listedIn: entry.layer)
                guard case .found(let a) = full, case .found(let b) = listed else {
                    Issue.record("seed \(seed): \(entry.name) listed but not found")
                    continue
                }
                #expect(a.layer == b.layer && a.layer == entry.layer, "seed \(seed): \(entry.name)")
                #expect(a.status.identity == b.status.identity)
                #expect(a.directories.map(\.layer) == b.directories.map(\.layer), "seed \(seed): \(entry.name)")
                if !a.directories.isEmpty { pending.append(a.directories) }
                checked += 1
            }
        }
        #expect(checked > 0)
    }
}
