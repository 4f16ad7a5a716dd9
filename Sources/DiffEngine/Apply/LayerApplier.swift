import Glibc
import LayerCore

/// Applies an OCI layer onto a root directory with the image-spec semantics, never writing
/// outside the root.
///
/// 1. The layer is read once to check it: every path is normalised (absolute names, `..`,
///    names over 255 bytes, paths over 64 KiB are refused), hard-link targets likewise, a
///    path below a symlink the layer itself creates is refused, whiteouts of `.` or `..` are
///    refused, and device nodes are refused unless running as root. Nothing is written yet.
/// 2. Whiteouts and opaque markers are applied to the lower content (what ROOT holds now).
/// 3. The entries are applied in layer order: a directory over a directory keeps it and takes
///    the new owner, mode and exact xattr set; anything else removes what is there and creates
///    the entry (`O_EXCL | O_NOFOLLOW`); hard links are linked to their target inside ROOT.
/// 4. Directory mtimes are set last: the layer's directories get theirs, and directories that
///    were only touched as a side effect (an entry below them created or removed) get their
///    old mtime back. Without root, directories get their permissions then too: until the end
///    they stay open to their owner, so that a read-only directory (a 0555 `/usr`) can be filled.
///
/// Every path is walked one component at a time from ROOT's descriptor with `O_NOFOLLOW`, so a
/// symlink already in ROOT (`etc -> /etc`) is never followed: an entry below it is refused.
public final class LayerApplier {
    private let root: FileDescriptor
    private let rootPath: String
    private var touched: [RelativePath: Timestamp] = [:]
    private var directoryTimes: [(RelativePath, Timestamp)] = []
    /// Without root: the permissions to give directories at the end, for those the layer makes
    /// or changes (kept open for their owner meanwhile) and those of ROOT it opened up to
    /// change them (see ``FileMaker/openUp(_:in:)``).
    private var directoryModes: [RelativePath: UInt32] = [:]
    private var cachedParent: (path: RelativePath, directory: FileDescriptor)?

    /// An applier onto the directory at `root`.
    ///
    /// - Throws: ``DiffError`` when `root` is not an accessible directory.
    public init(root: String) throws(DiffError) {
        rootPath = root
        do {
            self.root = try FileDescriptor.open(path: root, flags: O_RDONLY | O_DIRECTORY)
        } catch {
            throw DiffError(PathError(path: root, errno: error, what: "root"))
        }
    }

    /// Applies the layer at `layer`: a tarball (any compression) or a layer directory whose
    /// markers are read per `directoryFormat`.
    ///
    /// - Throws: ``DiffError`` naming the layer entry or ROOT path at fault.
    public func apply(layer: String, directoryFormat: WhiteoutFormat = .auto) throws(DiffError) {
        var status = stat()
        guard stat(layer, &status) == 0 else {
            throw DiffError(PathError(path: layer, errno: .current, what: "layer"))
        }
        let source: LayerSource
        if FileType(mode: UInt32(status.st_mode)) == .directory {
            try checkSeparate(layerDirectory: layer)
            source = DirectoryLayerSource(path: layer, format: directoryFormat)
        } else {
            source = try TarLayerSource(path: layer)
        }
        try apply(source)
    }

    /// Refuses a layer directory that is ROOT, lies inside ROOT or holds ROOT: applying it would
    /// rewrite the files it is reading (`apply X X` truncated every file) or copy itself into
    /// itself without end. Compared by identity (device and inode, walking up with `..`), so
    /// symlinks and bind mounts do not hide it.
    ///
    /// - Throws: ``DiffError`` naming the layer.
    private func checkSeparate(layerDirectory layer: String) throws(DiffError) {
        let directory: FileDescriptor
        do {
            directory = try FileDescriptor.open(path: layer, flags: O_RDONLY | O_DIRECTORY)
        } catch {
            throw DiffError(PathError(path: layer, errno: error, what: "layer"))
        }
        guard let layerChain = Self.ancestry(of: directory), let rootChain = Self.ancestry(of: root) else { return }
        let reason: String
        if layerChain[0] == rootChain[0] {
            reason = "the layer directory is ROOT itself"
        } else if layerChain.contains(rootChain[0]) {
            reason = "the layer directory is inside ROOT (\(rootPath))"
        } else if rootChain.contains(layerChain[0]) {
            reason = "ROOT (\(rootPath)) is inside the layer directory"
        } else {
            return
        }
        throw DiffError(path: layer, reason: reason + ": a layer must be applied to a separate tree")
    }

    /// The identities of a directory and of each of its ancestors up to `/`, nearest first; nil
    /// when one cannot be read.
    private static func ancestry(of directory: FileDescriptor) -> [FileIdentity]? {
        var chain: [FileIdentity] = []
        var current = directory
        for _ in 0..<4096 {
            guard let status = try? current.status() else { return nil }
            if chain.last == status.identity { return chain }
            chain.append(status.identity)
            guard let parent = try? current.open(FileName(unchecked: [0x2E, 0x2E]), flags: O_RDONLY | O_DIRECTORY)
            else { return nil }
            current = parent
        }
        return chain
    }

    /// Applies `source`: checks it, applies its markers, then its entries, then the directory
    /// mtimes (see the type's overview).
    ///
    /// - Throws: ``DiffError`` naming the entry or ROOT path at fault.
    func apply(_ source: LayerSource) throws(DiffError) {
        // 1. Check everything; collect the markers.
        var whiteouts: [RelativePath] = []
        var opaques: [RelativePath] = []
        var symlinks = Set<RelativePath>()
        var directories = Set<RelativePath>()
        // Non-directories the layer creates (for entries below them), and the parent paths of
        // entries the layer does not create as directories (checked against ROOT after the pass).
        var nonDirectories = Set<RelativePath>()
        var parentsToCheck: [RelativePath: String] = [:]
        // Hard-link targets the layer has not created before the link: they must be in ROOT.
        var linkTargetsToCheck: [(RelativePath, String)] = []
        var layout = ArchiveLayout()
        let privileged = geteuid() == 0
        try source.forEach { (entry, _) throws(DiffError) in
            layout.note(entry.path)
            // A marker name is never a directory on the way to something else (x/.wh.y/z).
            if source.honorsOCIMarkers, let marker = Whiteout.markerUsedAsDirectory(in: entry.path) {
                throw DiffError(
                    path: "\(source.path): \(entry.display)",
                    reason: "refused: goes through '\(marker)', a whiteout marker name used as a directory")
            }
            for length in 1..<max(1, entry.path.components.count) {
                let prefix = RelativePath(components: Array(entry.path.components.prefix(length)))
                if symlinks.contains(prefix) {
                    throw DiffError(
                        path: "\(source.path): \(entry.display)",
                        reason:
                            "refused: goes through '\(prefix)', a symlink in the layer (nothing is written through symlinks)"
                    )
                }
                if nonDirectories.contains(prefix) {
                    throw DiffError(
                        path: "\(source.path): \(entry.display)",
                        reason: "refused: its parent '\(prefix)' is not a directory in the layer")
                }
            }
            if !entry.path.isRoot, !directories.contains(entry.path.parent), parentsToCheck[entry.path.parent] == nil {
                parentsToCheck[entry.path.parent] = entry.display
            }
            switch entry.role {
            case .whiteout(let target): whiteouts.append(entry.path.parent.appending(target))
            case .opaque: opaques.append(entry.path.parent)
            case .meta: break
            case .entry:
                if entry.path.isRoot && entry.kind != .directory {
                    throw DiffError(
                        path: "\(source.path): \(entry.display)", reason: "refused: the root entry is not a directory")
                }
                if entry.kind == .symlink && entry.metadata.linkTarget.count > ArchiveEntry.maximumLinkTargetLength {
                    throw DiffError(
                        path: "\(source.path): \(entry.display)",
                        reason: "refused: symlink target longer than \(ArchiveEntry.maximumLinkTargetLength) bytes")
                }
                if (entry.kind == .characterDevice || entry.kind == .blockDevice) && !privileged {
                    throw DiffError(
                        path: "\(source.path): \(entry.display)",
                        reason: "refused: device nodes are only created when running as root")
                }
                if let target = entry.hardLinkTarget {
                    if target.isRoot || directories.contains(target) {
                        throw DiffError(
                            path: "\(source.path): \(entry.display)", reason: "refused: hard link to a directory")
                    }
                    for length in 1..<max(1, target.components.count) {
                        let prefix = RelativePath(components: Array(target.components.prefix(length)))
                        if symlinks.contains(prefix) {
                            throw DiffError(
                                path: "\(source.path): \(entry.display)",
                                reason: "refused: hard link target goes through a symlink")
                        }
                    }
                    if !nonDirectories.contains(target) {
                        linkTargetsToCheck.append((target, "\(source.path): \(entry.display)"))
                    }
                }
                if entry.kind == .symlink {
                    symlinks.insert(entry.path)
                } else {
                    symlinks.remove(entry.path)
                }
                if entry.kind == .directory {
                    directories.insert(entry.path)
                    nonDirectories.remove(entry.path)
                } else {
                    directories.remove(entry.path)
                    nonDirectories.insert(entry.path)
                }
            }
        }
        // A docker save / OCI layout tarball given by mistake would be unpacked as files.
        if source.honorsOCIMarkers && source is TarLayerSource && layout.isImageArchive {
            throw DiffError(path: source.path, reason: ArchiveLayout.imageArchiveReason)
        }
        // Entries below a non-directory already in ROOT (that the layer neither removes nor
        // replaces by a directory) would fail half-way: refuse them before anything is written.
        let removed = Set(whiteouts)
        let cleared = Set(opaques)
        for (parent, shown) in parentsToCheck {
            try checkParentInRoot(
                parent, layerDirectories: directories, removed: removed, cleared: cleared,
                entry: "\(source.path): \(shown)")
        }
        // A hard link to what neither the layer (before it) nor ROOT holds would fail half-way.
        for (target, shown) in linkTargetsToCheck {
            try checkLinkTargetInRoot(
                target, layerDirectories: directories, removed: removed, cleared: cleared, entry: shown)
        }
        // 2. Whiteouts and opaque markers, on the lower content only.
        for path in whiteouts {
            guard let name = path.lastName, let parent = try existingDirectory(path.parent, for: path) else { continue }
            let exists: Bool
            do {
                exists = try parent.statusIfPresent(of: name) != nil
            } catch {
                throw DiffError(path: display(path), "cannot examine", error)
            }
            guard exists else { continue }
            try touch(path.parent, parent)
            do {
                try FileMaker.remove(name, in: parent)
            } catch {
                throw DiffError(path: display(path), "cannot remove", error)
            }
        }
        for path in opaques {
            guard let directory = try existingDirectory(path, for: path) else { continue }
            try touch(path, directory)
            do {
                try FileMaker.removeContents(of: directory)
            } catch {
                throw DiffError(path: display(path), "cannot empty the opaque directory", error)
            }
        }
        // 3. The entries, in layer order.
        try source.forEach { (entry, content) throws(DiffError) in
            guard case .entry = entry.role else { return }
            try place(entry, content)
        }
        // 4. Directory mtimes (and without root, permissions) last, the deepest first: a
        // directory's own permissions may keep its owner out of it.
        var finals = touched
        for (path, time) in directoryTimes { finals[path] = time }
        let order = Set(finals.keys).union(directoryModes.keys).sorted {
            $0.components.count != $1.components.count
                ? $0.components.count > $1.components.count : $0.description < $1.description
        }
        for path in order { try finish(path, time: finals[path], permissions: directoryModes[path]) }
    }

    private func place(_ entry: LayerEntry, _ content: ((SparseWriter) throws(DiffError) -> Void)?) throws(DiffError) {
        if entry.path.isRoot {
            try attempt(entry.path, "cannot set attributes") { () throws(Errno) in
                try FileMaker.apply(entry.metadata, to: root, setTime: false, ownerAccess: true)
            }
            directoryTimes.append((.root, entry.metadata.modificationTime))
            if !FileMaker.privileged { directoryModes[.root] = entry.metadata.permissions }
            return
        }
        guard let name = entry.path.lastName else { return }
        let parent = try parentDirectory(entry.path.parent, for: entry)
        let existing: FileStatus?
        do {
            existing = try parent.statusIfPresent(of: name)
        } catch {
            throw DiffError(path: display(entry.path), "cannot examine", error)
        }
        if let existing, existing.type == .directory, entry.kind == .directory {
            let directory: FileDescriptor
            do {
                _ = FileMaker.openUp(name, in: parent)
                directory = try parent.open(name, flags: O_RDONLY | O_DIRECTORY)
                try FileMaker.apply(entry.metadata, to: directory, setTime: false, ownerAccess: true)
            } catch {
                throw DiffError(path: display(entry.path), "cannot set attributes", error)
            }
            directoryTimes.append((entry.path, entry.metadata.modificationTime))
            if !FileMaker.privileged { directoryModes[entry.path] = entry.metadata.permissions }
            if cachedParent?.path == entry.path { cachedParent = nil }
            return
        }
        try touch(entry.path.parent, parent)
        if existing != nil {
            try attempt(entry.path, "cannot remove the existing entry") { () throws(Errno) in
                try FileMaker.remove(name, in: parent)
            }
            if let cached = cachedParent, cached.path.components.starts(with: entry.path.components) {
                cachedParent = nil
            }
        }
        switch entry.kind {
        case .hardLink:
            guard let target = entry.hardLinkTarget, let targetName = target.lastName else { return }
            guard let targetParent = try existingDirectory(target.parent, for: target) else {
                throw DiffError(path: display(entry.path), reason: "hard link target '\(target)' does not exist")
            }
            try attempt(entry.path, "cannot link to '\(target)'") { () throws(Errno) in
                try FileMaker.link(name, in: parent, to: targetName, in: targetParent)
            }
        case .regular:
            do {
                try FileMaker.makeFile(name, in: parent, entry.metadata) { (writer) throws(DiffError) in
                    try content?(writer)
                    if content == nil { try? writer.pad(to: entry.size) }
                }
            } catch {
                switch error {
                case .system(let errno): throw DiffError(path: display(entry.path), "cannot create", errno)
                case .fill(let inner): throw inner
                }
            }
        default:
            try attempt(entry.path, "cannot create") { () throws(Errno) in
                try FileMaker.make(name, in: parent, entry.metadata, ownerAccess: true)
            }
            if entry.kind == .directory {
                directoryTimes.append((entry.path, entry.metadata.modificationTime))
                if !FileMaker.privileged { directoryModes[entry.path] = entry.metadata.permissions }
            }
        }
    }

    /// The directory at `path` in ROOT, walked one component at a time without following a
    /// symlink; missing components are created (0755), as appliers do for parents a layer
    /// leaves out.
    private func parentDirectory(_ path: RelativePath, for entry: LayerEntry) throws(DiffError) -> FileDescriptor {
        if path.isRoot { return root }
        if let cached = cachedParent, cached.path == path { return cached.directory }
        var current = root
        var walked = RelativePath.root
        for component in path.components {
            let next = walked.appending(component)
            do {
                current = try openEntering(component, in: current, at: next)
            } catch .noEntry {
                try touch(walked, current)
                do {
                    _ = try component.withCString { (cName) throws(Errno) in
                        try valueOrErrno { mkdirat(current.rawValue, cName, 0o755) }
                    }
                    current = try current.open(component, flags: O_RDONLY | O_DIRECTORY)
                } catch {
                    throw DiffError(path: display(next), "cannot create the parent directory", error)
                }
            } catch .tooManySymlinks {
                throw DiffError(
                    path: entry.display,
                    reason: "refused: '\(next)' in \(rootPath) is a symlink (nothing is written through symlinks)")
            } catch .notDirectory {
                let isLink = (try? current.status(of: component))?.type == .symlink
                throw DiffError(
                    path: entry.display,
                    reason: isLink
                        ? "refused: '\(next)' in \(rootPath) is a symlink (nothing is written through symlinks)"
                        : "refused: '\(next)' in \(rootPath) is not a directory")
            } catch {
                throw DiffError(path: display(next), "cannot open", error)
            }
            walked = next
        }
        cachedParent = (path, current)
        return current
    }

    /// The existing directory at `path` in ROOT, or nil when a component is missing or not a
    /// directory. A symlink on the way is refused.
    /// Refuses `parent` (of an entry the layer holds) when a component of it is a non-directory
    /// in ROOT that stays: not whited out, not below an opaque directory of the layer, not
    /// created as a directory by the layer.
    ///
    /// - Throws: ``DiffError`` naming `entry`.
    private func checkParentInRoot(
        _ parent: RelativePath, layerDirectories: Set<RelativePath>, removed: Set<RelativePath>,
        cleared: Set<RelativePath>, entry: String
    ) throws(DiffError) {
        var directory = root
        var prefix = RelativePath.root
        for name in parent.components {
            let next = prefix.appending(name)
            // The layer removes or replaces what ROOT holds here: nothing below needs checking.
            if removed.contains(next) || cleared.contains(prefix) || layerDirectories.contains(next) { return }
            let status: FileStatus?
            do {
                status = try directory.statusIfPresent(of: name)
            } catch {
                return  // reported with its path when the entry is applied
            }
            guard let status else { return }  // created by the apply
            if status.type == .symlink {
                throw DiffError(
                    path: entry,
                    reason: "refused: the path goes through '\(next)', a symlink in \(rootPath) (nothing is changed "
                        + "through symlinks)")
            }
            guard status.type == .directory else {
                throw DiffError(
                    path: entry, reason: "refused: '\(next)' in \(rootPath) is a \(status.type), not a directory")
            }
            guard let opened = try? directory.open(name, flags: O_RDONLY | O_DIRECTORY) else { return }
            directory = opened
            prefix = next
        }
    }

    /// Refuses a hard link (`entry`) whose target, not created by the layer before it, is not a
    /// non-directory in ROOT once the layer's whiteouts and opaque markers have removed theirs.
    ///
    /// - Throws: ``DiffError`` naming `entry`.
    private func checkLinkTargetInRoot(
        _ target: RelativePath, layerDirectories: Set<RelativePath>, removed: Set<RelativePath>,
        cleared: Set<RelativePath>, entry: String
    ) throws(DiffError) {
        func refuse(_ why: String) -> DiffError {
            DiffError(path: entry, reason: "refused: hard link target '\(target)' \(why)")
        }
        guard let name = target.lastName else { throw refuse("is the root") }
        if layerDirectories.contains(target) { throw refuse("is a directory") }
        for length in 1...target.components.count {
            let prefix = RelativePath(components: Array(target.components.prefix(length)))
            if removed.contains(prefix) || cleared.contains(prefix.parent) {
                throw refuse("is removed by the layer before it is linked")
            }
        }
        let status: FileStatus?
        do {
            status = try existingDirectory(target.parent, for: target)?.statusIfPresent(of: name)
        } catch {
            throw refuse("cannot be examined in \(rootPath): \(error)")
        }
        guard let status else { throw refuse("is neither in the layer before it nor in \(rootPath)") }
        if status.type == .directory { throw refuse("is a directory in \(rootPath)") }
    }

    private func existingDirectory(_ path: RelativePath, for subject: RelativePath) throws(DiffError) -> FileDescriptor?
    {
        if path.isRoot { return root }
        do {
            return try root.open(beneath: path, flags: O_RDONLY | O_DIRECTORY)
        } catch .noEntry {
            return nil
        } catch .notDirectory {
            return nil
        } catch .tooManySymlinks {
            throw DiffError(
                path: subject.description,
                reason: "refused: the path goes through a symlink in \(rootPath) (nothing is changed through symlinks)")
        } catch .crossDevice {
            throw DiffError(path: subject.description, reason: "refused: the path leaves \(rootPath)")
        } catch {
            throw DiffError(path: display(path), "cannot open", error)
        }
    }

    /// Opens directory `name` of `parent` (at `path`). Without root, one of ROOT's directories
    /// its owner cannot enter or change is opened up first, and given its permissions back at
    /// the end.
    private func openEntering(_ name: FileName, in parent: FileDescriptor, at path: RelativePath) throws(Errno)
        -> FileDescriptor
    {
        if let before = FileMaker.openUp(name, in: parent), directoryModes[path] == nil {
            directoryModes[path] = before
        }
        return try parent.open(name, flags: O_RDONLY | O_DIRECTORY)
    }

    /// Remembers a directory's mtime before the first change in it. Without root, opens up a
    /// directory its owner cannot change (its permissions are restored at the end).
    private func touch(_ path: RelativePath, _ directory: FileDescriptor) throws(DiffError) {
        guard touched[path] == nil else { return }
        do {
            let status = try directory.status()
            touched[path] = status.modificationTime
            if !FileMaker.privileged && status.permissions & 0o700 != 0o700 && status.userID == geteuid() {
                try FileMaker.setPermissions(of: directory, status.permissions | 0o700)
                if directoryModes[path] == nil { directoryModes[path] = status.permissions }
            }
        } catch {
            throw DiffError(path: display(path), "cannot examine", error)
        }
    }

    /// Gives the directory at `path` its final mtime and (without root) permissions.
    private func finish(_ path: RelativePath, time: Timestamp?, permissions: UInt32?) throws(DiffError) {
        do {
            let directory = path.isRoot ? root : try root.open(beneath: path, flags: O_RDONLY | O_DIRECTORY)
            if let time { try FileMaker.setTimes(of: directory, time) }
            if let permissions { try FileMaker.setPermissions(of: directory, permissions) }
        } catch .noEntry {
            return
        } catch .notDirectory {
            return
        } catch {
            throw DiffError(path: display(path), "cannot set the modification time", error)
        }
    }

    private func attempt(_ path: RelativePath, _ what: String, _ body: () throws(Errno) -> Void) throws(DiffError) {
        do {
            try body()
        } catch {
            throw DiffError(path: display(path), what, error)
        }
    }

    private func display(_ path: RelativePath) -> String {
        path.isRoot ? rootPath : (rootPath.hasSuffix("/") ? rootPath : rootPath + "/") + path.description
    }
}
