import Glibc
import LayerCore

/// Everything a mount needs, validated for form (not yet against the file system).
public struct MountConfiguration: Sendable, Equatable {
    /// The layer directories, bottom first, as given.
    public var layers: [String]
    /// The mount point, as given.
    public var mountPoint: String
    /// Which whiteout markers the layers use.
    public var whiteoutFormat: WhiteoutFormat = .auto
    /// Stay in the foreground (`-f`; implied by `-d`).
    public var foreground = false
    /// Log every request to stderr (`-d`).
    public var debug = false
    /// Options passed on to the kernel mount (`nodev`, `noexec`, `context=...`).
    public var kernelOptions: [String] = []
    /// The most threads serving requests (1: one thread). See ``defaultThreads``.
    public var threads = MountConfiguration.defaultThreads

    /// One thread on machines with up to 2 CPUs, else one per CPU up to 8. Measured on 2 CPUs:
    /// with several threads, consecutive requests of one process are handed from thread to
    /// thread (each a wake-up elsewhere), and `ls -lR` of the Debian stack took 2-3 times as long
    /// as with one; four parallel readers were no faster either.
    public static var defaultThreads: Int {
        let cpus = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        return cpus <= 2 ? 1 : min(cpus, 8)
    }

    /// A configuration from its parts.
    public init(layers: [String], mountPoint: String) {
        self.layers = layers
        self.mountPoint = mountPoint
    }
}

/// The `-o` mount options layermount understands, in the fuse-overlayfs / mount(8) form.
public enum MountOptions {
    /// Options handed to the kernel mount as they are.
    public static let passedToKernel: Set<String> = [
        "nodev", "nosuid", "noexec", "dev", "suid", "exec", "noatime", "nodiratime", "sync", "async", "dirsync",
        "nosymfollow",
    ]
    /// Options with a value handed to the kernel mount (SELinux labels).
    public static let passedToKernelWithValue: Set<String> = ["context", "fscontext", "defcontext", "rootcontext"]
    /// Options accepted and ignored: a layermount mount is always read-only, lets other users in,
    /// checks permissions in the kernel, and has no kernel overlayfs tunables.
    public static let ignored: Set<String> = [
        "ro", "rw", "allow_other", "allow_root", "default_permissions", "userxattr", "relatime", "strictatime",
        "norelatime", "nostrictatime", "atime", "diratime", "static_nlink", "noacl", "volatile",
    ]
    /// Options with a value accepted and ignored (kernel overlayfs and fuse-overlayfs tunables that do
    /// not change what a read-only mount shows).
    public static let ignoredWithValue: Set<String> = [
        "xino", "redirect_dir", "index", "metacopy", "nfs_export", "fsync", "threaded", "fsname", "subtype",
        "max_idle_threads", "timeout",
    ]

    /// Splits a comma-separated option list; `\,` and `\\` escape, and a separator inside
    /// double quotes does not split (SELinux `context="...:c1,c2"`; the quotes are kept).
    /// With `keepingOtherEscapes`, an escaped character other than the separator keeps its
    /// backslash (for a second split, such as `lowerdir`'s colons).
    public static func split(
        _ list: String, separator: Character = ",", keepingOtherEscapes: Bool = false
    ) -> [String] {
        var items: [String] = []
        var current = ""
        var escaped = false
        var quoted = false
        for character in list {
            if escaped {
                if keepingOtherEscapes && character != separator { current.append("\\") }
                current.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == "\"" {
                quoted.toggle()
                current.append(character)
            } else if character == separator && !quoted {
                items.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        if escaped { current.append("\\") }
        items.append(current)
        return items
    }

    /// Applies `-o` option lists to a configuration: `lowerdir=TOP:...:BOTTOM` sets the layers
    /// (top first, as kernel overlayfs and fuse-overlayfs take them; `\:` escapes a colon).
    ///
    /// - Parameter lists: each `-o` argument.
    /// - Returns: the layers from `lowerdir` (bottom first), or nil when none was given, and the
    ///   options for the kernel.
    /// - Throws: ``CommandLineParser/UsageError`` for `upperdir`/`workdir` (no writable upper
    ///   layer yet), options that would change what the mount shows (`uidmapping`, `squash_*`,
    ///   ...), and unknown options.
    public static func parse(_ lists: [String]) throws(CommandLineParser.UsageError) -> (
        layers: [String]?, kernel: [String]
    ) {
        var layers: [String]?
        var kernel: [String] = []
        for list in lists {
            for item in split(list, keepingOtherEscapes: true) where !item.isEmpty {
                let key: String
                let value: String?
                if let equals = item.firstIndex(of: "=") {
                    key = String(item[..<equals])
                    value = String(item[item.index(after: equals)...])
                } else {
                    key = item
                    value = nil
                }
                switch key {
                case "lowerdir":
                    guard let value, !value.isEmpty else {
                        throw CommandLineParser.UsageError(
                            "Mount option 'lowerdir' needs a value (lowerdir=TOP:...:BOTTOM)")
                    }
                    let parts = split(value, separator: ":")
                    if parts.contains(where: \.isEmpty) {
                        throw CommandLineParser.UsageError("Mount option 'lowerdir' has an empty layer: '\(value)'")
                    }
                    layers = parts.reversed()
                case "upperdir", "workdir":
                    throw CommandLineParser.UsageError(
                        "Mount option '\(key)' is not supported yet: layermount mounts read-only (no writable upper layer)"
                    )
                case "uidmapping", "gidmapping", "squash_to_root", "squash_to_uid", "squash_to_gid", "plugins":
                    throw CommandLineParser.UsageError(
                        "Mount option '\(key)' is not supported: it would change what the mount shows")
                default:
                    if value == nil && passedToKernel.contains(key) {
                        kernel.append(key)
                    } else if value != nil && passedToKernelWithValue.contains(key) {
                        kernel.append(item)
                    } else if (value == nil && ignored.contains(key))
                        || (value != nil && ignoredWithValue.contains(key))
                    {
                        continue
                    } else {
                        throw CommandLineParser.UsageError("Unknown mount option '\(item)'")
                    }
                }
            }
        }
        return (layers, kernel)
    }
}
