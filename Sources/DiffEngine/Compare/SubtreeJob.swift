import Glibc
import LayerCore
import Synchronization

/// What the jobs of one diff share: how to read both sides, the options, the pool, counters.
final class DiffContext: Sendable {
    /// What B is.
    enum Mode: Sendable {
        /// B is a tree of its own.
        case trees
        /// B is A under an overlay upper dir read with these markers.
        case upper(WhiteoutFormat)
    }

    /// Change detection and layer policy.
    let options: DiffOptions
    /// How A is read.
    let aReader: SideReader
    /// How B (or the upper dir) is read.
    let bReader: SideReader
    /// What B is.
    let mode: Mode
    /// The pool the jobs run on.
    let pool: WorkPool
    /// Whether a layer is written (whiteouts and the opaque choice matter then).
    let layerWanted: Bool
    /// Whether its deletions are OCI `.wh.NAME` whiteouts (which cannot name every file).
    let ociWhiteouts: Bool
    /// Entries examined so far (both sides), for progress and the summary.
    let examined = Atomic<Int>(0)
    /// Bytes read to compare content so far.
    let hashed = Atomic<Int64>(0)
    /// Queued subtree jobs below which a job hands a subdirectory to the pool instead of
    /// walking it itself.
    let spawnLimit: Int

    /// The shared state of one diff.
    init(
        options: DiffOptions, a: SideReader, b: SideReader, mode: Mode, pool: WorkPool, layerWanted: Bool,
        ociWhiteouts: Bool = false
    ) {
        self.ociWhiteouts = ociWhiteouts
        self.options = options
        aReader = a
        bReader = b
        self.mode = mode
        self.pool = pool
        self.layerWanted = layerWanted
        spawnLimit = pool.workerCount == 0 ? 0 : 2 * pool.workerCount + 2
    }

    /// Whether B is an overlay upper dir.
    var isUpper: Bool {
        if case .upper = mode { return true }
        return false
    }
}

/// Where a directory of one side is.
enum DirectorySource: Sendable {
    /// Already open.
    case open(FileDescriptor)
    /// Entry `name` of an open directory.
    case child(FileDescriptor, FileName)
}

/// One directory pair to diff, with its whole subtree.
struct DirectoryTask: Sendable {
    /// The kind of B directory.
    enum BKind: Sendable {
        /// A full B tree directory (or A itself, re-sent below an opaque marker).
        case tree
        /// An overlay upper-dir directory (opaque by xattr or not).
        case upper(opaque: Bool)
    }

    /// The directory's path.
    let path: RelativePath
    /// A's directory, nil when A has none there (everything in B is added).
    let a: DirectorySource?
    /// B's directory.
    let b: DirectorySource
    /// How to read B's directory.
    let bKind: BKind
    /// B's directory status (whiteouts and opaque markers take its mtime).
    let bStatus: FileStatus
    /// Everything below must be in the layer (an ancestor got an opaque marker).
    let forced: Bool
    /// Read B's entries from A's reader (a lower directory re-sent whole).
    let bFromA: Bool
}

/// What a subtree job produces, in output order.
enum OutputItem: Sendable {
    /// A record to emit.
    case record(Record)
    /// A subdirectory handed to another job: its output goes here.
    case subtree(SubtreeJob)
    /// An A path with this multi-link inode is not in B (for hard-link bookkeeping).
    case lowerLink(FileIdentity, UInt64)
}

/// Diffs one directory pair and everything below it on a pool thread, handing subdirectories
/// to new jobs while the pool has idle threads ("lazy splitting"): jobs stay coarse, and never
/// wait for each other. The consumer drains outputs in order.
final class SubtreeJob: Job, @unchecked Sendable {
    // @unchecked Sendable: see Job (`output` is written once before `finished`).
    private let task: DirectoryTask
    private let diff: DiffContext
    private var output: Result<[OutputItem], DiffError> = .success([])

    /// A job diffing `task`'s directory pair and its subtree.
    init(_ task: DirectoryTask, _ diff: DiffContext) {
        self.task = task
        self.diff = diff
    }

    override func execute(_ context: WorkerContext) {
        var items: [OutputItem] = []
        do throws(DiffError) {
            var differ = SubtreeDiffer(diff: diff, context: context)
            try differ.diffDirectory(task, into: &items)
            output = .success(items)
        } catch {
            output = .failure(error)
        }
    }

    /// The output; call once, after the job finished (it is released afterwards).
    func takeOutput() throws(DiffError) -> [OutputItem] {
        let result = output
        output = .success([])
        return try result.get()
    }
}

/// The per-directory logic of the diff: pairing names, the opaque choice, the comparison of
/// each pair in the change-detection order, content checks, recursion.
struct SubtreeDiffer {
    /// One name of a directory pair.
    private enum Pair {
        case deleted(SideEntry)
        case added(SideEntry)
        case both(SideEntry, SideEntry)
        /// Overlay diff: the name shows A's entry unchanged (the upper dir does not touch it).
        case lower(FileName)

        var name: FileName {
            switch self {
            case .deleted(let a): a.name
            case .added(let b): b.name
            case .both(_, let b): b.name
            case .lower(let name): name
            }
        }
    }

    /// The diff's shared state.
    let diff: DiffContext
    /// The running thread's scratch buffers.
    let context: WorkerContext

    private var options: DiffOptions { diff.options }

    /// Diffs `task`'s directory pair, appending its output (and its subtree's, or the jobs that
    /// take parts of it) to `items` in output order.
    ///
    /// - Throws: ``DiffError`` naming the path that cannot be read.
    mutating func diffDirectory(_ task: DirectoryTask, into items: inout [OutputItem]) throws(DiffError) {
        let bReader = task.bFromA ? diff.aReader : diff.bReader
        let bDirectory = try open(task.b, bReader, task.path)
        let bEntries = try bReader.entries(of: bDirectory, path: task.path)
        var aDirectory: FileDescriptor?
        var pairs: [Pair]
        // Below an opaque upper dir (by xattr or `.wh..wh..opq`), A is hidden at every depth: the
        // merged subtree is exactly the upper's, so its subdirectories are opaque too.
        var hidesLower = false
        switch task.bKind {
        case .tree:
            if let source = task.a {
                let directory = try open(source, diff.aReader, task.path)
                aDirectory = directory
                pairs = merge(try diff.aReader.entries(of: directory, path: task.path), bEntries)
            } else {
                pairs = bEntries.map(Pair.added)
            }
        case .upper(let opaque):
            var names: [FileName]?
            if let source = task.a {
                let directory = try open(source, diff.aReader, task.path)
                aDirectory = directory
                do {
                    names = try TreeWalker.names(of: directory, sorted: true)
                } catch {
                    throw DiffError(path: diff.aReader.display(task.path), "cannot list directory", error)
                }
            }
            (pairs, hidesLower) = try upperPairing(
                task.path, aDirectory: aDirectory, aNames: names, upper: bEntries, opaque: opaque)
        }
        diff.examined.add(pairs.count, ordering: .relaxed)
        let deletions = pairs.filter {
            if case .deleted = $0 { return true }
            return false
        }
        // A deleted name over 251 bytes has no OCI whiteout (`.wh.` + the name passes 255 bytes):
        // only the opaque marker deletes it.
        let unnamable =
            diff.ociWhiteouts
            && deletions.contains {
                guard case .deleted(let entry) = $0 else { return false }
                return entry.name.bytes.count + Whiteout.ociPrefix.count > FileName.maxLength
            }
        // Never at the root: the kernel overlay (and layermount) ignore an opaque marker on a
        // layer's root, so stacking such a layer would not hide A; per-name whiteouts always work.
        let opaque =
            !task.forced && !task.path.isRoot && diff.layerWanted
            && (unnamable
                || (deletions.count >= 2 && chooseOpaque(pairs, deletions.count, aDirectory, hidesLower: hidesLower)))
        let childrenForced = task.forced || opaque
        if diff.layerWanted && !task.forced {
            let time = task.bStatus.modificationTime
            if opaque {
                items.append(.record(Record(path: task.path, kind: nil, type: .directory, layer: .opaque(time))))
            } else {
                for pair in deletions {
                    guard case .deleted(let entry) = pair else { continue }
                    items.append(
                        .record(
                            Record(
                                path: task.path.appending(entry.name), kind: nil, type: entry.type,
                                layer: .whiteout(time))))
                }
            }
        }
        for pair in pairs {
            switch pair {
            case .deleted(let entry):
                let childPath = task.path.appending(entry.name)
                items.append(
                    .record(Record(path: childPath, kind: .deleted, type: entry.type, layer: nil, reportOnly: true)))
                if !entry.isDirectory && entry.status.linkCount > 1 {
                    items.append(.lowerLink(entry.status.identity, entry.status.linkCount))
                }
            case .added(let entry):
                let childPath = task.path.appending(entry.name)
                let record = Record(path: childPath, kind: .added, type: entry.type, layer: .entry(entry.detached))
                if !entry.isDirectory && entry.status.linkCount > 1 { record.linkKeys = (nil, keys(entry)) }
                items.append(.record(record))
                if entry.isDirectory {
                    try descend(
                        DirectoryTask(
                            path: childPath, a: nil, b: .child(bDirectory, entry.name),
                            bKind: kind(of: entry, task, hidesLower),
                            bStatus: entry.status, forced: false, bFromA: task.bFromA), into: &items)
                }
            case .both(let aEntry, let bEntry):
                try compare(
                    aEntry, bEntry, forced: childrenForced, task: task, hidesLower: hidesLower,
                    bDirectory: bDirectory, aDirectory: aDirectory, into: &items)
            case .lower(let name):
                let childPath = task.path.appending(name)
                guard childrenForced, let aDirectory,
                    let aEntry = try diff.aReader.entry(name, in: aDirectory, path: childPath)
                else { continue }
                // The lower entry stays in B but the layer hides the lower directory: re-send it.
                let lowerTask = DirectoryTask(
                    path: task.path, a: nil, b: .open(aDirectory), bKind: .tree, bStatus: task.bStatus, forced: true,
                    bFromA: true)
                try compare(
                    aEntry, aEntry, forced: true, task: lowerTask, hidesLower: false, bDirectory: aDirectory,
                    aDirectory: aDirectory, into: &items)
            }
        }
    }

    /// Hands the subtree to the pool when threads are idle, else walks it here.
    private mutating func descend(_ task: DirectoryTask, into items: inout [OutputItem]) throws(DiffError) {
        if diff.pool.queuedCount < diff.spawnLimit {
            let job = SubtreeJob(task, diff)
            diff.pool.submit(job, urgent: true)
            items.append(.subtree(job))
        } else {
            try diffDirectory(task, into: &items)
        }
    }

    /// Compares one name of `task`'s directory present on both sides and recurses into
    /// directories. The path is built only for what is kept (the common unchanged file costs no
    /// allocation). `hidesLower`: `task`'s upper directory is opaque (so B's subdirectories are).
    private mutating func compare(
        _ a: SideEntry, _ b: SideEntry, forced: Bool, task: DirectoryTask, hidesLower: Bool,
        bDirectory: FileDescriptor, aDirectory: FileDescriptor?, into items: inout [OutputItem]
    ) throws(DiffError) {
        var aspects = EntryComparison.aspects(a, b)
        var path: RelativePath { task.path.appending(b.name) }
        if aspects == .type {
            let record = Record(path: path, kind: .changed, type: b.type, aspects: .type, layer: .entry(b.detached))
            if !a.isDirectory && a.status.linkCount > 1 {
                items.append(.lowerLink(a.status.identity, a.status.linkCount))
            }
            if !b.isDirectory && b.status.linkCount > 1 { record.linkKeys = (nil, keys(b)) }
            items.append(.record(record))
            if b.isDirectory {
                // The new directory replaces the old entry whole: nothing of A below it counts.
                try descend(
                    DirectoryTask(
                        path: path, a: nil, b: .child(bDirectory, b.name), bKind: kind(of: b, task, hidesLower),
                        bStatus: b.status,
                        forced: false, bFromA: task.bFromA), into: &items)
            }
            return
        }
        if b.isDirectory {
            let changed = isChanged(aspects)
            if changed || forced {
                items.append(
                    .record(
                        Record(
                            path: path, kind: changed ? .changed : nil, type: .directory, aspects: aspects,
                            layer: .entry(b.detached), forced: forced)))
            }
            guard let aDirectory else { return }
            try descend(
                DirectoryTask(
                    path: path, a: .child(aDirectory, a.name), b: .child(bDirectory, b.name),
                    bKind: kind(of: b, task, hidesLower),
                    bStatus: b.status, forced: forced, bFromA: task.bFromA), into: &items)
            return
        }
        if b.type == .regular && !aspects.contains(.content) {
            let relevant = options.ignoreModificationTime ? aspects.subtracting(.mtime) : aspects
            let trusted = options.trustModificationTime && aspects.isEmpty
            if relevant.isEmpty && !trusted && a.status.identity != b.status.identity && b.status.size > 0 {
                let bReader = task.bFromA ? diff.aReader : diff.bReader
                let aReader = diff.aReader
                let outcome = try ContentComparison.compare(
                    a, b, display: { $0 == .a ? aReader.display(path) : bReader.display(path) }, context: context)
                diff.hashed.add(2 * b.status.size, ordering: .relaxed)
                if case .different = outcome { aspects.insert(.content) }
            }
        }
        let linked = a.status.linkCount > 1 || b.status.linkCount > 1
        if linked || forced || isChanged(aspects) {
            let record = Record(
                path: path, kind: .changed, type: b.type, aspects: aspects, layer: .entry(b.detached), forced: forced)
            if linked { record.linkKeys = (keys(a), keys(b)) }
            items.append(.record(record))
        }
    }

    /// How to read the B directory `entry` of `parent`; `parentHidesLower` is whether `parent`
    /// is opaque in the upper dir (itself or through an ancestor), which makes `entry` opaque.
    private func kind(of entry: SideEntry, _ parent: DirectoryTask, _ parentHidesLower: Bool) -> DirectoryTask.BKind {
        if case .upper = parent.bKind { return .upper(opaque: parentHidesLower || entry.overlayOpaque) }
        return .tree
    }

    private func keys(_ entry: SideEntry) -> (FileIdentity, UInt64) {
        (entry.status.identity, entry.status.linkCount)
    }

    private func isChanged(_ aspects: ChangeAspects) -> Bool {
        !(options.ignoreModificationTime ? aspects.subtracting(.mtime) : aspects).isEmpty
    }

    private func open(_ source: DirectorySource, _ reader: SideReader, _ path: RelativePath) throws(DiffError)
        -> FileDescriptor
    {
        switch source {
        case .open(let fd): return fd
        case .child(let parent, let name): return try reader.openDirectory(name, in: parent, path: path)
        }
    }

    // MARK: - Pairing

    private func merge(_ a: [SideEntry], _ b: [SideEntry]) -> [Pair] {
        var pairs: [Pair] = []
        pairs.reserveCapacity(max(a.count, b.count))
        var i = 0
        var j = 0
        while i < a.count || j < b.count {
            if j == b.count || (i < a.count && a[i].name < b[j].name) {
                pairs.append(.deleted(a[i]))
                i += 1
            } else if i == a.count || b[j].name < a[i].name {
                pairs.append(.added(b[j]))
                j += 1
            } else {
                pairs.append(.both(a[i], b[j]))
                i += 1
                j += 1
            }
        }
        return pairs
    }

    /// Pairs A's names with an upper directory's entries: whiteouts and (when `opaque` or the
    /// directory holds an OCI opaque marker) every A name the upper does not have are deletions,
    /// names only in A are `.lower`. Also returns whether the directory is opaque.
    private func upperPairing(
        _ path: RelativePath, aDirectory: FileDescriptor?, aNames: [FileName]?, upper: [SideEntry],
        opaque opaqueByAttribute: Bool
    ) throws(DiffError) -> ([Pair], opaque: Bool) {
        guard case .upper(let format) = diff.mode else { return (upper.map(Pair.added), false) }
        var opaque = opaqueByAttribute
        var whiteouts = Set<FileName>()
        var real: [SideEntry] = []
        for entry in upper {
            if format.honorsOverlay && Whiteout.isOverlayWhiteout(entry.status) {
                whiteouts.insert(entry.name)
                continue
            }
            if format.honorsOCI, let marker = Whiteout.ociMarker(for: entry.name) {
                switch marker {
                case .whiteout(let target): whiteouts.insert(target)
                // The root's marker is ignored, as layermount and the kernel ignore one on a
                // layer's root (as the root's opaque xattr is).
                case .opaque: opaque = opaque || !path.isRoot
                case .meta: break
                }
                continue
            }
            real.append(entry)
        }
        guard let aDirectory, let names = aNames else { return (real.map(Pair.added), opaque) }
        var pairs: [Pair] = []
        var i = 0
        var j = 0
        while i < names.count || j < real.count {
            if j == real.count || (i < names.count && names[i] < real[j].name) {
                let name = names[i]
                i += 1
                if opaque || whiteouts.contains(name) {
                    if let entry = try diff.aReader.entry(name, in: aDirectory, path: path.appending(name)) {
                        pairs.append(.deleted(entry))
                    }
                } else {
                    pairs.append(.lower(name))
                }
            } else if i == names.count || real[j].name < names[i] {
                pairs.append(.added(real[j]))
                j += 1
            } else {
                let name = names[i]
                if let entry = try diff.aReader.entry(name, in: aDirectory, path: path.appending(name)) {
                    try refuseIndexedLink(entry, real[j], path.appending(name))
                    pairs.append(.both(entry, real[j]))
                } else {
                    pairs.append(.added(real[j]))
                }
                i += 1
                j += 1
            }
        }
        return (pairs, opaque)
    }

    /// Refuses an upper file that overlayfs copied up as an indexed hard link (`index=on`) over
    /// an A file with other names: the merged tree shows the new file at all of them, but the
    /// upper dir holds only this one, and finding the others would take a walk of all of A.
    private func refuseIndexedLink(_ aEntry: SideEntry, _ upperEntry: SideEntry, _ path: RelativePath)
        throws(DiffError)
    {
        guard upperEntry.overlayIndexedLink, !aEntry.isDirectory, aEntry.status.linkCount > 1 else { return }
        throw DiffError(
            path: diff.bReader.display(path),
            reason:
                "overlay nlink entry (a hard link copied up with index=on: the merged tree shows it at every "
                + "other name of the lower file too), which --upper does not follow; diff the merged tree instead")
    }

    // MARK: - Opaque or explicit whiteouts

    /// Whether an opaque marker is smaller than `deletions` whiteouts: the marker hides every
    /// lower child, so the children that stay must be re-sent whole. Chosen only when
    /// 1 + (entries below the staying children, counted up to the limit) < deletions, which is
    /// never worse than the explicit form. In an upper dir a staying directory also shows A's
    /// entries below it, unless the directory hides the lower (`hidesLower`).
    private func chooseOpaque(_ pairs: [Pair], _ deletions: Int, _ aDirectory: FileDescriptor?, hidesLower: Bool)
        -> Bool
    {
        let budget = deletions - 1
        var kept = 0
        for pair in pairs {
            switch pair {
            case .both(let aEntry, let bEntry):
                if aEntry.type != bEntry.type { continue }
                kept += 1
                if bEntry.isDirectory, let bParent = bEntry.parent {
                    kept += countEntries(bParent, bEntry.name, limit: budget - kept)
                    if diff.isUpper && !hidesLower && !bEntry.overlayOpaque, let aParent = aEntry.parent {
                        kept += countEntries(aParent, aEntry.name, limit: budget - kept)
                    }
                }
            case .lower(let name):
                kept += 1
                if let aDirectory { kept += countEntries(aDirectory, name, limit: budget - kept) }
            case .added, .deleted: continue
            }
            if kept >= budget { return false }
        }
        return kept < budget
    }

    /// Entries below directory `name` of `parent`, counted up to `limit` (names only).
    private func countEntries(_ parent: FileDescriptor, _ name: FileName, limit: Int) -> Int {
        guard limit > 0, let directory = try? parent.open(name, flags: O_RDONLY | O_DIRECTORY) else { return 0 }
        var count = 0
        var subdirectories: [FileName] = []
        try? DirectoryReader.forEachEntry(in: directory) { entry in
            count += 1
            if entry.type == .directory || entry.type == nil { subdirectories.append(entry.name) }
        }
        for subdirectory in subdirectories where count < limit {
            count += countEntries(directory, subdirectory, limit: limit - count)
        }
        return count
    }
}
