/// Tells an image archive (`docker save` output, an OCI image layout) from a layer tarball by its
/// top-level names: `manifest.json`, `oci-layout`, `index.json` or `repositories` with blobs or
/// `*/layer.tar` and nothing that looks like a root file system. Feed it every entry's path.
public struct ArchiveLayout: Sendable {
    private var sawImageMetadata = false
    private var sawBlobs = false
    private var sawLayerEntry = false

    /// An empty record.
    public init() {}

    /// Notes one entry's path.
    public mutating func note(_ path: RelativePath) {
        guard let first = path.components.first?.description else { return }
        if path.components.count == 1 && ["manifest.json", "oci-layout", "index.json", "repositories"].contains(first) {
            sawImageMetadata = true
        } else if first == "blobs" {
            sawBlobs = true
        } else if path.components.count > 1 && path.components.last?.description == "layer.tar" {
            sawBlobs = true
        } else {
            sawLayerEntry = true
        }
    }

    /// Whether the entries seen make an image archive rather than a layer.
    public var isImageArchive: Bool { sawImageMetadata && (sawBlobs || !sawLayerEntry) }

    /// Why such an archive is refused, for messages.
    public static let imageArchiveReason =
        "not a layer: this is an image archive (docker save or OCI image layout); give one of its layer blobs instead"
}
