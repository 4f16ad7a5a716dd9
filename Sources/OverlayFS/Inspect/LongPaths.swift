import Glibc
import LayerCore

extension FileDescriptor {
    /// Opens `path` below this directory as ``LayerCore/FileDescriptor/open(beneath:flags:mode:)``
    /// does (no symlinks, never leaving the directory), for paths of any length: a path longer
    /// than a system call takes (`PATH_MAX`, 4096 bytes) is opened piece by piece, each piece
    /// beneath the directory the previous one opened.
    ///
    /// - Throws: the `openat2(2)` errno (`ELOOP` for a symlink, `ENOENT`, `ENOTDIR`, ...).
    /// - Wraps openat2(2).
    func openDirectory(beneathLong path: RelativePath, flags: CInt = O_RDONLY | O_DIRECTORY) throws(Errno)
        -> FileDescriptor
    {
        var directory = self
        var piece: [FileName] = []
        var length = 0
        for name in path.components {
            if length + name.bytes.count + 1 > 3072 && !piece.isEmpty {
                directory = try directory.open(beneath: RelativePath(components: piece), flags: O_RDONLY | O_DIRECTORY)
                piece = []
                length = 0
            }
            piece.append(name)
            length += name.bytes.count + 1
        }
        return try directory.open(beneath: RelativePath(components: piece), flags: flags)
    }
}
