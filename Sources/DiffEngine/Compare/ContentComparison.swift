import CXXHash
import Glibc
import LayerCore

/// Compares the content of two regular files of equal size: both are read in chunks into the
/// thread's buffer, each chunk is hashed with XXH3-128, and the first differing chunk ends the
/// comparison. Both files are opened with `O_NOFOLLOW` (and `O_NOATIME` where allowed) and
/// checked to be the inode that was examined.
enum ContentComparison {
    /// The verdict.
    enum Outcome {
        case equal
        case different
    }

    /// Compares `a` and `b` (same size; both with their parent descriptors). `display` names
    /// a side's file for an error message (called only then).
    ///
    /// - Throws: ``DiffError`` naming the file that cannot be read or changed under the diff.
    static func compare(
        _ a: SideEntry, _ b: SideEntry, display: (Side) -> String, context: WorkerContext
    ) throws(DiffError) -> Outcome {
        let aFile = try open(a, display(.a))
        let bFile = try open(b, display(.b))
        let chunk = WorkerContext.bufferSize
        let aBuffer = UnsafeMutableRawBufferPointer(rebasing: context.buffer[0..<chunk])
        let bBuffer = UnsafeMutableRawBufferPointer(rebasing: context.buffer[chunk..<(2 * chunk)])
        let size = b.status.size
        var offset: Int64 = 0
        while offset < size {
            let want = Int(min(Int64(chunk), size - offset))
            let aCount = try read(aFile, into: aBuffer, count: want, at: offset, display(.a))
            let bCount = try read(bFile, into: bBuffer, count: want, at: offset, display(.b))
            if aCount != bCount { return .different }
            if aCount == 0 { break }
            let aHash = XXH3_128bits(aBuffer.baseAddress, aCount)
            let bHash = XXH3_128bits(bBuffer.baseAddress, bCount)
            if aHash.low64 != bHash.low64 || aHash.high64 != bHash.high64 { return .different }
            offset += Int64(aCount)
        }
        return .equal
    }

    /// Opens a side's regular file for reading, refusing a symlink and an inode other than the
    /// one examined (the tree changed under the diff).
    ///
    /// - Throws: ``DiffError`` naming `display`.
    static func open(_ entry: SideEntry, _ display: @autoclosure () -> String) throws(DiffError) -> FileDescriptor {
        guard let parent = entry.parent else {
            throw DiffError(path: display(), reason: "internal error: no directory to read from")
        }
        return try open(entry.name, in: parent, expecting: entry.status.identity, display())
    }

    /// Opens regular file `name` of `parent`, checking it is inode `identity`.
    ///
    /// - Throws: ``DiffError`` naming `display`.
    static func open(
        _ name: FileName, in parent: FileDescriptor, expecting identity: FileIdentity,
        _ display: @autoclosure () -> String
    ) throws(DiffError) -> FileDescriptor {
        let file: FileDescriptor
        do throws(Errno) {
            do throws(Errno) {
                file = try parent.open(name, flags: O_RDONLY | openNoAccessTime)
            } catch .notPermitted {
                file = try parent.open(name, flags: O_RDONLY)
            }
        } catch {
            throw DiffError(path: display(), "cannot open", error)
        }
        let status: FileStatus
        do {
            status = try file.status()
        } catch {
            throw DiffError(path: display(), "cannot examine", error)
        }
        guard status.identity == identity else {
            throw DiffError(path: display(), reason: "replaced while the diff ran")
        }
        return file
    }

    /// Reads up to `count` bytes at `offset`, retrying short reads until end of file.
    ///
    /// - Throws: ``DiffError`` naming `display`.
    static func read(
        _ file: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, count: Int, at offset: Int64,
        _ display: @autoclosure () -> String
    ) throws(DiffError) -> Int {
        var done = 0
        while done < count {
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<count])
            let n: Int
            do {
                n = try file.read(into: target, at: offset + Int64(done))
            } catch {
                throw DiffError(path: display(), "cannot read", error)
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
