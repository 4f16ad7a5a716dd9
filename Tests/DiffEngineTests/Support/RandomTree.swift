import CLayerSys
import Foundation
import Glibc
import LayerCore
import TestSupport

/// A small seeded generator (SplitMix64): the same seed gives the same trees on every machine.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Builds random trees and applies random mutations with plain syscalls, for round trips:
/// every file type, hard links, xattrs (user.*, and security.capability / owners / devices as
/// root), setuid/setgid/sticky modes, nanosecond mtimes, odd names.
struct RandomTree {
    var random: SeededGenerator
    let root: String
    private(set) var files: [String] = []
    private(set) var directories: [String] = [""]
    private(set) var others: [String] = []
    private var counter = 0
    private let prefix: String

    /// A generator for the tree at `root`; new names start with `prefix`.
    init(seed: UInt64, root: String, prefix: String = "n") {
        random = SeededGenerator(seed: seed)
        self.root = root
        self.prefix = prefix
    }

    static let capability: [UInt8] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]

    private func full(_ path: String) -> String { path.isEmpty ? root : root + "/" + path }

    private mutating func name() -> String {
        counter += 1
        let odd = ["with space", "caf\u{e9}", "-dash", "#hash", "back\\slash", "new\nline", "%pct"]
        if Int.random(in: 0..<12, using: &random) == 0 {
            return odd[Int.random(in: 0..<odd.count, using: &random)] + "\(prefix)\(counter)"
        }
        return "\(prefix)\(counter)"
    }

    private mutating func content() -> [UInt8] {
        let size: Int
        switch Int.random(in: 0..<10, using: &random) {
        case 0: size = 0
        case 1...6: size = Int.random(in: 1..<600, using: &random)
        case 7...8: size = Int.random(in: 600..<20000, using: &random)
        default: size = Int.random(in: 20000..<300_000, using: &random)
        }
        var bytes = [UInt8](repeating: 0, count: size)
        let word = UInt8.random(in: 0...255, using: &random)
        for index in stride(from: 0, to: size, by: 97) { bytes[index] = word &+ UInt8(truncatingIfNeeded: index) }
        return bytes
    }

    private mutating func time() -> timespec {
        let seconds = Int.random(in: 1_500_000_000..<1_700_000_000, using: &random)
        let nanoseconds =
            Int.random(in: 0..<3, using: &random) == 0 ? 0 : Int.random(in: 0..<1_000_000_000, using: &random)
        return timespec(tv_sec: seconds, tv_nsec: nanoseconds)
    }

    private mutating func stamp(_ path: String) {
        var times = [time(), time()]
        times[0] = times[1]
        _ = utimensat(AT_FDCWD, full(path), &times, AT_SYMLINK_NOFOLLOW)
    }

    private mutating func attributes(_ path: String) {
        guard Int.random(in: 0..<6, using: &random) == 0 else { return }
        let value = (0..<Int.random(in: 0..<20, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
        _ = value.withUnsafeBytes {
            lsetxattr(full(path), "user.k\(Int.random(in: 0..<3, using: &random))", $0.baseAddress, $0.count, 0)
        }
    }

    private mutating func owner(_ path: String) {
        guard runningAsRoot, Int.random(in: 0..<4, using: &random) == 0 else { return }
        let ids: [UInt32] = [0, 1000, 12345]
        _ = lchown(full(path), ids[Int.random(in: 0..<3, using: &random)], ids[Int.random(in: 0..<3, using: &random)])
    }

    private mutating func write(_ path: String, _ bytes: [UInt8]) {
        let fd = open(full(path), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0o644)
        precondition(fd >= 0, "create \(path): \(Errno.current)")
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Glibc.write(fd, raw.baseAddress.map { $0 + done }, raw.count - done)
                precondition(n > 0)
                done += n
            }
        }
        close(fd)
    }

    private mutating func fileMode() -> mode_t {
        [0o644, 0o755, 0o600, 0o4755, 0o2755, 0o444, 0o640][Int.random(in: 0..<7, using: &random)]
    }

    /// Adds a random entry below a random directory.
    mutating func addEntry() {
        let parent = directories[Int.random(in: 0..<directories.count, using: &random)]
        let path = (parent.isEmpty ? "" : parent + "/") + name()
        var existing = stat()
        if lstat(full(path), &existing) == 0 { return }
        switch Int.random(in: 0..<20, using: &random) {
        case 0..<11:
            write(path, content())
            owner(path)
            chmod(full(path), fileMode())
            attributes(path)
            if runningAsRoot && Int.random(in: 0..<25, using: &random) == 0 {
                _ = RandomTree.capability.withUnsafeBytes {
                    lsetxattr(full(path), "security.capability", $0.baseAddress, $0.count, 0)
                }
            }
            stamp(path)
            files.append(path)
        case 11..<15:
            mkdir(full(path), 0o755)
            owner(path)
            chmod(full(path), [0o755, 0o700, 0o1777, 0o2775][Int.random(in: 0..<4, using: &random)])
            attributes(path)
            directories.append(path)
        case 15..<17:
            let targets = ["../x", "/etc/passwd", "dangling", ".", "n1/n2", String(repeating: "t", count: 150)]
            symlink(targets[Int.random(in: 0..<targets.count, using: &random)], full(path))
            owner(path)
            stamp(path)
            others.append(path)
        case 17:
            guard let existing = files.randomElement(using: &random) else { return }
            if link(full(existing), full(path)) == 0 { files.append(path) }
        case 18:
            mkfifo(full(path), 0o640)
            stamp(path)
            others.append(path)
        default:
            guard runningAsRoot else { return }
            let isChar = Bool.random(using: &random)
            let device = makeDevice(
                UInt32.random(in: 1..<300, using: &random), UInt32.random(in: 0..<300, using: &random))
            mknod(full(path), (isChar ? S_IFCHR : S_IFBLK) | 0o600, device)
            stamp(path)
            others.append(path)
        }
    }

    /// Builds a tree of about `count` entries, then stamps the directories (deepest first).
    mutating func build(entries count: Int) {
        mkdir(root, 0o755)
        for _ in 0..<count { addEntry() }
        stampDirectories()
    }

    mutating func stampDirectories() {
        for directory in directories.sorted(by: { $0.count > $1.count }) where Int.random(in: 0..<3, using: &random) > 0
        {
            stamp(directory)
        }
    }

    /// Re-reads the tree's paths (after a `cp -a` into `root`).
    mutating func rescan() {
        files = []
        directories = []
        others = []
        try? TreeWalker(path: root).walk { visit in
            let path =
                visit.path.isRoot
                ? "" : visit.path.components.map { String(decoding: $0.bytes, as: UTF8.self) }.joined(separator: "/")
            switch visit.status.type {
            case .regular: files.append(path)
            case .directory: directories.append(path)
            default: others.append(path)
            }
            return .descend
        }
    }

    /// Applies `count` random mutations of every kind; returns their descriptions.
    @discardableResult
    mutating func mutate(_ count: Int) -> [String] {
        var log: [String] = []
        for _ in 0..<count {
            let choice = Int.random(in: 0..<22, using: &random)
            let file = files.randomElement(using: &random)
            let directory = directories.filter { !$0.isEmpty }.randomElement(using: &random)
            switch choice {
            case 0, 1:
                guard let file else { continue }
                write(file, content())
                log.append("rewrite \(file)")
            case 2:
                guard let file, let size = try? fileSize(file), size > 0 else { continue }
                var status = stat()
                lstat(full(file), &status)
                let fd = open(full(file), O_WRONLY)
                var byte: UInt8 = 0xA5
                pwrite(fd, &byte, 1, off_t(Int64.random(in: 0..<size, using: &random)))
                close(fd)
                var times = [status.st_atim, status.st_mtim]
                utimensat(AT_FDCWD, full(file), &times, AT_SYMLINK_NOFOLLOW)
                log.append("sneaky \(file)")
            case 3:
                guard let file else { continue }
                chmod(full(file), fileMode())
                log.append("chmod \(file)")
            case 4:
                guard let file else { continue }
                owner(file)
                log.append("chown \(file)")
            case 5:
                guard let file else { continue }
                stamp(file)
                log.append("touch \(file)")
            case 6:
                guard let target = file ?? directory else { continue }
                if Bool.random(using: &random) {
                    attributes(target)
                    _ = lsetxattr(full(target), "user.set", "v", 1, 0)
                } else {
                    _ = lremovexattr(full(target), "user.k0")
                    _ = lremovexattr(full(target), "user.k1")
                }
                log.append("xattr \(target)")
            case 7, 8:
                guard let file else { continue }
                unlink(full(file))
                log.append("delete \(file)")
            case 9:
                guard let directory else { continue }
                _ = shell("rm -rf \(shellQuote(full(directory)))")
                log.append("rmtree \(directory)")
            case 10:
                guard let directory else { continue }
                _ = shell("find \(shellQuote(full(directory))) -mindepth 1 -delete")
                log.append("empty \(directory)")
            case 11:
                guard let file else { continue }
                let target = file + ".renamed"
                rename(full(file), full(target))
                log.append("rename \(file)")
            case 12:
                guard let directory else { continue }
                rename(full(directory), full(directory + ".moved"))
                log.append("rename dir \(directory)")
            case 13:
                guard let file else { continue }
                unlink(full(file))
                mkdir(full(file), 0o755)
                write(file + "/inside", content())
                log.append("file->dir \(file)")
            case 14:
                guard let directory else { continue }
                _ = shell("rm -rf \(shellQuote(full(directory)))")
                write(directory, content())
                log.append("dir->file \(directory)")
            case 15:
                guard let file else { continue }
                unlink(full(file))
                symlink("elsewhere", full(file))
                log.append("file->symlink \(file)")
            case 16, 17:
                addEntry()
                log.append("add")
            case 18:
                guard let file, let other = files.randomElement(using: &random), other != file else { continue }
                let path = other + ".link"
                link(full(file), full(path))
                log.append("link \(path) -> \(file)")
            case 19:
                guard let file else { continue }
                _ = shell(
                    "cp -p \(shellQuote(full(file))) \(shellQuote(full(file))).tmp && mv \(shellQuote(full(file))).tmp \(shellQuote(full(file)))"
                )
                log.append("break link \(file)")
            case 20:
                guard let directory else { continue }
                stamp(directory)
                log.append("touch dir \(directory)")
            default:
                let parent = directory ?? ""
                _ = shell(
                    "rm -rf \(shellQuote(full(parent)))/* 2>/dev/null; mkdir -p \(shellQuote(full(parent)))/again && echo x > \(shellQuote(full(parent)))/again/f"
                )
                log.append("recreate \(parent)")
            }
            rescan()
        }
        return log
    }

    private func fileSize(_ path: String) throws -> Int64 {
        var status = stat()
        guard lstat(full(path), &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { throw Errno.noEntry }
        return Int64(status.st_size)
    }

    private func makeDevice(_ major: UInt32, _ minor: UInt32) -> dev_t {
        let ma = UInt64(major)
        let mi = UInt64(minor)
        return dev_t((mi & 0xff) | ((ma & 0xfff) << 8) | ((mi & ~0xff) << 12) | ((ma & ~0xfff) << 32))
    }
}
