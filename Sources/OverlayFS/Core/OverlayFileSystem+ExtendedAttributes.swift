import LayerCore

extension OverlayFileSystem {
    /// The value of extended attribute `name` of a node, from its providing layer. Overlay-
    /// private attributes (`trusted.overlay.*`, `user.overlay.*`) do not exist through the mount,
    /// but escaped ones show unescaped, as through the kernel overlay (6.7): `trusted.overlay.X`
    /// is the layer's `trusted.overlay.overlay.X` (see ``Whiteout/visibleAttributeName(_:)``).
    /// ``layerAttributeName`` and ``trustedLayerAttributeName`` are answered by the mount
    /// itself: `INDEX:PATH` of the providing layer (INDEX 1-based, bottom first), unless the
    /// file really has an attribute of that name: then, as through the kernel overlay, its value.
    ///
    /// - Throws: `ENODATA` when absent or private, `ENOTSUP`, `ESTALE`, other errnos.
    public func getxattr(_ node: NodeID, name: [UInt8]) throws(Errno) -> [UInt8] {
        let record = try inodes.record(of: node)
        let storedName = Whiteout.storedAttributeName(name)
        let stored: [UInt8]
        do {
            switch try attributeTarget(node, record) {
            case .descriptor(let descriptor): stored = try descriptor.extendedAttribute(storedName)
            case .entry(let parent, let entry): stored = try parent.extendedAttribute(storedName, of: entry)
            }
        } catch .noData where name == Self.layerAttributeName || name == Self.trustedLayerAttributeName {
            return Array(layerDescription(record.layer).utf8)
        } catch .notSupported where name == Self.layerAttributeName || name == Self.trustedLayerAttributeName {
            return Array(layerDescription(record.layer).utf8)
        }
        return stored
    }

    /// The names of the extended attributes of a node, from its providing layer, without the
    /// overlay-private ones but with escaped ones unescaped (the layer attributes are not listed
    /// either).
    ///
    /// - Throws: `ENOTSUP`, `ESTALE`, other errnos.
    public func listxattr(_ node: NodeID) throws(Errno) -> [[UInt8]] {
        let record = try inodes.record(of: node)
        let names: [[UInt8]]
        switch try attributeTarget(node, record) {
        case .descriptor(let descriptor): names = try descriptor.extendedAttributeNames()
        case .entry(let parent, let entry): names = try parent.extendedAttributeNames(of: entry)
        }
        return names.compactMap(Whiteout.visibleAttributeName)
    }

    /// `INDEX:PATH` of a layer (INDEX 1-based, bottom first).
    public func layerDescription(_ layer: LayerIndex) -> String {
        "\(layer.rawValue + 1):\(stack[layer].path)"
    }

    private enum AttributeTarget {
        case descriptor(FileDescriptor)
        case entry(FileDescriptor, FileName)
    }

    /// How to reach a node's attributes without opening it: a directory's (or an already open
    /// file's) descriptor, else its parent directory and name (`l*xattr`, never following a
    /// symlink).
    private func attributeTarget(_ node: NodeID, _ record: NodeRecord) throws(Errno) -> AttributeTarget {
        if record.type == .directory { return .descriptor(try directoryDescriptor(node, layer: record.layer)) }
        if record.type == .regular,
            let open = descriptors.descriptor(for: DescriptorCache.Key(node: node, layer: record.layer))
        {
            return .descriptor(open)
        }
        let (parent, name) = try entryLocation(record)
        return .entry(parent, name)
    }
}
