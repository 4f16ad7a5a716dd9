/// Which whiteout markers a layer uses.
///
/// - `oci`: the image-spec format. `.wh.NAME` deletes NAME from lower layers, `.wh..wh..opq` makes
///   its directory opaque. Character devices are ordinary devices, overlay xattrs are ignored.
/// - `overlay`: the kernel overlayfs format. A character device 0/0 deletes its name, the xattr
///   `trusted.overlay.opaque` (or `user.overlay.opaque`) = `y` makes a directory opaque. Names
///   starting with `.wh.` are ordinary names.
/// - `auto`: both are honoured in every layer, as fuse-overlayfs does. Use `overlay` for a layer
///   that holds real files named `.wh.*` (created through a kernel overlay mount).
public enum WhiteoutFormat: String, Sendable, CaseIterable {
    case auto, oci, overlay

    /// Whether `.wh.` names are markers in this format.
    public var honorsOCI: Bool { self != .overlay }

    /// Whether char 0/0 devices and opaque xattrs are markers in this format.
    public var honorsOverlay: Bool { self != .oci }
}

/// The whiteout codec: recognising and writing both marker formats.
public enum Whiteout {
    /// The OCI whiteout prefix, `.wh.`.
    public static let ociPrefix: [UInt8] = Array(".wh.".utf8)

    /// The first component of `path` before its last that is an OCI marker name (`x/.wh.y/z`):
    /// a marker is never a directory on the way to something else, so an archive entry through
    /// one is refused. Nil when there is none.
    public static func markerUsedAsDirectory(in path: RelativePath) -> FileName? {
        path.components.dropLast().first { $0.bytes.starts(with: ociPrefix) }
    }

    /// The prefix of OCI metadata names, `.wh..wh.`; only the opaque marker is defined.
    public static let ociMetaPrefix: [UInt8] = Array(".wh..wh.".utf8)

    /// The OCI opaque marker name, `.wh..wh..opq`.
    public static let ociOpaqueMarker = FileName(unchecked: Array(".wh..wh..opq".utf8))

    /// The xattrs that mark an overlay-format directory opaque when their value is `y`.
    public static let opaqueAttributeNames: [[UInt8]] = [
        Array("trusted.overlay.opaque".utf8), Array("user.overlay.opaque".utf8),
    ]

    /// The xattrs holding an overlay redirect (`trusted.overlay.redirect`, or
    /// `user.overlay.redirect` for layers made with `userxattr`): where a renamed directory, or a
    /// renamed metacopy file, is found in the layers below.
    public static let redirectAttributeNames: [[UInt8]] = [
        Array("trusted.overlay.redirect".utf8), Array("user.overlay.redirect".utf8),
    ]

    /// The xattrs marking a regular file as metadata only (`trusted.overlay.metacopy`, or
    /// `user.overlay.metacopy`): its data is in a lower layer.
    public static let metacopyAttributeNames: [[UInt8]] = [
        Array("trusted.overlay.metacopy".utf8), Array("user.overlay.metacopy".utf8),
    ]

    /// What a directory entry of a layer means.
    public enum Marker: Hashable, Sendable {
        /// Deletes `name` from the layers below (OCI `.wh.name` or overlay char 0/0 `name`).
        case whiteout(FileName)
        /// Makes the containing directory opaque (OCI `.wh..wh..opq`).
        case opaque
        /// Another OCI `.wh..wh.` metadata name: never shown, no meaning.
        case meta
    }

    /// The marker meaning of the entry `name` by name alone (OCI format), or nil for an ordinary
    /// name. Check ``WhiteoutFormat/honorsOCI`` first.
    public static func ociMarker(for name: FileName) -> Marker? {
        guard name.hasPrefix(ociPrefix) else { return nil }
        if name == ociOpaqueMarker { return .opaque }
        if name.hasPrefix(ociMetaPrefix) { return .meta }
        let target = Array(name.bytes[ociPrefix.count...])
        guard let deleted = try? FileName(validating: target), !deleted.isDotOrDotDot else { return .meta }
        return .whiteout(deleted)
    }

    /// The OCI whiteout name for `name` (`.wh.` + name).
    ///
    /// - Throws: `ENAMETOOLONG` when the result passes 255 bytes.
    public static func ociWhiteoutName(for name: FileName) throws(Errno) -> FileName {
        try FileName(validating: ociPrefix + name.bytes)
    }

    /// Whether a file with this status is an overlay-format whiteout: a character device 0/0.
    public static func isOverlayWhiteout(_ status: FileStatus) -> Bool {
        status.type == .characterDevice && status.specialDevice == 0
    }

    /// Whether an xattr value marks a directory opaque (`y`).
    public static func isOpaqueValue(_ value: [UInt8]) -> Bool {
        value == [0x79]
    }

    /// The xattrs that make a regular file of size 0 a whiteout (`trusted.overlay.whiteout`, or
    /// `user.overlay.whiteout` for layers made for `userxattr`): the kernel's "xattr whiteouts"
    /// (Linux 6.7), which a layer can hold where a character device 0/0 cannot be made.
    public static let whiteoutAttributeNames: [[UInt8]] = [
        Array("trusted.overlay.whiteout".utf8), Array("user.overlay.whiteout".utf8),
    ]

    /// Whether an opaque xattr value marks a directory (or a layer root) as holding xattr
    /// whiteouts (`x`): it is not opaque, and its listing leaves them out.
    public static func isXattrWhiteoutsValue(_ value: [UInt8]) -> Bool {
        value == [0x78]
    }

    /// Whether an xattr name is overlay-private and must never show through a mount
    /// (`trusted.overlay.*`, `user.overlay.*`).
    public static func isOverlayPrivateAttribute(_ name: [UInt8]) -> Bool {
        privatePrefix(of: name) != nil
    }

    private static let privatePrefixes: [[UInt8]] = [Array("trusted.overlay.".utf8), Array("user.overlay.".utf8)]
    private static let escape: [UInt8] = Array("overlay.".utf8)

    /// `trusted.overlay.` or `user.overlay.` when `name` starts with it.
    private static func privatePrefix(of name: [UInt8]) -> [UInt8]? {
        privatePrefixes.first { name.starts(with: $0) }
    }

    /// The name a layer's xattr shows under through a mount, as the kernel (6.7) shows escaped
    /// overlay xattrs for nested overlays: `P.overlay.overlay.X` as `P.overlay.X` (P is
    /// `trusted` or `user`); nil for another overlay-private name (hidden); else `stored` itself.
    public static func visibleAttributeName(_ stored: [UInt8]) -> [UInt8]? {
        guard let prefix = privatePrefix(of: stored) else { return stored }
        guard stored.dropFirst(prefix.count).starts(with: escape) else { return nil }
        return prefix + Array(stored.dropFirst(prefix.count + escape.count))
    }

    /// The name of the layer's xattr that shows as `visible` through a mount (the inverse of
    /// ``visibleAttributeName(_:)``): `P.overlay.X` is stored as `P.overlay.overlay.X`.
    public static func storedAttributeName(_ visible: [UInt8]) -> [UInt8] {
        guard let prefix = privatePrefix(of: visible) else { return visible }
        return prefix + escape + Array(visible.dropFirst(prefix.count))
    }
}
