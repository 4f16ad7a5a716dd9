import Glibc
import LayerCore

/// A private directory for tarball skeletons, under `$TMPDIR`; without it, skeletons holding no
/// content go to /dev/shm when it is a writable directory (tmpfs: several times faster to build
/// and remove than a journalled disk), skeletons holding content (for `flatten`) to /var/tmp.
/// Registered with ``CleanupRegistry`` while it exists.
final class ScratchDirectory: Sendable {
    /// Its path.
    let path: CommandLinePath

    /// Creates the directory (mkdtemp(3), mode 0700).
    ///
    /// - Parameter holdsContent: whether file content will be stored there (then not /dev/shm).
    /// - Throws: ``PathError`` naming the base directory.
    init(holdsContent: Bool) throws(PathError) {
        var base = "/var/tmp"
        if let tmp = getenv("TMPDIR").map({ String(cString: $0) }), !tmp.isEmpty {
            base = tmp
        } else if !holdsContent, access("/dev/shm", W_OK | X_OK) == 0 {
            var status = stat()
            if stat("/dev/shm", &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR { base = "/dev/shm" }
        }
        var template = Array("\(base)/layermount-inspect.XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> Bool in
            guard let pointer = buffer.baseAddress else { return false }
            return mkdtemp(pointer) != nil
        }
        guard made else {
            throw PathError.writing(escapeForDisplay(Array(base.utf8)), .current, what: "scratch directory")
        }
        path = CommandLinePath(bytes: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) })
        CleanupRegistry.shared.register(path)
    }

    /// Removes the directory and everything in it (never following symlinks).
    func remove() {
        removeTree(path)
        CleanupRegistry.shared.unregister(path)
    }
}

/// Removes `path` and everything below it, fd-relative and never following a symlink. Errors
/// are ignored (best effort: used for scratch space and partial outputs).
func removeTree(_ path: CommandLinePath) {
    guard let directory = try? path.open(flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW) else {
        path.unlinkFile()
        return
    }
    chmodIfNeeded(directory)
    removeContents(of: directory)
    path.removeDirectory()
}

/// Removes entry `name` of `parent` and, for a directory, everything below it (best effort).
func removeEntry(_ name: FileName, in parent: FileDescriptor) {
    _ = try? name.withCString { (cName) throws(Errno) -> CInt in
        if unlinkat(parent.rawValue, cName, 0) == 0 { return 0 }
        if let child = try? parent.open(name, flags: O_RDONLY | O_DIRECTORY) {
            chmodIfNeeded(child)
            removeContents(of: child)
        }
        return unlinkat(parent.rawValue, cName, AT_REMOVEDIR)
    }
}

/// Removes everything inside the open directory `directory`.
///
/// Iterative and with one directory open at a time: a skeleton nests directories as deep as its
/// tarball's paths (thousands of levels), and a recursion holding a descriptor per level
/// overflowed the stack or ran out of descriptors, leaving the scratch directory behind. It goes
/// back up through `..`, checking that it arrives where it came from.
func removeContents(of directory: FileDescriptor) {
    /// A directory being emptied: its entries, the next one to remove, its identity, and its
    /// name in the level below (to remove it once empty; nil for `directory` itself).
    struct Level {
        var entries: [DirectoryEntry]
        var next = 0
        var identity: FileIdentity?
        var name: FileName?
    }
    let dot = FileName(unchecked: [0x2E])
    func listing(_ directory: FileDescriptor) -> [DirectoryEntry] {
        guard let reader = try? directory.open(dot, flags: O_RDONLY | O_DIRECTORY),
            let entries = try? DirectoryReader.entries(of: reader)
        else { return [] }
        return entries
    }
    guard var current = try? directory.open(dot, flags: O_RDONLY | O_DIRECTORY) else { return }
    var levels = [Level(entries: listing(current), identity: try? current.status().identity)]
    while let level = levels.last {
        guard level.next < level.entries.count else {
            levels.removeLast()
            guard let name = level.name, let below = levels.last,
                let parent = try? current.open(FileName(unchecked: [0x2E, 0x2E]), flags: O_RDONLY | O_DIRECTORY),
                (try? parent.status().identity) == below.identity
            else { return }
            current = parent
            _ = try? name.withCString { (cName) throws(Errno) -> CInt in
                unlinkat(current.rawValue, cName, AT_REMOVEDIR)
            }
            continue
        }
        let entry = level.entries[level.next]
        levels[levels.count - 1].next += 1
        if entry.type == .directory || entry.type == nil,
            let child = try? current.open(entry.name, flags: O_RDONLY | O_DIRECTORY)
        {
            chmodIfNeeded(child)
            current = child
            levels.append(Level(entries: listing(child), identity: try? child.status().identity, name: entry.name))
            continue
        }
        _ = try? entry.name.withCString { (cName) throws(Errno) -> CInt in
            unlinkat(current.rawValue, cName, 0)
        }
    }
}

private func chmodIfNeeded(_ directory: FileDescriptor) {
    if let status = try? directory.status(), status.permissions & 0o700 != 0o700 {
        _ = fchmod(directory.rawValue, mode_t(status.permissions | 0o700))
    }
}
