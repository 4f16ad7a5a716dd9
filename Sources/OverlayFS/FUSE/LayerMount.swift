import CFuse
import Glibc
import LayerCore

/// Mounting and serving a layer stack: the library side of `layermount`.
public enum LayerMount {
    /// Opens the layers, checks the mount point, mounts, and serves until unmounted. Unless
    /// `configuration.foreground`, the process forks once the mount is usable: the parent exits
    /// 0 and the child serves (as mount(8) helpers and fuse-overlayfs do). SIGTERM, SIGINT and
    /// SIGHUP end the session and unmount.
    ///
    /// Everything that can fail with a message (layers, mount point, the mount itself) is
    /// checked before the fork, so a failure reaches the caller and no mount is left behind.
    ///
    /// - Returns: the exit status once the session ends (0 when unmounted normally).
    /// - Throws: ``PathError`` naming the layer or mount point and the reason.
    public static func run(_ configuration: MountConfiguration) throws(PathError) -> Int32 {
        let openFiles = FileDescriptor.raiseOpenFileLimit()
        var layerPaths: [String] = []
        for layer in configuration.layers { layerPaths.append(try MountPoint.canonical(layer, what: "layer")) }
        try MountPoint.checkLayersDoNotOverlap(layerPaths, given: configuration.layers)
        let stack: LayerStack
        do {
            stack = try LayerStack(paths: layerPaths, format: configuration.whiteoutFormat)
        } catch {
            // Name the layer as the user gave it.
            var named = error
            if let index = layerPaths.firstIndex(of: error.path) { named.path = configuration.layers[index] }
            throw named
        }
        try MountPoint.checkLayersAreDistinct(stack.layers.map(\.rootStatus.identity), given: configuration.layers)
        let mountPoint = try MountPoint.validate(configuration.mountPoint, layers: layerPaths)

        var options = OverlayOptions()
        options.descriptorCacheCapacity = descriptorCacheCapacity(openFileLimit: openFiles, layers: stack.layers.count)
        if openFiles < reservedDescriptors(layers: stack.layers.count) + 16 {
            writeToStandardError(
                "layermount: warning: the open-file limit (\(openFiles)) is low for \(stack.layers.count) layers: "
                    + "directories merged from many layers may fail with 'Too many open files' (raise it with "
                    + "'ulimit -Hn')\n")
        }
        let verbose = configuration.foreground
        let fileSystem = OverlayFileSystem(stack: stack, options: options) { message in
            if verbose { writeToStandardError("layermount: \(message)\n") }
        }
        let bridge = FUSEBridge(fileSystem: fileSystem)
        let userdata = Unmanaged.passRetained(bridge)
        defer { userdata.release() }

        var arguments = ["layermount", "-o", mountOptions(configuration, top: layerPaths.last ?? "")]
        if configuration.debug { arguments.append("-d") }
        var ops = FUSEOperations.table()
        let session: OpaquePointer? = withFUSEArguments(arguments) { args in
            fuse_session_new(args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, userdata.toOpaque())
        }
        guard let session else {
            throw PathError(path: mountPoint, reason: "cannot set up the FUSE session (see the message above)")
        }
        defer { fuse_session_destroy(session) }
        guard fuse_session_mount(session, mountPoint) == 0 else {
            // With options passed to the kernel, the likelier cause is one of them (context= without
            // SELinux is EINVAL), not a missing /dev/fuse.
            let passed = configuration.kernelOptions
            throw PathError(
                path: configuration.mountPoint,
                reason: passed.isEmpty
                    ? "cannot mount (is /dev/fuse available and fuse3 installed? see the message above)"
                    : "cannot mount: the kernel refused the mount, maybe one of the options passed to it ("
                        + passed.joined(separator: ",") + "); see the message above")
        }
        var mounted = true
        defer { if mounted { fuse_session_unmount(session) } }
        if !configuration.foreground {
            // No thread has started yet: forking here is safe. The parent exits 0 inside.
            guard fuse_daemonize(0) == 0 else {
                throw PathError(path: configuration.mountPoint, reason: "cannot go to the background")
            }
            // Descriptors inherited from the caller (pipes, a parent's exit-watch socket) would
            // keep the caller waiting for the daemon: keep only the layers and /dev/fuse.
            closeInheritedDescriptors(keeping: Set(stack.layers.map(\.root.rawValue) + [fuse_session_fd(session)]))
        }
        // The caller may have blocked or ignored these (a test runner's threads, `cmd &` in a
        // script): they must end the session, so make them deliverable first.
        enableTerminationSignals()
        guard fuse_set_signal_handlers(session) == 0 else {
            throw PathError(path: configuration.mountPoint, reason: "cannot install signal handlers")
        }
        defer { fuse_remove_signal_handlers(session) }
        let alsoEnding = endOtherTerminatingSignalsLikeSIGTERM()
        defer { for signal in alsoEnding { Glibc.signal(signal, SIG_DFL) } }
        let status: CInt
        if configuration.threads <= 1 {
            status = fuse_session_loop(session)
        } else {
            let loop = fuse_loop_cfg_create()
            defer { fuse_loop_cfg_destroy(loop) }
            fuse_loop_cfg_set_max_threads(loop, UInt32(configuration.threads))
            fuse_loop_cfg_set_idle_threads(loop, UInt32(max(1, configuration.threads / 2)))
            fuse_loop_cfg_set_clone_fd(loop, 0)
            status = cfuse_session_loop_mt(session, loop)
        }
        fuse_session_unmount(session)
        mounted = false
        // The loop returns the number of the signal that ended it: a clean end too.
        return status == 0 || ([SIGTERM, SIGINT, SIGHUP] + alsoEnding).contains(status)
            ? ExitCode.success : ExitCode.failure
    }

    /// The descriptors a mount needs besides its cache: each layer's root for the whole mount,
    /// and what one request holds at once (a lookup below a directory merged from every layer
    /// holds the parent's descriptor in each layer and the child's), plus stdio, /dev/fuse, a
    /// listing reader and a margin.
    static func reservedDescriptors(layers: Int) -> Int { 3 * layers + 32 }

    /// The descriptor cache's budget under an open-file limit: three quarters of what the limit
    /// leaves after ``reservedDescriptors(layers:)``, at least 16 and at most 16384. (Taking
    /// three quarters of the whole limit filled it on a stack of many layers under a low hard
    /// limit, and every lookup failed with `EMFILE`.)
    static func descriptorCacheCapacity(openFileLimit: Int, layers: Int) -> Int {
        min(16_384, max(16, (openFileLimit - reservedDescriptors(layers: layers)) * 3 / 4))
    }

    /// Resets SIGTERM, SIGINT and SIGHUP to their default action and unblocks them, so that
    /// `fuse_set_signal_handlers` (which only replaces default actions) installs its handlers.
    private static func enableTerminationSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in [SIGTERM, SIGINT, SIGHUP] {
            Glibc.signal(signal, SIG_DFL)
            sigaddset(&set, signal)
        }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// Signals whose default action ends the process without a core dump, other than the three
    /// libfuse handles: sent by mistake (`kill -USR1`, a stray timer), they would kill the
    /// daemon and leave a dead mount ("Transport endpoint is not connected").
    static let otherTerminatingSignals: [CInt] = [
        SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSTKFLT,
    ]

    /// Gives the signals of ``otherTerminatingSignals`` that still have their default action
    /// libfuse's SIGTERM handler, which ends the session: the daemon unmounts and exits. Ones the
    /// caller ignored stay ignored.
    ///
    /// - Returns: the signals changed (restore them to the default when the session ends).
    private static func endOtherTerminatingSignalsLikeSIGTERM() -> [CInt] {
        var terminate = sigaction()
        guard sigaction(SIGTERM, nil, &terminate) == 0 else { return [] }
        var changed: [CInt] = []
        for signal in otherTerminatingSignals {
            var current = sigaction()
            guard sigaction(signal, nil, &current) == 0, current.__sigaction_handler.sa_handler == nil else { continue }
            if sigaction(signal, &terminate, nil) == 0 { changed.append(signal) }
        }
        var set = sigset_t()
        sigemptyset(&set)
        for signal in changed { sigaddset(&set, signal) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        return changed
    }

    /// Closes every descriptor above 2 except `keep` (after daemonizing).
    private static func closeInheritedDescriptors(keeping keep: Set<CInt>) {
        guard let directory = opendir("/proc/self/fd") else { return }
        let own = dirfd(directory)
        var stray: [CInt] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let fd = CInt(name), fd > 2, fd != own, !keep.contains(fd) { stray.append(fd) }
        }
        closedir(directory)
        for fd in stray { close(fd) }
    }

    /// The `-o` string for libfuse and the kernel.
    static func mountOptions(_ configuration: MountConfiguration, top: String) -> String {
        var options = [
            "ro", "fsname=" + escapeOption("layermount:" + top), "subtype=layermount", "default_permissions",
        ]
        let isRoot = geteuid() == 0
        if isRoot || userAllowOther() { options.append("allow_other") }
        if isRoot { options += ["dev", "suid"] }
        options += configuration.kernelOptions.map(escapeOption)
        return options.joined(separator: ",")
    }

    private static func escapeOption(_ value: String) -> String {
        var out = ""
        for character in value {
            if character == "," || character == "\\" { out.append("\\") }
            out.append(character)
        }
        return out
    }

    /// Whether /etc/fuse.conf lets users mount with allow_other.
    private static func userAllowOther() -> Bool {
        guard let file = fopen("/etc/fuse.conf", "r") else { return false }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.trimmingSpaces() == "user_allow_other" { return true }
        }
        return false
    }

    /// Runs `body` with a `struct fuse_args` over `arguments`, freed afterwards.
    private static func withFUSEArguments<R>(_ arguments: [String], _ body: (UnsafeMutablePointer<fuse_args>) -> R) -> R
    {
        var strings = arguments.map { strdup($0) }
        defer { for string in strings { free(string) } }
        return strings.withUnsafeMutableBufferPointer { buffer in
            var args = cfuse_args_init(CInt(buffer.count), buffer.baseAddress)
            defer { fuse_opt_free_args(&args) }
            return body(&args)
        }
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        let scalars = unicodeScalars.drop { $0 == " " || $0 == "\t" || $0 == "\n" }
        var trimmed = String(String.UnicodeScalarView(scalars))
        while let last = trimmed.last, last == " " || last == "\t" || last == "\n" { trimmed.removeLast() }
        return trimmed
    }
}

/// Writes `text` to stderr in one `write(2)` (safe from any thread, no stdio state).
func writeToStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
}
