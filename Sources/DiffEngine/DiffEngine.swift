import Glibc
import LayerCore

/// # DiffEngine
///
/// Computes the minimal, exact changeset that turns a tree A into a tree B, writes it as a
/// change list (text, `--stat`, streamed JSON), an OCI layer tarball or a layer directory, and
/// applies such layers safely.
///
/// - `Walk/`: reading the two sides: ``TreeSide`` (a plain tree, or A plus an overlay upper
///   dir), per-directory listings with metadata and xattrs, prefetched on a ``WorkPool``.
/// - `Compare/`: the change-detection order (type, mode, owner, size, rdev, link target, xattrs,
///   mtime, link structure, then XXH3-128 content), hard-link groups (``LinkGroups``), the
///   opaque-versus-whiteouts choice, and the ordered walk itself (``DiffWalk``).
/// - `Emit/`: ``ChangeReporter``s (text, stat, JSON) and ``LayerSink``s (OCI tar through
///   LayerCore's ``ArchiveWriter``, layer directory in OCI or overlay whiteout format).
/// - `Apply/`: ``LayerApplier``, OCI semantics onto a root without ever writing outside it.
/// - `CLI/`: ``LayerDiffCommand``, the `layerdiff` command line (main.swift only calls it).
///
/// The engine never follows a symlink in either tree (fd-relative calls with `O_NOFOLLOW`),
/// never changes A or B, and emits in a deterministic order whatever the thread count: hashing
/// and directory listing fan out over a pool, the results are consumed in path order. It must
/// not import CFuse.
public enum DiffEngineModule {
    /// The version printed by `layerdiff --version`.
    public static var version: String { LayerCoreModule.version }
}

/// How the diff decides what changed.
public struct DiffOptions: Sendable {
    /// Treat an equal-looking regular file (same size, mtime, metadata) as unchanged without
    /// reading it (`--trust-mtime`). Off by default: it is verified by content.
    public var trustModificationTime = false
    /// A file whose content, mode, owner and xattrs are equal is unchanged even if its mtime
    /// moved; directories whose only change is the mtime are not emitted (`--ignore-mtime`).
    public var ignoreModificationTime = false
    /// Threads for hashing and listing (including the calling thread).
    public var jobs: Int = DiffOptions.defaultJobs
    /// What the layer output can represent: names and types that cannot be stored are refused
    /// (or skipped with ``skipUnrepresentable``). Nil when no layer is written.
    public var layerFormat: LayerFormat?
    /// Skip unrepresentable entries (listing them) instead of failing.
    public var skipUnrepresentable = false

    /// Options with their defaults.
    public init() {}

    /// The number of online processors (at least 1).
    public static var defaultJobs: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

/// The marker format a written layer uses, which decides what it cannot represent.
public enum LayerFormat: Sendable, Hashable {
    /// OCI layer (tar or directory): names starting with `.wh.` cannot be stored.
    case oci
    /// Kernel overlay layer directory: a character device 0/0 cannot be stored (it would read as
    /// a whiteout).
    case overlay
}

/// An error of a diff or apply run: names the path and the reason. Maps to exit status 2.
public struct DiffError: Error, CustomStringConvertible, Sendable {
    /// The path concerned (as displayed: a tree root joined with a relative path), or empty.
    public var path: String
    /// What went wrong, in words.
    public var reason: String
    /// The underlying errno, if any.
    public var errno: Errno?

    /// An error from its parts.
    public init(path: String, reason: String, errno: Errno? = nil) {
        self.path = path
        self.reason = reason
        self.errno = errno
    }

    /// An error about `path` from an errno, with what was being done (`cannot read`). An empty
    /// `path` (a command-line argument `""`) is shown as `''` with the reason "empty path".
    public init(path: String, _ what: String, _ errno: Errno) {
        if path.isEmpty {
            self.init(path: "''", reason: "\(what) (empty path)", errno: errno)
        } else {
            self.init(path: path, reason: "\(what): \(errno)", errno: errno)
        }
    }

    /// Wraps a ``PathError``. An empty path (a command-line argument `""`) is shown as `''`,
    /// and the reason says the path is empty instead of naming the errno.
    public init(_ error: PathError) {
        guard error.path.isEmpty, let errno = error.errno else {
            self.init(path: error.path, reason: error.reason, errno: error.errno)
            return
        }
        var reason = error.reason
        // "no such tree (no such file or directory)": the parenthesized errno says nothing here.
        if reason.hasSuffix(")"), let open = reason.lastIndex(of: "("), open > reason.startIndex {
            reason = String(reason[..<open])
            if reason.hasSuffix(" ") { reason.removeLast() }
        }
        self.init(path: "''", reason: reason + " (empty path)", errno: errno)
    }

    /// `path: reason`.
    public var description: String { path.isEmpty ? reason : "\(path): \(reason)" }
}
