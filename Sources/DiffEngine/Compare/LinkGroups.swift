import LayerCore

/// Hard-link structure: decides which paths of multi-link inodes must be (re)emitted so that
/// applying the layer gives B's link groups exactly, and no more.
///
/// After applying, a path the layer does not carry keeps its inode from A, shared with the
/// other A paths of that inode the layer does not carry either; every path the layer carries
/// gets a fresh inode, shared with the layer entries linked to it. So, with E the set of
/// emitted paths:
/// - a B link group with one emitted member is emitted whole (its first path as a file, the
///   others as hard links to it): this covers a new name joining a group from A;
/// - for a path p not emitted, its B group must equal its A group minus E and minus the paths
///   gone from B. When an A group falls apart into several B groups (a link was split), the
///   largest part is kept (ties: the part with the smaller first path) and the others emitted;
///   when a B group gathers paths of several A inodes, it is emitted.
///
/// Removing a name from a group therefore emits nothing, and changing one member re-sends the
/// group. A component (the paths connected through shared A or B inodes) is decided once all
/// its inodes have been seen as many times as their link counts say (or the walk is over), and
/// every member's own verdict (attributes, content) is known.
final class LinkGroups {
    /// One B path whose inode has more than one link on either side.
    final class Member {
        /// The record of the path.
        let record: Record
        /// The path's inode in A, or nil when the path is new or changed type (it is emitted).
        let aKey: FileIdentity?
        /// The path's inode in B.
        let bKey: FileIdentity
        /// Whether the path must be in the layer; set when its component is resolved.
        var emitted: Bool?

        init(record: Record, aKey: FileIdentity?, bKey: FileIdentity) {
            self.record = record
            self.aKey = aKey
            self.bKey = bKey
        }
    }

    /// All paths of one inode on one side that the walk has met.
    private final class Group {
        let expected: UInt64
        var seen: UInt64 = 0
        var members: [Member] = []
        init(expected: UInt64) { self.expected = expected }
    }

    private var aGroups: [FileIdentity: Group] = [:]
    private var bGroups: [FileIdentity: Group] = [:]
    private let ignoringMtime: Bool
    /// Whether A paths the walk never meets may still be in B unchanged (an overlay diff does
    /// not look at untouched lower paths). Then an A group not seen whole is settled
    /// conservatively: its paths are emitted.
    private let unseenLowerMayRemain: Bool
    /// Set when the walk is over: every group is as complete as it will get.
    var walkFinished = false

    /// Bookkeeping for one diff.
    init(ignoringMtime: Bool, unseenLowerMayRemain: Bool) {
        self.ignoringMtime = ignoringMtime
        self.unseenLowerMayRemain = unseenLowerMayRemain
    }

    /// Registers the B path of `record` (inode `b` with `bLinks` links), which had inode `a`
    /// with `aLinks` links in A (nil when the path is new or changed type).
    func track(record: Record, a: (FileIdentity, UInt64)?, b: (FileIdentity, UInt64)) -> Member {
        let member = Member(record: record, aKey: a?.0, bKey: b.0)
        let bGroup = group(&bGroups, b.0, b.1)
        bGroup.seen += 1
        bGroup.members.append(member)
        if let a {
            let aGroup = group(&aGroups, a.0, a.1)
            aGroup.seen += 1
            aGroup.members.append(member)
        }
        return member
    }

    /// Counts an A path that is not in B (deleted, or replaced by another type) towards its
    /// group's completeness.
    func sawLowerOnly(_ a: FileIdentity, links: UInt64) {
        group(&aGroups, a, links).seen += 1
    }

    private func group(_ table: inout [FileIdentity: Group], _ key: FileIdentity, _ links: UInt64) -> Group {
        if let existing = table[key] { return existing }
        let created = Group(expected: links)
        table[key] = created
        return created
    }

    /// Tries to decide `member`'s component; true when `member.emitted` is set afterwards.
    func resolve(_ member: Member) -> Bool {
        if member.emitted != nil { return true }
        // Collect the component.
        var members: [Member] = []
        var seenMembers = Set<ObjectIdentifier>()
        var aKeys = Set<FileIdentity>()
        var bKeys = Set<FileIdentity>()
        var stack = [member]
        while let next = stack.popLast() {
            guard seenMembers.insert(ObjectIdentifier(next)).inserted else { continue }
            members.append(next)
            if bKeys.insert(next.bKey).inserted, let group = bGroups[next.bKey] {
                stack.append(contentsOf: group.members)
            }
            if let aKey = next.aKey, aKeys.insert(aKey).inserted, let group = aGroups[aKey] {
                stack.append(contentsOf: group.members)
            }
        }
        if !walkFinished {
            for key in bKeys where (bGroups[key]?.seen ?? 0) < (bGroups[key]?.expected ?? 0) { return false }
            for key in aKeys where (aGroups[key]?.seen ?? 0) < (aGroups[key]?.expected ?? 0) { return false }
        }
        var emitted: [ObjectIdentifier: Bool] = [:]
        for item in members {
            guard let changed = item.record.changedByItself(ignoringMtime: ignoringMtime) else { return false }
            emitted[ObjectIdentifier(item)] = changed || item.record.forced || item.aKey == nil
        }
        func isEmitted(_ m: Member) -> Bool { emitted[ObjectIdentifier(m)] ?? true }
        func emitGroup(_ key: FileIdentity) -> Bool {
            var changed = false
            for m in bGroups[key]?.members ?? [] where !isEmitted(m) {
                emitted[ObjectIdentifier(m)] = true
                changed = true
            }
            return changed
        }
        var changed = true
        while changed {
            changed = false
            // A B group with an emitted member is emitted whole.
            for key in bKeys where (bGroups[key]?.members ?? []).contains(where: isEmitted) {
                if emitGroup(key) { changed = true }
            }
            // A B group gathering several A inodes is emitted.
            for key in bKeys {
                let kept = (bGroups[key]?.members ?? []).filter { !isEmitted($0) }
                if Set(kept.compactMap(\.aKey)).count > 1, emitGroup(key) { changed = true }
            }
            // An A group split over several B groups keeps its largest part.
            for key in aKeys {
                guard let group = aGroups[key] else { continue }
                let kept = group.members.filter { !isEmitted($0) }
                if kept.isEmpty { continue }
                if unseenLowerMayRemain && group.seen < group.expected {
                    for m in kept where emitGroup(m.bKey) { changed = true }
                    continue
                }
                var parts: [FileIdentity: [Member]] = [:]
                for m in kept { parts[m.bKey, default: []].append(m) }
                if parts.count < 2 { continue }
                let best = parts.max { lhs, rhs in
                    if lhs.value.count != rhs.value.count { return lhs.value.count < rhs.value.count }
                    let l = lhs.value.map(\.record.path).min() ?? .root
                    let r = rhs.value.map(\.record.path).min() ?? .root
                    return r < l
                }
                for (bKey, _) in parts where bKey != best?.key {
                    if emitGroup(bKey) { changed = true }
                }
            }
        }
        for item in members { item.emitted = isEmitted(item) }
        return member.emitted != nil
    }
}
