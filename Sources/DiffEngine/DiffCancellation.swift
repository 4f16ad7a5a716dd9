import Glibc
import LayerCore
import Synchronization

/// A request to stop a running diff (the command line's SIGINT, SIGTERM or SIGHUP; a builder's
/// cancel button). The run checks it before each layer write and between content blocks, throws
/// ``DiffError/interrupted`` and removes its partial layer on the way out.
public final class DiffCancellation: Sendable {
    private let requested = Atomic<Int32>(0)

    /// A cancellation nobody has requested yet.
    public init() {}

    /// Asks the run to stop; `signal` is what asked (kept for the exit status). Later requests
    /// keep the first signal.
    public func request(signal: Int32 = SIGINT) {
        _ = requested.compareExchange(expected: 0, desired: signal, ordering: .acquiringAndReleasing)
    }

    /// The signal that asked the run to stop, or nil.
    public var signal: Int32? {
        let value = requested.load(ordering: .acquiring)
        return value == 0 ? nil : value
    }

    /// Throws ``DiffError/interrupted`` once a stop was requested.
    ///
    /// - Throws: ``DiffError/interrupted``.
    func check() throws(DiffError) {
        if requested.load(ordering: .relaxed) != 0 { throw DiffError.interrupted }
    }
}

extension DiffError {
    /// What a stopped run throws (the command line prints nothing for it).
    public static let interrupted = DiffError(path: "", reason: "interrupted", errno: .interrupted)
}
