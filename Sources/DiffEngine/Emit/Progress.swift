import Glibc

/// A progress line on standard error (`layerdiff: 12345 entries, 1.2 GiB compared`), redrawn
/// at most five times a second and erased at the end. Only used when stderr is a terminal.
final class Progress {
    private var entries = 0
    private var bytes: Int64 = 0
    private var lastDraw = Progress.now()
    private var drawn = false
    private var ticks = 0

    /// A progress line (call only when standard error is a terminal).
    init() {}

    /// Takes the current totals and redraws if enough time has passed.
    func update(examined: Int, hashed: Int64) {
        entries = examined
        bytes = hashed
        ticks += 1
        guard ticks % 64 == 0 else { return }
        let now = Progress.now()
        guard now - lastDraw >= 0.2 else { return }
        lastDraw = now
        let mib = Double(bytes) / 1_048_576
        draw("layerdiff: \(entries) entries, \((mib * 10).rounded() / 10) MiB compared")
        drawn = true
    }

    /// Erases the line.
    func finish() {
        if drawn { draw("") }
        drawn = false
    }

    private func draw(_ text: String) {
        let line = "\r\u{1B}[K" + text
        _ = line.utf8CString.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count - 1) }
    }

    private static func now() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }
}
