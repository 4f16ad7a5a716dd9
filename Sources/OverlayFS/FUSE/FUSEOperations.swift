import CFuse
import CLayerSys
import Glibc
import LayerCore

/// The low-level operation table: `@convention(c)` callbacks that capture nothing. Each one
/// converts the raw arguments (ino to ``NodeID``, C name to ``FileName``), calls the core once
/// and replies exactly once. Unimplemented slots stay nil (the kernel gets `ENOSYS`); write
/// operations never arrive, because the mount is read-only (the kernel answers `EROFS`).
///
/// Locks: the adapter takes none itself and never holds one across a reply (the core's leaf
/// locks are released before it returns). Lookup counts: `lookup` +1 on a positive entry
/// (undone when `fuse_reply_entry` fails; a negative entry counts nothing); `readdirplus` +1
/// for each entry but `.` and `..` that reaches the kernel (undone for one that does not fit,
/// and for all when the reply fails); `forget`/`forget_multi` -count; every other operation
/// leaves counts unchanged.
enum FUSEOperations {
    /// The table handed to `fuse_session_new`.
    static func table() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, connection in FUSEOperations.initialize(userdata, connection) }
        ops.destroy = { userdata in FUSEBridge.of(userdata: userdata)?.fileSystem.destroy() }
        ops.lookup = { request, parent, name in FUSEOperations.lookup(request, parent, name) }
        ops.forget = { request, ino, count in
            FUSEBridge.of(request)?.fileSystem.forget(NodeID(ino), count: count)
            fuse_reply_none(request)
        }
        ops.forget_multi = { request, count, forgets in
            if let fileSystem = FUSEBridge.of(request)?.fileSystem, let forgets {
                for index in 0..<count {
                    fileSystem.forget(NodeID(forgets[index].ino), count: forgets[index].nlookup)
                }
            }
            fuse_reply_none(request)
        }
        ops.getattr = { request, ino, _ in FUSEOperations.getattr(request, ino) }
        ops.readlink = { request, ino in FUSEOperations.readlink(request, ino) }
        ops.open = { request, ino, info in FUSEOperations.open(request, ino, info, directory: false) }
        ops.opendir = { request, ino, info in FUSEOperations.open(request, ino, info, directory: true) }
        ops.read = { request, ino, size, offset, _ in FUSEOperations.read(request, ino, size, offset) }
        ops.readdir = { request, ino, size, offset, _ in
            FUSEOperations.readdir(request, ino, size, offset, plus: false)
        }
        ops.readdirplus = { request, ino, size, offset, _ in
            FUSEOperations.readdir(request, ino, size, offset, plus: true)
        }
        ops.statfs = { request, ino in FUSEOperations.statfs(request, ino) }
        ops.getxattr = { request, ino, name, size in FUSEOperations.getxattr(request, ino, name, size) }
        ops.listxattr = { request, ino, size in FUSEOperations.listxattr(request, ino, size) }
        ops.lseek = { request, ino, offset, whence, _ in FUSEOperations.lseek(request, ino, offset, whence) }
        return ops
    }

    // MARK: - Errors

    /// The errno sent to the kernel for a core error: the one mapping of the adapter.
    static func kernelErrno(_ error: Errno) -> CInt {
        switch error {
        case .interrupted: EINTR
        case .notImplemented: ENOSYS
        case .needsCleaning: EIO
        default: error.rawValue > 0 ? error.rawValue : EIO
        }
    }

    private static func reply(_ request: fuse_req_t?, _ error: Errno) {
        _ = fuse_reply_err(request, kernelErrno(error))
    }

    // MARK: - Session

    private static func initialize(
        _ userdata: UnsafeMutableRawPointer?, _ connection: UnsafeMutablePointer<fuse_conn_info>?
    ) {
        guard let connection, let bridge = FUSEBridge.of(userdata: userdata) else { return }
        let capable = cfuse_conn_capable(connection)
        var want = cfuse_conn_want(connection)
        let wanted =
            CFUSE_CAP_ASYNC_READ | CFUSE_CAP_SPLICE_WRITE | CFUSE_CAP_SPLICE_MOVE | CFUSE_CAP_READDIRPLUS
            | CFUSE_CAP_READDIRPLUS_AUTO | CFUSE_CAP_PARALLEL_DIROPS | CFUSE_CAP_CACHE_SYMLINKS
            // The kernel enforces the layers' ACLs (as overlayfs does) and caches them, so
            // `ls -l` asks for system.posix_acl_access once per file, not on every call.
            | CFUSE_CAP_POSIX_ACL
        want |= capable & wanted
        // Layers are immutable: keep the page cache across opens and attribute refreshes.
        want &= ~(CFUSE_CAP_AUTO_INVAL_DATA | CFUSE_CAP_WRITEBACK_CACHE | CFUSE_CAP_EXPLICIT_INVAL_DATA)
        cfuse_conn_set_want(connection, want)
        connection.pointee.time_gran = 1
        connection.pointee.max_background = 64
        connection.pointee.congestion_threshold = 48
        let noOpen = bridge.fileSystem.options.kernelHandlesOpens
        bridge.kernelOpensFiles.store(noOpen && capable & CFUSE_CAP_NO_OPEN_SUPPORT != 0, ordering: .relaxed)
        bridge.kernelOpensDirectories.store(
            noOpen && capable & CFUSE_CAP_NO_OPENDIR_SUPPORT != 0, ordering: .relaxed)
    }

    // MARK: - Names

    private static func entryParameters(_ entry: Entry, _ options: OverlayOptions) -> fuse_entry_param {
        var parameters = fuse_entry_param()
        parameters.ino = entry.node.rawValue
        parameters.generation = 0
        parameters.attr = entry.attributes.cStat
        parameters.attr_timeout = options.attributeTimeout
        parameters.entry_timeout = options.entryTimeout
        return parameters
    }

    private static func lookup(_ request: fuse_req_t?, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>?) {
        guard let bridge = FUSEBridge.of(request), let name else { return reply(request, .ioError) }
        let fileSystem = bridge.fileSystem
        do {
            let entry = try fileSystem.lookup(parent: NodeID(parent), name: try FileName(cString: name))
            var parameters = entryParameters(entry, fileSystem.options)
            if fuse_reply_entry(request, &parameters) != 0 {
                fileSystem.forget(entry.node, count: 1)  // the kernel never got it
            }
        } catch .noEntry {
            // A negative entry: the kernel caches the absence as long as a name.
            var parameters = fuse_entry_param()
            parameters.ino = 0
            parameters.entry_timeout = fileSystem.options.entryTimeout
            _ = fuse_reply_entry(request, &parameters)
        } catch {
            reply(request, error)
        }
    }

    // MARK: - Attributes

    private static func getattr(_ request: fuse_req_t?, _ ino: fuse_ino_t) {
        guard let bridge = FUSEBridge.of(request) else { return reply(request, .ioError) }
        do {
            var status = try bridge.fileSystem.getattr(NodeID(ino)).cStat
            _ = fuse_reply_attr(request, &status, bridge.fileSystem.options.attributeTimeout)
        } catch {
            reply(request, error)
        }
    }

    private static func readlink(_ request: fuse_req_t?, _ ino: fuse_ino_t) {
        guard let bridge = FUSEBridge.of(request) else { return reply(request, .ioError) }
        do {
            var target = try bridge.fileSystem.readlink(NodeID(ino)).map { CChar(bitPattern: $0) }
            target.append(0)
            _ = target.withUnsafeBufferPointer { fuse_reply_readlink(request, $0.baseAddress) }
        } catch {
            reply(request, error)
        }
    }

    private static func statfs(_ request: fuse_req_t?, _ ino: fuse_ino_t) {
        guard let bridge = FUSEBridge.of(request) else { return reply(request, .ioError) }
        do {
            var result = try bridge.fileSystem.statfs(NodeID(ino))
            _ = fuse_reply_statfs(request, &result)
        } catch {
            reply(request, error)
        }
    }

    private static func getxattr(
        _ request: fuse_req_t?, _ ino: fuse_ino_t, _ name: UnsafePointer<CChar>?, _ size: Int
    ) {
        guard let bridge = FUSEBridge.of(request), let name else { return reply(request, .ioError) }
        do {
            let bytes = Array(UnsafeBufferPointer(start: name, count: strlen(name))).map { UInt8(bitPattern: $0) }
            let value = try bridge.fileSystem.getxattr(NodeID(ino), name: bytes)
            if size == 0 {
                _ = fuse_reply_xattr(request, value.count)
            } else if value.count > size {
                reply(request, .outOfRange)
            } else {
                _ = value.withUnsafeBytes {
                    fuse_reply_buf(request, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count)
                }
            }
        } catch {
            reply(request, error)
        }
    }

    private static func listxattr(_ request: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int) {
        guard let bridge = FUSEBridge.of(request) else { return reply(request, .ioError) }
        do {
            var list: [UInt8] = []
            for name in try bridge.fileSystem.listxattr(NodeID(ino)) {
                list.append(contentsOf: name)
                list.append(0)
            }
            if size == 0 {
                _ = fuse_reply_xattr(request, list.count)
            } else if list.count > size {
                reply(request, .outOfRange)
            } else {
                _ = list.withUnsafeBytes {
                    fuse_reply_buf(request, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count)
                }
            }
        } catch {
            reply(request, error)
        }
    }

    // MARK: - Data

    private static func open(
        _ request: fuse_req_t?, _ ino: fuse_ino_t, _ info: UnsafeMutablePointer<fuse_file_info>?, directory: Bool
    ) {
        guard let bridge = FUSEBridge.of(request), let info else { return reply(request, .ioError) }
        let access = cfuse_fi_flags(info) & O_ACCMODE
        if access != O_RDONLY { return reply(request, .readOnlyFileSystem) }
        let kernelOpens =
            directory
            ? bridge.kernelOpensDirectories.load(ordering: .relaxed) : bridge.kernelOpensFiles.load(ordering: .relaxed)
        if kernelOpens {
            // No-open: the kernel keeps the page cache (and the directory cache) by itself and
            // never sends open or release again.
            return reply(request, .notImplemented)
        }
        cfuse_fi_set_keep_cache(info, 1)
        if directory { cfuse_fi_set_cache_readdir(info, 1) }
        _ = fuse_reply_open(request, info)
    }

    /// Reads up to this size are copied with one `pread` and one reply; larger ones are spliced
    /// from the layer file (fewer syscalls for small files, no copy for large ones).
    static let copiedReadLimit = 32 * 1024

    private static func read(_ request: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ offset: off_t) {
        guard let bridge = FUSEBridge.of(request) else { return reply(request, .ioError) }
        do {
            let source = try bridge.fileSystem.read(NodeID(ino), size: size, offset: Int64(offset))
            if source.size == 0 {
                _ = fuse_reply_buf(request, nil, 0)
            } else if source.size <= copiedReadLimit {
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: source.size, alignment: 16)
                defer { buffer.deallocate() }
                let count = try source.descriptor.read(into: buffer, at: source.offset)
                _ = fuse_reply_buf(request, buffer.baseAddress?.assumingMemoryBound(to: CChar.self), count)
            } else {
                // libfuse replies (data or the read's errno) exactly once.
                withExtendedLifetime(source.descriptor) {
                    _ = cfuse_reply_fd_data(request, source.descriptor.rawValue, source.size, off_t(source.offset))
                }
            }
        } catch {
            reply(request, error)
        }
    }

    private static func lseek(_ request: fuse_req_t?, _ ino: fuse_ino_t, _ offset: off_t, _ whence: CInt) {
        guard let bridge = FUSEBridge.of(request) else { return reply(request, .ioError) }
        do {
            let found = try bridge.fileSystem.lseek(NodeID(ino), offset: Int64(offset), whence: whence)
            _ = fuse_reply_lseek(request, off_t(found))
        } catch {
            reply(request, error)
        }
    }

    // MARK: - Directories

    private static func readdir(
        _ request: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ offset: off_t, plus: Bool
    ) {
        guard let bridge = FUSEBridge.of(request) else { return reply(request, .ioError) }
        let fileSystem = bridge.fileSystem
        let directory = NodeID(ino)
        let (listing, start): (DirectoryListing, Int)
        do {
            (listing, start) = try fileSystem.readdir(directory, offset: Int64(offset))
        } catch {
            return reply(request, error)
        }
        let capacity = max(size, 1)
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
        defer { buffer.deallocate() }
        var used = 0
        var index = start
        var counted: [NodeID] = []
        while index < listing.count {
            let remaining = size - used
            let next = off_t(index + 1)
            if plus {
                let needed = listing.withName(at: index) { fuse_add_direntry_plus(request, nil, 0, $0, nil, 0) }
                if needed > remaining { break }
                var parameters = fuse_entry_param()
                var node: NodeID?
                if !listing.isDotOrDotDot(index),
                    let entry = try? fileSystem.lookup(parent: directory, listed: listing[index])
                {
                    parameters = entryParameters(entry, fileSystem.options)
                    node = entry.node
                } else {
                    // `.`, `..`, or an entry that cannot be looked up now: a plain entry
                    // (node 0), which the kernel looks up itself when it is used.
                    parameters.attr.st_ino = ino_t(listing.inode(at: index))
                    parameters.attr.st_mode = mode_t(listing.type(at: index).modeBits)
                }
                let added = listing.withName(at: index) {
                    fuse_add_direntry_plus(request, buffer + used, remaining, $0, &parameters, next)
                }
                if added > remaining {
                    if let node { fileSystem.forget(node, count: 1) }  // did not fit
                    break
                }
                if let node { counted.append(node) }
                used += added
            } else {
                var status = stat()
                status.st_ino = ino_t(listing.inode(at: index))
                status.st_mode = mode_t(listing.type(at: index).modeBits)
                let added = listing.withName(at: index) {
                    fuse_add_direntry(request, buffer + used, remaining, $0, &status, next)
                }
                if added > remaining { break }
                used += added
            }
            index += 1
        }
        if fuse_reply_buf(request, buffer, used) != 0 {
            // The kernel got none of these entries: undo their lookups.
            for node in counted { fileSystem.forget(node, count: 1) }
        }
    }
}
