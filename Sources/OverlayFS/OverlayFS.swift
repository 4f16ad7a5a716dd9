/// # OverlayFS
///
/// The overlay engine: a stack of layer directories seen as one merged tree, with the kernel
/// overlayfs semantics (whiteouts hide lower layers only, opaque directories, shadowing across
/// types, merged directories).
///
/// - `Resolve/`: the policy, pure functions over a ``LayerStack``: which layer provides a name,
///   what a merged directory lists. No caching, no FUSE. Tested on temp-dir layers.
/// - `Inodes/`, `Core/`: the inode table and `OverlayFileSystem`, one method per operation,
///   Swift types in and out, no C types.
/// - `FUSE/`: the only code that imports CFuse: `@convention(c)` callbacks that convert, call
///   the core once and reply exactly once.
///
/// The engine never writes to a lower layer and never follows a symlink stored in a layer.
public enum OverlayFSModule {}
