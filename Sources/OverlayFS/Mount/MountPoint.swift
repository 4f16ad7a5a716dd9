import Glibc
import LayerCore

/// Path checks for mounting and unmounting, with errors naming the path.
public enum MountPoint {
    /// The canonical absolute path of an existing file (`realpath(3)`).
    ///
    /// - Throws: ``PathError`` worded for `what` ("layer", "mount point").
    public static func canonical(_ path: String, what: String) throws(PathError) -> String {
        guard let resolved = realpath(path, nil) else {
            throw PathError(path: path, errno: Errno.current, what: what)
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Checks that `path` can take a mount of `layers` (canonical paths): a directory, nothing
    /// mounted on it yet, not a layer nor inside one (the mount would contain itself and the
    /// daemon would call into its own mount).
    ///
    /// - Returns: the canonical mount point.
    /// - Throws: ``PathError`` naming the mount point and the reason.
    public static func validate(_ path: String, layers: [String]) throws(PathError) -> String {
        let resolved = try canonical(path, what: "mount point")
        var status = stat()
        guard stat(resolved, &status) == 0 else {
            let error = Errno.current
            if error == Errno(rawValue: ENOTCONN) {
                throw PathError(
                    path: path,
                    reason: "mount point is a FUSE mount whose daemon has gone (transport endpoint is not "
                        + "connected): unmount it first with 'layermount --unmount \(path)' or 'fusermount3 -u \(path)'",
                    errno: error)
            }
            throw PathError(path: path, errno: error, what: "mount point")
        }
        guard FileType(mode: UInt32(status.st_mode)) == .directory else {
            throw PathError(path: path, reason: "mount point is not a directory")
        }
        let table: MountTable
        do {
            table = try MountTable.current()
        } catch {
            throw PathError(path: "/proc/self/mountinfo", reason: "cannot read the mount table: \(error)", errno: error)
        }
        if let existing = table.mount(at: resolved) {
            throw PathError(
                path: path, reason: "mount point is busy: \(existing.type) is already mounted there (unmount it first)",
                errno: .busy)
        }
        for (index, layer) in layers.enumerated() where resolved == layer || resolved.hasPrefix(layer + "/") {
            throw PathError(
                path: path,
                reason: "mount point is inside layer \(index + 1) (\(layer)): the mount would contain itself")
        }
        return resolved
    }

    /// Checks that no layer is another one or inside another one (canonical paths, bottom
    /// first; `given` as the user wrote them), as the kernel's overlayfs refuses overlapping
    /// layers (ELOOP): a layer inside another would show twice, and the same one twice is a typo.
    ///
    /// - Throws: ``PathError`` naming the later layer of the first overlapping pair.
    public static func checkLayersDoNotOverlap(_ layers: [String], given: [String]) throws(PathError) {
        for (later, path) in layers.enumerated() {
            for earlier in 0..<later {
                let other = layers[earlier]
                let relation: String
                if path == other {
                    relation = "is the same directory as"
                } else if path.hasPrefix(other == "/" ? "/" : other + "/") {
                    relation = "is inside"
                } else if other.hasPrefix(path == "/" ? "/" : path + "/") {
                    relation = "contains"
                } else {
                    continue
                }
                throw PathError(
                    path: given[later],
                    reason: "layer \(later + 1) \(relation) layer \(earlier + 1) (\(given[earlier])): layers must not "
                        + "overlap (the kernel overlay refuses them too)",
                    errno: .tooManySymlinks)
            }
        }
    }

    /// Checks that no two layers are one directory reached through different paths (a bind
    /// mount of another layer, or of its parent): their roots' device and inode differ. The
    /// kernel's overlayfs refuses them too (ELOOP, "conflicting lowerdir path").
    ///
    /// - Parameters:
    ///   - roots: the identity of each layer's root, bottom first.
    ///   - given: the layers as the user wrote them.
    /// - Throws: ``PathError`` naming the later layer of the first pair.
    public static func checkLayersAreDistinct(_ roots: [FileIdentity], given: [String]) throws(PathError) {
        var first: [FileIdentity: Int] = [:]
        for (later, root) in roots.enumerated() {
            if let earlier = first[root] {
                throw PathError(
                    path: given[later],
                    reason: "layer \(later + 1) is the same directory as layer \(earlier + 1) (\(given[earlier])), "
                        + "reached through another path (a bind mount?): layers must not overlap (the kernel overlay "
                        + "refuses them too)",
                    errno: .tooManySymlinks)
            }
            first[root] = later
        }
    }
}

extension MountPoint {
    /// The FUSE type of layermount mounts in the mount table.
    public static let mountType = "fuse.layermount"

    /// Unmounts a layermount mount point: `umount2(2)` as root, `fusermount3 -u` otherwise. The
    /// daemon then exits by itself.
    ///
    /// - Throws: ``PathError`` when nothing or something else is mounted there, or the mount is
    ///   busy.
    public static func unmount(_ path: String) throws(PathError) {
        let resolved: String
        do {
            resolved = try canonical(path, what: "mount point")
        } catch let error where error.errno == Errno(rawValue: ENOTCONN) {
            resolved = absolute(path)  // a mount whose daemon died: realpath cannot enter it
        }
        let table: MountTable
        do {
            table = try MountTable.current()
        } catch {
            throw PathError(path: "/proc/self/mountinfo", reason: "cannot read the mount table: \(error)", errno: error)
        }
        guard let mount = table.mount(at: resolved) else {
            throw PathError(path: path, reason: "not a mount point (nothing is mounted there)")
        }
        guard mount.type == mountType else {
            throw PathError(path: path, reason: "not a layermount mount point (\(mount.type) is mounted there)")
        }
        if geteuid() == 0 {
            guard umount2(resolved, 0) == 0 else {
                let error = Errno.current
                if error == .busy {
                    throw PathError(
                        path: path,
                        reason: "mount point is busy (a process is using it); try again, or detach it "
                            + "with 'fusermount3 -uz \(resolved)'", errno: error)
                }
                throw PathError(path: path, reason: "cannot unmount: \(error)", errno: error)
            }
            return
        }
        let status = spawnAndWait(["fusermount3", "-u", resolved])
        guard status == 0 else {
            throw PathError(path: path, reason: "cannot unmount: fusermount3 -u exited with status \(status)")
        }
    }

    /// `path` made absolute against the working directory, without touching the file system
    /// beyond `getcwd`.
    static func absolute(_ path: String) -> String {
        var result = path
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let cwd =
                getcwd(&buffer, buffer.count) != nil
                ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
            result = cwd + "/" + path
        }
        var parts: [Substring] = []
        for part in result.split(separator: "/") where part != "." {
            if part == ".." { _ = parts.popLast() } else { parts.append(part) }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// Runs a program found on PATH and waits for it; returns its exit status (127 when it
    /// cannot start).
    static func spawnAndWait(_ arguments: [String]) -> Int32 {
        var strings = arguments.map { strdup($0) }
        strings.append(nil)
        defer { for string in strings { free(string) } }
        var pid = pid_t()
        let started = strings.withUnsafeMutableBufferPointer { buffer -> CInt in
            guard let argv = buffer.baseAddress, let program = buffer[0] else { return ENOENT }
            return posix_spawnp(&pid, program, nil, nil, argv, environ)
        }
        guard started == 0 else { return 127 }
        var status: CInt = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}
