import Foundation
import LayerCore
import Synchronization
import Testing

@testable import OverlayFS

/// Seeds for randomized tests: `LAYERMOUNT_TEST_SEED` replays one, else fixed ones plus a fresh one.
func testSeeds() -> [UInt64] {
    if let text = ProcessInfo.processInfo.environment["LAYERMOUNT_TEST_SEED"], let seed = UInt64(text) {
        return [seed]
    }
    return [1, 2, 3, 42, 2024, UInt64.random(in: 0...UInt64.max)]
}

final class MessageLog: Sendable {
    let messages = Mutex<[String]>([])
    func append(_ message: String) { messages.withLock { $0.append(message) } }
    var count: Int { messages.withLock { $0.count } }
}

@Suite("Inode table")
struct InodeTableTests {
    static let rootIdentity = FileIdentity(device: 1, inode: 2)

    static func table(_ log: MessageLog = MessageLog()) -> InodeTable {
        InodeTable(
            root: NodeRecord(
                parent: .root, name: nil, layer: LayerIndex(0), type: .directory, identity: rootIdentity,
                layers: [LayerIndex(0)]),
            log: { log.append($0) })
    }

    /// A name for `inode`: short, or past the 23 bytes kept inline for every fifth one.
    static func name(_ inode: UInt64) -> FileName {
        FileName(unchecked: Array((inode % 5 == 0 ? "a-long-name-kept-outside-the-slot-\(inode)" : "n\(inode)").utf8))
    }

    static func record(parent: NodeID, inode: UInt64, type: FileType = .regular) -> NodeRecord {
        NodeRecord(
            parent: parent, name: name(inode), layer: LayerIndex(0), type: type,
            identity: FileIdentity(device: 1, inode: inode), layers: type == .directory ? [LayerIndex(0)] : [])
    }

    @Test func idsStartAtTwoAndHardLinksShareANode() throws {
        let table = Self.table()
        let a = try table.lookup(Self.record(parent: .root, inode: 10))
        let b = try table.lookup(Self.record(parent: .root, inode: 11))
        let link = try table.lookup(Self.record(parent: .root, inode: 10))
        #expect(a == NodeID(2))
        #expect(b == NodeID(3))
        #expect(link == a)
        #expect(table.lookupCount(of: a) == 2)
        #expect(table.checkInvariants().isEmpty)
    }

    @Test func unknownParentIsStale() {
        let table = Self.table()
        #expect(throws: Errno.stale) { try table.lookup(Self.record(parent: NodeID(99), inode: 5)) }
        #expect(throws: Errno.stale) { try table.record(of: NodeID(99)) }
    }

    @Test func forgetDropsAtZeroButKeepsParentsOfLiveChildren() throws {
        let table = Self.table()
        let dir = try table.lookup(Self.record(parent: .root, inode: 20, type: .directory))
        let child = try table.lookup(Self.record(parent: dir, inode: 21))
        #expect(table.forget(dir, count: 1).isEmpty)  // still the parent of `child`
        #expect(table.lookupCount(of: dir) == 0)
        let dropped = table.forget(child, count: 1).map(\.0)
        #expect(dropped == [child, dir])
        #expect(table.count == 1)
        // never reused
        #expect(try table.lookup(Self.record(parent: .root, inode: 20, type: .directory)) == NodeID(4))
        #expect(table.checkInvariants().isEmpty)
    }

    @Test func underflowIsLoggedAndClampedAndRootIsPinned() throws {
        let log = MessageLog()
        let table = Self.table(log)
        let node = try table.lookup(Self.record(parent: .root, inode: 30))
        #expect(table.forget(node, count: 5).map(\.0) == [node])
        #expect(log.count == 1)
        table.forget(.root, count: 10)
        table.forget(NodeID(12345), count: 1)
        #expect(try table.record(of: .root).type == .directory)
        #expect(log.count == 2)
        #expect(table.checkInvariants().isEmpty)
    }

    @Test func providerChangesKeepTheNode() throws {
        let table = Self.table()
        let node = try table.lookup(Self.record(parent: .root, inode: 40))
        let other = try table.lookup(Self.record(parent: .root, inode: 41))
        let upper = FileIdentity(device: 2, inode: 900)
        try table.setProvider(of: node, layer: LayerIndex(3), identity: upper, layers: [])
        #expect(try table.record(of: node).layer == LayerIndex(3))
        #expect(try table.record(of: node).identity == upper)
        #expect(table.lookupCount(of: node) == 1)
        // the new identity finds the node, the old one no longer does
        var copied = Self.record(parent: .root, inode: 0)
        copied.identity = upper
        #expect(try table.lookup(copied) == node)
        #expect(try table.lookup(Self.record(parent: .root, inode: 40)) != node)
        #expect(throws: Errno.exists) {
            try table.setProvider(of: other, layer: LayerIndex(3), identity: upper, layers: [])
        }
        #expect(table.checkInvariants().isEmpty)
    }

    /// Random lookups (with repeated identities: hard links), forgets (sometimes too many) and
    /// releases against a model of the kernel's counts; invariants checked after every step.
    @Test(arguments: testSeeds())
    func randomSequencesMatchTheModel(seed: UInt64) throws {
        print("InodeTable random sequence seed: \(seed) (replay with LAYERMOUNT_TEST_SEED=\(seed))")
        var random = SeededGenerator(seed: seed)
        let table = Self.table()
        struct ModelNode {
            var parent: NodeID
            var identity: UInt64
            var lookups: UInt64
            var isDirectory: Bool
        }
        var model: [NodeID: ModelNode] = [:]
        var highest: UInt64 = 1
        func children(_ id: NodeID) -> Int { model.values.filter { $0.parent == id }.count }
        for step in 0..<3000 {
            let choice = Int.random(in: 0..<100, using: &random)
            if choice < 55 {
                let directories = [NodeID.root] + model.filter { $0.value.isDirectory }.map(\.key)
                let parent = directories[Int.random(in: 0..<directories.count, using: &random)]
                let identity = UInt64.random(in: 100..<400, using: &random)
                let isDirectory = identity % 3 == 0
                let id = try table.lookup(
                    Self.record(parent: parent, inode: identity, type: isDirectory ? .directory : .regular))
                if let existing = model.first(where: { $0.value.identity == identity }) {
                    #expect(id == existing.key, "seed \(seed) step \(step): identity must map to its node")
                    model[id]?.lookups += 1
                } else {
                    #expect(id.rawValue > highest, "seed \(seed) step \(step): IDs must never be reused")
                    highest = id.rawValue
                    model[id] = ModelNode(parent: parent, identity: identity, lookups: 1, isDirectory: isDirectory)
                }
            } else if choice < 97, let (id, node) = model.randomElement(using: &random) {
                let count = choice < 95 ? UInt64.random(in: 1...max(1, node.lookups), using: &random) : node.lookups + 2
                table.forget(id, count: count)
                model[id]?.lookups = node.lookups >= count ? node.lookups - count : 0
                var current = id
                while current != .root, let node = model[current], node.lookups == 0, children(current) == 0 {
                    model[current] = nil
                    current = node.parent
                }
            } else if choice == 99 {
                table.releaseAll()
                model = [:]
            }
            let problems = table.checkInvariants()
            #expect(problems.isEmpty, "seed \(seed) step \(step): \(problems)")
            #expect(table.count == model.count + 1, "seed \(seed) step \(step)")
            for (id, node) in model {
                #expect(table.lookupCount(of: id) == node.lookups, "seed \(seed) step \(step) \(id)")
                let record = try table.record(of: id)
                #expect(record.name == Self.name(node.identity) && record.parent == node.parent, "seed \(seed)")
            }
            if !problems.isEmpty { return }
        }
    }
}

@Suite("LRU cache")
struct LRUCacheTests {
    @Test func evictsOldestFirstAndTouchReorders() {
        var cache = LRUCache<Int, String>(capacity: 3)
        #expect(cache.insert("a", for: 1).isEmpty)
        #expect(cache.insert("b", for: 2).isEmpty)
        #expect(cache.insert("c", for: 3).isEmpty)
        #expect(cache.get(1) == "a")
        #expect(cache.insert("d", for: 4) == ["b"])
        #expect(cache.peek(2) == nil)
        #expect(cache.insert("big", for: 5, cost: 3) == ["c", "a", "d"])
        #expect(cache.count == 1)
        #expect(cache.isConsistent())
    }

    @Test(arguments: testSeeds())
    func randomOperationsMatchAModel(seed: UInt64) {
        print("LRUCache random sequence seed: \(seed)")
        var random = SeededGenerator(seed: seed)
        var cache = LRUCache<Int, Int>(capacity: 50)
        var model: [Int] = []  // keys, oldest first
        var values: [Int: Int] = [:]
        for step in 0..<5000 {
            let key = Int.random(in: 0..<80, using: &random)
            switch Int.random(in: 0..<3, using: &random) {
            case 0:
                let got = cache.get(key)
                #expect(got == values[key], "seed \(seed) step \(step)")
                if got != nil {
                    model.removeAll { $0 == key }
                    model.append(key)
                }
            case 1:
                let value = Int.random(in: 0..<1000, using: &random)
                _ = cache.insert(value, for: key)
                model.removeAll { $0 == key }
                model.append(key)
                values[key] = value
                while model.count > 50 { values[model.removeFirst()] = nil }
            default:
                #expect(cache.remove(key) == values[key], "seed \(seed) step \(step)")
                model.removeAll { $0 == key }
                values[key] = nil
            }
            #expect(cache.isConsistent(), "seed \(seed) step \(step)")
            #expect(cache.count == model.count, "seed \(seed) step \(step)")
        }
    }
}
