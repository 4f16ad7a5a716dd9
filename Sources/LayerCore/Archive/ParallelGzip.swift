import CDeflate
import Dispatch

/// gzip compression on all CPUs for layer blobs, with libdeflate: the uncompressed stream is cut
/// into fixed 1 MiB blocks, each block becomes one gzip member (RFC 1952 allows a file to be a
/// sequence of members; gunzip, zlib, Go's `compress/gzip`, Python and libarchive read them as
/// one stream), and a batch of blocks is compressed at once with `concurrentPerform`. The block
/// size is fixed and libdeflate writes no timestamp or name, so the output depends only on the
/// input and the level, never on the thread count.
///
/// Use from one thread: ``write(_:)`` then ``finish()``; compressed bytes go to `emit` in order.
final class ParallelGzip {
    /// Bytes of uncompressed input per gzip member.
    static let blockSize = 1 << 20

    private let level: Int32
    private let emit: (UnsafeRawBufferPointer) -> Bool
    private let batchSize: Int
    private var current: [UInt8] = []
    private var batch: [[UInt8]] = []
    /// Set when `emit` refused bytes (the output failed); later writes are dropped.
    private(set) var failed = false

    /// A compressor at `level` (1-12, libdeflate's scale; 6 is gzip's default) writing to `emit`,
    /// which returns false when the output fails.
    init(level: Int, emit: @escaping (UnsafeRawBufferPointer) -> Bool) {
        self.level = Int32(max(1, min(12, level)))
        self.emit = emit
        batchSize = 2 * onlineProcessorCount()
        current.reserveCapacity(ParallelGzip.blockSize)
    }

    /// Adds uncompressed bytes.
    func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let take = min(ParallelGzip.blockSize - current.count, bytes.count - offset)
            current.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + take)]))
            offset += take
            if current.count == ParallelGzip.blockSize {
                batch.append(current)
                current = []
                current.reserveCapacity(ParallelGzip.blockSize)
                if batch.count == batchSize { flushBatch() }
            }
        }
        return !failed
    }

    /// Compresses what is left and emits it.
    func finish() -> Bool {
        if !current.isEmpty { batch.append(current) }
        current = []
        flushBatch()
        return !failed
    }

    private func flushBatch() {
        guard !batch.isEmpty else { return }
        let work = GzipBatch(inputs: batch, level: level)
        batch = []
        work.compress()
        for index in 0..<work.count where !failed {
            work.withOutput(index) { member in
                if member.isEmpty || !emit(member) { failed = true }
            }
        }
    }
}

/// One batch of blocks compressed concurrently.
private final class GzipBatch: @unchecked Sendable {
    // @unchecked Sendable: during `compress()` the iteration for block i only reads `inputs[i]`
    // and writes `outputs[i]` / `sizes[i]` (distinct, preallocated slots); they are read after
    // `concurrentPerform` returns.
    private let inputs: [[UInt8]]
    private let level: Int32
    private let outputs: UnsafeMutableBufferPointer<UnsafeMutableRawPointer?>
    private let sizes: UnsafeMutableBufferPointer<Int>

    init(inputs: [[UInt8]], level: Int32) {
        self.inputs = inputs
        self.level = level
        outputs = .allocate(capacity: inputs.count)
        outputs.initialize(repeating: nil)
        sizes = .allocate(capacity: inputs.count)
        sizes.initialize(repeating: 0)
    }

    deinit {
        for pointer in outputs { pointer?.deallocate() }
        outputs.deallocate()
        sizes.deallocate()
    }

    var count: Int { inputs.count }

    func compress() {
        DispatchQueue.concurrentPerform(iterations: inputs.count) { index in
            guard let compressor = libdeflate_alloc_compressor(level) else { return }
            defer { libdeflate_free_compressor(compressor) }
            inputs[index].withUnsafeBytes { input in
                let bound = libdeflate_gzip_compress_bound(compressor, input.count)
                let output = UnsafeMutableRawPointer.allocate(byteCount: max(bound, 64), alignment: 16)
                let size = libdeflate_gzip_compress(compressor, input.baseAddress, input.count, output, bound)
                outputs[index] = output
                sizes[index] = size
            }
        }
    }

    /// Calls `body` with block `index`'s gzip member (empty when compression failed).
    func withOutput(_ index: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
        body(UnsafeRawBufferPointer(start: outputs[index], count: outputs[index] == nil ? 0 : sizes[index]))
    }
}
