import LayerCore

/// The paths of a layer being applied, as a tree of names: what the check pass learns about
/// each path, and what the apply pass must finish on each directory. A path's ancestors are
/// one walk up the tree. (Sets of whole paths cost the square of the depth per entry, so a
/// small layer of a few thousand nested directories took hours and gigabytes.)
final class LayerTree {
    /// What the layer makes at a path (its last entry there).
    enum Kind {
        /// Nothing (yet): a parent the layer leaves out, or a whiteout's target.
        case none
        case directory
        case symlink
        /// Any other non-directory.
        case other
    }

    /// One path.
    final class Node {
        /// The last component; nil for the root.
        let name: FileName?
        /// The directory holding it; nil for the root.
        unowned let parent: Node?
        /// Depth: 0 for the root.
        let depth: Int
        private(set) var children: [FileName: Node] = [:]

        // The check pass.
        /// What the layer makes here.
        var kind = Kind.none
        /// A whiteout deletes this path.
        var removed = false
        /// An opaque marker empties this directory.
        var cleared = false
        /// For a parent of entries that the layer does not make a directory (when first seen):
        /// the first such entry, for messages; ROOT must hold it as a directory.
        var entryBelow: String?

        // The apply pass, for directories.
        /// The mtime the layer gives it.
        var time: Timestamp?
        /// Its mtime before the first change in it (restored unless the layer gives one).
        var timeBefore: Timestamp?
        /// Without root: the permissions the layer gives it (kept open to its owner until the end).
        var permissions: UInt32?
        /// Without root: its permissions before the applier opened it up to change it.
        var permissionsBefore: UInt32?
        /// It or a directory below it has something to finish.
        fileprivate(set) var pending = false

        init(name: FileName?, parent: Node?) {
            self.name = name
            self.parent = parent
            depth = (parent?.depth ?? -1) + 1
        }

        /// The child `name`, created if missing.
        func child(_ name: FileName) -> Node {
            if let existing = children[name] { return existing }
            let created = Node(name: name, parent: self)
            children[name] = created
            return created
        }

        /// The child `name` if it exists.
        func existingChild(_ name: FileName) -> Node? { children[name] }

        /// The path from the root.
        var path: RelativePath {
            var components: [FileName] = []
            components.reserveCapacity(depth)
            var node: Node? = self
            while let current = node, let name = current.name {
                components.append(name)
                node = current.parent
            }
            return RelativePath(components: components.reversed())
        }

        /// The ancestors from the outermost (below the root) to the parent.
        var ancestors: [Node] {
            var chain: [Node] = []
            chain.reserveCapacity(depth)
            var node = parent
            while let current = node, current.name != nil {
                chain.append(current)
                node = current.parent
            }
            return chain.reversed()
        }

        /// The children with something to finish.
        var pendingChildren: [Node] { children.values.filter(\.pending) }

        /// Notes that this directory has something to finish (and so its ancestors).
        func markPending() {
            var node: Node? = self
            while let current = node, !current.pending {
                current.pending = true
                node = current.parent
            }
        }
    }

    /// The root of the layer (ROOT).
    let root = Node(name: nil, parent: nil)

    /// The node of `path`, created with its ancestors.
    func node(_ path: RelativePath) -> Node {
        var node = root
        for component in path.components { node = node.child(component) }
        return node
    }

    /// The nodes of `path`'s components, outermost first, as far as the layer has met them.
    func existingNodes(_ path: RelativePath) -> [Node] {
        var nodes: [Node] = []
        var node = root
        for component in path.components {
            guard let next = node.existingChild(component) else { break }
            nodes.append(next)
            node = next
        }
        return nodes
    }

    /// The node of `path`, if the layer has met it.
    func existingNode(_ path: RelativePath) -> Node? {
        var node = root
        for component in path.components {
            guard let next = node.existingChild(component) else { return nil }
            node = next
        }
        return node
    }
}
