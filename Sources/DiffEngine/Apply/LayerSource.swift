import Glibc
import LayerCore

/// One entry of a layer to apply, checked and normalised.
struct LayerEntry {
    /// What the entry means.
    enum Role {
        /// An ordinary entry (file, directory, symlink, device, fifo, hard link).
        case entry
        /// A whiteout: deletes `path.parent/target` from the lower content.
        case whiteout(FileName)
        /// An opaque marker: `path.parent` hides all lower content.
        case opaque
        /// Another `.wh..wh.` metadata name: no meaning, skipped.
        case meta
    }

    /// The path in the layer, normalised.
    var path: RelativePath
    /// The path as stored, for messages.
    var display: String
    /// The stored kind.
    var kind: ArchiveEntry.Kind
    /// Metadata to give the created file.
    var metadata: EntryMetadata
    /// Content size (regular files).
    var size: Int64
    /// A hard link's target path, normalised.
    var hardLinkTarget: RelativePath?
    /// What the entry means.
    var role: Role
}

/// A layer to apply: read entry by entry, possibly twice (markers first, then entries).
protocol LayerSource {
    /// The layer's path as given, for messages.
    var path: String { get }
    /// Whether `.wh.` names are markers here (false for an overlay-format directory, where
    /// they are ordinary names).
    var honorsOCIMarkers: Bool { get }
    /// Calls `body` for every entry in layer order; `content` fills a regular file's content
    /// when called (at most once, during `body`).
    func forEach(
        _ body: (LayerEntry, _ content: ((SparseWriter) throws(DiffError) -> Void)?) throws(DiffError) -> Void
    ) throws(DiffError)
}

/// A layer tarball of any compression, read with LayerCore's ``ArchiveReader``. It is opened
/// once and each pass reads it from the start through that descriptor, so a layer stored inside
/// ROOT (or renamed meanwhile) is read whole even when applying it removes its name.
struct TarLayerSource: LayerSource {
    var honorsOCIMarkers: Bool { true }
    /// The tarball.
    let path: String
    private let file: FileDescriptor

    /// Opens the tarball at `path`.
    ///
    /// - Throws: ``DiffError`` naming `path`.
    init(path: String) throws(DiffError) {
        self.path = path
        do {
            file = try FileDescriptor.open(path: path, flags: O_RDONLY)
        } catch {
            throw DiffError(PathError(path: path, errno: error, what: "layer"))
        }
        // The layer is read twice (checked, then applied): a pipe would fail at the second
        // pass, after the whiteouts have changed ROOT.
        if lseek(file.rawValue, 0, SEEK_CUR) < 0 {
            throw DiffError(
                path: path,
                reason: "cannot apply a layer from a pipe: it is read twice (checked, then applied); "
                    + "save it to a file first", errno: .current)
        }
    }

    func forEach(
        _ body: (LayerEntry, _ content: ((SparseWriter) throws(DiffError) -> Void)?) throws(DiffError) -> Void
    ) throws(DiffError) {
        let fd = file
        do {
            _ = try fd.seek(to: 0, whence: SEEK_SET)
        } catch {
            throw DiffError(path: path, "cannot read the layer again from its start", error)
        }
        let reader: ArchiveReader
        do {
            reader = try ArchiveReader(input: fd)
        } catch {
            throw DiffError(
                path: path, reason: (error.isDamage ? "damaged layer: " : "not a layer tarball: ") + error.message)
        }
        while true {
            let stored: ArchiveEntry
            do {
                guard let next = try reader.next() else { return }
                stored = next
            } catch {
                throw DiffError(path: path, reason: "damaged layer: \(error.message)")
            }
            let display = escapeForDisplay(stored.path)
            let normalized: RelativePath
            do {
                normalized = try stored.normalizedPath()
            } catch {
                throw DiffError(path: "\(path): \(display)", reason: "refused: \(error)")
            }
            var hardLinkTarget: RelativePath?
            if stored.kind == .hardLink {
                do {
                    hardLinkTarget = try ArchiveEntry.normalize(stored.linkTarget)
                } catch {
                    throw DiffError(
                        path: "\(path): \(display)",
                        reason: "refused: hard link target '\(escapeForDisplay(stored.linkTarget))': \(error)")
                }
            }
            // Overlay-private xattrs (trusted.overlay.*, user.overlay.*) are the overlay's own
            // bookkeeping, never content: a layer must not plant redirects, metacopy or opaque
            // flags in ROOT, which may be used as a layer later. flatten drops them too.
            var metadata = EntryMetadata(stored)
            metadata.attributes.removeAll { Whiteout.isOverlayPrivateAttribute($0.name) }
            let entry = LayerEntry(
                path: normalized, display: display, kind: stored.kind, metadata: metadata,
                size: stored.size, hardLinkTarget: hardLinkTarget,
                role: try TarLayerSource.role(normalized, display, path))
            if stored.kind == .regular && stored.size > 0 {
                let layerPath = path
                try body(entry) { (writer) throws(DiffError) in
                    do {
                        while let block = try reader.readBlock() {
                            try writer.seek(to: block.offset)
                            try writer.write(block.bytes)
                        }
                        try writer.pad(to: stored.size)
                    } catch let error as ArchiveError {
                        throw DiffError(path: layerPath, reason: "damaged layer at \(display): \(error.message)")
                    } catch let error as Errno {
                        throw DiffError(path: display, "cannot write", error)
                    } catch {
                        throw DiffError(path: display, reason: "\(error)")
                    }
                }
            } else {
                try body(entry, nil)
            }
        }
    }

    /// The meaning of a stored name in an OCI layer. `.wh.` names whose target is `.` or `..`
    /// are refused: they would delete the directory itself or climb out.
    static func role(_ path: RelativePath, _ display: String, _ layer: String) throws(DiffError) -> LayerEntry.Role {
        guard let name = path.lastName, name.hasPrefix(Whiteout.ociPrefix) else { return .entry }
        let target = Array(name.bytes.dropFirst(Whiteout.ociPrefix.count))
        if target == [0x2E] || target == [0x2E, 0x2E] {
            throw DiffError(path: "\(layer): \(display)", reason: "refused: whiteout of '.' or '..' would climb out")
        }
        switch Whiteout.ociMarker(for: name) {
        case .whiteout(let deleted): return .whiteout(deleted)
        case .opaque: return .opaque
        case .meta, nil: return .meta
        }
    }
}

/// A layer directory, walked with LayerCore's ``TreeWalker`` (sorted, never through a symlink).
struct DirectoryLayerSource: LayerSource {
    var honorsOCIMarkers: Bool { format.honorsOCI }
    /// The layer directory.
    let path: String
    /// The markers it uses.
    let format: WhiteoutFormat

    func forEach(
        _ body: (LayerEntry, _ content: ((SparseWriter) throws(DiffError) -> Void)?) throws(DiffError) -> Void
    ) throws(DiffError) {
        let walker: TreeWalker
        do {
            walker = try TreeWalker(path: path)
        } catch {
            throw DiffError(error)
        }
        var firstPath: [FileIdentity: RelativePath] = [:]
        var failure: DiffError?
        let reader = SideReader(side: .b, displayRoot: path, dropOverlayAttributes: format.honorsOverlay)
        do throws(PathError) {
            try walker.walk { (visit) throws(PathError) -> TreeWalker.Decision in
                do throws(DiffError) {
                    try visitEntry(visit, reader, &firstPath, body)
                } catch {
                    failure = error
                    throw PathError(path: "", reason: "stop")
                }
                return .descend
            }
        } catch {
            if let failure { throw failure }
            throw DiffError(error)
        }
    }

    private func visitEntry(
        _ visit: TreeWalker.Visit, _ reader: SideReader, _ firstPath: inout [FileIdentity: RelativePath],
        _ body: (LayerEntry, _ content: ((SparseWriter) throws(DiffError) -> Void)?) throws(DiffError) -> Void
    ) throws(DiffError) {
        let entry: SideEntry
        if let name = visit.name {
            entry = try reader.complete(name, visit.status, in: visit.parent, parent: visit.path.parent)
        } else {
            entry = try reader.rootEntry(visit.parent)
        }
        var role = LayerEntry.Role.entry
        if let name = visit.name {
            if format.honorsOverlay && Whiteout.isOverlayWhiteout(visit.status) {
                role = .whiteout(name)
            } else if format.honorsOCI && name.hasPrefix(Whiteout.ociPrefix) {
                role = try TarLayerSource.role(visit.path, visit.path.description, path)
            }
        }
        guard let kind = ArchiveEntry.Kind(visit.status.type) else {
            throw DiffError(path: reader.display(visit.path), reason: "a \(visit.status.type) cannot be applied")
        }
        var layerEntry = LayerEntry(
            path: visit.path, display: visit.path.description, kind: kind, metadata: EntryMetadata(entry, clamp: nil),
            size: visit.status.size, hardLinkTarget: nil, role: role)
        if case .entry = role, kind != .directory, visit.status.linkCount > 1 {
            if let first = firstPath[visit.status.identity] {
                layerEntry.kind = .hardLink
                layerEntry.hardLinkTarget = first
            } else {
                firstPath[visit.status.identity] = visit.path
            }
        }
        if layerEntry.kind == .regular, case .entry = role, visit.status.size > 0 {
            let display = reader.display(visit.path)
            try body(layerEntry) { (writer) throws(DiffError) in
                let file = try ContentComparison.open(entry, display)
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
                defer { buffer.deallocate() }
                var offset: Int64 = 0
                while true {
                    let count = try ContentComparison.read(file, into: buffer, count: buffer.count, at: offset, display)
                    if count == 0 { break }
                    do throws(Errno) {
                        try writer.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                    } catch {
                        throw DiffError(path: display, "cannot copy", error)
                    }
                    offset += Int64(count)
                }
            }
        } else {
            try body(layerEntry, nil)
        }
        if visit.status.type == .directory && entry.overlayOpaque && format.honorsOverlay {
            let marker = LayerEntry(
                path: visit.path.appending(Whiteout.ociOpaqueMarker), display: visit.path.description,
                kind: .regular, metadata: layerEntry.metadata, size: 0, hardLinkTarget: nil, role: .opaque)
            try body(marker, nil)
        }
    }
}
