import LayerCore

/// A directory of the merged tree as a chain of names shared by its children, so that a walk
/// builds a path string only when it prints one.
public final class TreePath: Sendable {
    /// The parent directory; nil for the root.
    public let parent: TreePath?
    /// The last component; nil for the root.
    public let name: FileName?

    /// The root of the tree (`/`).
    public static let root = TreePath(parent: nil, name: nil)

    private init(parent: TreePath?, name: FileName?) {
        self.parent = parent
        self.name = name
    }

    /// This directory's child `name`.
    public func appending(_ name: FileName) -> TreePath { TreePath(parent: self, name: name) }

    /// A path from its components (outermost first).
    public static func from(_ path: RelativePath) -> TreePath {
        var result = TreePath.root
        for name in path.components { result = result.appending(name) }
        return result
    }

    /// Whether this is the root.
    public var isRoot: Bool { parent == nil }

    /// The components, outermost first.
    public var components: [FileName] {
        var names: [FileName] = []
        var node: TreePath? = self
        while let current = node, let name = current.name {
            names.append(name)
            node = current.parent
        }
        return names.reversed()
    }

    /// The path as a ``RelativePath``.
    public var relativePath: RelativePath { RelativePath(components: components) }

    /// The path for display, absolute in the stack (`/` for the root, `/usr/bin`), with
    /// ``LayerCore/escapeForDisplay(_:)`` escaping.
    public var display: String {
        if isRoot { return "/" }
        var bytes: [UInt8] = []
        for name in components {
            bytes.append(0x2F)
            bytes.append(contentsOf: name.bytes)
        }
        return escapeForDisplay(bytes)
    }

    /// The display path of child `name` of this directory.
    public func display(appending name: FileName) -> String {
        isRoot ? "/" + name.description : display + "/" + name.description
    }
}
