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
func removeContents(of directory: FileDescriptor) {
    guard let reader = try? directory.open(FileName(unchecked: [0x2E]), flags: O_RDONLY | O_DIRECTORY),
        let entries = try? DirectoryReader.entries(of: reader)
    else { return }
    for entry in entries {
        _ = try? entry.name.withCString { (name) throws(Errno) -> CInt in
            if entry.type == .directory || entry.type == nil {
                if let child = try? directory.open(entry.name, flags: O_RDONLY | O_DIRECTORY) {
                    chmodIfNeeded(child)
                    removeContents(of: child)
                    return unlinkat(directory.rawValue, name, AT_REMOVEDIR)
                }
            }
            return unlinkat(directory.rawValue, name, 0)
        }
    }
}

private func chmodIfNeeded(_ directory: FileDescriptor) {
    if let status = try? directory.status(), status.permissions & 0o700 != 0o700 {
        _ = fchmod(directory.rawValue, mode_t(status.permissions | 0o700))
    }
}
