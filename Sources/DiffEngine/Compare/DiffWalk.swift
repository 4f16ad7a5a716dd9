import Glibc
import LayerCore
import Synchronization

/// The ordered walk over A and B that produces the changeset.
///
/// The tree is diffed by ``SubtreeJob``s on the ``WorkPool``: each lists a directory pair on
/// both sides, compares every pair in the change-detection order (hashing content itself when
/// needed) and walks the subdirectories, handing some to new jobs while threads are idle. This
/// consumer drains the job outputs in path order, registers hard-link members, and flushes the
/// records from the head of an ordered queue to the ``Emitter`` as they settle, so output is
/// streamed and its order never depends on thread timing.
///
/// Per directory the layer gets, in order: the directory's own entry (emitted by its parent,
/// only when it is new or its own metadata changed), then either an opaque marker or one
/// whiteout per deleted child (sorted), then the children in name order, each followed by its
/// subtree. Reports (text, JSON) come in plain path order.
///
/// Memory: per running job one listing per level and side (depth times width); the outputs of
/// finished jobs not yet drained (their changes only); the changes waiting behind an undecided
/// hard-link member; the multi-link inodes met.
final class DiffWalk {
    private let diff: DiffContext
    private let pool: WorkPool
    private let context = WorkerContext()
    private let emitter: Emitter
    private let links: LinkGroups
    private let progress: Progress?
    private var queue: [Record] = []
    private var head = 0

    /// A walk comparing the side read by `aReader` with the side read by `bReader`.
    init(
        options: DiffOptions, a aReader: SideReader, b bReader: SideReader, mode: DiffContext.Mode,
        emitter: Emitter, progress: Progress?
    ) {
        self.emitter = emitter
        self.progress = progress
        pool = WorkPool(workers: max(0, options.jobs - 1))
        diff = DiffContext(
            options: options, a: aReader, b: bReader, mode: mode, pool: pool, layerWanted: emitter.hasLayer,
            ociWhiteouts: emitter.writesOCIWhiteouts)
        links = LinkGroups(ignoringMtime: options.ignoreModificationTime, unseenLowerMayRemain: diff.isUpper)
    }

    deinit { pool.shutdown() }

    /// Walks both sides from their roots and emits everything.
    ///
    /// - Throws: ``DiffError`` for a side that cannot be read, a change the layer cannot
    ///   represent, or an output failure.
    func run(aRoot: FileDescriptor, bRoot: FileDescriptor) throws(DiffError) {
        defer { pool.shutdown() }
        let aEntry = try diff.aReader.rootEntry(aRoot)
        let bEntry = try diff.bReader.rootEntry(bRoot)
        let aspects = EntryComparison.aspects(aEntry, bEntry)
        if !(diff.options.ignoreModificationTime ? aspects.subtracting(.mtime) : aspects).isEmpty {
            try push(
                Record(path: .root, kind: .changed, type: .directory, aspects: aspects, layer: .entry(bEntry.detached)))
        }
        let task = DirectoryTask(
            path: .root, a: .open(aRoot), b: .open(bRoot), bKind: diff.isUpper ? .upper(opaque: false) : .tree,
            bStatus: bEntry.status, forced: false, bFromA: false)
        let job = SubtreeJob(task, diff)
        let counters = diff
        progress?.start {
            (counters.examined.load(ordering: .relaxed), counters.hashed.load(ordering: .relaxed))
        }
        defer { progress?.finish() }
        pool.submit(job, urgent: true)
        try drain(job)
        links.walkFinished = true
        try flush(final: true)
        emitter.noteTotals(
            examined: diff.examined.load(ordering: .relaxed), hashed: diff.hashed.load(ordering: .relaxed))
        progress?.finish()
    }

    /// Emits a job's output in order, waiting for (and helping with) the jobs it handed on.
    private func drain(_ job: SubtreeJob) throws(DiffError) {
        pool.wait(for: job, context: context)
        for item in try job.takeOutput() {
            switch item {
            case .record(let record):
                if let keys = record.linkKeys {
                    record.link = links.track(record: record, a: keys.a, b: keys.b)
                }
                try push(record)
            case .subtree(let child):
                try drain(child)
            case .lowerLink(let identity, let count):
                links.sawLowerOnly(identity, links: count)
            }
        }
    }

    private func push(_ record: Record) throws(DiffError) {
        queue.append(record)
        try flush(final: false)
    }

    /// Emits records from the head of the queue while they are settled.
    private func flush(final: Bool) throws(DiffError) {
        while head < queue.count {
            let record = queue[head]
            if let member = record.link, member.emitted == nil, !links.resolve(member) {
                if final {
                    throw DiffError(
                        path: diff.bReader.display(record.path), reason: "internal error: undecided hard link")
                }
                break
            }
            try emitter.emit(record)
            head += 1
        }
        if head > 1024 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
    }
}
