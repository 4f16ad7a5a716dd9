import LayerCore

/// The kind of a change, as `docker diff` prints it.
public enum ChangeKind: String, Sendable, Hashable, CaseIterable {
    /// The path exists in B only (`A`).
    case added
    /// The path exists in both and differs (`C`).
    case changed
    /// The path exists in A only (`D`); a deleted directory is one change.
    case deleted

    /// The letter of the text format.
    public var letter: Character {
        switch self {
        case .added: "A"
        case .changed: "C"
        case .deleted: "D"
        }
    }
}

/// What differs about a changed path.
public struct ChangeAspects: OptionSet, Sendable, Hashable {
    /// The bit set.
    public let rawValue: UInt16
    /// Aspects from their bit set.
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// The file type (a file became a directory, ...).
    public static let type = ChangeAspects(rawValue: 1 << 0)
    /// Permission bits (setuid, setgid, sticky included).
    public static let mode = ChangeAspects(rawValue: 1 << 1)
    /// uid or gid.
    public static let owner = ChangeAspects(rawValue: 1 << 2)
    /// Regular-file content (size or bytes).
    public static let content = ChangeAspects(rawValue: 1 << 3)
    /// Device number of a device node.
    public static let device = ChangeAspects(rawValue: 1 << 4)
    /// Symlink target.
    public static let target = ChangeAspects(rawValue: 1 << 5)
    /// Extended attributes.
    public static let xattrs = ChangeAspects(rawValue: 1 << 6)
    /// Modification time.
    public static let mtime = ChangeAspects(rawValue: 1 << 7)
    /// Hard-link structure only (the path joined or left a link group).
    public static let links = ChangeAspects(rawValue: 1 << 8)

    /// The aspects with their JSON names, in the order the JSON lists them.
    public static let named: [(ChangeAspects, String)] = [
        (.type, "type"), (.content, "content"), (.mode, "mode"), (.owner, "owner"), (.mtime, "mtime"),
        (.xattrs, "xattrs"), (.target, "target"), (.device, "device"), (.links, "links"),
    ]

    /// The JSON names of the aspects present.
    public var names: [String] { ChangeAspects.named.filter { contains($0.0) }.map(\.1) }
}

/// One reported change: a path of A or B and what differs.
public struct Change: Sendable, Hashable {
    /// Added, changed or deleted.
    public var kind: ChangeKind
    /// The path relative to the tree roots.
    public var path: RelativePath
    /// The type in B (for a deletion: the type in A).
    public var type: FileType
    /// The size in B of a regular file (nil for other types and deletions).
    public var size: Int64?
    /// What differs (empty for additions and deletions).
    public var aspects: ChangeAspects

    /// A change from its parts.
    public init(kind: ChangeKind, path: RelativePath, type: FileType, size: Int64?, aspects: ChangeAspects) {
        self.kind = kind
        self.path = path
        self.type = type
        self.size = size
        self.aspects = aspects
    }

    /// The path as `docker diff` shows it: `/` + the escaped relative path (the root is `/`).
    public var displayPath: String { path.isRoot ? "/" : "/" + path.description }
}

/// Totals of a diff run.
public struct DiffSummary: Sendable, Hashable {
    /// Changes per kind.
    public var counts: [ChangeKind: Int] = [:]
    /// Regular-file bytes in B of added and changed files, per kind.
    public var bytes: [ChangeKind: Int64] = [:]
    /// Entries written to the layer (0 when none is written).
    public var layerEntries = 0
    /// Whiteouts written to the layer.
    public var whiteouts = 0
    /// Opaque markers written to the layer.
    public var opaqueMarkers = 0
    /// Content bytes written to the layer.
    public var layerContentBytes: Int64 = 0
    /// Paths left out of the layer because it cannot represent them (``DiffOptions/skipUnrepresentable``).
    public var skipped: [String] = []
    /// Real files whose names start with `.wh.` written to an overlay-format layer directory
    /// (as displayed): an applier reading OCI markers would take them for whiteouts.
    public var markerLookalikes: [String] = []
    /// Entries examined (both sides).
    public var examined = 0
    /// Bytes read to compare content.
    public var hashedBytes: Int64 = 0

    /// Whether any change was found.
    public var differs: Bool { counts.values.contains { $0 > 0 } }

    /// The total number of changes.
    public var changeCount: Int { counts.values.reduce(0, +) }
}
