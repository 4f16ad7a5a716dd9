import Glibc
import LayerCore

/// A buffered writer to a file descriptor (stdout for data, stderr for diagnostics).
///
/// Text is collected as UTF-8 bytes and written in large blocks, so listing 100k entries costs
/// a few `write(2)` calls. Not thread-safe: one writer per thread of output.
public final class OutputBuffer {
    private let descriptor: CInt
    private var bytes: [UInt8] = []
    private let threshold = 64 * 1024

    /// A writer to `descriptor` (not closed by the writer).
    public init(descriptor: CInt) {
        self.descriptor = descriptor
        bytes.reserveCapacity(threshold + 4096)
    }

    /// A writer to standard output.
    public static func standardOutput() -> OutputBuffer { OutputBuffer(descriptor: 1) }

    /// A writer to standard error.
    public static func standardError() -> OutputBuffer { OutputBuffer(descriptor: 2) }

    /// Appends `text`; writes out when the buffer is full.
    public func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes.append(contentsOf: $0) }
        if bytes.count >= threshold { flush() }
    }

    /// Appends raw bytes.
    public func write(bytes more: [UInt8]) {
        bytes.append(contentsOf: more)
        if bytes.count >= threshold { flush() }
    }

    /// Writes everything buffered. Errors (a closed pipe) are ignored: the reader is gone.
    ///
    /// Wraps write(2).
    public func flush() {
        var done = 0
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            while done < raw.count {
                let count = Glibc.write(descriptor, base + done, raw.count - done)
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { return }
                done += count
            }
        }
        bytes.removeAll(keepingCapacity: true)
    }

    deinit { flush() }
}
