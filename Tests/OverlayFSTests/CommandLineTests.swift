import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

@testable import OverlayFS

/// The pids of `layermount` processes whose command line names `path`.
func layermountProcesses(naming path: String) -> [pid_t] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    return entries.compactMap { entry -> pid_t? in
        guard let pid = pid_t(entry),
            let data = readWholeFile("/proc/\(entry)/cmdline")
        else { return nil }
        let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let program = arguments.first, program.hasSuffix("layermount"), arguments.contains(path) else {
            return nil
        }
        // a zombie has an empty cmdline, so it never matches
        return pid
    }
}

/// Waits up to `seconds` for `condition`.
func waitUntil(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

@Suite("layermount command line")
struct CommandLineTests {
    @Test func helpAndVersion() {
        for arguments in [["--help"], ["-h"], ["help"], ["help", "mount"]] {
            let result = layermount(arguments)
            #expect(result.status == 0, "\(arguments)")
            #expect(result.out.hasPrefix("OVERVIEW: Mount a stack of layer directories"), "\(arguments)")
            #expect(result.out.contains("\nUSAGE: layermount [<options>] <layer> ... <mountpoint>\n"))
            #expect(result.out.contains("\nOPTIONS:\n"))
            #expect(result.out.contains("  --whiteout-format <format>"))
            #expect(result.out.contains("(default: auto)"))
            #expect(result.err.isEmpty)
        }
        let version = layermount(["--version"])
        #expect(version.status == 0)
        #expect(version.out == LayerCoreModule.version + "\n")
        #expect(version.err.isEmpty)
    }

    @Test(arguments: [
        ([], "Error: Missing expected argument '<layer> ... <mountpoint>'"),
        (["/tmp"], "Error: Missing expected argument '<layer>'"),
        (["--bogus", "a", "b"], "Error: Unknown option '--bogus'"),
        (["-x", "a", "b"], "Error: Unknown option '-x'"),
        (["--whiteout-format", "tar", "a", "b"], "Error: The value 'tar' is invalid for '--whiteout-format <format>'"),
        (["--whiteout-format"], "Error: Missing value for '--whiteout-format <format>'"),
        (["-o", "lowerdir=/a:/b,upperdir=/u,workdir=/w", "/m"], "Error: Mount option 'upperdir' is not supported yet"),
        (["-o", "lowerdir=/a:/b,frobnicate", "/m"], "Error: Unknown mount option 'frobnicate'"),
        (["-o", "lowerdir=/a::/b", "/m"], "Error: Mount option 'lowerdir' has an empty layer"),
        (["-o", "lowerdir=/a", "/b", "/m"], "Error: Give the layers either as arguments or as -o lowerdir=, not both"),
        (["-o", "uidmapping=0:1000:1", "/a", "/m"], "Error: Mount option 'uidmapping' is not supported"),
        (["help", "nope"], "Error: Unknown subcommand 'nope'"),
    ])
    func usageErrorsExit64(arguments: [String], message: String) {
        let result = layermount(arguments)
        #expect(result.status == 64, "\(arguments): \(result.err)")
        #expect(result.out.isEmpty)
        #expect(result.err.hasPrefix(message), "\(arguments): \(result.err)")
        #expect(result.err.contains("\nUsage: layermount "))
        #expect(result.err.hasSuffix("  See 'layermount --help' for more information.\n"))
    }

    @Test func badPathsExit1NamingThePath() throws {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.dir("l1"), .dir("l2"), .dir("mnt"), .file("file", "x"), .dir("l1/inside")], in: temp.path)
        let cases: [([String], String)] = [
            ([temp.url("missing"), temp.url("l2"), temp.url("mnt")], "\(temp.url("missing")): no such layer"),
            ([temp.url("file"), temp.url("l2"), temp.url("mnt")], "\(temp.url("file")): layer is not a directory"),
            ([temp.url("l1"), temp.url("l2"), temp.url("nomnt")], "\(temp.url("nomnt")): no such mount point"),
            (
                [temp.url("l1"), temp.url("l2"), temp.url("file")],
                "\(temp.url("file")): mount point is not a directory"
            ),
            (
                [temp.url("l1"), temp.url("l2"), temp.url("l1/inside")],
                "\(temp.url("l1/inside")): mount point is inside layer 1"
            ),
            (
                [temp.url("l1"), temp.url("l1"), temp.url("mnt")],
                "\(temp.url("l1")): layer 2 is the same directory as layer 1 (\(temp.url("l1"))): layers must not overlap"
            ),
            (
                [temp.url("l1"), temp.url("l2"), temp.url("l1/inside"), temp.url("mnt")],
                "\(temp.url("l1/inside")): layer 3 is inside layer 1 (\(temp.url("l1")))"
            ),
            (
                [temp.url("l1/inside"), temp.url("l1"), temp.url("mnt")],
                "\(temp.url("l1")): layer 2 contains layer 1 (\(temp.url("l1/inside")))"
            ),
            (["--unmount", temp.url("mnt")], "\(temp.url("mnt")): not a mount point"),
            (["--unmount", temp.url("missing")], "\(temp.url("missing")): no such mount point"),
        ]
        for (arguments, message) in cases {
            let result = layermount(arguments)
            #expect(result.status == 1, "\(arguments): \(result.err)")
            #expect(result.out.isEmpty)
            #expect(result.err.hasPrefix("Error: " + message), "\(arguments): \(result.err)")
            #expect(!MountedStack.isMounted(temp.url("mnt")) && !MountedStack.isMounted(temp.url("l1/inside")))
        }
    }

    @Test func pathsThatAreNotUTF8AreRefusedNotMangled() throws {
        // CommandLine.arguments would turn the \xff into U+FFFD and name another directory:
        // the mount must refuse the argument, mount nothing and create nothing.
        let temp = TemporaryDirectory()
        // The directory the lossy decoding would name exists: mounting it would "succeed".
        LayerBuilder.apply([.dir("lay\u{FFFD}er"), .file("lay\u{FFFD}er/decoy", "x"), .dir("mnt")], in: temp.path)
        let bad = "$(printf 'lay\\377er')"
        let result = shell(
            "mkdir \(shellQuote(temp.url("")))/\"\(bad)\" && \(shellQuote(builtExecutable("layermount"))) "
                + "\(shellQuote(temp.url("")))/\"\(bad)\" \(shellQuote(temp.url("mnt")))")
        #expect(result.status == ExitCode.usage, "\(result.err)")
        #expect(result.err.hasPrefix("Error: argument 1 '\(temp.path)/lay\\xffer' is not valid UTF-8"), "\(result.err)")
        #expect(!MountedStack.isMounted(temp.url("mnt")))
        #expect(names(temp.url("mnt")) == [])
    }

    @Test func unreadableLayerIsNamedAsGiven() throws {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.dir("secret"), .dir("open"), .dir("mnt"), .chmod("secret", 0o700)], in: temp.path)
        chmod(temp.path, 0o755)
        let result = run(
            "/usr/bin/setpriv",
            [
                "--reuid=4242", "--regid=4242", "--clear-groups", builtExecutable("layermount"), temp.url("secret"),
                temp.url("open"), temp.url("mnt"),
            ])
        #expect(result.status == 1, "\(result.err)")
        #expect(result.err == "Error: \(temp.url("secret")): layer is not readable (permission denied)\n")
    }

    @Test func mountOptionParsing() throws {
        let (layers, kernel) = try MountOptions.parse([
            "lowerdir=/top:/mid\\:colon:/bottom,ro,allow_other,nodev,context=\"system_u:object_r:t:s0:c1,c2\"",
            "xino=off,noexec",
        ])
        #expect(layers == ["/bottom", "/mid:colon", "/top"])
        #expect(kernel == ["nodev", "context=\"system_u:object_r:t:s0:c1,c2\"", "noexec"])
        guard case .mount(let configuration) = try MountCommand.parse(["-d", "a", "b", "m"]) else {
            Issue.record("expected a mount")
            return
        }
        #expect(configuration.layers == ["a", "b"])
        #expect(configuration.foreground && configuration.debug)
        #expect(try MountCommand.parse(["--unmount=/m"]) == .unmount("/m"))
    }
}

@Suite("layermount mount lifecycle", .tags(.mount), .serialized)
struct MountLifecycleTests {
    @Test func busyMountPointIsRefusedAndNothingLeaks() throws {
        let stack = try MountedStack([[.file("a", "1")], [.file("b", "2")]])
        defer { stack.unmount() }
        let again = layermount(stack.layers + [stack.mountPoint])
        #expect(again.status == 1)
        #expect(again.err.hasPrefix("Error: \(stack.mountPoint): mount point is busy"), "\(again.err)")
        let table = try MountTable.current()
        #expect(table.mounts.filter { $0.mountPoint == stack.mountPoint }.count == 1)
    }

    /// A layer reached again through a bind mount is the same directory: refused as the kernel
    /// refuses it (it used to be mounted as two layers).
    @Test func aLayerBindMountedAsAnotherLayerIsRefused() throws {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.file("l1/a", "1"), .dir("alias"), .dir("mnt")], in: temp.path)
        let bind = run("/bin/mount", ["--bind", temp.url("l1"), temp.url("alias")])
        try #require(bind.status == 0, "\(bind.err)")
        defer { run("/bin/umount", [temp.url("alias")]) }
        let result = layermount([temp.url("l1"), temp.url("alias"), temp.url("mnt")])
        #expect(result.status == 1)
        #expect(
            result.err.hasPrefix(
                "Error: \(temp.url("alias")): layer 2 is the same directory as layer 1 (\(temp.url("l1"))), reached "
                    + "through another path"), "\(result.err)")
        #expect(!MountedStack.isMounted(temp.url("mnt")))
    }

    /// A mount the kernel refuses because of an option passed to it names the option, not
    /// /dev/fuse (SELinux context= on a system without SELinux is EINVAL).
    @Test(.enabled(if: access("/sys/fs/selinux", F_OK) != 0, "needs a system without SELinux"))
    func aMountRefusedForAKernelOptionNamesTheOptions() throws {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.file("l1/a", "1"), .dir("mnt")], in: temp.path)
        let result = layermount(["-o", "nodev,context=system_u:object_r:tmp_t:s0", temp.url("l1"), temp.url("mnt")])
        #expect(result.status == 1)
        #expect(
            result.err.contains(
                "Error: \(temp.url("mnt")): cannot mount: the kernel refused the mount, maybe one of the options "
                    + "passed to it (nodev,context=system_u:object_r:tmp_t:s0)"), "\(result.err)")
        #expect(!MountedStack.isMounted(temp.url("mnt")))
    }

    /// Started with stdin, stdout and stderr closed, the layers used to be opened on 0-2, which
    /// going to the background points at /dev/null: the mount served an empty, broken tree.
    @Test func mountingWithTheStandardDescriptorsClosedServesTheLayers() throws {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.file("l1/a", "one"), .file("l2/d/b", "two"), .dir("mnt")], in: temp.path)
        let mountPoint = temp.url("mnt")
        let result = run(
            "/bin/sh",
            [
                "-c", "exec \"$0\" \"$@\" <&- >&- 2>&-", builtExecutable("layermount"), temp.url("l1"), temp.url("l2"),
                mountPoint,
            ])
        defer { if MountedStack.isMounted(mountPoint) { run("/usr/bin/fusermount3", ["-uz", mountPoint]) } }
        #expect(result.status == 0)
        #expect(MountedStack.isMounted(mountPoint))
        #expect(names(mountPoint) == ["a", "d"])
        #expect(contents(mountPoint + "/a") == "one")
        #expect(contents(mountPoint + "/d/b") == "two")
        #expect(layermount(["--unmount", mountPoint]).status == 0)
    }

    @Test func unmountCommandEndsTheDaemon() throws {
        let stack = try MountedStack([[.file("a", "1")], [.file("b", "2")]])
        defer { stack.unmount() }
        #expect(waitUntil { layermountProcesses(naming: stack.mountPoint).count == 1 })
        let result = layermount(["--unmount", stack.mountPoint])
        #expect(result.status == 0, "\(result.err)")
        #expect(result.out.isEmpty && result.err.isEmpty)
        #expect(!MountedStack.isMounted(stack.mountPoint))
        #expect(waitUntil { layermountProcesses(naming: stack.mountPoint).isEmpty }, "the daemon must exit")
        let notMounted = layermount(["--unmount", stack.mountPoint])
        #expect(notMounted.status == 1)
    }

    @Test func unmountCleansUpAfterAKilledDaemon() throws {
        let stack = try MountedStack([[.file("a", "1")], [.file("b", "2")]])
        defer { stack.unmount() }
        var daemons: [pid_t] = []
        #expect(
            waitUntil {
                daemons = layermountProcesses(naming: stack.mountPoint); return daemons.count == 1
            })
        for pid in daemons { kill(pid, SIGKILL) }
        #expect(waitUntil { layermountProcesses(naming: stack.mountPoint).isEmpty })
        // The mount is left without a daemon ("Transport endpoint is not connected").
        #expect(MountedStack.isMounted(stack.mountPoint))
        // Mounting again there says what is wrong and how to clear it.
        let again = layermount(stack.layers + [stack.mountPoint])
        #expect(again.status == 1)
        #expect(
            again.err.hasPrefix(
                "Error: \(stack.mountPoint): mount point is a FUSE mount whose daemon has gone (transport endpoint "
                    + "is not connected): unmount it first with 'layermount --unmount \(stack.mountPoint)'"),
            "\(again.err)")
        let result = layermount(["--unmount", stack.mountPoint])
        #expect(result.status == 0, "\(result.err)")
        #expect(!MountedStack.isMounted(stack.mountPoint))
    }

    /// SIGTERM, SIGINT and SIGHUP, and the other signals whose default action would kill the
    /// daemon and leave a dead mount (SIGUSR1 used to).
    @Test(arguments: [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM])
    func signalsUnmountCleanly(signal: Int32) throws {
        let stack = try MountedStack([[.file("a", "1")], [.file("b", "2")]])
        defer { stack.unmount() }
        var daemons: [pid_t] = []
        #expect(
            waitUntil {
                daemons = layermountProcesses(naming: stack.mountPoint); return daemons.count == 1
            })
        for pid in daemons { kill(pid, signal) }
        #expect(waitUntil { !MountedStack.isMounted(stack.mountPoint) }, "signal \(signal) must unmount")
        #expect(waitUntil { layermountProcesses(naming: stack.mountPoint).isEmpty })
    }

    @Test func foregroundServesUntilUnmountedAndDebugLogsRequests() throws {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.file("l1/a", "1"), .file("l2/b", "2"), .dir("mnt")], in: temp.path)
        let mountPoint = temp.url("mnt")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: builtExecutable("layermount"))
        process.arguments = ["-d", temp.url("l1"), temp.url("l2"), mountPoint]
        let log = temp.url("stderr.log")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: log)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer {
            if MountedStack.isMounted(mountPoint) { run("/usr/bin/fusermount3", ["-uz", mountPoint]) }
            if process.isRunning { process.terminate() }
        }
        #expect(waitUntil { MountedStack.isMounted(mountPoint) })
        #expect(contents(mountPoint + "/b") == "2")
        #expect(process.isRunning, "-f/-d stays in the foreground")
        process.terminate()  // SIGTERM
        #expect(waitUntil { !process.isRunning })
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(!MountedStack.isMounted(mountPoint))
        let text = contents(log) ?? ""
        #expect(text.contains("LOOKUP"), "debug log: \(text.prefix(500))")
    }
}
