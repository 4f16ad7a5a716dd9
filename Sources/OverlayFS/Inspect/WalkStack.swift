import CLayerSys
import Glibc
import LayerCore

/// The stack the tree walks recurse on.
///
/// ``StackWalker`` recurses once per directory level (about 2 KiB of stack a level in release
/// builds, ten times that in debug builds), and a layer can nest directories as deep as it likes:
/// a tarball's PAX paths have no length limit. On the main thread's 8 MiB a few thousand levels
/// overflowed it and the process died of SIGSEGV. Walks therefore run on threads with ``size``
/// bytes of stack (``run(_:)``, ``runConcurrently(_:_:)``), and ``hasRoom()`` tells the walker to
/// stop with an error, naming the path, before less than ``reserve`` bytes are left.
enum WalkStack {
    /// The stack of a walk thread: 256 MiB of address space, used as far as the tree is deep.
    static let size = 256 << 20
    /// What the walker keeps free below the deepest directory it enters (the visitors and the
    /// system calls under it need some).
    static let reserve = 1 << 20

    /// Per thread: the lowest stack address the walker may go down to (cached by ``hasRoom()``).
    private static let floorKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Whether the calling thread has room on its stack for one more directory level.
    static func hasRoom() -> Bool {
        var marker: UInt8 = 0
        let here = withUnsafeMutablePointer(to: &marker) { UInt(bitPattern: $0) }
        return here > floor()
    }

    /// The calling thread's floor, computed once per thread (the stack's lowest address, from
    /// pthread_getattr_np(3), plus ``reserve``); 0 when it cannot be known.
    private static func floor() -> UInt {
        if let cached = pthread_getspecific(floorKey) { return UInt(bitPattern: cached) }
        var attributes = pthread_attr_t()
        guard cls_pthread_getattr_np(pthread_self(), &attributes) == 0 else { return 0 }
        defer { pthread_attr_destroy(&attributes) }
        var lowest: UnsafeMutableRawPointer?
        var length = 0
        guard pthread_attr_getstack(&attributes, &lowest, &length) == 0, let lowest else { return 0 }
        let floor = UInt(bitPattern: lowest) + UInt(min(reserve, length / 2))
        pthread_setspecific(floorKey, UnsafeRawPointer(bitPattern: floor))
        return floor
    }

    /// Runs `body` on a thread with a ``size`` stack and waits for it; runs it on the calling
    /// thread when no such thread can be started (then ``hasRoom()`` still guards the stack).
    static func run<T>(_ body: () throws(PathError) -> T) throws(PathError) -> T {
        var result: Result<T, PathError>?
        withoutActuallyEscaping(body) { escapable in
            runConcurrently(1) { _ in
                do throws(PathError) {
                    result = .success(try escapable())
                } catch {
                    result = .failure(error)
                }
            }
        }
        // Set by the thread, or inline when none could be started.
        guard let result else { return try body() }
        return try result.get()
    }

    /// Runs `body(0)` ... `body(count - 1)` on `count` threads with a ``size`` stack each and
    /// waits for all of them. A thread that cannot be started runs its part on the calling
    /// thread after the others started.
    static func runConcurrently(_ count: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { escapable in
            let job = Job(escapable)
            var attributes = pthread_attr_t()
            let sized = pthread_attr_init(&attributes) == 0
            if sized { _ = pthread_attr_setstacksize(&attributes, size) }
            var threads: [pthread_t] = []
            var inline: [Int] = []
            for index in 0..<count {
                var thread = pthread_t()
                let part = Unmanaged.passRetained(Part(job: job, index: index)).toOpaque()
                let started =
                    sized
                    ? pthread_create(
                        &thread, &attributes,
                        { argument in
                            guard let argument else { return nil }
                            let part = Unmanaged<Part>.fromOpaque(argument).takeRetainedValue()
                            part.job.body(part.index)
                            return nil
                        }, part) : -1
                if started == 0 {
                    threads.append(thread)
                } else {
                    Unmanaged<Part>.fromOpaque(part).release()
                    inline.append(index)
                }
            }
            if sized { pthread_attr_destroy(&attributes) }
            for index in inline { escapable(index) }
            for thread in threads { pthread_join(thread, nil) }
        }
    }

    /// The work of ``runConcurrently(_:_:)``, shared by its threads.
    private final class Job: @unchecked Sendable {
        // @unchecked: `body` is called by each thread with its own index; the caller's closure
        // is made for that (it must be safe to call from several threads at once).
        let body: (Int) -> Void
        init(_ body: @escaping (Int) -> Void) { self.body = body }
    }

    /// One thread's part of a ``Job``.
    private final class Part: @unchecked Sendable {
        // @unchecked: immutable after init.
        let job: Job
        let index: Int
        init(job: Job, index: Int) {
            self.job = job
            self.index = index
        }
    }
}
