import LayerCore

/// The `layermount` mount command line: its help and its parsing into a ``MountConfiguration``.
public enum MountCommand {
    /// What the command line asks for.
    public enum Action: Sendable, Equatable {
        /// Print ``help`` and exit 0.
        case help
        /// Print the version and exit 0.
        case version
        /// Mount.
        case mount(MountConfiguration)
        /// Unmount a layermount mount point.
        case unmount(String)
    }

    /// The command's description (help text and usage line).
    public static let command = CommandLineParser.Command(
        name: "layermount",
        overview: "Mount a stack of layer directories as one read-only merged tree (FUSE), with kernel overlayfs "
            + "semantics and OCI or kernel-format whiteouts.",
        usage: "[<options>] <layer> ... <mountpoint>\n"
            + "       layermount [<options>] -o lowerdir=<top>:...:<bottom> <mountpoint>\n"
            + "       layermount --unmount <mountpoint>",
        arguments: [
            ("<layer>", "A layer directory. List the layers bottom (base) first, as in a Dockerfile."),
            ("<mountpoint>", "An existing directory to mount the merged tree on."),
        ],
        options: [
            .init(
                "options", short: "o", value: "<options>",
                help: "Mount options, comma separated, as fuse-overlayfs and mount(8) take them. "
                    + "lowerdir=TOP:...:BOTTOM gives the layers top first (instead of <layer> arguments). "
                    + "Passed to the kernel: nodev, nosuid, noexec, noatime, nodiratime, sync, dirsync, "
                    + "nosymfollow, context=, fscontext=, defcontext=, rootcontext=. Accepted and ignored: ro, rw, "
                    + "allow_other, default_permissions, userxattr, xino=, redirect_dir=, index=, metacopy=, "
                    + "fsync=, threaded= and the like. Refused: upperdir=, workdir= (no writable upper layer "
                    + "yet), uidmapping=, gidmapping=, squash_*.",
                repeatable: true),
            .init(
                "whiteout-format", value: "<format>",
                help: "Which whiteout markers the layers use: auto (both, in every layer), oci (.wh.NAME files and "
                    + ".wh..wh..opq), overlay (char device 0/0 and the trusted.overlay.opaque / user.overlay.opaque "
                    + "xattr).",
                default: "auto"),
            .init(
                "foreground", short: "f",
                help: "Stay in the foreground and serve until unmounted (default: return once the mount is usable "
                    + "and serve in the background)."),
            .init("debug", short: "d", help: "Log every request to stderr (implies --foreground)."),
            .init(
                "threads", value: "<n>",
                help: "The most threads serving requests (default: 1 with up to 2 CPUs, else one per CPU up to 8)."),
            .init("unmount", value: "<mountpoint>", help: "Unmount a layermount mount point and exit."),
            .init("version", help: "Show the version."),
        ],
        subcommands: InspectCommand.subcommands,
        discussion: """
            WHITEOUTS:
              auto honours both formats in every layer: a .wh.NAME entry, a character device 0/0 NAME,
              a .wh..wh..opq entry and an opaque xattr all count. Use --whiteout-format overlay for
              layers that hold real files named .wh.* (made through a kernel overlay mount), and oci for
              layers that hold real 0/0 character devices. Markers never show through the mount, nor do
              the overlay-private xattrs (trusted.overlay.*, user.overlay.*).

            THE MOUNT:
              Read-only: writes fail with EROFS. Mounted with default_permissions, allow_other (as root,
              or with user_allow_other in /etc/fuse.conf), dev and suid (as root). The read-only xattr
              user.layermount.layer of a file names the layer it comes from, as INDEX:PATH (INDEX counts
              from 1 at the bottom layer). SIGTERM, SIGINT and SIGHUP unmount cleanly, as do the other
              signals that would end the daemon without a core dump (SIGUSR1, SIGALRM, ...) unless
              ignored, 'layermount --unmount <mountpoint>' and 'fusermount3 -u <mountpoint>'.

            EXIT STATUS:
              0 once mounted (or unmounted), 64 for a usage error, 1 for a runtime error
              (Error: <path>: <reason>).
            """)

    /// The help text.
    public static var help: String { CommandLineParser(command).helpText }

    /// Parses the arguments after the program name.
    ///
    /// - Throws: ``CommandLineParser/UsageError`` for unknown options, a bad whiteout format,
    ///   mount options that are refused, or missing layers or mount point.
    public static func parse(_ arguments: [String]) throws(CommandLineParser.UsageError) -> Action {
        let parsed = try CommandLineParser(command).parse(arguments)
        if parsed.wantsHelp { return .help }
        if parsed.flag("version") { return .version }
        let positionals = parsed.positionals + (parsed.afterSeparator ?? [])
        if let mountPoint = parsed.value("unmount") {
            guard positionals.isEmpty else {
                throw CommandLineParser.UsageError(
                    "Unexpected argument '\(positionals[0])' after '--unmount <mountpoint>'")
            }
            guard !mountPoint.isEmpty else {
                throw CommandLineParser.UsageError("Missing value for '--unmount <mountpoint>'")
            }
            return .unmount(mountPoint)
        }
        let format: WhiteoutFormat
        if let name = parsed.value("whiteout-format") {
            guard let known = WhiteoutFormat(rawValue: name) else {
                throw CommandLineParser.UsageError(
                    "The value '\(name)' is invalid for '--whiteout-format <format>' (use auto, oci or overlay)")
            }
            format = known
        } else {
            format = .auto
        }
        let (optionLayers, kernelOptions) = try MountOptions.parse(parsed.all("options"))
        guard let mountPoint = positionals.last else {
            throw CommandLineParser.UsageError(
                optionLayers == nil
                    ? "Missing expected argument '<layer> ... <mountpoint>'"
                    : "Missing expected argument '<mountpoint>'")
        }
        let layers: [String]
        if let optionLayers {
            guard positionals.count == 1 else {
                throw CommandLineParser.UsageError(
                    "Give the layers either as arguments or as -o lowerdir=, not both (unexpected '\(positionals[0])')")
            }
            layers = optionLayers
        } else {
            layers = Array(positionals.dropLast())
            guard !layers.isEmpty else { throw CommandLineParser.UsageError("Missing expected argument '<layer>'") }
        }
        if let empty = layers.first(where: \.isEmpty) {
            throw CommandLineParser.UsageError("Invalid empty layer path '\(empty)'")
        }
        guard !mountPoint.isEmpty else { throw CommandLineParser.UsageError("Invalid empty mount point path") }
        var configuration = MountConfiguration(layers: layers, mountPoint: mountPoint)
        configuration.whiteoutFormat = format
        configuration.debug = parsed.flag("debug")
        configuration.foreground = parsed.flag("foreground") || configuration.debug
        configuration.kernelOptions = kernelOptions
        if let text = parsed.value("threads") {
            guard let threads = Int(text), threads >= 1, threads <= 256 else {
                throw CommandLineParser.UsageError("The value '\(text)' is invalid for '--threads <n>' (use 1 to 256)")
            }
            configuration.threads = threads
        }
        return .mount(configuration)
    }
}
