/// Tells an image archive (`docker save` output, an OCI image layout) from a layer tarball by its
/// top-level names: `manifest.json`, `oci-layout`, `index.json` or `repositories` with blobs
/// (`blobs/`, `*/layer.tar`, or top-level names made of a digest such as `<hex>.tar.gz` and
/// `sha256:<hex>`, as go-containerregistry's `crane pull`, ko, Jib and kaniko write them) or
/// nothing that looks like a root file system. Feed it every entry's path.
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
        } else if path.components.count == 1 && Self.isBlobName(path.components[0].bytes) {
            sawBlobs = true
        } else {
            sawLayerEntry = true
        }
    }

    /// Whether a top-level name is a blob named by its digest: 64 lowercase hex digits, optionally
    /// after `sha256:`, alone or followed by an extension (`.tar`, `.tar.gz`, `.json`, ...).
    static func isBlobName(_ name: [UInt8]) -> Bool {
        let prefix = Array("sha256:".utf8)
        let digest = name.starts(with: prefix) ? name.dropFirst(prefix.count) : name[...]
        guard digest.count >= 64 else { return false }
        let isHex = digest.prefix(64).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
        return isHex && (digest.count == 64 || digest[digest.startIndex + 64] == 0x2E)
    }

    /// Whether the entries seen make an image archive rather than a layer.
    public var isImageArchive: Bool { sawImageMetadata && (sawBlobs || !sawLayerEntry) }

    /// Why such an archive is refused, for messages.
    public static let imageArchiveReason =
        "not a layer: this is an image archive (docker save or OCI image layout); give one of its layer blobs instead"
}
