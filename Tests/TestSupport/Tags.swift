import Testing

/// Size and kind tags for Swift Testing suites (`swift test --filter` by tag is not supported,
/// but `--skip`/`--filter` on suite names is; the tags document cost and needs).
extension Tag {
    /// Runs in well under a second, no subprocess.
    @Tag public static var small: Self
    /// Runs subprocesses or builds trees of hundreds of files; seconds.
    @Tag public static var medium: Self
    /// Real corpora or thousands of round trips; tens of seconds or opt-in.
    @Tag public static var large: Self
    /// Mounts a file system (needs root and /dev/fuse).
    @Tag public static var mount: Self
}
