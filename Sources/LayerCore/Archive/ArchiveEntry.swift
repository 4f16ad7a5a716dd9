/// One entry (header) of a tar archive, as ``ArchiveWriter`` writes and ``ArchiveReader`` reads
/// it: the path and metadata; the content of a regular file travels separately.
///
/// Paths and link targets are raw bytes, never `String`: tar stores bytes, and OCI layers hold
/// non-UTF-8 names. Whiteouts (`.wh.NAME`) and opaque markers are ordinary empty regular files
/// here; ``Whiteout/ociMarker(for:)`` gives them their meaning.
public struct ArchiveEntry: Sendable, Hashable {
    /// The type of an entry.
    public enum Kind: Sendable, Hashable, CustomStringConvertible {
        case regular, directory, symlink, hardLink, characterDevice, blockDevice, fifo

        /// One letter, as the listing formats print it (f d l h c b p).
        public var letter: Character {
            switch self {
            case .regular: "f"
            case .directory: "d"
            case .symlink: "l"
            case .hardLink: "h"
            case .characterDevice: "c"
            case .blockDevice: "b"
            case .fifo: "p"
            }
        }

        /// The kind of a file of type `type`, or nil for sockets and unknown types (tar cannot
        /// store them).
        public init?(_ type: FileType) {
            switch type {
            case .regular: self = .regular
            case .directory: self = .directory
            case .symlink: self = .symlink
            case .characterDevice: self = .characterDevice
            case .blockDevice: self = .blockDevice
            case .fifo: self = .fifo
            case .socket, .unknown: return nil
            }
        }

        /// The file type an entry of this kind creates (a hard link creates no new type: regular).
        public var fileType: FileType {
            switch self {
            case .regular, .hardLink: .regular
            case .directory: .directory
            case .symlink: .symlink
            case .characterDevice: .characterDevice
            case .blockDevice: .blockDevice
            case .fifo: .fifo
            }
        }

        public var description: String {
            switch self {
            case .hardLink: "hard link"
            default: fileType.description
            }
        }
    }

    /// The path as stored: `etc/config`, `etc/` for a directory, `./` for the root. See
    /// ``normalizedPath()`` for the checked relative form.
    public var path: [UInt8]
    /// The entry's type.
    public var kind: Kind
    /// Permission bits including setuid, setgid and sticky (`mode & 07777`).
    public var permissions: UInt32
    /// Owner (numeric; names are not stored).
    public var userID: UInt32
    /// Group (numeric).
    public var groupID: UInt32
    /// Content size of a regular file; 0 for other kinds.
    public var size: Int64
    /// Modification time; the PAX format keeps nanoseconds.
    public var modificationTime: Timestamp
    /// A symlink's target, or the path of the entry a hard link links to; empty otherwise.
    public var linkTarget: [UInt8]
    /// Device major number (devices only).
    public var deviceMajor: UInt32
    /// Device minor number (devices only).
    public var deviceMinor: UInt32
    /// Extended attributes (PAX `SCHILY.xattr.NAME`), sorted by name.
    public var extendedAttributes: [ExtendedAttribute]

    /// An entry from its parts. Content (regular files) is written or read separately.
    public init(
        path: [UInt8], kind: Kind, permissions: UInt32 = 0o644, userID: UInt32 = 0, groupID: UInt32 = 0,
        size: Int64 = 0, modificationTime: Timestamp = Timestamp(seconds: 0, nanoseconds: 0),
        linkTarget: [UInt8] = [], deviceMajor: UInt32 = 0, deviceMinor: UInt32 = 0,
        extendedAttributes: [ExtendedAttribute] = []
    ) {
        self.path = path
        self.kind = kind
        self.permissions = permissions
        self.userID = userID
        self.groupID = groupID
        self.size = size
        self.modificationTime = modificationTime
        self.linkTarget = linkTarget
        self.deviceMajor = deviceMajor
        self.deviceMinor = deviceMinor
        self.extendedAttributes = extendedAttributes
    }

    /// The stored form of a relative path: `./` for the root, `path/` for a directory, `path`
    /// otherwise (the names OCI layers conventionally use).
    public static func storedPath(_ path: RelativePath, isDirectory: Bool) -> [UInt8] {
        if path.isRoot { return Array("./".utf8) }
        var bytes = path.bytes
        if isDirectory { bytes.append(0x2F) }
        return bytes
    }

    /// The longest symlink target a file system holds (`PATH_MAX` - 1): a longer one in an
    /// archive cannot be created, so readers refuse it rather than show it cut or empty.
    public static let maximumLinkTargetLength = 4095

    /// The longest stored path accepted (64 KiB): far deeper than any real tree, and more than
    /// `PATH_MAX`, since paths are resolved a run of components at a time; the bound keeps a
    /// hostile archive from making the reader build absurd paths.
    public static let maximumPathLength = 65_536

    /// The entry's path checked and normalised: a leading `./` and trailing `/` dropped, `.` and
    /// empty components skipped; the root is ``RelativePath/root``.
    ///
    /// - Throws: ``ArchivePathProblem`` for an absolute path, a `..` component, a NUL, a name
    ///   longer than 255 bytes or a path longer than ``maximumPathLength`` bytes.
    public func normalizedPath() throws(ArchivePathProblem) -> RelativePath {
        try ArchiveEntry.normalize(path)
    }

    /// Checks and normalises a path stored in an archive (an entry's path or a hard link's
    /// target). See ``normalizedPath()``.
    ///
    /// - Throws: ``ArchivePathProblem``.
    public static func normalize(_ bytes: [UInt8]) throws(ArchivePathProblem) -> RelativePath {
        if bytes.count > maximumPathLength { throw .pathTooLong }
        if bytes.first == 0x2F { throw .absolute }
        if bytes.contains(0) { throw .invalidName }
        var components: [FileName] = []
        for piece in bytes.split(separator: 0x2F, omittingEmptySubsequences: true) {
            if piece.elementsEqual([0x2E]) { continue }
            if piece.elementsEqual([0x2E, 0x2E]) { throw .parentReference }
            guard piece.count <= FileName.maxLength else { throw .nameTooLong }
            components.append(FileName(unchecked: Array(piece)))
        }
        return RelativePath(components: components)
    }
}

/// Why a path stored in an archive is refused.
public enum ArchivePathProblem: Error, Sendable, Hashable, CustomStringConvertible {
    /// The path starts with `/`.
    case absolute
    /// A component is `..`.
    case parentReference
    /// A component is longer than 255 bytes.
    case nameTooLong
    /// The path is longer than ``ArchiveEntry/maximumPathLength`` bytes.
    case pathTooLong
    /// The path contains a NUL byte.
    case invalidName

    public var description: String {
        switch self {
        case .absolute: "absolute path in the archive"
        case .parentReference: "path has a '..' component (refused: it could climb out of the root)"
        case .nameTooLong: "file name longer than 255 bytes"
        case .pathTooLong: "path longer than \(ArchiveEntry.maximumPathLength) bytes"
        case .invalidName: "path contains a NUL byte"
        }
    }
}

/// An error from libarchive or from the file behind an archive.
public struct ArchiveError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, in words (libarchive's message when it has one).
    public var message: String
    /// The underlying errno, if any.
    public var errno: Errno?
    /// Whether the compressed stream is damaged or cut short (a checksum mismatch, an invalid
    /// code, a truncation), as opposed to not being a layer at all.
    public var isDamage: Bool

    /// An error from its parts.
    public init(_ message: String, errno: Errno? = nil, isDamage: Bool = false) {
        self.message = message
        self.errno = errno
        self.isDamage = isDamage
    }

    public var description: String { message }
}

/// How an archive stream is compressed.
public enum ArchiveCompression: String, Sendable, CaseIterable, CustomStringConvertible {
    /// A plain tar.
    case none
    /// gzip (`.tar.gz`, media type `...tar+gzip`).
    case gzip
    /// Zstandard (`.tar.zst`, media type `...tar+zstd`).
    case zstd

    /// The compression a file name asks for: `.tar` none, `.tar.gz` / `.tgz` gzip, `.tar.zst` /
    /// `.tzst` zstd; nil for other names.
    public init?(fileName: String) {
        let lower = fileName.lowercased()
        if lower.hasSuffix(".tar") {
            self = .none
        } else if lower.hasSuffix(".tar.gz") || lower.hasSuffix(".tgz") {
            self = .gzip
        } else if lower.hasSuffix(".tar.zst") || lower.hasSuffix(".tzst") || lower.hasSuffix(".tar.zstd") {
            self = .zstd
        } else {
            return nil
        }
    }

    /// The OCI media type of a layer blob with this compression.
    public var mediaType: String {
        switch self {
        case .none: "application/vnd.oci.image.layer.v1.tar"
        case .gzip: "application/vnd.oci.image.layer.v1.tar+gzip"
        case .zstd: "application/vnd.oci.image.layer.v1.tar+zstd"
        }
    }

    public var description: String { rawValue }
}

/// What ``ArchiveWriter/finish()`` reports: the digests an image manifest and config need.
public struct ArchiveSummary: Sendable, Hashable {
    /// SHA-256 of the uncompressed tar (the image config's `rootfs.diff_ids` entry).
    public var diffID: SHA256Digest
    /// SHA-256 of the blob as written (the manifest's layer `digest`); equals ``diffID`` when
    /// uncompressed.
    public var digest: SHA256Digest
    /// Bytes of the blob as written (the manifest's layer `size`).
    public var size: Int64
    /// Bytes of the uncompressed tar.
    public var uncompressedSize: Int64
    /// Entries (headers) written, PAX extended headers not counted.
    public var entryCount: Int
    /// The compression of the blob.
    public var compression: ArchiveCompression
}
