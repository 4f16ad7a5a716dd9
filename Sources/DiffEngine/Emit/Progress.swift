import Glibc
import Synchronization

/// A progress line on standard error (`layerdiff: 12345 entries, 1.2 GiB compared`), redrawn
/// five times a second by its own thread from the walk's counters, and erased at the end. Only
/// used when stderr is a terminal (and not with `--quiet`).
final class Progress: Sendable {
    private let running = Atomic<Bool>(false)
    private let drawn = Atomic<Bool>(false)
    private let thread = Mutex<pthread_t?>(nil)
    private let source = Mutex<(@Sendable () -> (entries: Int, bytes: Int64))?>(nil)

    /// A progress line; nothing is drawn until ``start(_:)``.
    init() {}

    /// Starts redrawing from `read` (entries examined, bytes compared) every 200 ms.
    func start(_ read: @escaping @Sendable () -> (entries: Int, bytes: Int64)) {
        source.withLock { $0 = read }
        running.store(true, ordering: .releasing)
        var handle = pthread_t()
        let box = Unmanaged.passRetained(self).toOpaque()
        if pthread_create(&handle, nil, progressMain, box) == 0 {
            thread.withLock { $0 = handle }
        } else {
            Unmanaged<Progress>.fromOpaque(box).release()
        }
    }

    /// Stops the thread and erases the line.
    func finish() {
        running.store(false, ordering: .releasing)
        if let handle = thread.withLock({ value -> pthread_t? in
            defer { value = nil }
            return value
        }) {
            pthread_join(handle, nil)
        }
        if drawn.load(ordering: .acquiring) { draw("") }
    }

    fileprivate func loop() {
        var slept = 0
        while running.load(ordering: .acquiring) {
            usleep(20_000)
            slept += 1
            guard slept % 10 == 0, let read = source.withLock({ $0 }) else { continue }
            let (entries, bytes) = read()
            let mib = Double(bytes) / 1_048_576
            draw("layerdiff: \(entries) entries examined, \((mib * 10).rounded() / 10) MiB compared")
            drawn.store(true, ordering: .releasing)
        }
    }

    private func draw(_ text: String) {
        let line = "\r\u{1B}[K" + text
        _ = line.utf8CString.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count - 1) }
    }
}

private func progressMain(_ argument: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let argument else { return nil }
    let progress = Unmanaged<Progress>.fromOpaque(argument).takeRetainedValue()
    progress.loop()
    return nil
}
