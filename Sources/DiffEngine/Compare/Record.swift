import LayerCore

/// What one record puts in the layer.
enum LayerItem {
    /// The B entry at the record's path (a hard link when an earlier entry has its inode).
    case entry(SideEntry)
    /// A whiteout deleting the record's path; the time is the parent's mtime in B.
    case whiteout(Timestamp)
    /// An opaque marker for the directory at the record's path; the time is its mtime in B.
    case opaque(Timestamp)
}

/// One step of the ordered output: a path with what to report about it and what to put in the
/// layer, possibly still waiting for a hard-link decision.
final class Record: @unchecked Sendable {
    // @unchecked Sendable: a record is created by one subtree job and handed to the consumer
    // only after that job finished (release/acquire on the job's flag); from then on only the
    // consumer thread touches it.
    /// The path the record is about.
    let path: RelativePath
    /// The kind of change when the record reports one (entry records: added or changed).
    var kind: ChangeKind?
    /// For entry records: A's type for deletions, B's otherwise.
    var type: FileType
    /// What differs.
    var aspects: ChangeAspects
    /// What goes to the layer when the record is emitted.
    let layer: LayerItem?
    /// Whether the layer needs the entry even if unchanged (below an opaque marker).
    let forced: Bool
    /// The inodes and link counts on both sides when either has more than one link (A is nil
    /// for a new path or a type change).
    var linkKeys: (a: (FileIdentity, UInt64)?, b: (FileIdentity, UInt64))?
    /// Hard-link membership, registered by the consumer in output order.
    var link: LinkGroups.Member?
    /// Whether only the report is wanted (a deletion's `D` line; its whiteout is a separate record).
    let reportOnly: Bool

    /// A record whose outcome is known or pending.
    init(
        path: RelativePath, kind: ChangeKind?, type: FileType, aspects: ChangeAspects = [], layer: LayerItem?,
        forced: Bool = false, reportOnly: Bool = false
    ) {
        self.path = path
        self.kind = kind
        self.type = type
        self.aspects = aspects
        self.layer = layer
        self.forced = forced
        self.reportOnly = reportOnly
    }

    /// The B entry of an entry record.
    var entry: SideEntry? {
        if case .entry(let entry) = layer { return entry }
        return nil
    }

    /// Whether the path changed by its own attributes or content (not counting link structure).
    func changedByItself(ignoringMtime: Bool) -> Bool? {
        guard let kind else { return false }
        if kind != .changed { return true }
        let relevant = ignoringMtime ? aspects.subtracting(.mtime) : aspects
        return !relevant.isEmpty
    }

}
