import Glibc
import LayerCore

/// How `layerdiff` stops on SIGINT, SIGTERM and SIGHUP without leaving a partial layer.
///
/// ``install(_:)`` blocks the three signals in the calling thread before any other thread
/// exists (threads inherit the mask) and starts one thread waiting for them with
/// `sigtimedwait(2)`. A signal requests the run's ``DiffCancellation``: the main thread then
/// stops at its next layer write or content block and removes the partial layer itself, and the
/// command exits with 128 + the signal. When nothing partial exists (no layer is being written)
/// the thread exits at once; if the run has not unwound 10 s after the signal, the thread
/// removes what ``PartialOutputs`` holds and exits.
enum SignalStop {
    /// Blocks the signals and starts the waiting thread, which requests `cancellation`.
    static func install(_ cancellation: DiffCancellation) {
        var set = signalSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let box = Unmanaged.passRetained(cancellation).toOpaque()
        var thread = pthread_t()
        let started = pthread_create(
            &thread, nil,
            { argument in
                guard let argument else { return nil }
                SignalStop.wait(Unmanaged<DiffCancellation>.fromOpaque(argument).takeRetainedValue())
                return nil
            }, box)
        if started == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<DiffCancellation>.fromOpaque(box).release()
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
        }
    }

    private static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for number in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, number) }
        return set
    }

    private static func wait(_ cancellation: DiffCancellation) {
        var set = signalSet()
        var waited = 0
        while true {
            var timeout = timespec(tv_sec: 1, tv_nsec: 0)
            let number = sigtimedwait(&set, nil, &timeout)
            if number > 0 { cancellation.request(signal: number) }
            guard let signal = cancellation.signal else { continue }
            if PartialOutputs.shared.isEmpty { _exit(128 + signal) }
            waited += 1
            if waited > 10 {
                PartialOutputs.shared.removeAll()
                _exit(128 + signal)
            }
        }
    }
}
