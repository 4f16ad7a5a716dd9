import Glibc
import LayerCore

/// The ordered walk over A and B that produces the changeset.
///
/// One consumer thread walks both trees in path order (each directory's entries sorted
/// bytewise) and pushes ``Record``s into an ordered queue; directory listings are prefetched and
/// content comparisons run on the ``WorkPool``; the queue is flushed to the ``Emitter`` from its
/// head as records settle, so output is streamed and its order never depends on thread timing.
///
/// Per directory the layer gets, in order: the directory's own entry (emitted by its parent,
/// only when it is new or its own metadata changed), then either an opaque marker or one
/// whiteout per deleted child (sorted), then the children in name order, each followed by its
/// subtree. Reports (text, JSON) come in plain path order.
///
/// Memory: one listing per level and side plus prefetched listings of the current directories'
/// subdirectories (depth times width), a bounded window of pending content comparisons, the
/// changes waiting behind an undecided hard-link member, and the multi-link inodes met.
final class DiffWalk {
    /// What B is.
    enum Mode {
        /// B is a tree of its own.
        case trees
        /// B is A under an overlay upper dir read with these markers.
        case upper(WhiteoutFormat)
    }

    /// One side of a directory pair as the walk needs it.
    private enum BDirectory {
        /// A full listing of a B directory (or of A itself, where the lower shows through
        /// unchanged but must be re-sent).
        case tree(Listing)
        /// An upper-dir directory: its entries replace or add to A's unless `opaque`.
        case upper(Listing, opaque: Bool)

        var isUpper: Bool {
            if case .upper = self { return true }
            return false
        }
    }

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

    private let options: DiffOptions
    private let aReader: SideReader
    private let bReader: SideReader
    private let mode: Mode
    private let pool: WorkPool
    private let context = WorkerContext()
    private let emitter: Emitter
    private let links: LinkGroups
    private let progress: Progress?
    private var queue: [Record] = []
    private var head = 0
    private var pendingContent: [ContentJob] = []
    private var pendingHead = 0

    /// Pending content comparisons beyond which the walk waits for the oldest.
    private static let contentWindow = 4096
    /// Queued records beyond which the walk tries to shrink the queue.
    private static let queueWindow = 16384

    /// A walk comparing the side read by `aReader` with the side read by `bReader`.
    init(
        options: DiffOptions, a aReader: SideReader, b bReader: SideReader, mode: Mode, emitter: Emitter,
        progress: Progress?
    ) {
        self.options = options
        self.aReader = aReader
        self.bReader = bReader
        self.mode = mode
        self.emitter = emitter
        self.progress = progress
        pool = WorkPool(workers: max(0, options.jobs - 1))
        let overlay: Bool
        if case .upper = mode { overlay = true } else { overlay = false }
        links = LinkGroups(ignoringMtime: options.ignoreModificationTime, unseenLowerMayRemain: overlay)
    }

    deinit { pool.shutdown() }

    private var layerWanted: Bool { emitter.hasLayer }

    /// Walks both sides from their roots and emits everything.
    ///
    /// - Throws: ``DiffError`` for a side that cannot be read, a change the layer cannot
    ///   represent, or an output failure.
    func run(aRoot: FileDescriptor, bRoot: FileDescriptor) throws(DiffError) {
        defer { pool.shutdown() }
        let aEntry = try aReader.rootEntry(aRoot)
        let bEntry = try bReader.rootEntry(bRoot)
        let aspects = EntryComparison.aspects(aEntry, bEntry)
        if isChanged(aspects) {
            try push(Record(path: .root, kind: .changed, type: .directory, aspects: aspects, layer: .entry(bEntry)))
        }
        let aJob: ListingJob
        let bJob = ListingJob(.open(bRoot), path: .root, reader: bReader)
        switch mode {
        case .trees: aJob = ListingJob(.open(aRoot), path: .root, reader: aReader)
        case .upper: aJob = ListingJob(.open(aRoot), path: .root, reader: aReader, namesOnly: true)
        }
        pool.submit(aJob, urgent: true)
        pool.submit(bJob, urgent: true)
        let aListing = try listing(aJob)
        let bListing = try listing(bJob)
        let bDirectory: BDirectory
        switch mode {
        case .trees: bDirectory = .tree(bListing)
        case .upper: bDirectory = .upper(bListing, opaque: false)
        }
        try diffDirectory(.root, a: aListing, b: bDirectory, bStatus: bEntry.status, forced: false)
        for index in pendingHead..<pendingContent.count { pool.wait(for: pendingContent[index], context: context) }
        links.walkFinished = true
        try flush(final: true)
        progress?.finish()
    }

    // MARK: - Directories

    private func diffDirectory(
        _ path: RelativePath, a: Listing?, b: BDirectory, bStatus: FileStatus, forced: Bool
    ) throws(DiffError) {
        let pairs = try pairing(path, a: a, b: b)
        let deletions = pairs.filter {
            if case .deleted = $0 { return true }
            return false
        }
        let opaque = !forced && layerWanted && deletions.count >= 2 && chooseOpaque(pairs, deletions.count, a, b)
        let childrenForced = forced || opaque
        if layerWanted && !forced {
            if opaque {
                try push(Record(path: path, kind: nil, type: .directory, layer: .opaque(bStatus.modificationTime)))
            } else {
                for pair in deletions {
                    guard case .deleted(let entry) = pair else { continue }
                    try push(
                        Record(
                            path: path.appending(entry.name), kind: nil, type: entry.type,
                            layer: .whiteout(bStatus.modificationTime)))
                }
            }
        }
        // Prefetch the listings of the subdirectories the walk will enter, in order.
        var jobs: [Int: (a: ListingJob?, b: ListingJob)] = [:]
        for (index, pair) in pairs.enumerated() {
            if let prepared = prefetch(path, pair, forced: childrenForced, b: b, aDirectory: a?.directory) {
                jobs[index] = prepared
            }
        }
        for (index, pair) in pairs.enumerated() {
            let childPath = path.appending(pair.name)
            progress?.count()
            switch pair {
            case .deleted(let entry):
                try push(Record(path: childPath, kind: .deleted, type: entry.type, layer: nil, reportOnly: true))
                if !entry.isDirectory && entry.status.linkCount > 1 {
                    links.sawLowerOnly(entry.status.identity, links: entry.status.linkCount)
                }
            case .added(let entry):
                let record = Record(path: childPath, kind: .added, type: entry.type, layer: .entry(entry))
                if !entry.isDirectory && entry.status.linkCount > 1 {
                    record.link = links.track(record: record, a: nil, b: identity(entry))
                }
                try push(record)
                if entry.isDirectory, let job = jobs[index]?.b {
                    try diffDirectory(
                        childPath, a: nil, b: wrap(try listing(job), upper: b.isUpper, entry: entry),
                        bStatus: entry.status,
                        forced: false)
                }
            case .both(let aEntry, let bEntry):
                try compare(childPath, aEntry, bEntry, forced: childrenForced, jobs: jobs[index], upper: b.isUpper)
            case .lower(let name):
                guard childrenForced, let aDirectory = a?.directory,
                    let aEntry = try aReader.entry(name, in: aDirectory, path: childPath)
                else { continue }
                // The lower entry stays in B but the layer hides the lower directory: re-send it.
                try compare(childPath, aEntry, aEntry, forced: true, jobs: jobs[index], upper: false)
            }
        }
    }

    /// The listings a pair's directories need, submitted to the pool.
    private func prefetch(
        _ path: RelativePath, _ pair: Pair, forced: Bool, b: BDirectory, aDirectory: FileDescriptor?
    ) -> (a: ListingJob?, b: ListingJob)? {
        let childPath = path.appending(pair.name)
        let upperSide: Bool
        if case .upper = b { upperSide = true } else { upperSide = false }
        var result: (a: ListingJob?, b: ListingJob)?
        switch pair {
        case .added(let entry) where entry.isDirectory:
            result = (nil, ListingJob(.child(entry.parent, entry.name), path: childPath, reader: bReader))
        case .both(let aEntry, let bEntry) where bEntry.isDirectory:
            let bJob = ListingJob(.child(bEntry.parent, bEntry.name), path: childPath, reader: bReader)
            if aEntry.isDirectory {
                let aJob = ListingJob(
                    .child(aEntry.parent, aEntry.name), path: childPath, reader: aReader, namesOnly: upperSide)
                result = (aJob, bJob)
            } else {
                result = (nil, bJob)
            }
        case .lower(let name) where forced:
            guard let aDirectory else { return nil }
            let job = ListingJob(.child(aDirectory, name), path: childPath, reader: aReader)
            result = (job, job)
        default: return nil
        }
        if let result {
            if let aJob = result.a, aJob !== result.b { pool.submit(aJob, urgent: true) }
            pool.submit(result.b, urgent: true)
        }
        return result
    }

    /// Compares one name present on both sides and recurses into directories.
    private func compare(
        _ path: RelativePath, _ a: SideEntry, _ b: SideEntry, forced: Bool, jobs: (a: ListingJob?, b: ListingJob)?,
        upper: Bool
    ) throws(DiffError) {
        let aspects = EntryComparison.aspects(a, b)
        if aspects == .type {
            let record = Record(path: path, kind: .changed, type: b.type, aspects: .type, layer: .entry(b))
            if !a.isDirectory && a.status.linkCount > 1 {
                links.sawLowerOnly(a.status.identity, links: a.status.linkCount)
            }
            if !b.isDirectory && b.status.linkCount > 1 {
                record.link = links.track(record: record, a: nil, b: identity(b))
            }
            try push(record)
            if b.isDirectory, let job = jobs?.b {
                // The new directory replaces the old entry whole: nothing of A below it counts.
                try diffDirectory(
                    path, a: nil, b: wrap(try listing(job), upper: upper, entry: b), bStatus: b.status, forced: false)
            }
            return
        }
        if b.isDirectory {
            let changed = isChanged(aspects)
            if changed || forced {
                try push(
                    Record(
                        path: path, kind: changed ? .changed : nil, type: .directory, aspects: aspects,
                        layer: .entry(b),
                        forced: forced))
            }
            guard let jobs, let aJob = jobs.a else { return }
            let aListing = try listing(aJob)
            let bListing = jobs.b === aJob ? aListing : try listing(jobs.b)
            try diffDirectory(
                path, a: aListing, b: wrap(bListing, upper: upper, entry: b), bStatus: b.status, forced: forced)
            return
        }
        let record = Record(
            path: path, kind: .changed, type: b.type, aspects: aspects, layer: .entry(b), forced: forced)
        if b.type == .regular && !aspects.contains(.content) {
            let relevant = options.ignoreModificationTime ? aspects.subtracting(.mtime) : aspects
            let trusted = options.trustModificationTime && aspects.isEmpty
            if relevant.isEmpty && !trusted && a.status.identity != b.status.identity && b.status.size > 0 {
                let job = ContentJob(a, b, aDisplay: aReader.display(path), bDisplay: bReader.display(path))
                record.content = job
                pool.submit(job, urgent: false)
                pendingContent.append(job)
                progress?.hashing(job.cost)
            }
        }
        if a.status.linkCount > 1 || b.status.linkCount > 1 {
            record.link = links.track(record: record, a: identity(a), b: identity(b))
        }
        if record.content != nil || record.link != nil || forced || isChanged(aspects) {
            try push(record)
        }
    }

    /// The B side of a subdirectory, in the parent's mode.
    private func wrap(_ listing: Listing, upper: Bool, entry: SideEntry) -> BDirectory {
        upper ? .upper(listing, opaque: entry.overlayOpaque) : .tree(listing)
    }

    private func identity(_ entry: SideEntry) -> (FileIdentity, UInt64) {
        (entry.status.identity, entry.status.linkCount)
    }

    private func isChanged(_ aspects: ChangeAspects) -> Bool {
        !(options.ignoreModificationTime ? aspects.subtracting(.mtime) : aspects).isEmpty
    }

    private func listing(_ job: ListingJob) throws(DiffError) -> Listing {
        pool.wait(for: job, context: context)
        return try job.listing()
    }

    // MARK: - Pairing

    private func pairing(_ path: RelativePath, a: Listing?, b: BDirectory) throws(DiffError) -> [Pair] {
        switch b {
        case .tree(let bListing):
            guard let a else { return bListing.entries.map(Pair.added) }
            return merge(a.entries, bListing.entries)
        case .upper(let upper, let opaqueByAttribute):
            return try upperPairing(path, a: a, upper: upper, opaque: opaqueByAttribute)
        }
    }

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

    private func upperPairing(
        _ path: RelativePath, a: Listing?, upper: Listing, opaque opaqueByAttribute: Bool
    ) throws(DiffError) -> [Pair] {
        guard case .upper(let format) = mode else { return [] }
        var opaque = opaqueByAttribute
        var whiteouts = Set<FileName>()
        var real: [SideEntry] = []
        for entry in upper.entries {
            if format.honorsOverlay && Whiteout.isOverlayWhiteout(entry.status) {
                whiteouts.insert(entry.name)
                continue
            }
            if format.honorsOCI, let marker = Whiteout.ociMarker(for: entry.name) {
                switch marker {
                case .whiteout(let target): whiteouts.insert(target)
                case .opaque: opaque = true
                case .meta: break
                }
                continue
            }
            real.append(entry)
        }
        guard let a else { return real.map(Pair.added) }
        var pairs: [Pair] = []
        var i = 0
        var j = 0
        let names = a.names
        while i < names.count || j < real.count {
            if j == real.count || (i < names.count && names[i] < real[j].name) {
                let name = names[i]
                i += 1
                if opaque || whiteouts.contains(name) {
                    if let entry = try aReader.entry(name, in: a.directory, path: path.appending(name)) {
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
                if let entry = try aReader.entry(name, in: a.directory, path: path.appending(name)) {
                    pairs.append(.both(entry, real[j]))
                } else {
                    pairs.append(.added(real[j]))
                }
                i += 1
                j += 1
            }
        }
        return pairs
    }

    // MARK: - Opaque or explicit whiteouts

    /// Whether an opaque marker is smaller than `deletions` whiteouts: the marker hides every
    /// lower child, so the children that stay must be re-sent whole. Chosen only when
    /// 1 + (entries below the staying children, counted up to the limit) < deletions, which is
    /// never worse than the explicit form.
    private func chooseOpaque(_ pairs: [Pair], _ deletions: Int, _ a: Listing?, _ b: BDirectory) -> Bool {
        let budget = deletions - 1
        var kept = 0
        for pair in pairs {
            switch pair {
            case .both(let aEntry, let bEntry):
                if aEntry.type != bEntry.type { continue }
                kept += 1
                if bEntry.isDirectory {
                    kept += countEntries(bEntry.parent, bEntry.name, limit: budget - kept)
                    if case .upper = b { kept += countEntries(aEntry.parent, aEntry.name, limit: budget - kept) }
                }
            case .lower(let name):
                kept += 1
                if let directory = a?.directory { kept += countEntries(directory, name, limit: budget - kept) }
            case .added, .deleted: continue
            }
            if kept >= budget { return false }
        }
        return kept < budget
    }

    /// Entries below directory `name` of `parent`, counted up to `limit` (names only).
    private func countEntries(_ parent: FileDescriptor, _ name: FileName, limit: Int) -> Int {
        guard limit > 0 else { return 0 }
        guard let directory = try? parent.open(name, flags: O_RDONLY | O_DIRECTORY) else { return 0 }
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

    // MARK: - Ordered output

    private func push(_ record: Record) throws(DiffError) {
        queue.append(record)
        try flush(final: false)
        if pendingContent.count - pendingHead > DiffWalk.contentWindow {
            pool.wait(for: pendingContent[pendingHead], context: context)
            try flush(final: false)
        }
        while pendingHead < pendingContent.count && pendingContent[pendingHead].isFinished { pendingHead += 1 }
        if pendingHead > 4096 {
            pendingContent.removeFirst(pendingHead)
            pendingHead = 0
        }
        if queue.count - head > DiffWalk.queueWindow { try compact() }
    }

    /// Emits records from the head of the queue while they are settled.
    private func flush(final: Bool) throws(DiffError) {
        while head < queue.count {
            let record = queue[head]
            if let job = record.content {
                if !job.isFinished {
                    guard final else { break }
                    pool.wait(for: job, context: context)
                }
                try settle(record)
            }
            if let member = record.link, member.emitted == nil {
                guard try resolve(member) else {
                    if final {
                        throw DiffError(
                            path: bReader.display(record.path), reason: "internal error: undecided hard link")
                    }
                    break
                }
            }
            try emitter.emit(record)
            head += 1
            progress?.update()
        }
        if head > 1024 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
    }

    private func settle(_ record: Record) throws(DiffError) {
        guard let job = record.content, job.isFinished else { return }
        switch job.result {
        case .equal: record.takeContentVerdict(different: false)
        case .different: record.takeContentVerdict(different: true)
        case .failed(let error): throw error
        }
        emitter.countHashed(job.cost)
    }

    /// Resolves a hard-link component once every member's content verdict is in.
    private func resolve(_ member: LinkGroups.Member) throws(DiffError) -> Bool {
        for index in head..<queue.count where queue[index].link != nil {
            try settle(queue[index])
        }
        return links.resolve(member)
    }

    /// Drops settled records that will emit nothing, so a head stalled on a hard-link decision
    /// does not hold every unchanged file behind it.
    private func compact() throws(DiffError) {
        var kept: [Record] = []
        kept.reserveCapacity(queue.count - head)
        for index in head..<queue.count {
            let record = queue[index]
            if index > head && record.link == nil && !record.forced, case .entry = record.layer {
                try settle(record)
                if record.content == nil
                    && record.changedByItself(ignoringMtime: options.ignoreModificationTime) == false
                {
                    continue
                }
            }
            kept.append(record)
        }
        queue = kept
        head = 0
    }
}
