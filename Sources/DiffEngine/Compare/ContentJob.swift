import CXXHash
import Glibc
import LayerCore

/// Compares the content of two regular files of equal size on a pool thread: both are read in
/// chunks, each chunk hashed with XXH3-128, and the first differing chunk ends the comparison.
/// Both files are opened with `O_NOFOLLOW` and checked to be the inode that was examined.
final class ContentJob: Job, @unchecked Sendable {
    // @unchecked Sendable: see Job (the result is written once before `finished`).
    /// The outcome of a comparison.
    enum Outcome: Sendable {
        case equal
        case different
        case failed(DiffError)
    }

    private let a: SideEntry
    private let b: SideEntry
    private let aDisplay: String
    private let bDisplay: String
    private var outcome: Outcome = .failed(DiffError(path: "", reason: "not compared"))

    /// Bytes this comparison reads at most (both sides).
    var cost: Int64 { 2 * max(b.status.size, 0) }

    /// A comparison of `a` and `b` (same size), named `aDisplay` and `bDisplay` in errors.
    init(_ a: SideEntry, _ b: SideEntry, aDisplay: String, bDisplay: String) {
        self.a = a
        self.b = b
        self.aDisplay = aDisplay
        self.bDisplay = bDisplay
    }

    /// The outcome; read after the job finished.
    var result: Outcome { outcome }

    override func execute(_ context: WorkerContext) {
        do throws(DiffError) {
            let aFile = try ContentJob.open(a, aDisplay)
            let bFile = try ContentJob.open(b, bDisplay)
            let chunk = WorkerContext.bufferSize
            let aBuffer = UnsafeMutableRawBufferPointer(rebasing: context.buffer[0..<chunk])
            let bBuffer = UnsafeMutableRawBufferPointer(rebasing: context.buffer[chunk..<(2 * chunk)])
            let size = b.status.size
            var offset: Int64 = 0
            while offset < size {
                let want = Int(min(Int64(chunk), size - offset))
                let aCount = try ContentJob.read(aFile, into: aBuffer, count: want, at: offset, aDisplay)
                let bCount = try ContentJob.read(bFile, into: bBuffer, count: want, at: offset, bDisplay)
                if aCount != bCount {
                    outcome = .different
                    return
                }
                if aCount == 0 { break }
                let aHash = XXH3_128bits(aBuffer.baseAddress, aCount)
                let bHash = XXH3_128bits(bBuffer.baseAddress, bCount)
                if aHash.low64 != bHash.low64 || aHash.high64 != bHash.high64 {
                    outcome = .different
                    return
                }
                offset += Int64(aCount)
            }
            outcome = .equal
        } catch {
            outcome = .failed(error)
        }
    }

    /// Opens a side's file for reading, refusing a symlink and an inode other than the one
    /// examined (the tree changed under the diff).
    static func open(_ entry: SideEntry, _ display: String) throws(DiffError) -> FileDescriptor {
        let file: FileDescriptor
        do throws(Errno) {
            do throws(Errno) {
                file = try entry.parent.open(entry.name, flags: O_RDONLY | openNoAccessTime)
            } catch .notPermitted {
                file = try entry.parent.open(entry.name, flags: O_RDONLY)
            }
        } catch {
            throw DiffError(path: display, "cannot open", error)
        }
        let status: FileStatus
        do {
            status = try file.status()
        } catch {
            throw DiffError(path: display, "cannot examine", error)
        }
        guard status.identity == entry.status.identity else {
            throw DiffError(path: display, reason: "replaced while the diff ran")
        }
        return file
    }

    /// Reads up to `count` bytes at `offset`, retrying short reads until end of file.
    static func read(
        _ file: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, count: Int, at offset: Int64,
        _ display: String
    ) throws(DiffError) -> Int {
        var done = 0
        while done < count {
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<count])
            let n: Int
            do {
                n = try file.read(into: target, at: offset + Int64(done))
            } catch {
                throw DiffError(path: display, "cannot read", error)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }
}

/// `O_NOATIME` (a GNU flag Swift's Glibc module does not export): reading does not update the
/// access time, so comparing leaves both trees' inodes untouched. Refused (EPERM) on files the
/// caller does not own, unless it has CAP_FOWNER.
let openNoAccessTime: CInt = 0o1000000
