import LayerCore

/// The change-detection order for one path present on both sides, up to (not including)
/// content: type, mode, owner, size, device number, symlink target, xattrs, mtime.
enum EntryComparison {
    /// The aspects in which `a` and `b` differ, content excepted (a size difference is reported
    /// as `.content`). `.type` alone when the types differ (nothing else is comparable then).
    static func aspects(_ a: SideEntry, _ b: SideEntry) -> ChangeAspects {
        if a.type != b.type { return .type }
        var aspects: ChangeAspects = []
        let sa = a.status
        let sb = b.status
        if sa.permissions != sb.permissions { aspects.insert(.mode) }
        if sa.userID != sb.userID || sa.groupID != sb.groupID { aspects.insert(.owner) }
        switch b.type {
        case .regular:
            if sa.size != sb.size { aspects.insert(.content) }
        case .characterDevice, .blockDevice:
            if sa.specialDevice != sb.specialDevice { aspects.insert(.device) }
        case .symlink:
            if a.linkTarget != b.linkTarget { aspects.insert(.target) }
        default: break
        }
        if a.attributes != b.attributes { aspects.insert(.xattrs) }
        if sa.modificationTime != sb.modificationTime { aspects.insert(.mtime) }
        return aspects
    }
}
