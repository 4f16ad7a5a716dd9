import CCompress

/// A zstd compressor writing one frame with its content checksum (`ZSTD_c_checksumFlag`, as the
/// zstd CLI writes by default), so that a reader can detect damage; libarchive's zstd filter
/// writes no checksum. Multi-threaded on all CPUs: libzstd's output does not depend on the worker
/// count (for any count of at least one), so the layer stays deterministic.
final class ZstdStream {
    private let context: OpaquePointer?
    private let emit: (UnsafeRawBufferPointer) -> Bool
    private let output: UnsafeMutableRawPointer
    private let outputSize: Int
    /// Set when compression or `emit` failed; later writes are dropped.
    private(set) var failed = false

    /// A compressor at `level` (1-19, default 3 as the zstd CLI) on `threads` workers, writing
    /// to `emit`, which returns false when the output fails.
    init(level: Int, threads: Int, emit: @escaping (UnsafeRawBufferPointer) -> Bool) {
        self.emit = emit
        context = ZSTD_createCCtx()
        outputSize = ZSTD_CStreamOutSize()
        output = UnsafeMutableRawPointer.allocate(byteCount: outputSize, alignment: 16)
        guard let context else {
            failed = true
            return
        }
        for (parameter, value) in [
            (ZSTD_c_compressionLevel, Int32(max(1, min(19, level)))), (ZSTD_c_checksumFlag, 1),
            (ZSTD_c_nbWorkers, Int32(max(1, threads))),
        ] where ZSTD_isError(ZSTD_CCtx_setParameter(context, parameter, value)) != 0 {
            // nbWorkers fails on a libzstd built without threads (which then writes other bytes).
            if parameter != ZSTD_c_nbWorkers { failed = true }
        }
    }

    deinit {
        if let context { ZSTD_freeCCtx(context) }
        output.deallocate()
    }

    /// Adds uncompressed bytes.
    func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !bytes.isEmpty, let base = bytes.baseAddress else { return !failed }
        var input = ZSTD_inBuffer(src: base, size: bytes.count, pos: 0)
        while !failed && input.pos < input.size {
            _ = step(&input, ZSTD_e_continue)
        }
        return !failed
    }

    /// Ends the frame (with its checksum) and emits the rest.
    func finish() -> Bool {
        var input = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
        while !failed && step(&input, ZSTD_e_end) != 0 {}
        return !failed
    }

    /// One call of ZSTD_compressStream2; returns what is left to flush (0: done).
    private func step(_ input: inout ZSTD_inBuffer, _ directive: ZSTD_EndDirective) -> Int {
        guard let context else {
            failed = true
            return 0
        }
        var destination = ZSTD_outBuffer(dst: output, size: outputSize, pos: 0)
        let remaining = ZSTD_compressStream2(context, &destination, &input, directive)
        if ZSTD_isError(remaining) != 0 {
            failed = true
            return 0
        }
        if destination.pos > 0 && !emit(UnsafeRawBufferPointer(start: output, count: destination.pos)) {
            failed = true
            return 0
        }
        return remaining
    }
}
