import Foundation
import Glibc
import LayerCore
import Synchronization
import TestSupport
import Testing

@testable import OverlayFS

/// Mount behaviour the shared conformance harness does not cover.
@Suite("Mount semantics beyond the conformance cases", .tags(.mount), .serialized)
struct MountSemanticsTests {
    @Test func layerAttributeNamesTheProvidingLayerAndIsNotListed() throws {
        let stack = try MountedStack([
            [.file("low", "1"), .dir("d"), .xattr("low", name: "user.keep", value: "v")],
            [
                .file("top", "2"), .dir("d"), .symlink("link", target: "low"), .file("own", "3"),
                .xattr("own", name: "user.layermount.layer", value: "stored"),
            ],
        ])
        defer { stack.unmount() }
        // A file that really has the attribute shows its value, as through the kernel overlay.
        let own = shell("getfattr --only-values -h -n user.layermount.layer \(shellQuote(stack.path("own")))")
        #expect(own.status == 0 && own.out == "stored", "\(own.out) \(own.err)")
        let ownList = shell("getfattr -h -d -m - \(shellQuote(stack.path("own")))")
        #expect(ownList.out.contains("user.layermount.layer=\"stored\""), "\(ownList.out)")
        let get = shell("getfattr --only-values -h -n user.layermount.layer \(shellQuote(stack.path("low")))")
        #expect(get.status == 0 && get.out == "1:\(stack.layers[0])", "\(get.out) \(get.err)")
        for (name, layer) in [("top", 1), ("d", 1), ("", 1)] {
            let value = shell("getfattr --only-values -h -n user.layermount.layer \(shellQuote(stack.path(name)))")
            #expect(value.out == "\(layer + 1):\(stack.layers[layer])", "\(name): \(value.out) \(value.err)")
        }
        // The kernel refuses user.* on symlinks and devices; trusted.* reaches every type.
        for (name, layer) in [("link", 1), ("low", 0)] {
            let value = shell("getfattr --only-values -h -n trusted.layermount.layer \(shellQuote(stack.path(name)))")
            #expect(value.out == "\(layer + 1):\(stack.layers[layer])", "\(name): \(value.out) \(value.err)")
        }
        let list = shell("getfattr -h -d -m - \(shellQuote(stack.path("low")))")
        #expect(list.out.contains("user.keep=\"v\""))
        #expect(!list.out.contains("user.layermount"), "the layer attribute is not listed: \(list.out)")
        let write = shell("setfattr -n user.layermount.layer -v x \(shellQuote(stack.path("low")))")
        #expect(write.status != 0 && write.err.contains("Read-only file system"))
    }

    @Test func hundredThousandEntriesListOnceWithStableOffsets() throws {
        let stack = try MountedStack([[.dir("big")], [.dir("big")]])
        defer { stack.unmount() }
        // populate the layers behind the mount's back before anything was looked up
        let script = """
            import os, sys
            low, top = sys.argv[1], sys.argv[2]
            for i in range(100000):
                open(os.path.join(low, "big", "e%d" % i), "w").close()
            for i in range(0, 100000, 10):
                os.mknod(os.path.join(top, "big", "e%d" % i), 0o20000, 0)  # overlay whiteout
            for i in range(1000):
                open(os.path.join(top, "big", "n%d" % i), "w").close()
            """
        #expect(run("/usr/bin/python3", ["-c", script, stack.layers[0], stack.layers[1]], timeout: 300).status == 0)
        // getdents64 with a small buffer (many continuations at offsets), twice, then a seek
        // back into the middle with telldir/seekdir semantics (lseek on the directory).
        let check = """
            import os, sys
            d = sys.argv[1]
            def listing():
                fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
                names = []
                with os.scandir(fd) as it:
                    for e in it:
                        names.append(e.name)
                os.close(fd)
                return names
            a = listing(); b = listing()
            assert a == b, "two listings differ"
            assert len(a) == len(set(a)) == 90000 + 1000, (len(a), len(set(a)))
            assert "e0" not in a and "e1" in a and "n999" in a
            print("ok", len(a))
            """
        let result = run("/usr/bin/python3", ["-c", check, stack.path("big")], timeout: 300)
        #expect(result.status == 0 && result.out.hasPrefix("ok 91000"), "\(result.out) \(result.err)")
        let ls = shell("ls -f \(shellQuote(stack.path("big"))) | wc -l")
        #expect(ls.out.trimmingCharacters(in: .whitespacesAndNewlines) == "91002")
    }

    @Test func inodeNumbersSurviveForgets() throws {
        var steps: [LayerStep] = []
        for index in 0..<50 { steps.append(.file("d/f\(index)", "\(index)")) }
        let stack = try MountedStack([steps, [.file("d/top", "t"), .hardlink("d/top2", existing: "d/top")]])
        defer { stack.unmount() }
        func inodes() -> [String: UInt64] {
            var result: [String: UInt64] = [:]
            for name in (names(stack.path("d")) ?? []) {
                if case .success(let status) = lstatus(stack.path("d/" + name)) { result[name] = status.inode }
            }
            return result
        }
        let before = inodes()
        #expect(before.count == 52)
        #expect(Set(before.values).count == 51, "distinct files, one hard-link pair")
        // Make the kernel forget: drop dentries and inodes, so later stats are fresh lookups.
        sync()
        _ = shell("echo 2 > /proc/sys/vm/drop_caches")
        #expect(inodes() == before)
    }

    @Test func pathsLongerThanPathMaxWork() throws {
        // 30 levels of 200-byte names: about 6 KB, beyond PATH_MAX (4096).
        let component = String(repeating: "p", count: 200)
        let stack = try MountedStack([[.dir("root")], [.dir("root")]])
        defer { stack.unmount() }
        var fd = open(stack.layers[0] + "/root", O_RDONLY | O_DIRECTORY)
        for _ in 0..<30 {
            #expect(mkdirat(fd, component, 0o755) == 0)
            let next = openat(fd, component, O_RDONLY | O_DIRECTORY)
            close(fd)
            fd = next
        }
        let file = openat(fd, "leaf", O_WRONLY | O_CREAT, 0o644)
        _ = "deep".withCString { write(file, $0, 4) }
        close(file)
        close(fd)
        // Walk down the mount one name at a time.
        var walk = open(stack.path("root"), O_RDONLY | O_DIRECTORY)
        for level in 0..<30 {
            let next = openat(walk, component, O_RDONLY | O_DIRECTORY)
            #expect(next >= 0, "level \(level): \(Errno.current)")
            close(walk)
            walk = next
        }
        let leaf = openat(walk, "leaf", O_RDONLY)
        var buffer = [UInt8](repeating: 0, count: 16)
        let count = read(leaf, &buffer, 16)
        #expect(count == 4 && String(decoding: buffer[0..<4], as: UTF8.self) == "deep")
        close(leaf)
        close(walk)
    }

    @Test func layerChangedUnderneathGivesErrorsNotACrash() throws {
        let stack = try MountedStack([[.file("d/f", "old"), .file("g", "g"), .dir("e/sub")], [.dir("x")]])
        defer { stack.unmount() }
        #expect(contents(stack.path("d/f")) == "old")
        #expect(names(stack.path("e")) == ["sub"])
        LayerBuilder.apply([.remove("d"), .remove("e"), .file("e", "a file now")], in: stack.layers[0])
        // What the kernel or the daemon cached may still answer (a directory removed while open
        // lists empty); the rest fails with an errno. Never a crash or a hang.
        let sub = shell("ls \(shellQuote(stack.path("e/sub"))) \(shellQuote(stack.path("d/f")))", timeout: 30)
        #expect(sub.status != 137, "no hang")
        #expect(shell("cat \(shellQuote(stack.path("d/f")))", timeout: 30).status != 137)
        #expect(contents(stack.path("g")) == "g", "the daemon still serves")
        #expect(MountedStack.isMounted(stack.mountPoint))
        #expect(layermountProcesses(naming: stack.mountPoint).count == 1)
    }

    @Test func parallelReadersSeeOneConsistentTree() throws {
        var steps: [LayerStep] = []
        for index in 0..<400 {
            steps.append(.file("t\(index % 7)/f\(index)", String(repeating: "x", count: index * 13)))
        }
        let stack = try MountedStack([steps, [.whiteout("t3", .overlay), .file("t1/new", "n")]])
        defer { stack.unmount() }
        // Six processes walk and read the whole tree at once (threads of this process start them;
        // a shell's `wait` cannot be used: the test runner's children inherit a blocked SIGCHLD).
        let command =
            "cd \(shellQuote(stack.mountPoint)) && find . -printf '%p %s %i\\n' | sort | sha256sum && "
            + "tar -cf - . | sha256sum"
        let outputs = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 6) { _ in
            let result = shell(command, timeout: 120)
            outputs.withLock { $0.append(result.status == 0 ? result.out : "failed: \(result.err)") }
        }
        let distinct = Set(outputs.withLock { $0 })
        #expect(distinct.count == 1, "\(distinct)")
        #expect(distinct.first?.split(separator: "\n").count == 2)
    }
}

/// Layers on different file systems: inode numbers stay distinct and `d_ino` equals `st_ino`.
@Suite("Layers on several file systems", .tags(.mount), .serialized)
struct MultipleDeviceTests {
    @Test func numberingKeepsDevicesApart() {
        let numbering = InodeNumbering(devices: [7, 9])
        #expect(numbering.number(for: FileIdentity(device: 7, inode: 12)) == 12, "the top layer's device: real numbers")
        let other = numbering.number(for: FileIdentity(device: 9, inode: 12))
        #expect(other == (1 << 56) | 12)
        let unseen = numbering.number(for: FileIdentity(device: 3, inode: 12))
        #expect(unseen == (2 << 56) | 12)
        let huge = numbering.number(for: FileIdentity(device: 7, inode: 1 << 60))
        #expect(huge >> 56 == 255, "numbers that do not fit are folded into index 255")
        #expect(numbering.number(for: FileIdentity(device: 9, inode: 12)) == other, "stable")
    }

    @Test func tmpfsAndDiskLayersMount() throws {
        guard let shm = try? FileManager.default.attributesOfFileSystem(forPath: "/dev/shm"), !shm.isEmpty else {
            return
        }
        var template = Array("/dev/shm/layermount-test.XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> Bool in
            guard let base = buffer.baseAddress else { return false }
            return mkdtemp(base) != nil
        }
        guard made else { return }
        let upper = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { _ = shell("rm -rf \(shellQuote(upper))") }
        LayerBuilder.apply([.file("only-top", "t"), .file("d/top", "t"), .file("same", "top")], in: upper)
        let lower = TemporaryDirectory()
        LayerBuilder.apply([.file("only-low", "l"), .file("d/low", "l"), .file("same", "low")], in: lower.path)
        let stack = try MountedStack(existing: [lower.path, upper])
        defer { stack.unmount() }
        #expect(contents(stack.path("same")) == "top")
        for directory in ["", "d"] {
            guard let stream = opendir(stack.path(directory)) else {
                Issue.record("opendir \(directory)")
                continue
            }
            var inodes: [UInt64] = []
            while let entry = readdir(stream) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                guard case .success(let status) = lstatus(stack.path(directory.isEmpty ? name : directory + "/" + name))
                else { continue }
                #expect(UInt64(entry.pointee.d_ino) == status.inode, "\(directory)/\(name): d_ino == st_ino")
                inodes.append(status.inode)
            }
            closedir(stream)
            #expect(Set(inodes).count == inodes.count, "distinct files, distinct numbers: \(inodes)")
        }
    }
}
