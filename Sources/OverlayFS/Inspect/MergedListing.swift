import Glibc
import LayerCore

/// One entry of a merged directory listing, as `ls` prints it.
public struct ListedEntry: Sendable {
    /// The entry's name.
    public var name: FileName
    /// The layer providing it.
    public var layer: LayerIndex
    /// Its type.
    public var type: FileType
    /// Its real status (when asked for).
    public var status: FileStatus?
    /// For a symlink, its target (when statuses are asked for).
    public var linkTarget: [UInt8]?
    /// For a directory (when recursing), the layer directories that make it up.
    public var directories: [LayerDirectory]
    /// For a directory that could not be opened (to merge it or recurse into it), why.
    public var unreadable: PathError? = nil
}

extension MergedPath {
    /// The merged listing of the directory made of `directories` (top first), sorted by name
    /// bytes: ``Resolver/list(_:)``, the mount's readdir, plus each entry's status when `long` and
    /// its layer directories when `recursive`.
    ///
    /// - Throws: ``PathError`` naming the directory that could not be read.
    public func listing(_ directories: [LayerDirectory], at path: RelativePath, long: Bool, recursive: Bool)
        throws(PathError) -> [ListedEntry]
    {
        let merged: [MergedEntry]
        do {
            merged = try stack.resolver.list(directories)
        } catch {
            throw failure(listing: directories, at: path, error)
        }
        var result: [ListedEntry] = []
        result.reserveCapacity(merged.count)
        for item in merged.sorted(by: { $0.name < $1.name }) {
            try Interruption.shared.check()
            var entry = ListedEntry(name: item.name, layer: item.layer, type: item.type, directories: [])
            guard long || (recursive && item.type == .directory) || stack[item.layer].archive != nil else {
                result.append(entry)
                continue
            }
            let looked: LookupResult
            do {
                looked = try lookup(item.name, in: directories, at: path)
            } catch {
                // A directory that cannot be opened is still an entry of this one (as ls shows a
                // mode 000 directory): its own status comes from its layer, and only listing it
                // fails, which the caller reports when it gets there.
                guard item.type == .directory,
                    let container = directories.first(where: { $0.layer == item.layer })?.descriptor
                else { throw error }
                entry.unreadable = error
                if long, let own = try? container.statusIfPresent(of: item.name) {
                    entry.status = stack.status(of: own, in: item.layer)
                }
                result.append(entry)
                continue
            }
            switch looked {
            case .found(let found):
                let real = stack.status(of: found.status, in: found.layer)
                entry.type = real.type
                entry.directories = found.directories
                if long {
                    entry.status = real
                    // A merged directory has one link, as the kernel overlay and the mount report it.
                    if found.isMergedDirectory { entry.status?.linkCount = 1 }
                    if real.type == .symlink,
                        let container = directories.first(where: { $0.layer == found.layer })?.descriptor
                    {
                        do {
                            entry.linkTarget = try stack.linkTarget(
                                of: item.name, status: found.status, in: container, layer: found.layer)
                        } catch {
                            let mergedPath = path.appending(item.name).absoluteDisplay
                            throw PathError(
                                path: "\(stack.displayPath(mergedPath, in: found.layer)) (merged \(mergedPath))",
                                errno: error, what: "symlink")
                        }
                    }
                }
            case .absent, .whitedOut:
                continue  // changed under us
            }
            result.append(entry)
        }
        return result
    }
}
