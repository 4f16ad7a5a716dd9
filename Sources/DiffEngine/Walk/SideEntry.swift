import Glibc
import LayerCore

/// Which side of a diff an entry comes from.
enum Side: Sendable, Hashable {
    /// The tree before.
    case a
    /// The tree after (or the overlay upper dir).
    case b
}

/// One entry of one side of a diff: what the comparison needs (status, xattrs, symlink
/// target) and, while it is being compared, the open directory holding it.
struct SideEntry: Sendable {
    /// The entry's name (`.` for a tree root).
    let name: FileName
    /// `fstatat(AT_SYMLINK_NOFOLLOW)` of the entry.
    let status: FileStatus
    /// The entry's xattrs, sorted (overlay-private ones dropped when the side asks for it).
    let attributes: [ExtendedAttribute]
    /// A symlink's target; empty for other types.
    let linkTarget: [UInt8]
    /// The directory holding the entry (for a root: the root itself); nil once the entry is
    /// queued for output (the output reopens the directory from its side's root by path, so
    /// queued changes do not hold descriptors).
    var parent: FileDescriptor?
    /// The side the entry was read from.
    let side: Side
    /// For an overlay upper dir: the directory carries an opaque xattr (`*.overlay.opaque=y`).
    var overlayOpaque = false
    /// For an overlay upper dir: the file was copied up as an indexed hard link (`index=on`; it
    /// carries `*.overlay.nlink`): the merged tree shows it at every lower name of its inode.
    var overlayIndexedLink = false

    /// The entry's type.
    var type: FileType { status.type }
    /// Whether the entry is a directory.
    var isDirectory: Bool { status.type == .directory }

    /// The entry without its directory descriptor.
    var detached: SideEntry {
        var copy = self
        copy.parent = nil
        return copy
    }
}

/// How one side of a diff is read: where its root is (for messages) and which xattrs count.
struct SideReader: Sendable {
    /// The side this reader reads.
    let side: Side
    /// The root as the user named it.
    let displayRoot: String
    /// Drop `trusted.overlay.*` / `user.overlay.*` (overlay bookkeeping in an upper dir).
    let dropOverlayAttributes: Bool

    /// `root/path` for messages.
    func display(_ path: RelativePath) -> String {
        if path.isRoot { return displayRoot }
        return (displayRoot.hasSuffix("/") ? displayRoot : displayRoot + "/") + path.description
    }

    /// Reads entry `name` of directory `directory` (at `path`), or nil when it does not exist.
    ///
    /// - Throws: ``DiffError`` naming the path when it cannot be examined.
    func entry(_ name: FileName, in directory: FileDescriptor, path: RelativePath) throws(DiffError) -> SideEntry? {
        let status: FileStatus
        do {
            guard let found = try directory.statusIfPresent(of: name) else { return nil }
            status = found
        } catch {
            throw DiffError(path: display(path), "cannot examine", error)
        }
        return try complete(name, status, in: directory, parent: path.parent)
    }

    /// Completes an entry whose status is known: reads its xattrs and symlink target. `parent`
    /// is the directory's path (the entry's path is only built for an error message).
    ///
    /// - Throws: ``DiffError`` naming the path.
    func complete(
        _ name: FileName, _ status: FileStatus, in directory: FileDescriptor, parent: RelativePath
    ) throws(DiffError) -> SideEntry {
        var attributes: [ExtendedAttribute]
        do {
            attributes = try directory.extendedAttributes(of: name)
        } catch .noEntry {
            throw DiffError(
                path: display(parent.appending(name)), reason: "vanished while the diff ran", errno: .noEntry)
        } catch {
            throw DiffError(path: display(parent.appending(name)), "cannot read extended attributes", error)
        }
        var opaque = false
        var indexedLink = false
        if dropOverlayAttributes && !attributes.isEmpty {
            opaque = try overlayFlags(attributes, parent.appending(name))
            indexedLink = attributes.contains { SideReader.indexedLinkAttributes.contains($0.name) }
            attributes.removeAll { Whiteout.isOverlayPrivateAttribute($0.name) }
        }
        var target: [UInt8] = []
        if status.type == .symlink {
            do {
                target = try directory.readLink(name)
            } catch {
                throw DiffError(path: display(parent.appending(name)), "cannot read symlink", error)
            }
        }
        return SideEntry(
            name: name, status: status, attributes: attributes, linkTarget: target, parent: directory, side: side,
            overlayOpaque: opaque, overlayIndexedLink: indexedLink)
    }

    /// The xattrs overlayfs puts on a hard link it copied up under `index=on`.
    static let indexedLinkAttributes = [Array("trusted.overlay.nlink".utf8), Array("user.overlay.nlink".utf8)]

    /// The overlay bookkeeping an upper-dir entry carries: whether it is marked opaque. Refuses
    /// what `--upper` cannot read without the lower layers' own bookkeeping (diff the merged tree
    /// instead): redirected directories (renamed with `redirect_dir=on`: their lower children
    /// live at another path), metacopy files (their data lives in a lower layer) and xattr
    /// whiteouts (`overlay.whiteout`, a format of lower layers only).
    private func overlayFlags(_ attributes: [ExtendedAttribute], _ path: RelativePath) throws(DiffError) -> Bool {
        var opaque = false
        for attribute in attributes {
            let name = attribute.name
            if Whiteout.opaqueAttributeNames.contains(name) && Whiteout.isOpaqueValue(attribute.value) {
                opaque = true
            }
            for (kind, why) in SideReader.unsupportedOverlayAttributes {
                if name == Array("trusted.overlay.\(kind)".utf8) || name == Array("user.overlay.\(kind)".utf8) {
                    throw DiffError(
                        path: display(path),
                        reason:
                            "overlay \(kind) entry (\(why)), which --upper does not follow; diff the merged tree instead"
                    )
                }
            }
        }
        return opaque
    }

    /// Overlay xattrs `--upper` refuses, with what they mean.
    private static let unsupportedOverlayAttributes = [
        ("redirect", "a renamed directory whose lower contents live at another path"),
        ("metacopy", "its data lives in a lower layer"),
        ("whiteout", "an xattr whiteout, a lower-layer format"),
    ]

    /// The root of the side, open as `root`.
    ///
    /// - Throws: ``DiffError`` naming the root.
    func rootEntry(_ root: FileDescriptor) throws(DiffError) -> SideEntry {
        do {
            let status = try root.status()
            var attributes = try root.extendedAttributes()
            if dropOverlayAttributes { attributes.removeAll { Whiteout.isOverlayPrivateAttribute($0.name) } }
            return SideEntry(
                name: FileName(unchecked: [0x2E]), status: status, attributes: attributes, linkTarget: [],
                parent: root, side: side)
        } catch {
            throw DiffError(path: displayRoot, "cannot examine", error)
        }
    }

    /// All entries of `directory` (at `path`), sorted by name, with xattrs and targets.
    ///
    /// - Throws: ``DiffError`` naming the directory or entry.
    func entries(of directory: FileDescriptor, path: RelativePath) throws(DiffError) -> [SideEntry] {
        let listed: [TreeEntry]
        do {
            listed = try TreeWalker.entries(of: directory, sorted: true)
        } catch {
            throw DiffError(path: display(path), "cannot list directory", error)
        }
        var result: [SideEntry] = []
        result.reserveCapacity(listed.count)
        for item in listed {
            result.append(try complete(item.name, item.status, in: directory, parent: path))
        }
        return result
    }

    /// Opens subdirectory `name` of `parent` without following a symlink.
    ///
    /// - Throws: ``DiffError`` naming the path.
    func openDirectory(_ name: FileName, in parent: FileDescriptor, path: RelativePath) throws(DiffError)
        -> FileDescriptor
    {
        do {
            return try parent.open(name, flags: O_RDONLY | O_DIRECTORY)
        } catch {
            throw DiffError(path: display(path), "cannot open directory", error)
        }
    }
}
