import Glibc
import LayerCore
import Synchronization

/// How the inspect commands stop on SIGINT, SIGTERM and SIGHUP without leaving anything behind.
///
/// ``install()`` blocks the three signals in the calling thread before any other thread exists
/// (threads inherit the mask, so no thread is ever interrupted in a system call) and starts one
/// thread that waits for them with `sigtimedwait(2)`. A signal only sets a flag; the walk, the
/// tarball reader, the copies and the hashing loops check it (``check()``) between entries and
/// blocks and throw ``error``, so the main thread unwinds: scratch directories and partial
/// outputs are removed by the code that made them, after every worker has stopped (no cleanup
/// races a thread still creating files). The command then exits with 128 + the signal (130, 143,
/// 129) and prints nothing more.
///
/// As a last resort, if the command has not finished 30 s after the signal (a system call that
/// does not return), the signal thread removes the paths in ``CleanupRegistry`` itself and exits.
public final class Interruption: Sendable {
    /// The process's instance.
    public static let shared = Interruption()

    /// The error a stopped operation throws (its message is never printed).
    public static let error = PathError(path: "", reason: "interrupted", errno: .interrupted)

    private let received = Atomic<Int32>(0)
    private let installed = Mutex(false)

    private init() {}

    /// The signal that asked the command to stop; nil when none did.
    public var signal: Int32? {
        let number = received.load(ordering: .acquiring)
        return number == 0 ? nil : number
    }

    /// Whether a signal asked the command to stop.
    public var isRequested: Bool { received.load(ordering: .relaxed) != 0 }

    /// Throws ``error`` when a signal asked the command to stop.
    ///
    /// - Throws: ``error``.
    public func check() throws(PathError) {
        if isRequested { throw Self.error }
    }

    /// Throws `EINTR` when a signal asked the command to stop (for `throws(Errno)` loops).
    ///
    /// - Throws: ``LayerCore/Errno/interrupted``.
    public func checkErrno() throws(Errno) {
        if isRequested { throw Errno.interrupted }
    }

    /// Marks a stop as requested by `signal` (the signal thread calls this; tests may too).
    public func request(_ signal: Int32) {
        _ = received.compareExchange(expected: 0, desired: signal, ordering: .acquiringAndReleasing)
    }

    /// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and starts the thread that waits
    /// for them. Call once, from the main thread, before any other thread is started. Later
    /// calls do nothing.
    public func install() {
        let first = installed.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else { return }
        var set = Self.signalSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)
        var thread = pthread_t()
        _ = pthread_create(
            &thread, nil,
            { _ in
                Interruption.shared.waitForSignals()
                return nil
            }, nil)
        pthread_detach(thread)
    }

    private static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for number in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, number) }
        return set
    }

    private static func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec)
    }

    /// The signal thread: records the first signal, then after 30 s without the command having
    /// returned, removes what ``CleanupRegistry`` holds and exits.
    private func waitForSignals() {
        var set = Self.signalSet()
        var since: Int64?
        while true {
            var timeout = timespec(tv_sec: 1, tv_nsec: 0)
            let number = sigtimedwait(&set, nil, &timeout)
            if number > 0 && since == nil {
                request(number)
                since = Self.now()
            }
            if let since, Self.now() - since >= 30, let number = signal {
                CleanupRegistry.shared.removeAll()
                _exit(128 + number)
            }
        }
    }
}

/// The scratch directories and partial outputs alive in this process, for the last-resort
/// cleanup of ``Interruption`` (the normal cleanup is done by their owners).
final class CleanupRegistry: Sendable {
    /// The process's registry.
    static let shared = CleanupRegistry()

    private let paths = Mutex<Set<CommandLinePath>>([])

    /// Notes a path to remove if the process is stopped.
    func register(_ path: CommandLinePath) { paths.withLock { _ = $0.insert(path) } }

    /// Forgets a path (removed by its owner, or kept as the result).
    func unregister(_ path: CommandLinePath) { paths.withLock { _ = $0.remove(path) } }

    /// Removes every registered path.
    func removeAll() {
        for path in paths.withLock({ Array($0) }) { removeTree(path) }
    }
}
