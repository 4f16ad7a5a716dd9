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
/// - `Inspect/`: the stack-reading commands (`inspect`, `which`, `ls`, `flatten`), built on `Resolve/` so
///   that what they call the merged tree is what the mount serves; tarball layers are indexed
///   into skeleton directories for the same resolver. Entry point: ``InspectCommand``.
/// - `FUSE/`: the only code that imports CFuse: `@convention(c)` callbacks that convert, call
///   the core once and reply exactly once.
///
/// The engine never writes to a lower layer and never follows a symlink stored in a layer.
public enum OverlayFSModule {}
