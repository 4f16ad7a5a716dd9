import LayerCore

/// Where an entry is looked up in a layer once a redirect has moved it away from its merged path
/// (kernel overlayfs `redirect_dir`, and renamed metacopy files).
public enum LayerPath: Sendable, Hashable {
    /// Under this name in the same layer's directory of the parent (a relative redirect).
    case name(FileName)
    /// At these components from the layer's root (an absolute redirect).
    case absolute([FileName])

    /// The last component: the entry's own name in its layer directory.
    public var lastName: FileName? {
        switch self {
        case .name(let name): name
        case .absolute(let components): components.last
        }
    }

    /// The path being searched for, when every component is a name a lookup can reach (see
    /// ``Redirect/lookupable(_:)``); nil otherwise (no layer holds it).
    init?(validating path: SearchPath) {
        func name(_ bytes: [UInt8]) -> FileName? { (try? Redirect.lookupable(bytes)) ?? nil }
        switch path {
        case .name(let bytes):
            guard let valid = name(bytes) else { return nil }
            self = .name(valid)
        case .absolute(let components):
            var names: [FileName] = []
            for component in components {
                guard let valid = name(component) else { return nil }
                names.append(valid)
            }
            self = .absolute(names)
        }
    }

    /// The path of an entry the search reached (every component was looked up, so valid).
    init(reached path: SearchPath) {
        switch path {
        case .name(let name): self = .name(FileName(unchecked: name))
        case .absolute(let components): self = .absolute(components.map { FileName(unchecked: $0) })
        }
    }
}

/// A path being searched for, with components as a redirect stores them: checked only when a
/// lookup reaches them (see ``Redirect/lookupable(_:)``).
enum SearchPath: Equatable {
    /// A name in the parent's directory of each layer.
    case name([UInt8])
    /// Components from each layer's root.
    case absolute([[UInt8]])

    /// The last component.
    var last: [UInt8]? {
        switch self {
        case .name(let name): name
        case .absolute(let components): components.last
        }
    }

    /// The same path with its last component replaced by `name` (what a relative redirect does).
    func replacingLast(with name: [UInt8]) -> SearchPath {
        switch self {
        case .name: .name(name)
        case .absolute(let components): .absolute(components.dropLast() + [name])
        }
    }
}

/// A parsed redirect xattr value. Its components are kept as stored: one that is `.`, `..` or
/// longer than 255 bytes is only refused (`EACCES`) or found absent when a lookup reaches it, as
/// the kernel does (see ``Resolver``).
enum Redirect: Equatable {
    /// A new last name, in the same parent.
    case relative([UInt8])
    /// A path from the root of the lower layers.
    case absolute([[UInt8]])

    /// Parses a redirect value the way the kernel does: the value ends at its first NUL; an
    /// empty value, a relative one holding `/`, and an absolute one with an empty component
    /// (`//`, a trailing `/`, a lone `/`) are invalid.
    ///
    /// - Throws: `EINVAL` for an invalid value.
    init(parsing raw: [UInt8]) throws(Errno) {
        guard !raw.isEmpty else { throw .invalidArgument }
        let value = raw.prefix { $0 != 0 }
        if value.first == 0x2F {
            let pieces = value.dropFirst().split(separator: 0x2F, omittingEmptySubsequences: false)
            guard pieces.allSatisfy({ !$0.isEmpty }) else { throw .invalidArgument }
            self = .absolute(pieces.map { Array($0) })
        } else {
            guard !value.contains(0x2F) else { throw .invalidArgument }
            self = .relative(Array(value))
        }
    }

    /// A stored component as a name to look up: nil when it is longer than 255 bytes (no layer
    /// holds it: absent, as the kernel's `ENAMETOOLONG`).
    ///
    /// - Throws: `EACCES` for an empty name, `.` or `..` (the kernel refuses to look them up).
    static func lookupable(_ bytes: [UInt8]) throws(Errno) -> FileName? {
        if bytes.isEmpty || bytes == [0x2E] || bytes == [0x2E, 0x2E] { throw .permissionDenied }
        guard bytes.count <= FileName.maxLength else { return nil }
        return FileName(unchecked: bytes)  // no `/` (split on it) and no NUL (cut at the first)
    }
}

/// The lower file holding the data of a metacopy file (kernel overlayfs `metacopy=on`): the first
/// regular file below the metacopy one that is not itself metadata only.
public struct DataFile: Sendable {
    /// The layer holding the data.
    public var layer: LayerIndex
    /// How the file is reached from the merged entry's parent in `layer`: nil for the entry's own
    /// name in the parent's directory of that layer.
    public var path: LayerPath?
    /// The data file's status in `layer`.
    public var status: FileStatus
    /// The directory of `layer` that holds the data file.
    public var container: FileDescriptor
    /// The data file's name in `container`.
    public var name: FileName
}
