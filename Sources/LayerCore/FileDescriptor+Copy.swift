import CLayerSys
import Glibc

extension FileDescriptor {
    /// Copies the whole content of this open regular file (`size` bytes) to the empty, open
    /// regular file `destination`, keeping holes: only the data ranges `SEEK_DATA` / `SEEK_HOLE`
    /// report are copied, with `copy_file_range(2)` (in-kernel, a reflink where the file system
    /// can), falling back to `pread` / `pwrite` where it is not supported; then the destination
    /// is truncated to `size`.
    ///
    /// - Parameters:
    ///   - piece: the most bytes copied between two calls of `beforeEachPiece`.
    ///   - beforeEachPiece: called before each piece; throwing (say `EINTR` for a signal) stops
    ///     the copy, so even a huge file stops promptly.
    /// - Throws: the errno of the failing read, write or truncate, or of `beforeEachPiece`.
    /// - Wraps copy_file_range(2), lseek(2) SEEK_DATA/SEEK_HOLE, pread(2), pwrite(2), ftruncate(2).
    public func copyContents(
        to destination: FileDescriptor, size: Int64, piece: Int64 = .max,
        beforeEachPiece: () throws(Errno) -> Void = {}
    ) throws(Errno) {
        var position: Int64 = 0
        var inKernel = true
        while position < size {
            // The next data range; without SEEK_DATA support, everything is data.
            let start: Int64
            do {
                start = try seek(to: position, whence: CLS_SEEK_DATA)
            } catch let error where error.rawValue == ENXIO {
                break  // only a hole remains
            } catch .invalidArgument {
                start = position
            }
            guard start < size else { break }
            var end = size
            if let hole = try? seek(to: start, whence: CLS_SEEK_HOLE) { end = min(hole, size) }
            end = start + min(end - start, piece)
            try beforeEachPiece()
            if inKernel {
                do {
                    try copyRangeInKernel(to: destination, from: start, to: end)
                    position = end
                    continue
                } catch let error
                    where [EXDEV, ENOSYS, EINVAL, EOPNOTSUPP, EBADF, ETXTBSY].contains(error.rawValue)
                {
                    inKernel = false
                }
            }
            try copyRangeByReading(to: destination, from: start, to: end)
            position = end
        }
        _ = try valueOrErrno { ftruncate(destination.rawValue, off_t(size)) }
    }

    private func copyRangeInKernel(to destination: FileDescriptor, from start: Int64, to end: Int64) throws(Errno) {
        var input = start
        var output = start
        while input < end {
            let count = try valueOrErrno {
                cls_copy_file_range(rawValue, &input, destination.rawValue, &output, Int(end - input))
            }
            if count == 0 { break }  // the source shrank under us
        }
    }

    private func copyRangeByReading(to destination: FileDescriptor, from start: Int64, to end: Int64) throws(Errno) {
        let capacity = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 4096)
        defer { buffer.deallocate() }
        var offset = start
        while offset < end {
            let wanted = Int(min(Int64(capacity), end - offset))
            let count = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<wanted]), at: offset)
            if count == 0 { break }
            var done = 0
            while done < count {
                let written = try valueOrErrno {
                    pwrite(
                        destination.rawValue, buffer.baseAddress.map { $0 + done }, count - done,
                        off_t(offset) + off_t(done))
                }
                done += written
            }
            offset += Int64(count)
        }
    }
}
