import Glibc
import LayerCore

/// A file system path as the user gave it on the command line (a layer, a `--to` destination):
/// the bytes the shell passed, never decoded, so a name that is not UTF-8 names the same file.
/// Shown with ``LayerCore/escapeForDisplay(_:)`` (control bytes, backslashes and invalid bytes
/// as `\xHH`), as merged paths are.
public struct CommandLinePath: Sendable, Hashable, CustomStringConvertible {
    /// The path's bytes (no NUL).
    public var bytes: [UInt8]

    /// A path from its bytes.
    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// A path from a string (its UTF-8 bytes).
    public init(_ string: String) { bytes = Array(string.utf8) }

    /// The display form (``LayerCore/escapeForDisplay(_:)``).
    public var description: String { escapeForDisplay(bytes) }

    /// The path followed by `suffix` (`out.tar` + `.partial-XXXXXX`).
    public func appending(_ suffix: String) -> CommandLinePath { CommandLinePath(bytes: bytes + Array(suffix.utf8)) }

    /// The path followed by `/name`.
    public func appending(component name: FileName) -> CommandLinePath {
        CommandLinePath(bytes: (bytes.last == 0x2F ? bytes : bytes + [0x2F]) + name.bytes)
    }

    /// The directory holding the path, lexically: `.` for a bare name, `/` at the top.
    public var parent: CommandLinePath {
        var trimmed = bytes[...]
        while trimmed.count > 1 && trimmed.last == 0x2F { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: 0x2F) else { return CommandLinePath(".") }
        let head = trimmed[..<slash]
        return head.isEmpty ? CommandLinePath("/") : CommandLinePath(bytes: Array(head))
    }

    /// The last component (trailing slashes ignored).
    public var lastComponent: [UInt8] {
        var trimmed = bytes[...]
        while trimmed.count > 1 && trimmed.last == 0x2F { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: 0x2F) else { return Array(trimmed) }
        return Array(trimmed[trimmed.index(after: slash)...])
    }

    /// Calls `body` with the path as a NUL-terminated C string.
    func withCString<R>(_ body: (UnsafePointer<CChar>) -> R) -> R {
        var storage = bytes.map { CChar(bitPattern: $0) }
        storage.append(0)
        return storage.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return "".withCString(body) }
            return body(base)
        }
    }

    /// Opens the path (symlinks followed, as for any command-line path), with `O_CLOEXEC`.
    ///
    /// - Throws: the `open(2)` errno.
    /// - Wraps open(2).
    public func open(flags: CInt, mode: mode_t = 0) throws(Errno) -> FileDescriptor {
        while true {
            let fd = withCString { Glibc.open($0, flags | O_CLOEXEC, mode) }
            if fd >= 0 { return FileDescriptor(owning: fd) }
            let error = Errno.current
            if error != .interrupted { throw error }
        }
    }

    /// The status of what the path names, following symlinks.
    ///
    /// - Throws: the `stat(2)` errno.
    /// - Wraps stat(2).
    public func status() throws(Errno) -> FileStatus {
        var raw = stat()
        let result = withCString { stat($0, &raw) }
        if result != 0 { throw Errno.current }
        return FileStatus(raw)
    }

    /// The status of the path itself (a symlink is not followed), nil when it does not exist.
    ///
    /// - Throws: `lstat(2)` errnos other than `ENOENT`.
    /// - Wraps lstat(2).
    public func linkStatusIfPresent() throws(Errno) -> FileStatus? {
        var raw = stat()
        let result = withCString { lstat($0, &raw) }
        if result != 0 {
            let error = Errno.current
            if error == .noEntry { return nil }
            throw error
        }
        return FileStatus(raw)
    }

    /// Creates the directory. Wraps mkdir(2).
    ///
    /// - Throws: the `mkdir(2)` errno.
    func makeDirectory(mode: mode_t) throws(Errno) {
        let result = withCString { mkdir($0, mode) }
        if result != 0 { throw Errno.current }
    }

    /// Removes a directory (which must be empty). Wraps rmdir(2).
    func removeDirectory() { _ = withCString { rmdir($0) } }

    /// Removes a file. Wraps unlink(2).
    func unlinkFile() { _ = withCString { unlink($0) } }

    /// Renames this path to `other`, replacing it. Wraps rename(2).
    ///
    /// - Throws: the `rename(2)` errno.
    func rename(to other: CommandLinePath) throws(Errno) {
        let result = withCString { from in other.withCString { to in Glibc.rename(from, to) } }
        if result != 0 { throw Errno.current }
    }

    /// Creates a new file `PATH.partial-XXXXXX` (mkstemp(3)) next to this path and opens it.
    ///
    /// - Returns: the file's path and descriptor.
    /// - Throws: the `mkstemp(3)` errno.
    func makeTemporarySibling() throws(Errno) -> (CommandLinePath, FileDescriptor) {
        var template = (bytes + Array(".partial-XXXXXX".utf8)).map { CChar(bitPattern: $0) }
        template.append(0)
        let fd = template.withUnsafeMutableBufferPointer { buffer -> CInt in
            guard let base = buffer.baseAddress else { return -1 }
            return mkstemp(base)
        }
        guard fd >= 0 else { throw Errno.current }
        let made = CommandLinePath(bytes: template.dropLast().map { UInt8(bitPattern: $0) })
        return (made, FileDescriptor(owning: fd))
    }
}

extension PathError {
    /// An error about a command-line path, with the path in display form.
    init(_ path: CommandLinePath, errno: Errno, what: String) {
        self.init(path: path.description, errno: errno, what: what)
    }

    /// An error about a command-line path, with the path in display form.
    init(_ path: CommandLinePath, reason: String, errno: Errno? = nil) {
        self.init(path: path.description, reason: reason, errno: errno)
    }

    /// An error about writing `path` (a destination): `EACCES` and `EROFS` say it is not writable.
    static func writing(_ path: String, _ errno: Errno, what: String = "destination") -> PathError {
        let words = "\(errno)".lowercased()
        return switch errno {
        case .permissionDenied, .notPermitted:
            PathError(path: path, reason: "the \(what) is not writable (\(words))", errno: errno)
        case .readOnlyFileSystem:
            PathError(path: path, reason: "the \(what) is not writable (read-only file system)", errno: errno)
        case .noEntry:
            PathError(path: path, reason: "cannot create the \(what): no such file or directory", errno: errno)
        case .noSpace:
            PathError(path: path, reason: "cannot write the \(what): no space left on device", errno: errno)
        default:
            PathError(path: path, reason: "cannot write the \(what): \(words)", errno: errno)
        }
    }

    /// An error about resolving a path in the merged tree, worded without repeating "path".
    static func resolving(_ path: String, _ errno: Errno) -> PathError {
        switch errno {
        case .tooManySymlinks:
            PathError(path: path, reason: "too many levels of symbolic links (a symlink loop)", errno: errno)
        case .nameTooLong: PathError(path: path, reason: "file name too long (over 255 bytes)", errno: errno)
        case .notDirectory: PathError(path: path, reason: "not a directory", errno: errno)
        case .invalidArgument: PathError(path: path, reason: "not a valid path", errno: errno)
        default: PathError(path: path, reason: "\(errno)".lowercased(), errno: errno)
        }
    }
}
