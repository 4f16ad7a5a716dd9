import Glibc
import LayerCore

/// A directory of one layer that contributes to a merged directory, opened
/// `O_RDONLY | O_DIRECTORY | O_NOFOLLOW`.
public struct LayerDirectory: Sendable {
    /// The layer this directory belongs to.
    public var layer: LayerIndex
    /// The directory, open for reading.
    public var descriptor: FileDescriptor

    /// Pairs a layer with its open directory.
    public init(layer: LayerIndex, descriptor: FileDescriptor) {
        self.layer = layer
        self.descriptor = descriptor
    }
}

/// What a name resolves to in a merged directory.
public struct ResolvedEntry: Sendable {
    /// The entry's name.
    public var name: FileName
    /// The layer that provides the entry (the topmost one holding it).
    public var layer: LayerIndex
    /// The status of the providing entry in its layer.
    public var status: FileStatus
    /// For a directory: the layer directories that make it up, top first (the first is `layer`).
    /// Empty for anything else.
    public var directories: [LayerDirectory]
    /// The layers among ``directories`` (and the data file's) reached through a redirect, with
    /// the path that reaches them; empty when every layer holds the entry under its own name in
    /// the parent's directory.
    public var redirects: [LayerIndex: LayerPath] = [:]
    /// Every layer the lookup looked in, or would have gone on to had it not stopped, under
    /// another path than the entry's own name in the parent's directory of that layer (after a
    /// redirect above it), with that path: the layers holding nothing there, a whiteout or
    /// another type too. Empty when no redirect was followed.
    public var searched: [LayerIndex: LayerPath] = [:]
    /// For a metacopy regular file: the lower file holding its data (``layer`` and ``status``
    /// give its metadata). Nil for anything else.
    public var data: DataFile?
    /// Whether the lookup followed a redirect or looked for a metacopy file's data: then layers
    /// that do not hold the name itself took part, so a lookup over only the layers holding the
    /// name is not the same lookup.
    public var usedOtherNames = false

    /// Whether more than one layer contributes (a merged directory; the kernel reports nlink 1).
    public var isMergedDirectory: Bool { directories.count > 1 }
}

/// The outcome of looking a name up in a merged directory.
public enum LookupResult: Sendable {
    /// The name exists.
    case found(ResolvedEntry)
    /// No layer holds the name.
    case absent
    /// The name is deleted by a whiteout in `layer`.
    case whitedOut(by: LayerIndex)
}

/// One entry of a merged directory listing.
public struct MergedEntry: Sendable, Hashable {
    /// The name.
    public var name: FileName
    /// The layer providing the entry.
    public var layer: LayerIndex
    /// The entry's type in that layer.
    public var type: FileType
    /// `d_ino` in that layer's file system.
    public var inode: UInt64
}

/// The overlay resolution policy: which layer provides a name and what a merged directory
/// lists, with the kernel overlayfs rules. Stateless; callers cache.
///
/// Rules (checked top layer first):
/// - an entry shadows the same name in every lower layer, whatever the types;
/// - directories in consecutive layers merge until one is opaque, a layer holds a non-directory
///   of that name, or a whiteout of it;
/// - a whiteout hides the name in lower layers only; a name re-created above it is visible;
/// - markers (OCI `.wh.*` names, overlay char 0/0 devices) are never shown;
/// - an opaque marker on a layer's root is ignored, as the kernel does.
public struct Resolver: Sendable {
    /// The stack being resolved.
    public let stack: LayerStack

    /// A resolver for `stack`.
    public init(stack: LayerStack) { self.stack = stack }

    /// The layer directories of the merged root: every layer's root, top first.
    ///
    /// - Throws: the errno of re-opening a layer root.
    public func rootDirectories() throws(Errno) -> [LayerDirectory] {
        var result: [LayerDirectory] = []
        for index in stack.topFirst {
            let root = stack[index].root
            result.append(LayerDirectory(layer: index, descriptor: root))
        }
        return result
    }

    /// Looks `name` up in the merged directory made of `directories` (top first).
    ///
    /// For a directory, the layer directories that make it up are opened and returned, so the
    /// caller can cache them. In layers whose format honours overlay markers, redirects and
    /// metacopy files are followed as the kernel does (`redirect_dir=follow`, `metacopy=on`):
    /// - a directory (or a metacopy file) with `trusted.overlay.redirect` is looked up in the
    ///   layers below under the redirected name (relative: same parent) or path (absolute: from
    ///   the layer roots, and then in every lower layer, not only those of the parent); the
    ///   redirect of an opaque directory, and any in the bottom layer, is ignored;
    /// - a regular file with `trusted.overlay.metacopy` provides the metadata, and the first
    ///   lower regular file that is not metadata only provides the data (``ResolvedEntry/data``).
    ///
    /// - Throws: `EIO` for a metacopy file whose data is missing (no lower regular file, a
    ///   whiteout or another type first) or whose metacopy xattr is 1 to 3 bytes long; `EINVAL`
    ///   for a malformed redirect, `EACCES` for a redirect component `.` or `..` that a lookup
    ///   reaches; other errnos from the layers (an unreadable layer entry); never for an absent
    ///   name.
    public func lookup(_ name: FileName, in directories: [LayerDirectory]) throws(Errno) -> LookupResult {
        var search = Search(name: name, candidates: directories)
        while search.position < search.candidates.count {
            let directory = search.candidates[search.position]
            search.position += 1
            if try !step(&search, in: directory) { break }
        }
        // The layers below a stop are not looked in, but this is where they hold the name.
        if let path = search.path, path != .name(name.bytes), let reached = LayerPath(validating: path) {
            for directory in search.candidates[search.position...] where search.searched[directory.layer] == nil {
                search.searched[directory.layer] = reached
            }
        }
        if search.metacopy && search.data == nil { throw .ioError }
        if let layer = search.whitedOutBy { return .whitedOut(by: layer) }
        guard let (layer, status) = search.top else { return .absent }
        return .found(
            ResolvedEntry(
                name: name, layer: layer, status: status, directories: search.collected,
                redirects: search.redirects, searched: search.searched, data: search.data,
                usedOtherNames: search.usedOtherNames || search.metacopy))
    }

    /// The state of one lookup as it goes down the layers.
    private struct Search {
        /// The name looked up in the merged directory.
        let name: FileName
        /// Where the entry is looked for in the next layer; nil when no lower layer can hold it.
        var path: SearchPath?
        /// The layer directories to look in: the parent's, or after an absolute redirect the
        /// roots of the layers below it.
        var candidates: [LayerDirectory]
        var position = 0
        /// The topmost entry: the one providing the name (its metadata for a metacopy file).
        var top: (LayerIndex, FileStatus)?
        var collected: [LayerDirectory] = []
        var redirects: [LayerIndex: LayerPath] = [:]
        var searched: [LayerIndex: LayerPath] = [:]
        /// Whether a metacopy file was found and its data is being looked for.
        var metacopy = false
        var data: DataFile?
        /// Set when a whiteout deletes the name before anything is found.
        var whitedOutBy: LayerIndex?
        /// Set when a redirect was applied.
        var usedOtherNames = false

        init(name: FileName, candidates: [LayerDirectory]) {
            self.name = name
            path = .name(name.bytes)
            self.candidates = candidates
        }
    }

    /// Looks the entry up in one layer directory of the search.
    ///
    /// - Returns: whether to go on to the next layer.
    private func step(_ search: inout Search, in directory: LayerDirectory) throws(Errno) -> Bool {
        guard let path = search.path else { return false }
        let layer = directory.layer
        let format = stack[layer].format
        let container: FileDescriptor
        let leaf: FileName
        let isOwnName = path == .name(search.name.bytes)
        if !isOwnName, let reached = LayerPath(validating: path) { search.searched[layer] = reached }
        switch path {
        case .name(let name):
            container = directory.descriptor
            if isOwnName {
                leaf = search.name
            } else {
                guard let redirected = try Redirect.lookupable(name) else { return true }
                leaf = redirected
            }
        case .absolute(let components):
            guard let last = components.last else { return false }
            switch try walk(components.dropLast(), in: layer, search: &search) {
            case .found(let found):
                container = found
            case .absent:
                return true
            case .stop:
                return false
            }
            guard let name = try Redirect.lookupable(last) else { return true }
            leaf = name
        }
        let foundNothing = search.top == nil
        if format.honorsOCI, Whiteout.ociMarker(for: leaf) != nil {
            return true  // a marker name is never an entry of an OCI layer
        }
        guard let status = try container.statusIfPresent(of: leaf) else {
            if format.honorsOCI, try hasOCIWhiteout(of: leaf, in: container) {
                if foundNothing { search.whitedOutBy = layer }
                return false
            }
            return true
        }
        if format.honorsOverlay, try Self.isOverlayWhiteout(leaf, in: container, status: status) {
            if foundNothing { search.whitedOutBy = layer }
            return false
        }
        if search.metacopy {
            // Looking for the data of a metacopy file found above: the first regular file.
            guard status.type == .regular else { return false }
            if format.honorsOverlay, try isMetacopy(leaf, in: container, status: status) {
                try followRedirect(of: leaf, in: container, layer: layer, search: &search)
                return true
            }
            search.data = DataFile(
                layer: layer, path: isOwnName ? nil : LayerPath(reached: path), status: status,
                container: container, name: leaf)
            return false
        }
        guard status.type == .directory else {
            guard foundNothing else { return false }
            search.top = (layer, status)
            if status.type == .regular, format.honorsOverlay, try isMetacopy(leaf, in: container, status: status) {
                search.metacopy = true
                try followRedirect(of: leaf, in: container, layer: layer, search: &search)
                return true
            }
            return false
        }
        let opened: FileDescriptor
        do {
            opened = try container.open(leaf, flags: O_RDONLY | O_DIRECTORY)
        } catch .noEntry {
            return true  // removed under us: as if absent in this layer
        } catch .notDirectory, .tooManySymlinks {
            // replaced by a non-directory under us; treat as the non-directory it is now
            if foundNothing, let now = try container.statusIfPresent(of: leaf) { search.top = (layer, now) }
            return false
        }
        if foundNothing { search.top = (layer, status) }
        search.collected.append(LayerDirectory(layer: layer, descriptor: opened))
        if !isOwnName { search.redirects[layer] = LayerPath(reached: path) }
        let markers = try directoryMarkers(opened, format: format)
        if markers.opaque { return false }
        if format.honorsOCI, try hasOCIWhiteout(of: leaf, in: container) { return false }
        if let redirect = markers.redirect, layer.rawValue > 0 {
            apply(try Redirect(parsing: redirect), below: layer, to: &search)
        }
        return true
    }

    /// What a walk to the parent of an absolute redirect's target gives in one layer.
    private enum Walked {
        case found(FileDescriptor)
        case absent
        case stop
    }

    /// Walks `components` from `layer`'s root, as the kernel walks an absolute redirect: an
    /// absent component means the layer does not hold the target; a whiteout or a non-directory
    /// stops the search; an opaque directory stops it after this layer (unless a deeper
    /// absolute redirect restarts it); a redirect on a directory on the way rewrites the path
    /// used in the layers below.
    private func walk(_ components: ArraySlice<[UInt8]>, in layer: LayerIndex, search: inout Search) throws(Errno)
        -> Walked
    {
        let format = stack[layer].format
        var base = stack[layer].root
        var stop = false
        // The path for the layers below, as rewritten by redirects met on the way (the kernel
        // keeps the rewrites even when the walk ends early).
        var rewritten: [[UInt8]] = []
        var remaining = components[...]
        func commit(_ outcome: Walked) -> Walked {
            if let last = search.path?.last {
                search.path = .absolute(rewritten + Array(remaining) + [last])
            }
            return outcome
        }
        while let raw = remaining.first {
            guard let component = try Redirect.lookupable(raw) else { return commit(.absent) }
            if format.honorsOCI, Whiteout.ociMarker(for: component) != nil { return commit(.absent) }
            guard let status = try base.statusIfPresent(of: component) else {
                if format.honorsOCI, try hasOCIWhiteout(of: component, in: base) { return commit(.stop) }
                return commit(.absent)
            }
            if format.honorsOverlay && Whiteout.isOverlayWhiteout(status) { return commit(.stop) }
            guard status.type == .directory else { return commit(.stop) }
            let opened: FileDescriptor
            do {
                opened = try base.open(component, flags: O_RDONLY | O_DIRECTORY)
            } catch .noEntry {
                return commit(.absent)
            } catch .notDirectory, .tooManySymlinks {
                return commit(.stop)
            }
            remaining = remaining.dropFirst()
            let markers = try directoryMarkers(opened, format: format)
            var ociOpaque = false
            if format.honorsOCI { ociOpaque = try hasOCIWhiteout(of: component, in: base) }
            if markers.opaque || ociOpaque {
                stop = true
                rewritten.append(raw)
            } else if let value = markers.redirect, layer.rawValue > 0 {
                switch try Redirect(parsing: value) {
                case .relative(let name): rewritten.append(name)
                case .absolute(let path):
                    rewritten = path
                    stop = false
                }
            } else {
                rewritten.append(raw)
            }
            base = opened
        }
        if stop {
            // Found in this layer, but an opaque directory on the way hides the layers below.
            search.candidates = Array(search.candidates.prefix(search.position))
        }
        return commit(.found(base))
    }

    /// Applies a redirect found on the entry in `layer` to the search of the layers below.
    private func apply(_ redirect: Redirect, below layer: LayerIndex, to search: inout Search) {
        search.usedOtherNames = true
        switch redirect {
        case .relative(let name):
            search.path = search.path?.replacingLast(with: name)
        case .absolute(let components):
            search.path = .absolute(components)
            search.candidates = stack.topFirst.filter { $0 < layer }.map {
                LayerDirectory(layer: $0, descriptor: stack[$0].root)
            }
            search.position = 0
        }
    }

    /// Follows the redirect xattr of the non-directory `name` of `container`, if any (a metacopy
    /// file renamed after its copy-up). Ignored in the bottom layer.
    private func followRedirect(
        of name: FileName, in container: FileDescriptor, layer: LayerIndex, search: inout Search
    ) throws(Errno) {
        guard layer.rawValue > 0 else { return }
        let names: [[UInt8]]
        do {
            names = try container.extendedAttributeNames(of: name)
        } catch .notSupported {
            return
        }
        for attribute in Whiteout.redirectAttributeNames where names.contains(attribute) {
            let value: [UInt8]
            do {
                value = try container.extendedAttribute(attribute, of: name)
            } catch .noData {
                continue
            }
            apply(try Redirect(parsing: value), below: layer, to: &search)
            return
        }
    }

    /// Whether the regular file `name` of `container` is metadata only (has a metacopy xattr).
    /// An empty one too: as in the kernel, its data must then be found below (else `EIO`).
    ///
    /// - Throws: `EIO` for a metacopy xattr of 1 to 3 bytes (too short for the kernel's
    ///   header), other errnos of reading xattrs.
    func isMetacopy(_ name: FileName, in container: FileDescriptor, status: FileStatus) throws(Errno) -> Bool {
        let names: [[UInt8]]
        do {
            names = try container.extendedAttributeNames(of: name)
        } catch .notSupported {
            return false
        }
        for attribute in Whiteout.metacopyAttributeNames where names.contains(attribute) {
            let value: [UInt8]
            do {
                value = try container.extendedAttribute(attribute, of: name)
            } catch .noData {
                continue
            }
            if !value.isEmpty && value.count < 4 { throw .ioError }
            return true
        }
        return false
    }

    /// Whether the entry `name` of `container` is an overlay-format whiteout: a character device
    /// 0/0, or (unless `xattr` is false) an xattr whiteout (``isXattrWhiteout(_:in:status:)``).
    ///
    /// - Throws: errnos of reading xattrs other than "not supported".
    static func isOverlayWhiteout(
        _ name: FileName, in container: FileDescriptor, status: FileStatus, xattr: Bool = true
    )
        throws(Errno) -> Bool
    {
        if Whiteout.isOverlayWhiteout(status) { return true }
        return xattr ? try Self.isXattrWhiteout(name, in: container, status: status) : false
    }

    /// Whether the entry `name` of `container` is an xattr whiteout: a regular file of size 0
    /// with `trusted.overlay.whiteout` or `user.overlay.whiteout`. As in the kernel, a lookup
    /// takes one for a whiteout in any directory; a listing only leaves out those of a
    /// directory marked as holding them (``holdsXattrWhiteouts(_:)``).
    ///
    /// - Throws: errnos of reading xattrs other than "not supported".
    static func isXattrWhiteout(_ name: FileName, in container: FileDescriptor, status: FileStatus) throws(Errno)
        -> Bool
    {
        guard status.type == .regular, status.size == 0 else { return false }
        let names: [[UInt8]]
        do {
            names = try container.extendedAttributeNames(of: name)
        } catch .notSupported {
            return false
        }
        return Whiteout.whiteoutAttributeNames.contains { names.contains($0) }
    }

    /// Whether a layer directory (a layer root too) is marked as holding xattr whiteouts: its
    /// `trusted.overlay.opaque` or `user.overlay.opaque` is `x` (Linux 6.7). Such a directory
    /// is not opaque.
    ///
    /// - Throws: errnos of reading xattrs other than "not supported".
    static func holdsXattrWhiteouts(_ directory: FileDescriptor) throws(Errno) -> Bool {
        let names: [[UInt8]]
        do {
            names = try directory.extendedAttributeNames()
        } catch .notSupported {
            return false
        }
        for attribute in names where Whiteout.opaqueAttributeNames.contains(attribute) {
            do {
                if Whiteout.isXattrWhiteoutsValue(try directory.extendedAttribute(attribute)) { return true }
            } catch .noData {
                continue
            }
        }
        return false
    }

    /// Looks `name` up when a merged listing of the same directories said that `layer`
    /// provides it: no layer above `layer` holds the name or a whiteout of it, and no directory
    /// above is opaque, so only `layer` and the layers below it are consulted.
    ///
    /// - Throws: as ``lookup(_:in:)``.
    public func lookup(
        _ name: FileName, in directories: [LayerDirectory], listedIn layer: LayerIndex
    ) throws(Errno) -> LookupResult {
        try lookup(name, in: Array(directories.drop { $0.layer > layer }))
    }

    /// Whether the layer directory open as `directory` is opaque in `format` (an overlay opaque
    /// xattr = `y`, or an OCI `.wh..wh..opq` entry). Layer roots are never opaque; do not call
    /// this on them.
    ///
    /// - Throws: errnos other than "no such attribute / not supported".
    public func isOpaque(_ directory: FileDescriptor, format: WhiteoutFormat) throws(Errno) -> Bool {
        try directoryMarkers(directory, format: format).opaque
    }

    /// The overlay markers of a layer directory: whether it is opaque in `format` (see
    /// ``isOpaque(_:format:)``) and its raw redirect value (overlay formats only).
    ///
    /// - Throws: errnos other than "no such attribute / not supported".
    func directoryMarkers(_ directory: FileDescriptor, format: WhiteoutFormat) throws(Errno) -> (
        opaque: Bool, redirect: [UInt8]?
    ) {
        var redirect: [UInt8]?
        if format.honorsOverlay {
            let names: [[UInt8]]
            do {
                names = try directory.extendedAttributeNames()
            } catch .notSupported {
                names = []
            }
            for attribute in names where Whiteout.opaqueAttributeNames.contains(attribute) {
                do {
                    if Whiteout.isOpaqueValue(try directory.extendedAttribute(attribute)) { return (true, nil) }
                } catch .noData {
                    continue
                }
            }
            for attribute in Whiteout.redirectAttributeNames where redirect == nil && names.contains(attribute) {
                do {
                    redirect = try directory.extendedAttribute(attribute)
                } catch .noData {
                    continue
                }
            }
        }
        if format.honorsOCI, try directory.statusIfPresent(of: Whiteout.ociOpaqueMarker) != nil {
            return (true, nil)
        }
        return (false, redirect)
    }

    /// The merged listing of the directory made of `directories` (top first): every visible
    /// name once, from the topmost layer holding it, in layer order then the file system's
    /// order. Markers are never listed.
    ///
    /// - Throws: the errno of reading a layer directory.
    public func list(_ directories: [LayerDirectory]) throws(Errno) -> [MergedEntry] {
        var seen = Set<FileName>()
        var hidden = Set<FileName>()
        var result: [MergedEntry] = []
        for directory in directories {
            let format = stack[directory.layer].format
            // A fresh open file description: cached descriptors are shared, and getdents moves
            // the offset.
            let reader = try directory.descriptor.open(Self.dot, flags: O_RDONLY | O_DIRECTORY)
            let xattrWhiteouts = format.honorsOverlay ? try Self.holdsXattrWhiteouts(directory.descriptor) : false
            var whiteouts: [FileName] = []
            try DirectoryReader.forEachEntry(in: reader) { (entry) throws(Errno) in
                if format.honorsOCI, let marker = Whiteout.ociMarker(for: entry.name) {
                    if case .whiteout(let deleted) = marker { whiteouts.append(deleted) }
                    return
                }
                if seen.contains(entry.name) || hidden.contains(entry.name) { return }
                var type = entry.type
                if type == nil || (type == .characterDevice && format.honorsOverlay)
                    || (type == .regular && xattrWhiteouts)
                {
                    guard let status = try directory.descriptor.statusIfPresent(of: entry.name) else { return }
                    if format.honorsOverlay,
                        try Self.isOverlayWhiteout(
                            entry.name, in: directory.descriptor, status: status, xattr: xattrWhiteouts)
                    {
                        whiteouts.append(entry.name)
                        return
                    }
                    type = status.type
                }
                seen.insert(entry.name)
                result.append(
                    MergedEntry(name: entry.name, layer: directory.layer, type: type ?? .unknown, inode: entry.inode))
            }
            hidden.formUnion(whiteouts)
        }
        return result
    }

    private static let dot = FileName(unchecked: [0x2E])

    private func hasOCIWhiteout(of name: FileName, in directory: FileDescriptor) throws(Errno) -> Bool {
        guard let marker = try? Whiteout.ociWhiteoutName(for: name) else { return false }
        return try directory.statusIfPresent(of: marker) != nil
    }
}
