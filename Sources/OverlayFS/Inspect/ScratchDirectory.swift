import Dispatch
import Glibc
import LayerCore
import Synchronization

/// The scratch directories alive in this process, so that an interrupted command (SIGINT,
/// SIGTERM) removes them before it exits.
final class ScratchRegistry: Sendable {
    /// The process's registry.
    static let shared = ScratchRegistry()

    private let paths = Mutex<Set<String>>([])
    private let sources = Mutex<[DispatchSourceSignal]>([])

    func register(_ path: String) {
        paths.withLock { _ = $0.insert(path) }
        installHandlersOnce()
    }

    func unregister(_ path: String) {
        paths.withLock { _ = $0.remove(path) }
    }

    private func installHandlersOnce() {
        sources.withLock { sources in
            guard sources.isEmpty else { return }
            for number in [SIGINT, SIGTERM, SIGHUP] {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { [self] in
                    for path in paths.withLock({ Array($0) }) { removeTree(path) }
                    _exit(128 + number)
                }
                source.resume()
                sources.append(source)
            }
        }
    }
}

/// Removes `path` and everything below it, fd-relative and never following a symlink. Errors
/// are ignored (best effort: used for scratch space).
func removeTree(_ path: String) {
    guard let parent = try? FileDescriptor.open(path: path, flags: O_RDONLY | O_DIRECTORY) else {
        _ = unlink(path)
        return
    }
    removeContents(of: parent)
    _ = rmdir(path)
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
