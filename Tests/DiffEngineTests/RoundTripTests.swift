import DiffEngine
import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// Seeded random trees and random mutations: apply(A, diff(A, B)) must reproduce B exactly.
/// `LAYERDIFF_ROUNDTRIPS=N` sets the number of round trips (default 300), `LAYERDIFF_SEED=S`
/// the first seed (default 1); a failure prints the seed and the mutations to reproduce it.
@Suite("Random round trips", .tags(.medium), .serialized)
struct RoundTripTests {
    static var count: Int {
        ProcessInfo.processInfo.environment["LAYERDIFF_ROUNDTRIPS"].flatMap(Int.init) ?? 300
    }
    static var firstSeed: UInt64 {
        ProcessInfo.processInfo.environment["LAYERDIFF_SEED"].flatMap(UInt64.init) ?? 1
    }

    enum Way: CaseIterable {
        case tar, gzip, zstd, ociDirectory, overlayDirectory
    }

    /// One round trip; returns the differences (empty when exact).
    static func roundTrip(seed: UInt64, way: Way, in temp: TemporaryDirectory) throws -> [String] {
        let a = temp.url("a")
        let b = temp.url("b")
        var tree = RandomTree(seed: seed, root: a)
        tree.build(entries: 20 + Int(seed % 40))
        copyTree(a, b)
        var mutated = RandomTree(seed: seed &* 7919, root: b, prefix: "m")
        mutated.rescan()
        let log = mutated.mutate(1 + Int(seed % 8))
        var diff = LayerDiff(a: a, b: b)
        let layer: String
        switch way {
        case .tar: layer = temp.url("layer.tar"); diff.output = .archive(layer, .none)
        case .gzip: layer = temp.url("layer.tar.gz"); diff.output = .archive(layer, .gzip)
        case .zstd: layer = temp.url("layer.tar.zst"); diff.output = .archive(layer, .zstd)
        case .ociDirectory: layer = temp.url("layer"); diff.output = .directory(layer, .oci)
        case .overlayDirectory: layer = temp.url("layer"); diff.output = .directory(layer, .overlay)
        }
        _ = try diff.run()
        let result = temp.url("result")
        copyTree(a, result)
        try LayerApplier(root: result).apply(layer: layer, directoryFormat: way == .overlayDirectory ? .overlay : .oci)
        let differences = try TreeSnapshot(b).differences(to: TreeSnapshot(result))
        if !differences.isEmpty {
            print("round trip failed: seed \(seed), way \(way), mutations: \(log)")
        }
        return differences
    }

    @Test("apply(A, diff(A, B)) == B for seeded random trees and mutations")
    func randomRoundTrips() throws {
        let ways = Way.allCases.filter { $0 != .overlayDirectory || runningAsRoot }
        print("round trips: \(Self.count) from seed \(Self.firstSeed)")
        var failures = 0
        for index in 0..<Self.count {
            let seed = Self.firstSeed + UInt64(index)
            let temp = TemporaryDirectory(prefix: "layerdiff-rt")
            let differences = try Self.roundTrip(seed: seed, way: ways[index % ways.count], in: temp)
            if !differences.isEmpty {
                failures += 1
                Issue.record("seed \(seed): \(differences.prefix(10))")
                if failures >= 5 { break }
            }
        }
        #expect(failures == 0)
    }

    @Test("the round trip of a second diff is empty (B vs the result)")
    func secondDiffIsEmpty() throws {
        let temp = TemporaryDirectory(prefix: "layerdiff-rt")
        _ = try Self.roundTrip(seed: 4242, way: .gzip, in: temp)
        var changes: [Change] = []
        let result = try LayerDiff(a: temp.url("b"), b: temp.url("result")).run { changes.append($0) }
        #expect(changes.isEmpty, "\(changes.map(\.displayPath))")
        #expect(!result.summary.differs)
    }
}
