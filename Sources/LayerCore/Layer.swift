import Glibc

/// The position of a layer in its stack: 0 is the bottom (base) layer.
///
/// Contract: stable for the life of a ``LayerStack``; higher indexes shadow lower ones.
public struct LayerIndex: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The raw index, 0 = bottom.
    public let rawValue: Int

    /// Wraps a raw index.
    public init(_ rawValue: Int) { self.rawValue = rawValue }

    public static func < (lhs: LayerIndex, rhs: LayerIndex) -> Bool { lhs.rawValue < rhs.rawValue }

    /// 1-based, bottom first, as users count layers ("layer 1" is the base).
    public var description: String { "layer \(rawValue + 1)" }
}

/// One layer directory of a stack, opened once.
public final class Layer: Sendable {
    /// Position in the stack (0 = bottom).
    public let index: LayerIndex
    /// The path as the user gave it, for messages.
    public let path: String
    /// The layer's root directory, open `O_RDONLY | O_DIRECTORY`: when the process may (as
    /// root), the root of a private copy of its mount without the mounts inside it, so that, as
    /// in the kernel's overlayfs, a file system mounted inside a layer is not part of it (what it
    /// covers shows). See ``LayerCore/FileDescriptor/privateMountClone()``.
    public let root: FileDescriptor
    /// The root's status when the stack was opened.
    public let rootStatus: FileStatus
    /// The whiteout markers this layer honours.
    public let format: WhiteoutFormat

    /// Opens the layer directory at `path`.
    ///
    /// - Throws: ``PathError`` naming `path`: missing, not a directory, unreadable.
    public init(index: LayerIndex, path: String, format: WhiteoutFormat) throws(PathError) {
        self.index = index
        self.path = path
        self.format = format
        do {
            root = Self.withoutSubmounts(try FileDescriptor.open(path: path, flags: O_RDONLY | O_DIRECTORY))
            rootStatus = try root.status()
        } catch {
            throw PathError(path: path, errno: error, what: "layer")
        }
    }

    /// `root` re-opened through a private mount clone when possible, else `root` itself.
    static func withoutSubmounts(_ root: FileDescriptor) -> FileDescriptor {
        (try? root.privateMountClone()) ?? root
    }

    /// Wraps a layer directory the caller has opened (`O_RDONLY | O_DIRECTORY`), for paths that
    /// are not strings (command-line bytes).
    ///
    /// - Parameter path: the path for messages, in display form.
    /// - Throws: ``PathError`` naming `path` when `root` cannot be read.
    public init(index: LayerIndex, path: String, root: FileDescriptor, format: WhiteoutFormat) throws(PathError) {
        self.index = index
        self.path = path
        self.format = format
        self.root = Self.withoutSubmounts(root)
        do {
            rootStatus = try root.status()
        } catch {
            throw PathError(path: path, errno: error, what: "layer")
        }
    }
}

/// A stack of layer directories, bottom first.
public final class LayerStack: Sendable {
    /// The layers, bottom (index 0) first.
    public let layers: [Layer]

    /// Opens every layer. `paths` is bottom first.
    ///
    /// - Throws: ``PathError`` for the first layer that cannot be opened, or when `paths` is empty.
    public init(paths: [String], format: WhiteoutFormat) throws(PathError) {
        guard !paths.isEmpty else { throw PathError(path: "", reason: "no layers given") }
        var opened: [Layer] = []
        for (position, path) in paths.enumerated() {
            opened.append(try Layer(index: LayerIndex(position), path: path, format: format))
        }
        layers = opened
    }

    /// Wraps already opened layers (bottom first).
    public init(layers: [Layer]) { self.layers = layers }

    /// The layer at `index`.
    public subscript(index: LayerIndex) -> Layer { layers[index.rawValue] }

    /// The top layer's index.
    public var topIndex: LayerIndex { LayerIndex(layers.count - 1) }

    /// Layer indexes from the top down (resolution order).
    public var topFirst: [LayerIndex] { (0..<layers.count).reversed().map(LayerIndex.init) }

    /// Whether every layer lives on one file system (then real inode numbers are unique).
    public var isSingleDevice: Bool {
        Set(layers.map(\.rootStatus.device)).count <= 1
    }
}

/// An error about a path, for tools: names the path and the reason, and carries the errno.
public struct PathError: Error, CustomStringConvertible, Sendable {
    /// The path concerned, as given or as displayed.
    public var path: String
    /// The reason, in words.
    public var reason: String
    /// The underlying errno, if any.
    public var errno: Errno?

    /// An error from a reason in words.
    public init(path: String, reason: String, errno: Errno? = nil) {
        self.path = path
        self.reason = reason
        self.errno = errno
    }

    /// An error from an errno, worded for the kind of thing `what` the path is ("layer",
    /// "mount point", "tree").
    public init(path: String, errno: Errno, what: String) {
        self.path = path
        self.errno = errno
        switch errno {
        case .noEntry: reason = "no such \(what) (no such file or directory)"
        case .notDirectory: reason = "\(what) is not a directory"
        case .permissionDenied: reason = "\(what) is not readable (permission denied)"
        case .tooManySymlinks: reason = "\(what) path has a symlink loop"
        case .nameTooLong: reason = "\(what) path is too long"
        default: reason = "cannot open \(what): \(errno)"
        }
    }

    /// `path: reason` (or only the reason when there is no path).
    public var description: String { path.isEmpty ? reason : "\(path): \(reason)" }
}
