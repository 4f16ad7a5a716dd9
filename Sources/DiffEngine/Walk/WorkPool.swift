import CXXHash
import Glibc
import Synchronization

/// Per-thread scratch state for jobs: a read buffer and nothing shared. Each worker thread and
/// the consumer thread own one; never passed between threads.
final class WorkerContext {
    /// Size of ``buffer``: large enough that a typical file is read in one call.
    static let bufferSize = 256 * 1024
    /// A read buffer of ``bufferSize`` bytes (two halves: one per side of a comparison).
    let buffer: UnsafeMutableRawBufferPointer

    init() {
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 * WorkerContext.bufferSize, alignment: 64)
    }

    deinit { buffer.deallocate() }
}

/// A unit of work for a ``WorkPool``: subclass and override ``execute(_:)``; results are stored
/// in the subclass and read only after ``isFinished`` is true.
class Job: @unchecked Sendable {
    // @unchecked Sendable: a job is claimed by exactly one thread (the `claimed` flag), which
    // writes the subclass's result fields and then sets `finished` with release ordering;
    // readers look at results only after observing `finished` with acquire ordering.
    private let claimed = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)

    /// Whether the job has run (its results are readable).
    var isFinished: Bool { finished.load(ordering: .acquiring) }

    /// Claims the job for the calling thread; false when another thread has it.
    func claim() -> Bool {
        claimed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }

    /// Does the work. Called once, on the claiming thread.
    func execute(_ context: WorkerContext) {}

    /// Marks the results readable.
    func markFinished() { finished.store(true, ordering: .releasing) }
}

/// A fixed pool of worker threads running ``Job``s from two FIFO queues: `urgent` (directory
/// listings the walk is about to need) before `background` (content hashing).
///
/// The consumer thread never just blocks: ``wait(for:context:)`` runs the awaited job itself
/// when it is still queued, else other queued jobs, and sleeps only when the queues are empty.
/// So a pool with zero workers still completes everything, on the consumer.
final class WorkPool: @unchecked Sendable {
    // @unchecked Sendable: `urgent`, `background` and `stopping` are read and written only with
    // `mutex` held; `condition` is signalled (with `mutex` held) when a job is queued, a job
    // finishes or the pool stops. Jobs run with the mutex released.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var urgent = JobQueue()
    private var background = JobQueue()
    private var stopping = false
    private var threads: [pthread_t] = []
    private let queued = Atomic<Int>(0)

    /// Starts `workers` threads (0 is allowed: then the consumer runs every job while waiting).
    init(workers: Int) {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        for _ in 0..<max(0, workers) {
            var thread = pthread_t()
            let box = Unmanaged.passRetained(self).toOpaque()
            if pthread_create(&thread, nil, workerMain, box) == 0 {
                threads.append(thread)
            } else {
                Unmanaged<WorkPool>.fromOpaque(box).release()
            }
        }
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// The number of worker threads running.
    var workerCount: Int { threads.count }

    /// Jobs waiting in the queues (approximate: read without the lock).
    var queuedCount: Int { queued.load(ordering: .relaxed) }

    /// Queues `job`. Lock: takes the pool mutex.
    func submit(_ job: Job, urgent isUrgent: Bool) {
        pthread_mutex_lock(mutex)
        queued.add(1, ordering: .relaxed)
        if isUrgent { urgent.push(job) } else { background.push(job) }
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Returns when `job` has finished, running it (or other queued jobs) on this thread in the
    /// meantime. Lock: takes the pool mutex, released while a job runs.
    func wait(for job: Job, context: WorkerContext) {
        if job.isFinished { return }
        if job.claim() {
            run(job, context)
            return
        }
        pthread_mutex_lock(mutex)
        while !job.isFinished {
            if let next = pop() {
                pthread_mutex_unlock(mutex)
                run(next, context)
                pthread_mutex_lock(mutex)
                continue
            }
            pthread_cond_wait(condition, mutex)
        }
        pthread_mutex_unlock(mutex)
    }

    /// The next queued job, claimed. Lock: call with the pool mutex held.
    private func pop() -> Job? {
        var skipped = 0
        let job = urgent.pop(skipped: &skipped) ?? background.pop(skipped: &skipped)
        queued.subtract(skipped + (job == nil ? 0 : 1), ordering: .relaxed)
        return job
    }

    /// Stops the workers after the queued jobs and joins them. Call once, from the consumer.
    func shutdown() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
        for thread in threads { pthread_join(thread, nil) }
        threads = []
    }

    fileprivate func workerLoop() {
        let context = WorkerContext()
        pthread_mutex_lock(mutex)
        while true {
            if let next = pop() {
                pthread_mutex_unlock(mutex)
                run(next, context)
                pthread_mutex_lock(mutex)
                continue
            }
            if stopping { break }
            pthread_cond_wait(condition, mutex)
        }
        pthread_mutex_unlock(mutex)
    }

    /// Runs a claimed job and wakes the waiters.
    private func run(_ job: Job, _ context: WorkerContext) {
        job.execute(context)
        job.markFinished()
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }
}

private func workerMain(_ argument: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let argument else { return nil }
    let pool = Unmanaged<WorkPool>.fromOpaque(argument).takeRetainedValue()
    pool.workerLoop()
    return nil
}

/// A FIFO of jobs that skips jobs another thread already claimed.
private struct JobQueue {
    private var items: [Job] = []
    private var head = 0

    mutating func push(_ job: Job) { items.append(job) }

    /// The next unclaimed job, claimed for the caller; `skipped` counts jobs dropped because
    /// another thread had claimed them.
    mutating func pop(skipped: inout Int) -> Job? {
        while head < items.count {
            let job = items[head]
            head += 1
            if head > 1024 && head * 2 > items.count {
                items.removeFirst(head)
                head = 0
            }
            if job.claim() { return job }
            skipped += 1
        }
        return nil
    }
}
