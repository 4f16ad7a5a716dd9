import Glibc

/// One entry of a directory with its `lstat`-style status (the entry itself, never what a
/// symlink points to).
public struct TreeEntry: Sendable, Hashable {
    /// The entry's name in its directory.
    public var name: FileName
    /// The entry's status (`fstatat(2)` with `AT_SYMLINK_NOFOLLOW`).
    public var status: FileStatus

    /// An entry from its parts.
    public init(name: FileName, status: FileStatus) {
        self.name = name
        self.status = status
    }
}

/// A depth-first walk of a directory tree that never follows a symlink and never leaves the tree
/// through one.
///
/// Every call is fd-relative: directories are opened one component at a time with
/// `O_NOFOLLOW | O_DIRECTORY` from their already open parent, entries are examined with
/// `fstatat(AT_SYMLINK_NOFOLLOW)`, and names are bytes (``FileName``). Directories are visited
/// before their contents (pre-order), and ``walk(_:leave:)`` reports each directory again after
/// its contents (post-order), which is where directory mtimes are restored. With
/// ``Options/sorted`` (the default) the entries of each directory come in bytewise name order,
/// so the walk order is the same on every machine. Memory is bounded by the tree's depth times
/// its widest directory: one sorted listing and one open descriptor per level.
///
/// A symlink is reported as a symlink; a mount point below the root is walked like any
/// directory unless ``Options/sameFileSystem`` is set.
public struct TreeWalker: Sendable {
    /// How the walk proceeds.
    public struct Options: Sendable {
        /// Entries of each directory in bytewise name order (otherwise file-system order).
        public var sorted: Bool
        /// Do not descend into directories on another file system than the root.
        public var sameFileSystem: Bool

        /// Options with their defaults: sorted, crossing mount points.
        public init(sorted: Bool = true, sameFileSystem: Bool = false) {
            self.sorted = sorted
            self.sameFileSystem = sameFileSystem
        }
    }

    /// What the visitor is shown for one entry (the root included).
    public struct Visit {
        /// The entry's path relative to the root; ``RelativePath/root`` for the root itself.
        public let path: RelativePath
        /// The entry's name, or nil for the root.
        public var name: FileName? { path.lastName }
        /// The entry's status.
        public let status: FileStatus
        /// The open directory that holds the entry (for the root: the root itself). Use it for
        /// fd-relative calls on the entry: `open(name, ...)`, `readLink(name)`,
        /// `extendedAttributes(of: name)`.
        public let parent: FileDescriptor
        /// For a directory entry: the directory itself, open `O_RDONLY | O_DIRECTORY`. Nil for
        /// other types.
        public let directory: FileDescriptor?
        /// Nesting depth: 0 for the root, 1 for its entries.
        public let depth: Int
    }

    /// What to do after visiting a directory.
    public enum Decision: Sendable {
        /// Walk the directory's entries.
        case descend
        /// Do not walk the directory's entries (no effect on other types).
        case skipChildren
    }

    /// The root directory, open `O_RDONLY | O_DIRECTORY`.
    public let root: FileDescriptor
    /// The root as the user named it, for messages (`rootfs2`).
    public let displayRoot: String
    /// How the walk proceeds.
    public let options: Options

    /// A walker over the directory open as `root`.
    ///
    /// - Parameters:
    ///   - root: the tree's root directory, open `O_RDONLY | O_DIRECTORY`.
    ///   - displayRoot: how error messages name the root.
    ///   - options: order and mount-point policy.
    public init(root: FileDescriptor, displayRoot: String, options: Options = Options()) {
        self.root = root
        self.displayRoot = displayRoot
        self.options = options
    }

    /// Opens the directory at `path` (a user-given path: symlinks in it are followed, as for any
    /// command-line argument) and returns a walker over it.
    ///
    /// - Throws: ``PathError`` naming `path` when it is missing, not a directory or unreadable.
    public init(path: String, options: Options = Options()) throws(PathError) {
        do {
            let fd = try FileDescriptor.open(path: path, flags: O_RDONLY | O_DIRECTORY)
            self.init(root: fd, displayRoot: path, options: options)
        } catch {
            throw PathError(path: path, errno: error, what: "directory")
        }
    }

    /// Walks the tree depth-first: `visit` for every entry (the root first), then `leave` for
    /// each directory after its entries (when it was descended into).
    ///
    /// - Parameters:
    ///   - visit: called for each entry, parents before children; returns whether to descend.
    ///   - leave: called after a directory's entries, children before parents.
    /// - Throws: a ``PathError`` naming the entry when a directory cannot be listed or opened or
    ///   an entry vanishes, or whatever the closures throw.
    public func walk(
        _ visit: (Visit) throws(PathError) -> Decision,
        leave: ((Visit) throws(PathError) -> Void)? = nil
    ) throws(PathError) {
        let rootStatus: FileStatus
        do {
            rootStatus = try root.status()
        } catch {
            throw PathError(path: displayRoot, errno: error, what: "directory")
        }
        let rootVisit = Visit(path: .root, status: rootStatus, parent: root, directory: root, depth: 0)
        guard try visit(rootVisit) == .descend else { return }
        try walkDirectory(rootVisit, rootDevice: rootStatus.device, visit, leave)
        try leave?(rootVisit)
    }

    private func walkDirectory(
        _ directoryVisit: Visit, rootDevice: UInt64,
        _ visit: (Visit) throws(PathError) -> Decision,
        _ leave: ((Visit) throws(PathError) -> Void)?
    ) throws(PathError) {
        guard let directory = directoryVisit.directory else { return }
        let entries: [TreeEntry]
        do {
            entries = try TreeWalker.entries(of: directory, sorted: options.sorted)
        } catch {
            throw self.error(directoryVisit.path, error, "cannot list directory")
        }
        for entry in entries {
            let path = directoryVisit.path.appending(entry.name)
            var child: FileDescriptor?
            if entry.status.type == .directory {
                do {
                    child = try directory.open(entry.name, flags: O_RDONLY | O_DIRECTORY)
                } catch {
                    throw self.error(path, error, "cannot open directory")
                }
            }
            let childVisit = Visit(
                path: path, status: entry.status, parent: directory, directory: child,
                depth: directoryVisit.depth + 1)
            let decision = try visit(childVisit)
            guard child != nil, decision == .descend else { continue }
            if options.sameFileSystem && entry.status.device != rootDevice { continue }
            try walkDirectory(childVisit, rootDevice: rootDevice, visit, leave)
            try leave?(childVisit)
        }
    }

    private func error(_ path: RelativePath, _ errno: Errno, _ what: String) -> PathError {
        PathError(path: display(path), reason: "\(what): \(errno)", errno: errno)
    }

    /// `displayRoot/path` for messages (the root alone for the root path).
    public func display(_ path: RelativePath) -> String {
        path.isRoot ? displayRoot : (displayRoot.hasSuffix("/") ? displayRoot : displayRoot + "/") + path.description
    }

    /// The entries of the directory open as `directory`, each with its status, optionally sorted
    /// by name bytewise. `.` and `..` are left out. An entry that vanishes between listing and
    /// `fstatat` is left out too (the directory changed under us; the listing is a snapshot).
    ///
    /// - Parameters:
    ///   - directory: a directory open `O_RDONLY | O_DIRECTORY`, at offset 0 (freshly opened).
    ///   - sorted: sort by name bytewise.
    /// - Throws: the `getdents64(2)` or `fstatat(2)` errno.
    /// - Wraps getdents64(2) and fstatat(2) with AT_SYMLINK_NOFOLLOW.
    public static func entries(of directory: FileDescriptor, sorted: Bool = true) throws(Errno) -> [TreeEntry] {
        let names = try names(of: directory, sorted: sorted)
        var entries: [TreeEntry] = []
        entries.reserveCapacity(names.count)
        for name in names {
            guard let status = try directory.statusIfPresent(of: name) else { continue }
            entries.append(TreeEntry(name: name, status: status))
        }
        return entries
    }

    /// The names in the directory open as `directory` (no `.` or `..`), optionally sorted
    /// bytewise. No per-entry system call is made.
    ///
    /// - Throws: the `getdents64(2)` errno.
    /// - Wraps getdents64(2).
    public static func names(of directory: FileDescriptor, sorted: Bool = true) throws(Errno) -> [FileName] {
        var names: [FileName] = []
        try DirectoryReader.forEachEntry(in: directory) { entry in names.append(entry.name) }
        if sorted { names.sort() }
        return names
    }
}
