import CFuse
import LayerCore
import Synchronization

/// The session's userdata: what every callback needs, recovered from the request with
/// `fuse_req_userdata` and `Unmanaged` (no globals). Retained by the session for its whole life.
final class FUSEBridge: Sendable {
    /// The overlay core.
    let fileSystem: OverlayFileSystem
    /// Whether the kernel opens files itself (`FUSE_CAP_NO_OPEN_SUPPORT`): then `open`
    /// answers `ENOSYS` once and the kernel never asks again. Probed in `init`.
    let kernelOpensFiles = Atomic<Bool>(false)
    /// The same for directories (`FUSE_CAP_NO_OPENDIR_SUPPORT`).
    let kernelOpensDirectories = Atomic<Bool>(false)
    /// A bridge to `fileSystem`.
    init(fileSystem: OverlayFileSystem) {
        self.fileSystem = fileSystem
    }

    /// The bridge of the session a request belongs to.
    static func of(_ request: fuse_req_t?) -> FUSEBridge? {
        guard let request, let userdata = fuse_req_userdata(request) else { return nil }
        return Unmanaged<FUSEBridge>.fromOpaque(userdata).takeUnretainedValue()
    }

    /// The bridge passed as `init`/`destroy` userdata.
    static func of(userdata: UnsafeMutableRawPointer?) -> FUSEBridge? {
        guard let userdata else { return nil }
        return Unmanaged<FUSEBridge>.fromOpaque(userdata).takeUnretainedValue()
    }
}
