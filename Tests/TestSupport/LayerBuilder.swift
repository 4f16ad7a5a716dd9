import CLayerSys
import Foundation
import Glibc
import LayerCore

/// One declarative step that builds part of a layer or tree, in the style of continuity's
/// fstest: applied in order with plain syscalls (no tool runs).
public enum LayerStep: Sendable {
    /// A regular file with `content` and permission bits `mode`.
    case file(String, String, mode: mode_t = 0o644)
    /// A regular file with raw bytes.
    case bytes(String, [UInt8], mode: mode_t = 0o644)
    /// A directory (parents created as needed, 0755).
    case dir(String, mode: mode_t = 0o755)
    /// A symlink at path pointing to target.
    case symlink(String, target: String)
    /// A hard link at path to the existing `existing` (both relative to the root).
    case hardlink(String, existing: String)
    /// A whiteout of path in the given format (OCI `.wh.NAME`, overlay char 0/0).
    case whiteout(String, WhiteoutFormat)
    /// Marks a directory opaque (created if needed) in the given format.
    case opaque(String, WhiteoutFormat)
    /// Sets an xattr on path (not following a symlink).
    case xattr(String, name: String, value: String)
    /// chmod (permission bits incl. setuid/setgid/sticky).
    case chmod(String, mode_t)
    /// lchown.
    case chown(String, uid: uid_t, gid: gid_t)
    /// Sets atime and mtime (seconds, nanoseconds), not following a symlink.
    case times(String, seconds: Int, nanoseconds: Int = 0)
    /// A fifo.
    case fifo(String)
    /// A character device.
    case charDevice(String, major: UInt32, minor: UInt32)
    /// A block device.
    case blockDevice(String, major: UInt32, minor: UInt32)
    /// A sparse file of `size` bytes with `data` written at `offset`.
    case sparse(String, size: Int64, data: String, offset: Int64)
    /// Removes path (recursively).
    case remove(String)
}

/// Applies steps below a root directory.
public enum LayerBuilder {
    /// Applies `steps` in order below `root`, creating parent directories as needed.
    /// Traps (test code) with the failing step when a syscall fails.
    public static func apply(_ steps: [LayerStep], in root: String) {
        for step in steps { apply(step, in: root) }
    }

    private static func parent(_ path: String) -> String {
        (path as NSString).deletingLastPathComponent
    }

    private static func mkdirs(_ path: String) {
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    private static func check(_ result: Int32, _ what: String) {
        if result != 0 { fatalError("LayerBuilder: \(what): \(Errno.current)") }
    }

    private static func write(_ path: String, _ data: [UInt8], mode: mode_t) {
        mkdirs(parent(path))
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode)
        if fd < 0 { fatalError("LayerBuilder: create \(path): \(Errno.current)") }
        data.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var done = 0
            while done < raw.count {
                let n = Glibc.write(fd, base + done, raw.count - done)
                if n <= 0 { fatalError("LayerBuilder: write \(path): \(Errno.current)") }
                done += n
            }
        }
        close(fd)
        check(chmod(path, mode), "chmod \(path)")
    }

    /// Applies one step (see ``LayerStep``).
    public static func apply(_ step: LayerStep, in root: String) {
        func p(_ relative: String) -> String { root + "/" + relative }
        switch step {
        case .file(let path, let content, let mode):
            write(p(path), Array(content.utf8), mode: mode)
        case .bytes(let path, let bytes, let mode):
            write(p(path), bytes, mode: mode)
        case .dir(let path, let mode):
            mkdirs(p(path))
            check(chmod(p(path), mode), "chmod \(path)")
        case .symlink(let path, let target):
            mkdirs(parent(p(path)))
            check(symlink(target, p(path)), "symlink \(path)")
        case .hardlink(let path, let existing):
            mkdirs(parent(p(path)))
            check(link(p(existing), p(path)), "link \(path)")
        case .whiteout(let path, let format):
            let dir = parent(p(path))
            let name = (path as NSString).lastPathComponent
            mkdirs(dir)
            if format == .overlay {
                check(mknod(p(path), S_IFCHR | 0o000, 0), "mknod whiteout \(path)")
            } else {
                write(dir + "/.wh." + name, [], mode: 0o644)
            }
        case .opaque(let path, let format):
            mkdirs(p(path))
            if format == .overlay {
                check(lsetxattr(p(path), "trusted.overlay.opaque", "y", 1, 0), "opaque xattr \(path)")
            } else {
                write(p(path) + "/.wh..wh..opq", [], mode: 0o644)
            }
        case .xattr(let path, let name, let value):
            let bytes = Array(value.utf8)
            check(bytes.withUnsafeBytes { lsetxattr(p(path), name, $0.baseAddress, $0.count, 0) }, "xattr \(path)")
        case .chmod(let path, let mode):
            check(chmod(p(path), mode), "chmod \(path)")
        case .chown(let path, let uid, let gid):
            check(lchown(p(path), uid, gid), "chown \(path)")
        case .times(let path, let seconds, let nanoseconds):
            var spec = [
                timespec(tv_sec: seconds, tv_nsec: nanoseconds), timespec(tv_sec: seconds, tv_nsec: nanoseconds),
            ]
            check(utimensat(AT_FDCWD, p(path), &spec, AT_SYMLINK_NOFOLLOW), "utimensat \(path)")
        case .fifo(let path):
            mkdirs(parent(p(path)))
            check(mkfifo(p(path), 0o644), "mkfifo \(path)")
        case .charDevice(let path, let major, let minor):
            mkdirs(parent(p(path)))
            check(mknod(p(path), S_IFCHR | 0o644, makedev(major, minor)), "mknod \(path)")
        case .blockDevice(let path, let major, let minor):
            mkdirs(parent(p(path)))
            check(mknod(p(path), S_IFBLK | 0o644, makedev(major, minor)), "mknod \(path)")
        case .sparse(let path, let size, let data, let offset):
            write(p(path), [], mode: 0o644)
            check(truncate(p(path), off_t(size)), "truncate \(path)")
            let fd = open(p(path), O_WRONLY)
            let bytes = Array(data.utf8)
            _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
            close(fd)
        case .remove(let path):
            try? FileManager.default.removeItem(atPath: p(path))
        }
    }

    private static func makedev(_ major: UInt32, _ minor: UInt32) -> dev_t {
        // glibc's makedev encoding.
        let ma = UInt64(major), mi = UInt64(minor)
        return dev_t((mi & 0xff) | ((ma & 0xfff) << 8) | ((mi & ~0xff) << 12) | ((ma & ~0xfff) << 32))
    }
}
