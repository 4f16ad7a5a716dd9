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
    /// caller can cache them.
    ///
    /// - Throws: `EIO`-class errnos from the layers (an unreadable layer entry), never for an
    ///   absent name.
    public func lookup(_ name: FileName, in directories: [LayerDirectory]) throws(Errno) -> LookupResult {
        var collected: [LayerDirectory] = []
        var top: (LayerIndex, FileStatus)?
        for directory in directories {
            let format = stack[directory.layer].format
            let fd = directory.descriptor
            if format.honorsOCI, Whiteout.ociMarker(for: name) != nil {
                // A marker name is never an entry of an OCI layer.
                continue
            }
            if let status = try fd.statusIfPresent(of: name) {
                if format.honorsOverlay && Whiteout.isOverlayWhiteout(status) {
                    if collected.isEmpty { return .whitedOut(by: directory.layer) }
                    break
                }
                guard status.type == .directory else {
                    if collected.isEmpty {
                        return .found(
                            ResolvedEntry(name: name, layer: directory.layer, status: status, directories: []))
                    }
                    break
                }
                let opened: FileDescriptor
                do {
                    opened = try fd.open(name, flags: O_RDONLY | O_DIRECTORY)
                } catch .noEntry {
                    continue  // removed under us: as if absent in this layer
                } catch .notDirectory, .tooManySymlinks {
                    // replaced by a non-directory under us; treat as the non-directory it is now
                    if collected.isEmpty, let now = try fd.statusIfPresent(of: name) {
                        return .found(ResolvedEntry(name: name, layer: directory.layer, status: now, directories: []))
                    }
                    break
                }
                if top == nil { top = (directory.layer, status) }
                collected.append(LayerDirectory(layer: directory.layer, descriptor: opened))
                if try isOpaque(opened, format: format) { break }
                if format.honorsOCI, try hasOCIWhiteout(of: name, in: fd) { break }
                continue
            }
            if format.honorsOCI, try hasOCIWhiteout(of: name, in: fd) {
                if collected.isEmpty { return .whitedOut(by: directory.layer) }
                break
            }
        }
        guard let (layer, status) = top else { return .absent }
        return .found(ResolvedEntry(name: name, layer: layer, status: status, directories: collected))
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
        if format.honorsOverlay {
            let names: [[UInt8]]
            do {
                names = try directory.extendedAttributeNames()
            } catch .notSupported {
                names = []
            }
            for attribute in names where Whiteout.opaqueAttributeNames.contains(attribute) {
                do {
                    if Whiteout.isOpaqueValue(try directory.extendedAttribute(attribute)) { return true }
                } catch .noData {
                    continue
                }
            }
        }
        if format.honorsOCI, try directory.statusIfPresent(of: Whiteout.ociOpaqueMarker) != nil {
            return true
        }
        return false
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
            var whiteouts: [FileName] = []
            try DirectoryReader.forEachEntry(in: reader) { (entry) throws(Errno) in
                if format.honorsOCI, let marker = Whiteout.ociMarker(for: entry.name) {
                    if case .whiteout(let deleted) = marker { whiteouts.append(deleted) }
                    return
                }
                if seen.contains(entry.name) || hidden.contains(entry.name) { return }
                var type = entry.type
                if type == nil || (type == .characterDevice && format.honorsOverlay) {
                    guard let status = try directory.descriptor.statusIfPresent(of: entry.name) else { return }
                    if format.honorsOverlay && Whiteout.isOverlayWhiteout(status) {
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
