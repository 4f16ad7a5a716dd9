import Glibc
import LayerCore

/// Resolves paths in a stack's merged tree with the ``Resolver``, the way a process in the mount
/// would (or, for attribution, in the stack made of the layers up to one of them).
public struct MergedPath: Sendable {
    /// The stack.
    public let stack: InspectedStack

    /// A resolver of paths in `stack`.
    public init(stack: InspectedStack) { self.stack = stack }

    /// Where resolving a path ended.
    public enum Outcome: Sendable {
        /// The path exists: its entry and the directories of its parent (top first).
        case found(ResolvedEntry, parent: [LayerDirectory])
        /// The root directory, made of these layer directories.
        case root([LayerDirectory])
        /// A whiteout in `layer` deletes the prefix `at` of the path.
        case whitedOut(by: LayerIndex, at: RelativePath)
        /// No layer holds the prefix `at`.
        case absent(at: RelativePath)
        /// The prefix `at` is a non-directory (`type`) provided by `layer`.
        case notDirectory(at: RelativePath, layer: LayerIndex, type: FileType)
    }

    /// The root directories of the layers up to `limit` (all when nil), top first.
    func roots(upTo limit: LayerIndex?) throws(PathError) -> [LayerDirectory] {
        do {
            let all = try stack.resolver.rootDirectories()
            guard let limit else { return all }
            return all.filter { $0.layer <= limit }
        } catch {
            throw PathError(path: stack.layers[0].path, errno: error, what: "layer")
        }
    }

    func lookup(_ name: FileName, in directories: [LayerDirectory], at path: RelativePath) throws(PathError)
        -> LookupResult
    {
        do {
            return try stack.resolver.lookup(name, in: directories)
        } catch {
            throw failure(looking: name, in: directories, at: path, error)
        }
    }

    /// The error of a failed lookup of `name` in the merged directory `path`, naming the layer
    /// path that could not be read and the merged path (`LAYER/dir/x (merged /dir/x)`).
    func failure(looking name: FileName, in directories: [LayerDirectory], at path: RelativePath, _ error: Errno)
        -> PathError
    {
        let merged = path.appending(name).absoluteDisplay
        var culprit = directories.first?.layer ?? LayerIndex(0)
        var what = "entry"
        for directory in directories {
            var isDirectory = false
            do {
                if let status = try directory.descriptor.statusIfPresent(of: name), status.type == .directory {
                    isDirectory = true
                    _ = try directory.descriptor.open(name, flags: O_RDONLY | O_DIRECTORY)
                }
            } catch {
                culprit = directory.layer
                if isDirectory { what = "directory" }
                break
            }
        }
        return PathError(
            path: "\(stack.displayPath(merged, in: culprit)) (merged \(merged))", errno: error, what: what)
    }

    /// The error of a failed listing of the merged directory `path`, naming the layer directory
    /// that could not be read and the merged path.
    func failure(listing directories: [LayerDirectory], at path: RelativePath, _ error: Errno) -> PathError {
        let merged = path.absoluteDisplay
        var culprit = directories.first?.layer ?? LayerIndex(0)
        for directory in directories {
            do {
                _ = try stack.resolver.list([directory])
            } catch {
                culprit = directory.layer
                break
            }
        }
        return PathError(
            path: "\(stack.displayPath(merged, in: culprit)) (merged \(merged))", errno: error, what: "directory")
    }

    /// Resolves `path` component by component without following symlinks, over the layers up to
    /// `limit` (the whole stack when nil).
    ///
    /// - Throws: ``PathError`` when a layer cannot be read.
    public func resolve(_ path: RelativePath, upTo limit: LayerIndex? = nil) throws(PathError) -> Outcome {
        try trace(path, upTo: limit).outcome
    }

    /// Where resolving a path ended, and where each layer holds the path.
    struct Trace {
        /// Where resolving ended.
        var outcome: Outcome
        /// Each layer's path for the merged path: the path the merged lookup looks it up at in
        /// that layer (moved by the redirects of the layers above), or would have had it not
        /// stopped above; past the end of the resolution, the rest of the path as written.
        var layerPaths: [LayerIndex: RelativePath]
    }

    /// Each layer's path for the merged path `path`: the top layer's is `path`; each lower
    /// layer's is where a lookup of the path of the layer above, over the layers up to that one,
    /// looks in it (so the redirects of every layer above apply, as in the merged lookup, also
    /// below a layer where the merged lookup stopped).
    ///
    /// - Throws: ``PathError`` when a layer cannot be read.
    func layerPaths(of path: RelativePath) throws(PathError) -> [LayerIndex: RelativePath] {
        let top = stack.stack.topIndex
        var paths = [top: path]
        var current = path
        for upper in stride(from: top.rawValue, to: 0, by: -1) {
            let layer = LayerIndex(upper - 1)
            if !current.isRoot {
                current = try trace(current, upTo: LayerIndex(upper)).layerPaths[layer] ?? current
            }
            paths[layer] = current
        }
        return paths
    }

    /// Resolves `path` as ``resolve(_:upTo:)`` does, following the path into each layer.
    ///
    /// - Throws: ``PathError`` when a layer cannot be read.
    func trace(_ path: RelativePath, upTo limit: LayerIndex?) throws(PathError) -> Trace {
        var directories = try roots(upTo: limit)
        var paths = Dictionary(uniqueKeysWithValues: directories.map { ($0.layer, RelativePath.root) })
        let names = path.components
        func ending(_ outcome: Outcome, after depth: Int) -> Trace {
            for (layer, reached) in paths {
                paths[layer] = RelativePath(components: reached.components + names[(depth + 1)...])
            }
            return Trace(outcome: outcome, layerPaths: paths)
        }
        if path.isRoot { return Trace(outcome: .root(directories), layerPaths: paths) }
        var prefix = RelativePath.root
        for (depth, name) in names.enumerated() {
            let result = try lookup(name, in: directories, at: prefix)
            prefix = prefix.appending(name)
            for (layer, parent) in paths {
                if case .found(let entry) = result, let moved = entry.searched[layer] {
                    switch moved {
                    case .name(let other): paths[layer] = parent.appending(other)
                    case .absolute(let components): paths[layer] = RelativePath(components: components)
                    }
                } else {
                    paths[layer] = parent.appending(name)
                }
            }
            switch result {
            case .absent: return ending(.absent(at: prefix), after: depth)
            case .whitedOut(let layer): return ending(.whitedOut(by: layer, at: prefix), after: depth)
            case .found(let entry):
                if depth == names.count - 1 { return ending(.found(entry, parent: directories), after: depth) }
                guard entry.status.type == .directory else {
                    let type = stack.status(of: entry.status, in: entry.layer).type
                    return ending(.notDirectory(at: prefix, layer: entry.layer, type: type), after: depth)
                }
                directories = entry.directories
            }
        }
        return Trace(outcome: .absent(at: prefix), layerPaths: paths)
    }

    /// The canonical form of a user's path in the merged tree: `.` and `..` applied, symlinks of the
    /// merged tree followed for every component but the last (and the last too with
    /// `followLast`), as in a chroot at the stack root. Components past a missing one are kept
    /// as written. As for a system call, a trailing `/` (or a final `.` or `..`) makes the last
    /// component one that must be a directory (a symlink there is followed), and `.` or `..`
    /// after a non-directory is `ENOTDIR`.
    ///
    /// - Throws: ``PathError``: a symlink loop (`ELOOP`), a name over 255 bytes
    ///   (`ENAMETOOLONG`), a non-directory where a directory must be (`ENOTDIR`), an unreadable
    ///   layer.
    public func canonical(_ raw: [UInt8], followLast: Bool) throws(PathError) -> RelativePath {
        let display = escapeForDisplay(raw)
        // As for a system call: the empty path names nothing (ENOENT), not the root.
        if raw.isEmpty {
            throw PathError(path: "''", reason: "no such file or directory (empty path)", errno: .noEntry)
        }
        var pending = try components(raw, display: display)
        let mustBeDirectory = raw.last == 0x2F || pending.last == [0x2E] || pending.last == [0x2E, 0x2E]
        let followLast = followLast || mustBeDirectory
        var resolved: [FileName] = []
        var stackOfDirectories: [[LayerDirectory]] = [try roots(upTo: nil)]
        var hops = 0
        // Components appended without a directory to resolve in (after a missing one).
        var unresolved = 0
        // Whether the last component resolved is a non-directory of the merged tree.
        var lastIsNonDirectory = false
        while !pending.isEmpty {
            try Interruption.shared.check()
            let piece = pending.removeFirst()
            if piece == [0x2E] || piece == [0x2E, 0x2E] {
                if lastIsNonDirectory { throw PathError.resolving(display, .notDirectory) }
                if piece == [0x2E] { continue }
                if unresolved > 0 {
                    resolved.removeLast()
                    unresolved -= 1
                } else if !resolved.isEmpty {
                    resolved.removeLast()
                    stackOfDirectories.removeLast()
                }
                continue
            }
            let name: FileName
            do {
                name = try FileName(validating: piece)
            } catch {
                throw PathError.resolving(display, error)
            }
            if unresolved > 0 {
                resolved.append(name)
                unresolved += 1
                lastIsNonDirectory = false
                continue
            }
            let isLast = pending.isEmpty
            let here = RelativePath(components: resolved)
            guard let directories = stackOfDirectories.last else { break }
            switch try lookup(name, in: directories, at: here) {
            case .found(let entry):
                let real = stack.status(of: entry.status, in: entry.layer)
                if real.type == .symlink && (!isLast || followLast) {
                    hops += 1
                    guard hops <= 40 else { throw PathError.resolving(display, .tooManySymlinks) }
                    let container =
                        directories.first { $0.layer == entry.layer }?.descriptor ?? directories[0].descriptor
                    let target: [UInt8]
                    do {
                        target = try stack.linkTarget(of: name, status: entry.status, in: container, layer: entry.layer)
                    } catch {
                        throw PathError(
                            path: stack.displayPath(here.appending(name).absoluteDisplay, in: entry.layer),
                            errno: error, what: "symlink")
                    }
                    if target.first == 0x2F {
                        resolved = []
                        stackOfDirectories = [try roots(upTo: nil)]
                    }
                    pending = try components(target, display: display) + pending
                    continue
                }
                resolved.append(name)
                if entry.status.type == .directory {
                    stackOfDirectories.append(entry.directories)
                    lastIsNonDirectory = false
                } else {
                    unresolved += 1
                    lastIsNonDirectory = true
                }
            case .absent, .whitedOut:
                resolved.append(name)
                unresolved += 1
                lastIsNonDirectory = false
            }
        }
        if mustBeDirectory && lastIsNonDirectory { throw PathError.resolving(display, .notDirectory) }
        return RelativePath(components: resolved)
    }

    private func components(_ raw: [UInt8], display: String) throws(PathError) -> [[UInt8]] {
        raw.split(separator: 0x2F, omittingEmptySubsequences: true).map { Array($0) }
    }
}

/// One version of a path: what one layer holds there.
public struct PathVersion: Sendable {
    /// What the layer holds.
    public enum Kind: Sendable {
        /// An entry with this (real) status.
        case entry(FileStatus)
        /// A whiteout marker deleting the path from lower layers.
        case whiteout
    }

    /// The layer.
    public var layer: LayerIndex
    /// Entry or whiteout.
    public var kind: Kind
    /// For a symlink, its target.
    public var linkTarget: [UInt8]?
    /// For a regular file, its content hash (nil for a tarball indexed without hashes, and for a
    /// metacopy file whose data is not known: a hidden one).
    public var contentHash: ContentHash?
    /// Whether the version is a metacopy file (kernel overlayfs `metacopy=on`): metadata only,
    /// its data is in a lower layer.
    public var isMetacopy = false
    /// For the metacopy file that provides the path: the layer holding its data (its
    /// ``contentHash`` is that data's).
    public var dataLayer: LayerIndex?
    /// Nil when the version is in the merged tree (provides the path, or merges into the
    /// directory); otherwise why not.
    public var hiding: Hiding?
    /// For a hidden version, how it is hidden, in words ("whiteout of /usr/share/doc").
    public var reason: String?
    /// What could not be read of this version (its content for the hash, its link target).
    public var problem: String?
    /// The version's path in its layer, when it is not the merged path: a redirect above (kernel
    /// overlayfs `redirect_dir`, or a renamed metacopy file) has the merged lookup look it up
    /// there.
    public var layerPath: RelativePath?
}

/// How a path stands in the merged tree and every layer's version of it.
public struct PathReport: Sendable {
    /// The path as given.
    public var given: String
    /// The canonical path in the merged tree (intermediate symlinks followed).
    public var path: RelativePath
    /// The layer providing the path, when it is in the merged tree.
    public var provider: LayerIndex?
    /// When the path is not in the merged tree: why, in words.
    public var absence: String?
    /// When the path is not in the merged tree but a layer holds it: the layer that deletes it
    /// (a whiteout of it or of a parent, an opaque directory, a non-directory over a parent).
    public var deletedBy: LayerIndex?
    /// Every layer's version, top layer first: the entries the merged lookup looks up (at their
    /// own path in the layer, after redirects) and the ones hidden from it there.
    public var versions: [PathVersion]
    /// When symlinks of the merged tree were followed (so the path as written is not a path of
    /// the merged tree): the path as written, `.` and `..` applied lexically.
    public var literalPath: RelativePath?
    /// The layers' versions of ``literalPath`` (all hidden: a symlink replaces a parent).
    public var literalVersions: [PathVersion] = []
    /// What could not be read (a version's content or link target), naming the layer path; the
    /// rest of the report stands.
    public var problems: [PathError] = []
}

extension MergedPath {
    /// The report of `which` for the user path `raw`.
    ///
    /// - Throws: ``PathError`` when the path cannot be resolved (a symlink loop, a name too
    ///   long, a non-directory with a trailing `/`) or a layer directory cannot be read. A version
    ///   whose content or link target cannot be read is reported in ``PathReport/problems``.
    public func report(_ raw: [UInt8], hashContent: Bool = true) throws(PathError) -> PathReport {
        let path = try canonical(raw, followLast: false)
        var report = PathReport(given: escapeForDisplay(raw), path: path, versions: [])
        let outcome = try resolve(path)
        let paths = try layerPaths(of: path)
        for layer in stack.stack.topFirst {
            report.versions += try versions(
                of: path, in: layer, paths: paths, hashContent: hashContent, problems: &report.problems)
        }
        // The top version hidden by a deletion, when the path is not in the merged tree.
        let deleted = report.versions.first { $0.hiding.map { !$0.isShadowing } ?? false }
        switch outcome {
        case .found(let entry, _):
            report.provider = entry.layer
            if let data = entry.data,
                let index = report.versions.firstIndex(where: { $0.layer == entry.layer && $0.isMetacopy })
            {
                report.versions[index].dataLayer = data.layer
                if hashContent {
                    do throws(Errno) {
                        report.versions[index].contentHash = try stack.contentHash(
                            of: data.name, status: data.status, in: data.container, layer: data.layer)
                    } catch {
                        let problem = PathError(
                            path: stack.displayPath(path.absoluteDisplay, in: data.layer), errno: error, what: "file")
                        report.versions[index].problem = problem.reason
                        report.problems.append(problem)
                    }
                }
            }
        case .root:
            report.provider = stack.stack.topIndex
        case .whitedOut(let layer, let prefix):
            report.deletedBy = layer
            report.absence =
                prefix == path
                ? "deleted by a whiteout in layer \(layer.rawValue + 1)"
                : "deleted by a whiteout of \(prefix.absoluteDisplay) in layer \(layer.rawValue + 1)"
        case .absent(let prefix):
            if let deleted, let hiding = deleted.hiding {
                report.deletedBy = hiding.layer
                let reason = deleted.reason ?? "deleted"
                report.absence =
                    reason.hasPrefix("opaque directory ")
                    ? "deleted by the \(reason) in layer \(hiding.layer.rawValue + 1)"
                    : "deleted by layer \(hiding.layer.rawValue + 1): \(reason)"
            } else {
                report.absence =
                    prefix == path ? "no layer provides it" : "\(prefix.absoluteDisplay) is not in the merged tree"
            }
        case .notDirectory(let prefix, let layer, let type):
            if let hiding = deleted?.hiding { report.deletedBy = hiding.layer }
            report.absence = "\(prefix.absoluteDisplay) is a \(type) (from layer \(layer.rawValue + 1))"
        }
        let literal = Self.lexical(raw)
        if let literal, literal != path {
            report.literalPath = literal
            for layer in stack.stack.topFirst {
                report.literalVersions += try versions(
                    of: literal, in: layer, paths: nil, hashContent: hashContent, problems: &report.problems)
            }
        }
        return report
    }

    /// `raw` with `.` and `..` applied lexically (`..` at the root stays at the root); nil when a
    /// component is not a valid name.
    static func lexical(_ raw: [UInt8]) -> RelativePath? {
        var names: [FileName] = []
        for piece in raw.split(separator: 0x2F, omittingEmptySubsequences: true) {
            if piece.elementsEqual([0x2E]) { continue }
            if piece.elementsEqual([0x2E, 0x2E]) {
                if !names.isEmpty { names.removeLast() }
                continue
            }
            guard let name = try? FileName(validating: piece) else { return nil }
            names.append(name)
        }
        return RelativePath(components: names)
    }

    /// What `layer` holds for the merged path `merged` (at most an entry and a whiteout), with
    /// visibility: at its path in `paths` (the merged lookup's, see ``Trace/layerPaths``), at
    /// `merged` itself when `paths` is nil.
    private func versions(
        of merged: RelativePath, in layer: LayerIndex, paths: [LayerIndex: RelativePath]?, hashContent: Bool,
        problems: inout [PathError]
    ) throws(PathError) -> [PathVersion] {
        let path = paths?[layer] ?? merged
        var result = try versions(at: path, in: layer, hashContent: hashContent, problems: &problems)
        for index in result.indices {
            if path != merged { result[index].layerPath = path }
            guard case .entry(let status) = result[index].kind else { continue }
            let (hiding, reason) = try visibility(
                of: layer, at: merged, paths: paths, isDirectory: status.type == .directory)
            result[index].hiding = hiding
            result[index].reason = reason
        }
        return result
    }

    /// What `layer` holds at its own path `path` (at most an entry and a whiteout).
    private func versions(
        at path: RelativePath, in layer: LayerIndex, hashContent: Bool, problems: inout [PathError]
    ) throws(PathError) -> [PathVersion] {
        let info = stack.layers[layer.rawValue]
        let format = stack.stack[layer].format
        let root = stack.stack[layer].root
        let where_ = stack.displayPath(path.absoluteDisplay, in: layer)
        guard let name = path.lastName else {
            var status: FileStatus
            do {
                status = try root.status()
            } catch {
                throw PathError(path: info.path, errno: error, what: "layer")
            }
            status = stack.status(of: status, in: layer)
            return [PathVersion(layer: layer, kind: .entry(status))]
        }
        let parent: FileDescriptor
        do {
            parent = try root.open(beneath: path.parent, flags: O_RDONLY | O_DIRECTORY)
        } catch .noEntry, .notDirectory, .tooManySymlinks {
            return []
        } catch {
            throw PathError(path: where_, errno: error, what: "layer directory")
        }
        var result: [PathVersion] = []
        let ociMarker = format.honorsOCI ? Whiteout.ociMarker(for: name) : nil
        do throws(Errno) {
            if ociMarker == nil, let status = try parent.statusIfPresent(of: name) {
                if format.honorsOverlay, try Resolver.isOverlayWhiteout(name, in: parent, status: status) {
                    result.append(PathVersion(layer: layer, kind: .whiteout))
                } else {
                    let real = stack.status(of: status, in: layer)
                    var version = PathVersion(layer: layer, kind: .entry(real))
                    do throws(Errno) {
                        if real.type == .symlink {
                            version.linkTarget = try stack.linkTarget(
                                of: name, status: status, in: parent, layer: layer)
                        } else if real.type == .regular, stack.layers[layer.rawValue].archive == nil,
                            format.honorsOverlay,
                            try stack.resolver.isMetacopy(name, in: parent, status: status)
                        {
                            version.isMetacopy = true  // its own content is a hole, not the file's
                        } else if real.type == .regular && hashContent {
                            version.contentHash = try stack.contentHash(
                                of: name, status: status, in: parent, layer: layer)
                        }
                    } catch {
                        if error == .interrupted && Interruption.shared.isRequested { throw error }
                        let what = real.type == .symlink ? "symlink" : "file"
                        let problem = PathError(path: where_, errno: error, what: what)
                        version.problem = problem.reason
                        problems.append(problem)
                    }
                    result.append(version)
                }
            }
            if format.honorsOCI, let marker = try? Whiteout.ociWhiteoutName(for: name),
                try parent.statusIfPresent(of: marker) != nil
            {
                result.append(PathVersion(layer: layer, kind: .whiteout))
            }
        } catch {
            throw PathError(path: where_, errno: error, what: "entry")
        }
        return result
    }

    /// Whether layer `layer`'s entry for the merged path `path` is in the merged tree; if not, the
    /// lowest upper layer hiding it (found by resolving over the layers up to each upper layer in
    /// turn, each at its own path for `path`) and how. The entry is the one at `paths[layer]` (the
    /// merged lookup's path in that layer, see ``Trace/layerPaths``), or at `path` when `paths` is
    /// nil: one the lookup does not look up there (a redirect above moves it) is not visible.
    func visibility(
        of layer: LayerIndex, at path: RelativePath, paths: [LayerIndex: RelativePath]?, isDirectory: Bool
    ) throws(PathError) -> (Hiding?, String?) {
        let top = stack.stack.topIndex
        guard layer < top else { return (nil, nil) }
        let own = paths?[layer] ?? path
        if try holds(layer, at: own, for: path, upTo: nil) == nil { return (nil, nil) }
        for limit in (layer.rawValue + 1)...top.rawValue {
            let upper = LayerIndex(limit)
            let merged = paths?[upper] ?? path
            if var (hiding, reason) = try holds(layer, at: own, for: merged, upTo: upper) {
                // Shadowed whenever the hider holds an entry at this very path (say, a file re-created
                // in an opaque directory), as the walker counts it.
                if !hiding.isShadowing && hasEntry(paths?[hiding.layer] ?? path, in: hiding.layer) {
                    hiding.isShadowing = true
                    reason = "shadowed"
                }
                return (hiding, reason)
            }
        }
        return (nil, nil)
    }

    /// Whether `layer` itself holds an entry (not a whiteout) at `path`.
    func hasEntry(_ path: RelativePath, in layer: LayerIndex) -> Bool {
        guard let name = path.lastName else { return true }
        let format = stack.stack[layer].format
        if format.honorsOCI && Whiteout.ociMarker(for: name) != nil { return false }
        guard let parent = try? stack.stack[layer].root.open(beneath: path.parent, flags: O_RDONLY | O_DIRECTORY),
            let status = try? parent.statusIfPresent(of: name)
        else { return false }
        guard format.honorsOverlay else { return true }
        return (try? Resolver.isOverlayWhiteout(name, in: parent, status: status)) == false
    }

    /// Nil when `layer`'s entry at `own` (its path in the layer) is what the merged path `path`
    /// is, or merges into, in the stack of layers up to `limit`; otherwise the layer and words
    /// for what hides it.
    private func holds(
        _ layer: LayerIndex, at own: RelativePath, for path: RelativePath, upTo limit: LayerIndex?
    ) throws(PathError) -> (Hiding, String)? {
        var directories = try roots(upTo: limit)
        var prefix = RelativePath.root
        // Where the lookup looks in `layer`.
        var reached = RelativePath.root
        for (depth, name) in path.components.enumerated() {
            let result = try lookup(name, in: directories, at: prefix)
            prefix = prefix.appending(name)
            let isLast = depth == path.components.count - 1
            switch result {
            case .absent:
                return (Hiding(layer: limit ?? layer, isShadowing: false), "not reachable")
            case .whitedOut(let by):
                let words = isLast ? "whiteout" : "whiteout of \(prefix.absoluteDisplay)"
                return (Hiding(layer: by, isShadowing: false), words)
            case .found(let entry):
                switch entry.searched[layer] {
                case .name(let other): reached = reached.appending(other)
                case .absolute(let components): reached = RelativePath(components: components)
                case nil: reached = reached.appending(name)
                }
                let members = entry.directories.map(\.layer)
                if isLast {
                    if entry.layer == layer || members.contains(layer) {
                        if reached == own { return nil }
                        return (Hiding(layer: limit ?? stack.stack.topIndex, isShadowing: false), "moved by a redirect")
                    }
                    return (Hiding(layer: entry.layer, isShadowing: true), "shadowed")
                }
                guard entry.status.type == .directory else {
                    let type = stack.status(of: entry.status, in: entry.layer).type
                    return (
                        Hiding(layer: entry.layer, isShadowing: false),
                        "\(prefix.absoluteDisplay) is a \(type) there"
                    )
                }
                guard members.contains(layer) else {
                    let bottom = members.last ?? entry.layer
                    return (Hiding(layer: bottom, isShadowing: false), "opaque directory \(prefix.absoluteDisplay)")
                }
                directories = entry.directories
            }
        }
        return nil
    }
}

extension RelativePath {
    /// The path for display as an absolute path in the stack (`/` for the root).
    public var absoluteDisplay: String {
        isRoot ? "/" : "/" + description
    }
}
