import Glibc
import LayerCore
import Synchronization

/// A layer being written, built where a failed or stopped run leaves nothing at the destination:
///
/// - a tarball goes to `NAME.layerdiff-PID.tmp` next to it and is renamed over it at the end;
/// - a layer directory that does not exist yet is built in a hidden sibling
///   `.layerdiff-partial-XXXXXX` and renamed into place at the end;
/// - into an existing empty directory (a mount point, say), the layer is built in a hidden
///   `.layerdiff-partial-XXXXXX` inside it, and its entries are moved up at the end, then the
///   directory takes the layer root's metadata.
///
/// ``discard()`` (on failure, or when the object goes away uncommitted) removes the partial
/// output. Each partial path is in ``PartialOutputs`` while it exists, for the last-resort
/// cleanup when a signal stops the process.
final class LayerOutput {
    /// The open file (tarball) or directory (the layer root) to write into.
    let descriptor: FileDescriptor
    private let finalPath: String
    private let storage: Storage
    private var done = false

    private enum Storage {
        /// A temporary file, renamed to the final path.
        case file(temporary: String)
        /// A scratch directory `name` in `parent`, renamed to `finalName` there.
        case sibling(parent: FileDescriptor, name: FileName, finalName: FileName, registered: String)
        /// A scratch directory `name` inside the existing empty destination.
        case inside(destination: FileDescriptor, name: FileName, registered: String)
    }

    private init(descriptor: FileDescriptor, finalPath: String, storage: Storage) {
        self.descriptor = descriptor
        self.finalPath = finalPath
        self.storage = storage
    }

    /// The prefix of scratch directory names.
    static let partialPrefix = ".layerdiff-partial-"

    /// A temporary file next to `path`, renamed to `path` by ``commit()``.
    ///
    /// - Throws: ``DiffError`` naming `path`.
    static func archive(_ path: String) throws(DiffError) -> LayerOutput {
        let temporary = path + ".layerdiff-\(getpid()).tmp"
        do {
            PartialOutputs.shared.register(temporary)
            let fd = try FileDescriptor.open(path: temporary, flags: O_WRONLY | O_CREAT | O_EXCL | O_TRUNC, mode: 0o644)
            return LayerOutput(descriptor: fd, finalPath: path, storage: .file(temporary: temporary))
        } catch {
            PartialOutputs.shared.unregister(temporary)
            throw DiffError(path: path, "cannot create the layer", error)
        }
    }

    /// A scratch layer directory for `path`, which must not exist or be an empty directory.
    ///
    /// - Throws: ``DiffError`` naming `path`.
    static func directory(_ path: String) throws(DiffError) -> LayerOutput {
        if path.isEmpty { throw DiffError(path: "''", reason: "cannot create the layer directory (empty path)") }
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        let parentPath: String
        let finalName: String
        if let slash = trimmed.lastIndex(of: "/") {
            parentPath = slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
            finalName = String(trimmed[trimmed.index(after: slash)...])
        } else {
            parentPath = "."
            finalName = trimmed
        }
        if trimmed == "/" { return try inside(path, existing: path) }
        let parent: FileDescriptor
        do {
            parent = try FileDescriptor.open(path: parentPath, flags: O_RDONLY | O_DIRECTORY)
        } catch {
            throw DiffError(path: path, "cannot open the directory that is to hold the layer directory", error)
        }
        let name: FileName
        do {
            name = try FileName(finalName)
        } catch {
            throw DiffError(path: path, reason: "not a directory name the layer can be written to")
        }
        if name.isDotOrDotDot {
            return try inside(path, existing: path)
        }
        let existing: FileStatus?
        do {
            existing = try parent.statusIfPresent(of: name)
        } catch {
            throw DiffError(path: path, "cannot examine", error)
        }
        if existing != nil { return try inside(path, existing: path) }
        let (scratch, scratchName) = try makeScratch(in: parent, display: path, registeredPrefix: parentPath)
        return LayerOutput(
            descriptor: scratch, finalPath: path,
            storage: .sibling(
                parent: parent, name: scratchName, finalName: name,
                registered: parentPath + "/" + String(decoding: scratchName.bytes, as: UTF8.self)))
    }

    /// The scratch directory inside the existing, empty directory `path`.
    private static func inside(_ path: String, existing: String) throws(DiffError) -> LayerOutput {
        let destination: FileDescriptor
        let names: [FileName]
        do {
            destination = try FileDescriptor.open(path: existing, flags: O_RDONLY | O_DIRECTORY)
            names = try TreeWalker.names(of: destination, sorted: true)
        } catch .notDirectory {
            throw DiffError(path: path, reason: "exists and is not a directory", errno: .notDirectory)
        } catch {
            throw DiffError(path: path, "cannot open the layer directory", error)
        }
        if !names.isEmpty {
            if names.allSatisfy({ $0.hasPrefix(Array(partialPrefix.utf8)) }) {
                throw DiffError(
                    path: path,
                    reason:
                        "the layer directory holds only the partial output of a killed run (\(names[0])); remove it first"
                )
            }
            throw DiffError(path: path, reason: "the layer directory exists and is not empty")
        }
        let (scratch, scratchName) = try makeScratch(in: destination, display: path, registeredPrefix: existing)
        return LayerOutput(
            descriptor: scratch, finalPath: path,
            storage: .inside(
                destination: destination, name: scratchName,
                registered: existing + "/" + String(decoding: scratchName.bytes, as: UTF8.self)))
    }

    /// Creates a `.layerdiff-partial-XXXXXX` directory (0700) in `directory`.
    private static func makeScratch(in directory: FileDescriptor, display: String, registeredPrefix: String)
        throws(DiffError) -> (FileDescriptor, FileName)
    {
        for _ in 0..<100 {
            let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
            let name = FileName(unchecked: Array((partialPrefix + suffix).utf8))
            let registered = registeredPrefix + "/" + partialPrefix + suffix
            PartialOutputs.shared.register(registered)
            do {
                _ = try name.withCString { (cName) throws(Errno) in
                    try valueOrErrno { mkdirat(directory.rawValue, cName, 0o700) }
                }
            } catch {
                PartialOutputs.shared.unregister(registered)
                if error == .exists { continue }
                throw DiffError(path: display, "cannot create the layer directory", error)
            }
            do {
                return (try directory.open(name, flags: O_RDONLY | O_DIRECTORY), name)
            } catch {
                try? FileMaker.remove(name, in: directory)
                PartialOutputs.shared.unregister(registered)
                throw DiffError(path: display, "cannot open the layer directory", error)
            }
        }
        throw DiffError(path: display, reason: "cannot name a scratch directory for the layer")
    }

    /// Puts the layer in place.
    ///
    /// - Throws: ``DiffError`` naming the destination (the partial output is removed then).
    func commit() throws(DiffError) {
        guard !done else { return }
        do throws(Errno) {
            switch storage {
            case .file(let temporary):
                if rename(temporary, finalPath) != 0 { throw Errno.current }
            case .sibling(let parent, let name, let finalName, _):
                // (A directory made there meanwhile is replaced only if empty: nothing is lost.)
                try name.withCString { (cName) throws(Errno) in
                    try finalName.withCString { (cFinal) throws(Errno) in
                        _ = try valueOrErrno { renameat(parent.rawValue, cName, parent.rawValue, cFinal) }
                    }
                }
            case .inside(let destination, let name, _):
                try moveUp(from: descriptor, named: name, into: destination)
            }
        } catch {
            discard()
            if error == .exists || error == .notEmpty {
                throw DiffError(
                    path: finalPath, reason: "cannot put the layer in place: it was created while the diff ran",
                    errno: error)
            }
            throw DiffError(path: finalPath, "cannot put the layer in place", error)
        }
        done = true
        unregister()
    }

    /// Moves the entries of the scratch directory `scratch` (entry `name` of `destination`) up,
    /// restores the moved directories' times (a move rewrites their `..`), removes the scratch
    /// directory and gives `destination` its metadata.
    private func moveUp(from scratch: FileDescriptor, named name: FileName, into destination: FileDescriptor)
        throws(Errno)
    {
        let rootStatus = try scratch.status()
        let rootAttributes = try scratch.extendedAttributes()
        let listing = try scratch.open(FileName(unchecked: [0x2E]), flags: O_RDONLY | O_DIRECTORY)
        // Without root, entries leave a read-only scratch directory only once it is writable (it
        // is removed after, and the destination gets its permissions).
        if !FileMaker.privileged { try FileMaker.setPermissions(of: scratch, rootStatus.permissions | 0o700) }
        for entry in try TreeWalker.names(of: listing, sorted: false) {
            let status = try scratch.status(of: entry)
            // Moving a directory rewrites its `..`: without root, a read-only one is opened up
            // for the move, then given its permissions back.
            let before = FileMaker.openUp(entry, in: scratch)
            try entry.withCString { (cName) throws(Errno) in
                _ = try valueOrErrno { renameat(scratch.rawValue, cName, destination.rawValue, cName) }
                if let before { _ = try valueOrErrno { fchmodat(destination.rawValue, cName, mode_t(before), 0) } }
                if status.type == .directory {
                    var times = [status.modificationTime.timespec, status.modificationTime.timespec]
                    _ = try valueOrErrno { utimensat(destination.rawValue, cName, &times, AT_SYMLINK_NOFOLLOW) }
                }
            }
        }
        _ = try name.withCString { (cName) throws(Errno) in
            try valueOrErrno { unlinkat(destination.rawValue, cName, AT_REMOVEDIR) }
        }
        let metadata = EntryMetadata(
            type: .directory, permissions: rootStatus.permissions, userID: rootStatus.userID,
            groupID: rootStatus.groupID, modificationTime: rootStatus.modificationTime, attributes: rootAttributes)
        try FileMaker.apply(metadata, to: destination, setTime: true)
    }

    /// Removes what was written (for a directory built inside the destination: its entries
    /// moved up so far too, leaving it empty as it was).
    func discard() {
        guard !done else { return }
        done = true
        switch storage {
        case .file(let temporary):
            unlink(temporary)
        case .sibling(let parent, let name, _, _):
            try? FileMaker.remove(name, in: parent)
        case .inside(let destination, _, _):
            // A fresh descriptor: listing reads from the descriptor's offset.
            if let fresh = try? destination.open(FileName(unchecked: [0x2E]), flags: O_RDONLY | O_DIRECTORY) {
                try? FileMaker.removeContents(of: fresh)
            }
        }
        unregister()
    }

    private func unregister() {
        switch storage {
        case .file(let temporary): PartialOutputs.shared.unregister(temporary)
        case .sibling(_, _, _, let registered), .inside(_, _, let registered):
            PartialOutputs.shared.unregister(registered)
        }
    }

    deinit { discard() }
}

/// The partial layer outputs alive in the process, for the last-resort cleanup when a signal
/// stops a run that does not unwind in time (normally ``LayerOutput/discard()`` removes them).
final class PartialOutputs: Sendable {
    /// The process's registry.
    static let shared = PartialOutputs()

    private let paths = Mutex<Set<String>>([])

    /// Whether nothing partial exists.
    var isEmpty: Bool { paths.withLock { $0.isEmpty } }

    /// Notes a path to remove if the process is stopped.
    func register(_ path: String) { paths.withLock { _ = $0.insert(path) } }

    /// Forgets a path (removed by its owner, or now the result).
    func unregister(_ path: String) { paths.withLock { _ = $0.remove(path) } }

    /// Removes every registered path (a file or a directory tree), never following a symlink.
    func removeAll() {
        for path in paths.withLock({ Array($0) }) {
            let slash = path.lastIndex(of: "/")
            let parentPath = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
            let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
            guard let parent = try? FileDescriptor.open(path: parentPath, flags: O_RDONLY | O_DIRECTORY),
                let name = try? FileName(base)
            else { continue }
            try? FileMaker.remove(name, in: parent)
        }
    }
}
