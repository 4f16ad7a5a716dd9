/// # LayerCore
///
/// What both engines (the overlay and the diff engine) need, and nothing else:
///
/// - ``Errno``: errno as a typed error; every syscall wrapper throws it.
/// - ``FileDescriptor``: an owned descriptor, closed exactly once; fd-relative calls
///   (`openat`, `fstatat` with `AT_SYMLINK_NOFOLLOW`, `openat2` with `RESOLVE_BENEATH`).
/// - ``FileName`` and ``RelativePath``: file names as bytes (never `String`, except for display).
/// - ``FileStatus``: `stat(2)` as a Swift value.
/// - ``DirectoryReader``: raw `getdents64(2)` listing; ``TreeWalker``: the fd-relative,
///   symlink-proof, sorted depth-first walk both engines and the tools use.
/// - ``ExtendedAttribute`` and the xattr calls on ``FileDescriptor`` (`listxattrat(2)` where the
///   kernel has it).
/// - ``ArchiveWriter`` / ``ArchiveReader`` / ``ArchiveEntry``: OCI layer tarballs through
///   libarchive (deterministic PAX out; plain, gzip or zstd in and out), with the layer's
///   ``SHA256Digest``s (diff_id, blob digest) from libcrypto.
/// - ``Whiteout``: the codec for both whiteout formats (OCI `.wh.` names, kernel char 0/0 and
///   opaque xattrs).
/// - ``Layer`` and ``LayerStack``: a stack of layer directories, opened once.
/// - ``CommandLineParser``: the small argument parser both tools use.
///
/// LayerCore never follows a symlink out of a layer: paths are walked one component at a time
/// with `O_NOFOLLOW`, or with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`. It must not
/// import CFuse and holds no global mutable state.
public enum LayerCoreModule {
    /// The project version, printed by `--version`.
    public static let version = "0.1.0"
}
