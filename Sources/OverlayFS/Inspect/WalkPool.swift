import Dispatch
import Glibc
import LayerCore
import Synchronization

/// A visitor that a parallel walk can split across worker threads and merge back.
///
/// In a parallel walk ``StackVisitor/leave(_:)`` may run before the directory's contents are
/// walked (when another worker takes them over), and entries arrive in no particular order:
/// only order-independent visitors (counters, sets) may be parallel.
public protocol ParallelStackVisitor: StackVisitor, Sendable {
    /// An empty visitor with the same settings, for another worker.
    func fork() -> Self
    /// Adds what `other` collected.
    mutating func merge(_ other: Self)
}

/// A directory left for another worker: the layer directories of a merged (or hidden) directory.
struct WalkTask: Sendable {
    var directories: [LayerDirectory]
    var path: TreePath
    var hider: StackWalker.HiderContext?
    /// The layer directories at another path in their layer (see ``WalkEntry/layerParents``).
    var layerPaths: [LayerIndex: TreePath] = [:]
}

/// The shared queue of a parallel walk: workers take directories from it and hand subdirectories
/// to it while another worker is idle.
final class WalkPool: @unchecked Sendable {
    // @unchecked: `tasks`, `busy` and `failure` are only touched with `mutex` held; the pthread
    // objects live at stable heap addresses from init to deinit. `idle` is atomic.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var tasks: [WalkTask] = []
    private var busy = 0
    private var failure: PathError?
    private let idle = Atomic<Int>(0)
    let workers: Int

    init(workers: Int) {
        self.workers = workers
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    /// Whether a worker is waiting for work (checked without the lock; a stale answer only costs
    /// balance).
    var wantsWork: Bool { idle.load(ordering: .relaxed) > 0 }

    /// Queues a directory for another worker.
    func push(_ task: WalkTask) {
        pthread_mutex_lock(mutex)
        tasks.append(task)
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// The next directory to walk; nil when the walk is over (all done, or failed).
    func next() -> WalkTask? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while tasks.isEmpty && busy > 0 && failure == nil {
            idle.add(1, ordering: .relaxed)
            pthread_cond_wait(condition, mutex)
            idle.subtract(1, ordering: .relaxed)
        }
        guard failure == nil, let task = tasks.popLast() else {
            pthread_cond_broadcast(condition)
            return nil
        }
        busy += 1
        return task
    }

    /// Marks the task taken by ``next()`` as done.
    func finished() {
        pthread_mutex_lock(mutex)
        busy -= 1
        if busy == 0 && tasks.isEmpty { pthread_cond_broadcast(condition) }
        pthread_mutex_unlock(mutex)
    }

    /// Records the first failure and stops the walk.
    func fail(_ error: PathError) {
        pthread_mutex_lock(mutex)
        if failure == nil { failure = error }
        tasks.removeAll()
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    /// The first failure, if any.
    var firstFailure: PathError? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return failure
    }
}

/// Collects each worker's visitor.
private final class WorkerResults<V: Sendable>: Sendable {
    let slots: Mutex<[V?]>
    init(count: Int) { slots = Mutex(Array(repeating: nil, count: count)) }
}

extension StackWalker {
    /// Walks like ``walk(_:)`` on `workers` threads, each with a fork of `visitor`, and merges
    /// their results into `visitor` (in worker order, so sums are deterministic; collections
    /// should be sorted by the caller).
    ///
    /// - Throws: the first ``PathError`` any worker met.
    public func walkInParallel<V: ParallelStackVisitor>(_ visitor: inout V, workers: Int) throws(PathError) {
        guard workers > 1 else {
            try walk(&visitor)
            return
        }
        let roots: [LayerDirectory]
        do {
            roots = try stack.resolver.rootDirectories()
        } catch {
            throw PathError(path: stack.layers[0].path, errno: error, what: "layer")
        }
        // The roots are shared descriptors: the first task lists them through fresh opens.
        let pool = WalkPool(workers: workers)
        var walker = self
        walker.pool = pool
        pool.push(WalkTask(directories: roots, path: .root, hider: nil))
        let results = WorkerResults<V>(count: workers)
        let template = visitor.fork()
        let shared = walker
        // Threads with a large stack: the walk recurses once per directory level.
        WalkStack.runConcurrently(workers) { worker in
            var local = template.fork()
            while let task = pool.next() {
                do throws(PathError) {
                    try shared.walkTask(task, &local)
                } catch {
                    pool.fail(error)
                }
                pool.finished()
            }
            results.slots.withLock { $0[worker] = local }
        }
        if let failure = pool.firstFailure { throw failure }
        for result in results.slots.withLock({ $0 }) {
            if let result { visitor.merge(result) }
        }
    }
}
