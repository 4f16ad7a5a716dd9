import LayerCore

/// Receives settled records in output order: reports changes to the ``ChangeReporter``s and
/// writes layer items to the ``LayerSink``, refusing (or skipping) what the layer format cannot
/// hold, and turning later paths of an already written inode into hard links.
final class Emitter {
    private let reporters: [ChangeReporter]
    private let sink: LayerSink?
    private let format: LayerFormat?
    private let skipUnrepresentable: Bool
    private let bReader: SideReader
    private let aReader: SideReader?
    private let ignoringMtime: Bool
    private let cancellation: DiffCancellation?
    private var skippedPrefixes: [RelativePath] = []
    private var firstPath: [FileIdentity: RelativePath] = [:]
    /// Totals so far.
    private(set) var summary = DiffSummary()

    /// An emitter reporting to `reporters` and writing to `sink` (nil: no layer).
    init(
        reporters: [ChangeReporter], sink: LayerSink?, format: LayerFormat?, skipUnrepresentable: Bool,
        bReader: SideReader, aReader: SideReader? = nil, ignoringMtime: Bool, cancellation: DiffCancellation? = nil
    ) {
        self.aReader = aReader
        self.cancellation = cancellation
        self.reporters = reporters
        self.sink = sink
        self.format = format
        self.skipUnrepresentable = skipUnrepresentable
        self.bReader = bReader
        self.ignoringMtime = ignoringMtime
    }

    /// Whether a layer is being written (whiteouts and the opaque choice matter then).
    var hasLayer: Bool { sink != nil }

    /// Whether deletions are written as OCI `.wh.NAME` whiteouts.
    var writesOCIWhiteouts: Bool { sink != nil && format == .oci }

    /// Records the walk's totals in the summary.
    func noteTotals(examined: Int, hashed: Int64) {
        summary.examined = examined
        summary.hashedBytes = hashed
    }

    /// Emits one settled record.
    ///
    /// - Throws: ``DiffError`` for an unrepresentable entry (unless skipping) or an output
    ///   failure; ``DiffError/interrupted`` once a stop is requested.
    func emit(_ record: Record) throws(DiffError) {
        try cancellation?.check()
        if record.reportOnly {
            if let kind = record.kind {
                try report(Change(kind: kind, path: record.path, type: record.type, size: nil, aspects: []))
            }
            return
        }
        guard let layer = record.layer else { return }
        guard case .entry(let entry) = layer else {
            try write(record.path, layer)
            return
        }
        let changed = record.changedByItself(ignoringMtime: ignoringMtime) ?? true
        let linked = record.link?.emitted ?? false
        if let kind = record.kind, changed || (linked && !record.forced) {
            let aspects = changed ? (kind == .added ? [] : record.aspects) : ChangeAspects.links
            let size = entry.type == .regular ? entry.status.size : nil
            try report(Change(kind: kind, path: record.path, type: entry.type, size: size, aspects: aspects))
        }
        if changed || record.forced || linked {
            try write(record.path, layer)
        }
    }

    private func report(_ change: Change) throws(DiffError) {
        summary.counts[change.kind, default: 0] += 1
        if let size = change.size { summary.bytes[change.kind, default: 0] += size }
        for reporter in reporters { try reporter.report(change) }
    }

    private func write(_ path: RelativePath, _ item: LayerItem) throws(DiffError) {
        guard let sink else { return }
        if skippedPrefixes.contains(where: { path.components.starts(with: $0.components) }) { return }
        if let problem = problem(path, item) {
            // A whiteout is about the A entry it deletes; an entry about B's.
            var display = bReader.display(path)
            if case .whiteout = item, let aReader { display = aReader.display(path) }
            guard skipUnrepresentable else {
                throw DiffError(path: display, reason: "\(problem) (--skip-unrepresentable leaves it out)")
            }
            summary.skipped.append(display)
            skippedPrefixes.append(path)
            return
        }
        switch item {
        case .entry(let entry):
            var linkTo: RelativePath?
            if !entry.isDirectory && entry.status.linkCount > 1 {
                if let first = firstPath[entry.status.identity] {
                    linkTo = first
                } else {
                    firstPath[entry.status.identity] = path
                }
            }
            try sink.write(path, .entry(entry, hardLinkTo: linkTo))
            if format == .overlay, let name = path.lastName, name.hasPrefix(Whiteout.ociPrefix) {
                summary.markerLookalikes.append(bReader.display(path))
            }
            if linkTo == nil && entry.type == .regular { summary.layerContentBytes += entry.status.size }
        case .whiteout(let time):
            try sink.write(path, .whiteout(time))
            summary.whiteouts += 1
        case .opaque(let time):
            try sink.write(path, .opaque(time))
            summary.opaqueMarkers += 1
        }
        summary.layerEntries += 1
    }

    /// Whether libarchive stores an xattr name as it is in a tarball: it URL-encodes bytes below
    /// `!` or above `~`, `%` and `=`, and no reader decodes them.
    static func isStorableInTar(attributeName name: [UInt8]) -> Bool {
        !name.contains { $0 < 0x21 || $0 > 0x7E || $0 == 0x25 || $0 == 0x3D }
    }

    /// Why the layer cannot hold `item` at `path`, or nil.
    private func problem(_ path: RelativePath, _ item: LayerItem) -> String? {
        guard let format, let name = path.lastName else { return nil }
        switch item {
        case .entry(let entry):
            if entry.type == .socket || entry.type == .unknown {
                return "a \(entry.type) cannot be stored in a layer"
            }
            if sink?.storesAnyAttributeName == false,
                let attribute = entry.attributes.first(where: { !Self.isStorableInTar(attributeName: $0.name) })
            {
                return "cannot be stored in a layer tarball: its xattr '\(escapeForDisplay(attribute.name))' has a "
                    + "space, '%', '=', a control or a non-ASCII byte in its name, which libarchive writes "
                    + "URL-encoded (readers would restore another name)"
            }
            switch format {
            case .oci:
                if name.hasPrefix(Whiteout.ociPrefix) {
                    return "cannot be stored in an OCI layer: a name starting with '.wh.' is a whiteout marker"
                }
            case .overlay:
                if Whiteout.isOverlayWhiteout(entry.status) {
                    return "cannot be stored in an overlay layer: a character device 0/0 is a whiteout marker"
                }
            }
        case .whiteout:
            if format == .oci {
                if name.hasPrefix(Whiteout.ociPrefix) {
                    return "its deletion cannot be stored in an OCI layer: the whiteout '.wh.\(name)' is a marker name"
                }
                if name.bytes.count + Whiteout.ociPrefix.count > FileName.maxLength {
                    return "its deletion cannot be stored in an OCI layer: the whiteout name is longer than 255 bytes"
                }
            }
        case .opaque: return nil
        }
        return nil
    }

    /// Finishes the reporters (after the layer, whose digests the summaries show).
    ///
    /// - Throws: ``DiffError`` when an output fails.
    func finishReporters() throws(DiffError) {
        for reporter in reporters { try reporter.finish(summary) }
    }
}
