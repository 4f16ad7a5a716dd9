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
    /// The layer's paths: what the check learns, and the directories to finish at the end.
    private let tree = LayerTree()
    /// The directories last walked to, from ROOT down (see `parentDirectory`).
    private var openChain: [(node: LayerTree.Node, directory: FileDescriptor)] = []

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
        // 1. Check everything; collect the markers. What the layer makes at each path is kept in
        // `tree` (its last entry there), so that an entry's ancestors are one walk up.
        var whiteouts: [RelativePath] = []
        var opaques: [RelativePath] = []
        // Parents of entries that the layer does not make directories (checked against ROOT
        // after the pass), and hard-link targets the layer has not made before the link (they
        // must be in ROOT).
        var parentsToCheck: [LayerTree.Node] = []
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
            let node = tree.node(entry.path)
            // The outermost ancestor the layer makes a symlink or another non-directory.
            if let blocking = node.ancestors.first(where: { $0.kind == .symlink || $0.kind == .other }) {
                if blocking.kind == .symlink {
                    throw DiffError(
                        path: "\(source.path): \(entry.display)",
                        reason:
                            "refused: goes through '\(blocking.path)', a symlink in the layer (nothing is written through symlinks)"
                    )
                }
                throw DiffError(
                    path: "\(source.path): \(entry.display)",
                    reason: "refused: its parent '\(blocking.path)' is not a directory in the layer")
            }
            if let parent = node.parent, parent.kind != .directory, parent.entryBelow == nil {
                parent.entryBelow = entry.display
                parentsToCheck.append(parent)
            }
            switch entry.role {
            case .whiteout(let target):
                whiteouts.append(entry.path.parent.appending(target))
                node.parent?.child(target).removed = true
            case .opaque:
                opaques.append(entry.path.parent)
                node.parent?.cleared = true
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
                    let walked = tree.existingNodes(target)
                    let made = walked.count == target.components.count ? walked.last : nil
                    if target.isRoot || made?.kind == .directory {
                        throw DiffError(
                            path: "\(source.path): \(entry.display)", reason: "refused: hard link to a directory")
                    }
                    if walked.prefix(target.components.count - 1).contains(where: { $0.kind == .symlink }) {
                        throw DiffError(
                            path: "\(source.path): \(entry.display)",
                            reason: "refused: hard link target goes through a symlink")
                    }
                    if made?.kind != .symlink && made?.kind != .other {
                        linkTargetsToCheck.append((target, "\(source.path): \(entry.display)"))
                    }
                }
                switch entry.kind {
                case .directory: node.kind = .directory
                case .symlink: node.kind = .symlink
                default: node.kind = .other
                }
            }
        }
        // A docker save / OCI layout tarball given by mistake would be unpacked as files.
        if source.honorsOCIMarkers && source is TarLayerSource && layout.isImageArchive {
            throw DiffError(path: source.path, reason: ArchiveLayout.imageArchiveReason)
        }
        // Entries below a non-directory already in ROOT (that the layer neither removes nor
        // replaces by a directory) would fail half-way: refuse them before anything is written.
        for parent in parentsToCheck {
            try checkParentInRoot(parent, entry: "\(source.path): \(parent.entryBelow ?? "")")
        }
        // A hard link to what neither the layer (before it) nor ROOT holds would fail half-way.
        for (target, shown) in linkTargetsToCheck {
            try checkLinkTargetInRoot(target, entry: shown)
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
            try touch(tree.node(path.parent), parent)
            do {
                try FileMaker.remove(name, in: parent)
            } catch {
                throw DiffError(path: display(path), "cannot remove", error)
            }
        }
        for path in opaques {
            guard let directory = try existingDirectory(path, for: path) else { continue }
            try touch(tree.node(path), directory)
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
        // 4. Directory mtimes (and without root, permissions) last.
        try finishDirectories()
    }

    private func place(_ entry: LayerEntry, _ content: ((SparseWriter) throws(DiffError) -> Void)?) throws(DiffError) {
        if entry.path.isRoot {
            try attempt(entry.path, "cannot set attributes") { () throws(Errno) in
                try FileMaker.apply(entry.metadata, to: root, setTime: false, ownerAccess: true)
            }
            finish(tree.root, entry.metadata)
            return
        }
        guard let name = entry.path.lastName else { return }
        let (parentNode, parent) = try parentDirectory(entry.path.parent, for: entry)
        let node = parentNode.child(name)
        let existing: FileStatus?
        do {
            existing = try parent.statusIfPresent(of: name)
        } catch {
            throw DiffError(path: display(entry.path), "cannot examine", error)
        }
        if let existing, existing.type == .directory, entry.kind == .directory {
            do {
                _ = FileMaker.openUp(name, in: parent)
                let directory = try parent.open(name, flags: O_RDONLY | O_DIRECTORY)
                try FileMaker.apply(entry.metadata, to: directory, setTime: false, ownerAccess: true)
            } catch {
                throw DiffError(path: display(entry.path), "cannot set attributes", error)
            }
            finish(node, entry.metadata)
            return
        }
        try touch(parentNode, parent)
        if existing != nil {
            try attempt(entry.path, "cannot remove the existing entry") { () throws(Errno) in
                try FileMaker.remove(name, in: parent)
            }
            // The open directories below it are gone.
            if openChain.count > node.depth - 1 && openChain[node.depth - 1].node === node {
                openChain.removeSubrange((node.depth - 1)...)
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
            if entry.kind == .directory { finish(node, entry.metadata) }
        }
    }

    /// Notes the mtime (and without root, the permissions) the layer gives the directory `node`,
    /// set at the end.
    private func finish(_ node: LayerTree.Node, _ metadata: EntryMetadata) {
        node.time = metadata.modificationTime
        if !FileMaker.privileged { node.permissions = metadata.permissions }
        node.markPending()
    }

    /// The directory at `path` in ROOT, walked one component at a time without following a
    /// symlink; missing components are created (0755), as appliers do for parents a layer
    /// leaves out. The directories last walked stay open (`openChain`): a layer lists a
    /// directory's entries together, so the walk usually starts where the last one ended.
    private func parentDirectory(_ path: RelativePath, for entry: LayerEntry) throws(DiffError)
        -> (LayerTree.Node, FileDescriptor)
    {
        var kept = 0
        while kept < openChain.count && kept < path.components.count
            && openChain[kept].node.name == path.components[kept]
        {
            kept += 1
        }
        openChain.removeSubrange(kept...)
        var node = openChain.last?.node ?? tree.root
        var current = openChain.last?.directory ?? root
        for component in path.components[kept...] {
            let next = node.child(component)
            do {
                current = try openEntering(next, in: current)
            } catch .noEntry {
                try touch(node, current)
                do {
                    _ = try component.withCString { (cName) throws(Errno) in
                        try valueOrErrno { mkdirat(current.rawValue, cName, 0o755) }
                    }
                    current = try current.open(component, flags: O_RDONLY | O_DIRECTORY)
                } catch {
                    throw DiffError(path: display(next.path), "cannot create the parent directory", error)
                }
            } catch .tooManySymlinks {
                throw DiffError(
                    path: entry.display,
                    reason: "refused: '\(next.path)' in \(rootPath) is a symlink (nothing is written through symlinks)")
            } catch .notDirectory {
                let isLink = (try? current.status(of: component))?.type == .symlink
                throw DiffError(
                    path: entry.display,
                    reason: isLink
                        ? "refused: '\(next.path)' in \(rootPath) is a symlink (nothing is written through symlinks)"
                        : "refused: '\(next.path)' in \(rootPath) is not a directory")
            } catch {
                throw DiffError(path: display(next.path), "cannot open", error)
            }
            openChain.append((next, current))
            node = next
        }
        return (node, current)
    }

    /// Refuses `parent` (of an entry the layer holds) when a component of it is a non-directory
    /// in ROOT that stays: not whited out, not below an opaque directory of the layer, not
    /// created as a directory by the layer.
    ///
    /// - Throws: ``DiffError`` naming `entry`.
    private func checkParentInRoot(_ parent: LayerTree.Node, entry: String) throws(DiffError) {
        var directory = root
        var prefix = tree.root
        for next in parent.ancestors + [parent] {
            guard let name = next.name else { return }
            // The layer removes or replaces what ROOT holds here: nothing below needs checking.
            if next.removed || prefix.cleared || next.kind == .directory { return }
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
                    reason:
                        "refused: the path goes through '\(next.path)', a symlink in \(rootPath) (nothing is changed "
                        + "through symlinks)")
            }
            guard status.type == .directory else {
                throw DiffError(
                    path: entry, reason: "refused: '\(next.path)' in \(rootPath) is a \(status.type), not a directory")
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
    private func checkLinkTargetInRoot(_ target: RelativePath, entry: String) throws(DiffError) {
        func refuse(_ why: String) -> DiffError {
            DiffError(path: entry, reason: "refused: hard link target '\(target)' \(why)")
        }
        guard let name = target.lastName else { throw refuse("is the root") }
        let walked = tree.existingNodes(target)
        if walked.count == target.components.count, walked.last?.kind == .directory { throw refuse("is a directory") }
        // Whited out (itself or a parent), or below a directory an opaque marker empties.
        if walked.contains(where: \.removed) || tree.root.cleared || walked.contains(where: \.cleared) {
            throw refuse("is removed by the layer before it is linked")
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

    /// The existing directory at `path` in ROOT, or nil when a component is missing or not a
    /// directory. A symlink on the way is refused.
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

    /// Opens the directory of `node` in `parent`. Without root, one of ROOT's directories its
    /// owner cannot enter or change is opened up first, and given its permissions back at the
    /// end.
    private func openEntering(_ node: LayerTree.Node, in parent: FileDescriptor) throws(Errno) -> FileDescriptor {
        guard let name = node.name else { return root }
        if let before = FileMaker.openUp(name, in: parent), node.permissionsBefore == nil {
            node.permissionsBefore = before
            node.markPending()
        }
        return try parent.open(name, flags: O_RDONLY | O_DIRECTORY)
    }

    /// Remembers a directory's mtime before the first change in it. Without root, opens up a
    /// directory its owner cannot change (its permissions are restored at the end).
    private func touch(_ node: LayerTree.Node, _ directory: FileDescriptor) throws(DiffError) {
        guard node.timeBefore == nil else { return }
        do {
            let status = try directory.status()
            node.timeBefore = status.modificationTime
            node.markPending()
            if !FileMaker.privileged && status.permissions & 0o700 != 0o700 && status.userID == geteuid() {
                try FileMaker.setPermissions(of: directory, status.permissions | 0o700)
                if node.permissionsBefore == nil { node.permissionsBefore = status.permissions }
            }
        } catch {
            throw DiffError(path: display(node.path), "cannot examine", error)
        }
    }

    /// Gives every directory noted in `tree` its mtime (the layer's, or the one it had before
    /// the apply changed it) and, without root, its permissions: children before their parents
    /// (a directory's own permissions may keep its owner out), each found from its parent (with
    /// `O_PATH` on the way, which needs no read permission). One that is gone or no longer a
    /// directory is skipped.
    private func finishDirectories() throws(DiffError) {
        struct Frame {
            let node: LayerTree.Node
            /// `O_PATH` (the root: ROOT's descriptor).
            let directory: FileDescriptor
            let children: [LayerTree.Node]
            var next = 0
        }
        guard tree.root.pending else { return }
        var stack = [Frame(node: tree.root, directory: root, children: tree.root.pendingChildren)]
        while var frame = stack.popLast() {
            if frame.next < frame.children.count {
                let child = frame.children[frame.next]
                frame.next += 1
                stack.append(frame)
                guard let name = child.name,
                    let found = try openSkippingGone(name, in: frame.directory, child, FileDescriptor.pathOnly)
                else { continue }
                stack.append(Frame(node: child, directory: found, children: child.pendingChildren))
                continue
            }
            let node = frame.node
            let time = node.time ?? node.timeBefore
            let permissions = node.permissions ?? node.permissionsBefore
            guard time != nil || permissions != nil else { continue }
            var directory = root
            if let name = node.name, let parent = stack.last {
                guard let opened = try openSkippingGone(name, in: parent.directory, node, O_RDONLY) else { continue }
                directory = opened
            }
            do {
                if let time { try FileMaker.setTimes(of: directory, time) }
                if let permissions { try FileMaker.setPermissions(of: directory, permissions) }
            } catch {
                throw DiffError(path: display(node.path), "cannot set the modification time", error)
            }
        }
    }

    /// Directory `name` of `parent` opened with `flags`; nil when it is gone or no longer a
    /// directory (a symlink included).
    private func openSkippingGone(_ name: FileName, in parent: FileDescriptor, _ node: LayerTree.Node, _ flags: CInt)
        throws(DiffError) -> FileDescriptor?
    {
        do {
            return try parent.open(name, flags: flags | O_DIRECTORY)
        } catch .noEntry {
            return nil
        } catch .notDirectory {
            return nil
        } catch .tooManySymlinks {
            return nil
        } catch {
            throw DiffError(path: display(node.path), "cannot set the modification time", error)
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
