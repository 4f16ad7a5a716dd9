import Foundation
import Glibc
import LayerCore
import OverlayFS
import TestSupport
import Testing

@Suite("inspect commands: paths, per-path errors and messages", .tags(.medium))
struct InspectPathTests {
    /// A stack with a file, a directory, a symlink loop, a link to a directory and an opaque
    /// directory deleting a lower file.
    static func stack(_ temp: TemporaryDirectory) -> [String] {
        makeLayers(
            [
                [
                    .file("etc/conf", "c\n"), .file("dir/sub/b", "b\n"), .symlink("loop1", target: "loop2"),
                    .symlink("loop2", target: "loop1"), .symlink("todir", target: "dir"), .file("opq/x", "x\n"),
                    .file("dir/sub/inner/keep", "k"), .symlink("deep", target: "dir/sub/inner"),
                    .file("sub/q", "lexical q\n"), .file("dir/sub/sub/q", "q\n"),
                ],
                [.opaque("opq", .oci), .file("opq/new", "n")],
            ], in: temp)
    }

    /// `which` reports a problem for the one path that has it (text and JSON) and carries on with
    /// the others; the exit status is 1 at the end. No "path path" in the messages.
    @Test func whichCarriesOnPastABadPath() throws {
        let temp = TemporaryDirectory()
        let layers = Self.stack(temp)
        let tooLongName = "/" + String(repeating: "n", count: 256)
        let overPathMax = "/" + Array(repeating: String(repeating: "p", count: 200), count: 25).joined(separator: "/")
        let paths = ["/etc/conf", "/loop1/x", "/dir/sub/b", tooLongName, overPathMax, "/etc/conf/", "/todir/sub/b"]
        let text = layermount(["which"] + layers + ["--"] + paths)
        #expect(text.status == 1)
        #expect(text.out.hasPrefix("/etc/conf: layer 1\n"), "\(text.out)")
        #expect(text.out.contains("\n/dir/sub/b: layer 1\n"), "\(text.out)")
        #expect(text.out.contains("/dir/sub/b (from /todir/sub/b): layer 1\n"), "\(text.out)")
        #expect(text.out.contains("\(overPathMax): not in the merged tree: \(overPathMax.prefix(201)) is not in"))
        #expect(
            text.err == "Error: /loop1/x: too many levels of symbolic links (a symlink loop)\n"
                + "Error: \(tooLongName): file name too long (over 255 bytes)\n"
                + "Error: /etc/conf/: not a directory\n")
        #expect(!text.err.contains("path path"))

        let json = layermount(["which", "--json"] + layers + ["--"] + paths)
        #expect(json.status == 1)
        let reported = try #require(try jsonObject(json.stdout)["paths"] as? [[String: Any]])
        #expect(reported.count == paths.count)
        #expect(reported.map { $0["given"] as? String } == paths)
        #expect(reported.map { $0["present"] as? Bool } == [true, false, true, false, false, false, true])
        #expect(reported[1]["error"] as? String == "too many levels of symbolic links (a symlink loop)")
        #expect(reported[3]["error"] as? String == "file name too long (over 255 bytes)")
        #expect(reported[5]["error"] as? String == "not a directory")
        #expect(reported[0]["error"] == nil && reported[4]["error"] == nil)

        let ls = layermount(["ls"] + layers + ["--", "/loop1"])
        #expect(ls.status == 1)
        #expect(ls.err == "Error: /loop1: too many levels of symbolic links (a symlink loop)\n")
    }

    /// A version that cannot be read is reported as such; the path's other versions and the other
    /// paths are still reported.
    @Test func anUnreadableVersionDoesNotStopWhich() throws {
        guard getuid() == 0 else { return }  // needs another user to lose access
        let temp = TemporaryDirectory()
        chmod(temp.path, 0o755)
        let layers = makeLayers(
            [[.file("secret", "lower", mode: 0o600), .file("open", "o")], [.file("secret", "upper", mode: 0o644)]],
            in: temp)
        for layer in layers { chmod(layer, 0o755) }
        let result = run(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", builtExecutable("layermount"), "which", "--json"]
                + layers + ["--", "/secret", "/open"])
        #expect(result.status == 1, "\(result.err)")
        #expect(result.err == "Error: \(layers[0])/secret: file is not readable (permission denied)\n")
        let reported = try #require(try jsonObject(result.stdout)["paths"] as? [[String: Any]])
        #expect(reported.map { $0["present"] as? Bool } == [true, true])
        let versions = try #require(reported.first?["versions"] as? [[String: Any]])
        #expect(versions.first?["xxh3_128"] as? String == ContentHash.of(Array("upper".utf8)).description)
        #expect(versions.last?["error"] as? String == "file is not readable (permission denied)")
        #expect(versions.last?["state"] as? String == "shadowed")
    }

    /// A trailing slash (or a final `.`) needs a directory, as in a system call; through a
    /// symlink to a directory it is followed.
    @Test func aTrailingSlashNeedsADirectory() throws {
        let temp = TemporaryDirectory()
        let layers = Self.stack(temp)
        for path in ["etc/conf/", "/etc/conf/.", "/etc/conf//", "/etc/conf/../conf"] {
            let which = layermount(["which"] + layers + ["--", path])
            #expect(which.status == 1, "\(path)")
            #expect(which.out.isEmpty, "\(path): \(which.out)")
            #expect(which.err == "Error: \(path): not a directory\n", "\(path)")
            let ls = layermount(["ls", "-l"] + layers + ["--", path])
            #expect(ls.status == 1 && ls.out.isEmpty, "\(path): \(ls.out)")
            #expect(ls.err == "Error: \(path): not a directory\n", "\(path)")
        }
        let directory = layermount(["which"] + layers + ["--", "/dir/", "/todir/"])
        #expect(directory.status == 0, "\(directory.err)")
        #expect(directory.out.hasPrefix("/dir: layer 1\n"), "\(directory.out)")
        #expect(directory.out.contains("/dir (from /todir/): layer 1\n"), "\(directory.out)")
        #expect(layermount(["ls"] + layers + ["--", "/todir/"]).out == "L1  sub\n")
        #expect(layermount(["ls"] + layers + ["--", "/etc/conf"]).out == "L1  conf\n")
        // The empty path names nothing (ENOENT in a system call), not the root.
        for command in ["which", "ls"] {
            let empty = layermount([command] + layers + ["--", ""])
            #expect(empty.status == 1 && empty.out.isEmpty, "\(command): \(empty.out)")
            #expect(empty.err == "Error: '': no such file or directory (empty path)\n", "\(command): \(empty.err)")
        }
    }

    /// Layer and destination paths are the bytes the shell passed (no U+FFFD); paths in Error
    /// lines are escaped like merged paths.
    @Test func commandLinePathsAreBytes() throws {
        let temp = TemporaryDirectory()
        let binary = shellQuote(builtExecutable("layermount"))
        let here = shellQuote(temp.path)
        let made = shell("cd \(here) && mkdir \"$(printf 'lay\\377y')\" && echo hi > \"$(printf 'lay\\377y')/f\"")
        try #require(made.status == 0, "\(made.err)")
        let layer = "\"$(printf 'lay\\377y')\""
        let inspect = shell("cd \(here) && \(binary) inspect --json \(layer)")
        #expect(inspect.status == 0, "\(inspect.err)")
        let described = try #require(try jsonObject(inspect.stdout)["layers"] as? [[String: Any]])
        #expect(described.first?["path"] as? String == "lay\\xffy")
        let which = shell("cd \(here) && \(binary) which \(layer) -- /f")
        #expect(which.status == 0 && which.out.hasPrefix("/f: layer 1\n"), "\(which.out)\(which.err)")

        for (option, name) in [("--to ", "o\\376"), ("--to=", "o\\375.tar"), ("--to ", "o\\374.tar.gz")] {
            let flatten = shell("cd \(here) && \(binary) flatten \(layer) \(option)\"$(printf '\(name)')\"")
            #expect(flatten.status == 0, "\(name): \(flatten.err)")
            #expect(shell("cd \(here) && test -e \"$(printf '\(name)')\"").status == 0, "\(name) was not created")
        }
        let listed = shell("cd \(here) && ls | od -An -c | tr -d ' \\n'")
        #expect(!listed.out.contains("357277275"), "U+FFFD in a created name: \(listed.out)")

        let missing = shell("cd \(here) && \(binary) inspect \"$(printf 'no\\001pe\\377')\"")
        #expect(missing.status == 1)
        #expect(missing.err == "Error: no\\x01pe\\xff: no such layer (no such file or directory)\n")
        let control = shell("cd \(here) && \(binary) flatten \(layer) --to \"$(printf 'bad\\033[1mdir')/x\"")
        #expect(control.status == 1)
        #expect(control.err.hasPrefix("Error: bad\\x1b[1mdir/x: "), "\(control.err)")
    }

    /// Messages agree with themselves and name what they are about.
    @Test func messagesNameWhatTheyMean() throws {
        let temp = TemporaryDirectory()
        let layers = Self.stack(temp)
        // An opaque directory's deletion reads the same in the path line, the version line and JSON.
        let opaque = layermount(["which"] + layers + ["--", "/opq/x"])
        #expect(
            opaque.out.hasPrefix("/opq/x: not in the merged tree: deleted by the opaque directory /opq in layer 2\n"))
        #expect(opaque.out.contains("[deleted by layer 2: opaque directory /opq]"))
        let json = try jsonObject(layermount(["which", "--json"] + layers + ["--", "/opq/x"]).stdout)
        let path = try #require((json["paths"] as? [[String: Any]])?.first)
        #expect(path["deleted_by"] as? Int == 2)
        #expect(path["absence"] as? String == "deleted by the opaque directory /opq in layer 2")

        // The path as written, when symlinks make it another path, is shown as given.
        let written = layermount(["which"] + layers + ["--", "/deep/../sub/q"])
        #expect(written.out.hasPrefix("/dir/sub/sub/q (from /deep/../sub/q): layer 1\n"), "\(written.out)")
        #expect(written.out.contains("  as written (/deep/../sub/q, lexically /sub/q), without following symlinks:\n"))

        // A destination that cannot be written says so.
        let sys = layermount(["flatten"] + layers + ["--to", "/sys/kernel/x.tar"])
        #expect(sys.status == 1)
        #expect(sys.err.hasPrefix("Error: /sys/kernel/x.tar: the destination is not writable ("), "\(sys.err)")

        // ls -R names the layer directory it cannot read and the merged path.
        guard getuid() == 0 else { return }
        chmod(temp.path, 0o755)
        for layer in layers { chmod(layer, 0o755) }
        LayerBuilder.apply(
            [
                .dir("dir/sub/locked"), .file("dir/sub/locked/in", "i"), .chmod("dir/sub/locked", 0o700),
                .dir("dir/sub/open"), .file("dir/sub/open/seen", "s"),
            ], in: layers[0])
        chmod(layers[0] + "/dir", 0o755)
        chmod(layers[0] + "/dir/sub", 0o755)
        let denied = run(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", builtExecutable("layermount"), "ls", "-R"] + layers
                + ["--", "/dir"])
        #expect(denied.status == 1)
        #expect(
            denied.err == "Error: \(layers[0])/dir/sub/locked (merged /dir/sub/locked): directory is not readable "
                + "(permission denied)\n", "\(denied.err)")
        // ... and lists everything else, the unreadable directory itself and its siblings too.
        #expect(denied.out.contains("L1  locked\n"), "\(denied.out)")
        #expect(denied.out.contains("/dir/sub/open:\nL1  seen\n"), "\(denied.out)")
        let deniedJSON = run(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", builtExecutable("layermount"), "ls", "-lR", "--json"]
                + layers + ["--", "/dir"])
        #expect(deniedJSON.status == 1)
        let entries = try #require(try jsonObject(deniedJSON.stdout)["entries"] as? [[String: Any]])
        let locked = try #require(entries.first { $0["path"] as? String == "/dir/sub/locked" })
        #expect(locked["mode"] as? String == "0700")
        #expect((locked["error"] as? String)?.hasSuffix("directory is not readable (permission denied)") == true)
        #expect(entries.contains { $0["path"] as? String == "/dir/sub/open/seen" })
    }

    /// flatten's summary counts in words, refuses compression suffixes it cannot write and a
    /// second `--to`, and maps .tgz to gzip.
    @Test func flattenSummaryAndDestinations() throws {
        let temp = TemporaryDirectory()
        let layer = makeLayers([[.file("etc/a", "a")]], in: temp)[0]
        let one = layermount(["flatten", layer, "--to", temp.url("one")])
        #expect(
            one.out == "\(temp.url("one")): 2 entries (1 file, 1 directory, 0 symlinks, 0 other), 1 B of file data\n")
        let gzip = try jsonObject(layermount(["flatten", "--json", layer, "--to", temp.url("x.tgz")]).stdout)
        #expect(gzip["kind"] as? String == "tar+gzip")
        for name in ["y.tar.xz", "y.txz", "y.tar.bz2", "y.gz", "y.zst", "y.tar.lz4"] {
            let refused = layermount(["flatten", layer, "--to", temp.url(name)])
            #expect(refused.status == 64, "\(name)")
            #expect(
                refused.err.hasPrefix("Error: The value '\(temp.url(name))' is invalid for '--to <destination>': "),
                "\(refused.err)")
            #expect(!FileManager.default.fileExists(atPath: temp.url(name)), "\(name)")
        }
        let twice = layermount(["flatten", layer, "--to", temp.url("a"), "--to", temp.url("b")])
        #expect(twice.status == 64)
        #expect(twice.err.hasPrefix("Error: '--to <destination>' is given 2 times"), "\(twice.err)")
        #expect(
            !FileManager.default.fileExists(atPath: temp.url("a"))
                && !FileManager.default.fileExists(atPath: temp.url("b")))
        let help = layermount(["help", "flatten"]).out
        #expect(help.contains("(under $TMPDIR, default /var/tmp)"), "\(help)")
    }

    /// A file system mounted inside a layer directory is not part of the layer: the kernel
    /// overlay shows what the mount covers, and so do the mount, inspect, ls and flatten (the
    /// layers are private mount clones without submounts). Both a tmpfs and a bind mount of
    /// the same file system (same st_dev, which a device check cannot tell).
    @Test(arguments: ["tmpfs", "bind"])
    func mountsInsideALayerAreNotCrossed(kind: String) throws {
        guard getuid() == 0 else { return }
        let temp = TemporaryDirectory()
        let layers = makeLayers([[.file("a", "a"), .file("mnt/under", "u")], [.file("b", "b")]], in: temp)
        LayerBuilder.apply([.file("other/over", "o")], in: temp.path)
        let mounted =
            kind == "tmpfs"
            ? run("/bin/mount", ["-t", "tmpfs", "tmpfs", layers[0] + "/mnt"])
            : run("/bin/mount", ["--bind", temp.url("other"), layers[0] + "/mnt"])
        guard mounted.status == 0 else { return }
        defer { run("/bin/umount", [layers[0] + "/mnt"]) }
        if kind == "tmpfs" { LayerBuilder.apply([.file("mnt/over", "o")], in: layers[0]) }
        #expect(names(in: layers[0] + "/mnt") == ["over"])
        let kernel = try KernelOverlayMount(layers: layers)
        defer { kernel.unmount() }
        #expect(names(in: kernel.path + "/mnt") == ["under"])
        let ours = try MountedStack(existing: layers)
        defer { ours.unmount() }
        #expect(names(in: ours.path("mnt")) == ["under"])
        #expect(contents(ours.path("mnt/under")) == "u")
        let flattened = layermount(["flatten"] + layers + ["--to", temp.url("out")])
        #expect(flattened.status == 0, "\(flattened.err)")
        #expect(names(in: temp.url("out/mnt")) == ["under"])
        let listed = layermount(["ls"] + layers + ["--", "/mnt"])
        #expect(listed.status == 0 && listed.out == "L1  under\n", "\(listed.out)\(listed.err)")
        let inspected = layermount(["inspect"] + layers)
        #expect(inspected.status == 0, "\(inspected.err)")
    }

    /// A tree thousands of directories deep (a tarball's PAX paths have no length limit): each
    /// command walks it, or fails naming it, but never overflows the stack (SIGSEGV), and
    /// tarball skeletons are removed after it (the removal recursed per level too).
    @Test func deepTreesDoNotCrash() throws {
        let temp = TemporaryDirectory()
        let depth = 2000
        let script = """
            import os, sys, tarfile, io
            depth, root = int(sys.argv[1]), sys.argv[2]
            os.mkdir(root + "/layer")
            fd = os.open(root + "/layer", os.O_RDONLY)
            for _ in range(depth):
                os.mkdir("d", dir_fd=fd)
                child = os.open("d", os.O_RDONLY, dir_fd=fd)
                os.close(fd)
                fd = child
            leaf = os.open("leaf", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
            os.write(leaf, b"leaf")
            with tarfile.open(root + "/layer.tar", "w", format=tarfile.PAX_FORMAT) as tar:
                info = tarfile.TarInfo("/".join(["d"] * depth) + "/leaf")
                info.size = 4
                tar.addfile(info, io.BytesIO(b"leaf"))
            """
        let made = shell("python3 -c \(shellQuote(script)) \(depth) \(shellQuote(temp.path))")
        #expect(made.status == 0, "\(made.err)")
        let scratch = temp.url("scratch")
        mkdir(scratch, 0o700)
        let leaf = String(repeating: "/d", count: depth) + "/leaf"
        for layer in [temp.url("layer"), temp.url("layer.tar")] {
            let commands: [[String]] = [
                ["inspect", "--json", "-j", "1", layer], ["inspect", "--json", layer], ["ls", "-R", layer],
                ["which", layer, "--", leaf], ["flatten", layer, "--to", temp.url("flat")],
                ["flatten", layer, "--to", temp.url("flat.tar")],
            ]
            for arguments in commands {
                let result = run(
                    builtExecutable("layermount"), arguments, environment: ["TMPDIR": scratch], timeout: 300)
                #expect(result.status == 0, "\(arguments): \(result.err.prefix(300))")
                #expect((try? FileManager.default.contentsOfDirectory(atPath: scratch)) == [], "\(arguments)")
                if arguments[0] == "inspect" && result.status == 0 {
                    let merged = try #require(try jsonObject(result.stdout)["merged"] as? [String: Any])
                    #expect(merged["entries"] as? Int == depth + 1)
                    #expect(merged["bytes"] as? Int == 4)
                }
            }
            let flat = layermount(["which", temp.url("flat"), "--", leaf])
            #expect(flat.status == 0 && flat.out.hasPrefix("\(leaf): layer 1\n"), "\(flat.err.prefix(300))")
            let archived = layermount(["inspect", "--json", temp.url("flat.tar")])
            #expect(archived.status == 0, "\(archived.err.prefix(300))")
            _ = shell("rm -rf \(shellQuote(temp.url("flat")))")
        }
    }
}
