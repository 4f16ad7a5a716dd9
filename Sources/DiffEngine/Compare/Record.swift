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
/// layer, possibly still waiting for a content verdict or a hard-link decision.
///
/// Records are created and resolved on the consumer thread only, in output order.
final class Record {
    /// The path the record is about.
    let path: RelativePath
    /// The kind of change when the record reports one (entry records: added or changed).
    var kind: ChangeKind?
    /// For entry records: A's type for deletions, B's otherwise.
    var type: FileType
    /// What differs so far (content verdict pending when ``content`` is set).
    var aspects: ChangeAspects
    /// What goes to the layer when the record is emitted.
    let layer: LayerItem?
    /// Whether the layer needs the entry even if unchanged (below an opaque marker).
    let forced: Bool
    /// A pending content comparison.
    var content: ContentJob?
    /// Hard-link membership, when the inode has more than one link on either side.
    var link: LinkGroups.Member?
    /// Whether only the report is wanted (a deletion's `D` line; its whiteout is a separate record).
    let reportOnly: Bool
    /// Set once the decision is final: whether the record reports a change and whether the
    /// layer gets its item.
    private(set) var decision: (report: Bool, layer: Bool)?

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

    /// Whether the path changed by its own attributes or content (not counting link structure);
    /// nil while a content verdict is pending.
    func changedByItself(ignoringMtime: Bool) -> Bool? {
        if content != nil { return nil }
        guard let kind else { return false }
        if kind != .changed { return true }
        let relevant = ignoringMtime ? aspects.subtracting(.mtime) : aspects
        return !relevant.isEmpty
    }

    /// Applies a finished content comparison.
    func takeContentVerdict(different: Bool) {
        if different { aspects.insert(.content) }
        content = nil
    }

    /// Fixes the outcome.
    func decide(report: Bool, layer: Bool) { decision = (report, layer) }
}
