import Glibc

/// An error number from a system call.
///
/// A thin wrapper over `CInt` so that syscall wrappers can be declared `throws(Errno)` and the
/// FUSE adapter can reply with the raw value. `description` is the C library's message.
public struct Errno: Error, Hashable, Sendable, CustomStringConvertible {
    /// The raw C `errno` value.
    public let rawValue: CInt

    /// Wraps a raw errno value.
    public init(rawValue: CInt) { self.rawValue = rawValue }

    /// The current thread's `errno`.
    public static var current: Errno { Errno(rawValue: errno) }

    /// The C library's message for this errno (`strerror(3)`).
    public var description: String {
        guard let text = strerror(rawValue) else { return "errno \(rawValue)" }
        return String(cString: text)
    }

    /// Operation not permitted (`EPERM`).
    public static let notPermitted = Errno(rawValue: EPERM)
    /// No such file or directory (`ENOENT`).
    public static let noEntry = Errno(rawValue: ENOENT)
    /// Interrupted system call (`EINTR`).
    public static let interrupted = Errno(rawValue: EINTR)
    /// Input/output error (`EIO`).
    public static let ioError = Errno(rawValue: EIO)
    /// Bad file descriptor (`EBADF`).
    public static let badFileDescriptor = Errno(rawValue: EBADF)
    /// Resource temporarily unavailable (`EAGAIN`).
    public static let tryAgain = Errno(rawValue: EAGAIN)
    /// Cannot allocate memory (`ENOMEM`).
    public static let noMemory = Errno(rawValue: ENOMEM)
    /// Permission denied (`EACCES`).
    public static let permissionDenied = Errno(rawValue: EACCES)
    /// Device or resource busy (`EBUSY`).
    public static let busy = Errno(rawValue: EBUSY)
    /// File exists (`EEXIST`).
    public static let exists = Errno(rawValue: EEXIST)
    /// Invalid cross-device link (`EXDEV`).
    public static let crossDevice = Errno(rawValue: EXDEV)
    /// No such device (`ENODEV`).
    public static let noDevice = Errno(rawValue: ENODEV)
    /// Not a directory (`ENOTDIR`).
    public static let notDirectory = Errno(rawValue: ENOTDIR)
    /// Is a directory (`EISDIR`).
    public static let isDirectory = Errno(rawValue: EISDIR)
    /// Invalid argument (`EINVAL`).
    public static let invalidArgument = Errno(rawValue: EINVAL)
    /// Too many open files (`EMFILE`).
    public static let tooManyOpenFiles = Errno(rawValue: EMFILE)
    /// File too large (`EFBIG`).
    public static let fileTooLarge = Errno(rawValue: EFBIG)
    /// No space left on device (`ENOSPC`).
    public static let noSpace = Errno(rawValue: ENOSPC)
    /// Illegal seek (`ESPIPE`).
    public static let illegalSeek = Errno(rawValue: ESPIPE)
    /// Read-only file system (`EROFS`).
    public static let readOnlyFileSystem = Errno(rawValue: EROFS)
    /// Too many links (`EMLINK`).
    public static let tooManyLinks = Errno(rawValue: EMLINK)
    /// Numerical result out of range (`ERANGE`).
    public static let outOfRange = Errno(rawValue: ERANGE)
    /// File name too long (`ENAMETOOLONG`).
    public static let nameTooLong = Errno(rawValue: ENAMETOOLONG)
    /// Function not implemented (`ENOSYS`).
    public static let notImplemented = Errno(rawValue: ENOSYS)
    /// Directory not empty (`ENOTEMPTY`).
    public static let notEmpty = Errno(rawValue: ENOTEMPTY)
    /// Too many levels of symbolic links (`ELOOP`).
    public static let tooManySymlinks = Errno(rawValue: ELOOP)
    /// No data available; for xattrs, the attribute does not exist (`ENODATA`).
    public static let noData = Errno(rawValue: ENODATA)
    /// Value too large for defined data type (`EOVERFLOW`).
    public static let overflow = Errno(rawValue: EOVERFLOW)
    /// Operation not supported (`EOPNOTSUPP`, same value as `ENOTSUP` on Linux).
    public static let notSupported = Errno(rawValue: EOPNOTSUPP)
    /// Stale file handle (`ESTALE`).
    public static let stale = Errno(rawValue: ESTALE)
    /// Structure needs cleaning: the layer holds something invalid (`EUCLEAN`).
    public static let needsCleaning = Errno(rawValue: EUCLEAN)
}

/// Runs a syscall that returns -1 and sets errno on failure, and converts the failure to
/// ``Errno``. Reads errno immediately and retries `EINTR` unless `retryOnInterrupt` is false.
@inline(__always)
public func valueOrErrno<T: FixedWidthInteger>(
    retryOnInterrupt: Bool = true, _ body: () -> T
) throws(Errno) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = Errno.current
        if retryOnInterrupt && error == .interrupted { continue }
        throw error
    }
}
