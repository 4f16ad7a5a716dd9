import Foundation
import Glibc
import LayerCore
import TestSupport

/// Everything a round trip must reproduce about a tree, collected independently of the diff
/// engine (LayerCore's walker and SHA-256 only): per path the type, permission bits, owner,
/// size, content digest, symlink target, device number, xattrs and mtime (nanoseconds), plus the
/// hard-link groups.
struct TreeSnapshot: Equatable {
    struct Entry: Equatable {
        var type: FileType
        var permissions: UInt32
        var owner: String
        var size: Int64
        var digest: String
        var target: [UInt8]
        var device: UInt64
        var attributes: [ExtendedAttribute]
        var mtime: Timestamp
    }

    var entries: [String: Entry] = [:]
    /// Sets of paths sharing an inode (only groups of two or more).
    var linkGroups: Set<[String]> = []
    /// Compare mtimes of directories (the root included).
    var directoryTimes = true

    init(_ root: String, ignoringAttributes: (ExtendedAttribute) -> Bool = { _ in false }) throws {
        var groups: [FileIdentity: [String]] = [:]
        let walker = try TreeWalker(path: root)
        var entries: [String: Entry] = [:]
        try walker.walk { (visit) throws(PathError) -> TreeWalker.Decision in
            let status = visit.status
            var digest = ""
            var target: [UInt8] = []
            var attributes: [ExtendedAttribute] = []
            do {
                if let name = visit.name {
                    attributes = try visit.parent.extendedAttributes(of: name)
                    if status.type == .symlink { target = try visit.parent.readLink(name) }
                    if status.type == .regular {
                        let file = try visit.parent.open(name, flags: O_RDONLY)
                        digest = try TreeSnapshot.digest(file)
                    }
                } else {
                    attributes = try visit.parent.extendedAttributes()
                }
            } catch {
                throw PathError(path: visit.path.description, reason: "\(error)")
            }
            attributes.removeAll { $0.name == Array("security.selinux".utf8) || ignoringAttributes($0) }
            let key = visit.path.description
            entries[key] = Entry(
                type: status.type, permissions: status.permissions, owner: "\(status.userID):\(status.groupID)",
                size: status.type == .regular ? status.size : 0, digest: digest, target: target,
                device: status.type == .characterDevice || status.type == .blockDevice ? status.specialDevice : 0,
                attributes: attributes, mtime: status.modificationTime)
            if status.type != .directory && status.linkCount > 1 { groups[status.identity, default: []].append(key) }
            return .descend
        }
        self.entries = entries
        linkGroups = Set(groups.values.filter { $0.count > 1 }.map { $0.sorted() })
    }

    static func digest(_ file: FileDescriptor) throws -> String {
        let hasher = SHA256Hasher()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var offset: Int64 = 0
        while true {
            let count = try buffer.withUnsafeMutableBytes { (raw) throws(Errno) -> Int in
                try file.read(into: raw, at: offset)
            }
            if count == 0 { break }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            offset += Int64(count)
        }
        return hasher.finalize().hex
    }

    /// One line per difference with `other` (`MISSING`, `EXTRA`, `DIFF path field`), sorted.
    func differences(to other: TreeSnapshot) -> [String] {
        var out: [String] = []
        for (path, entry) in entries {
            guard let theirs = other.entries[path] else {
                out.append("MISSING \(path)")
                continue
            }
            if entry.type != theirs.type {
                out.append("DIFF \(path) type: \(entry.type) != \(theirs.type)")
                continue
            }
            if entry.permissions != theirs.permissions {
                out.append(
                    "DIFF \(path) mode: \(String(entry.permissions, radix: 8)) != \(String(theirs.permissions, radix: 8))"
                )
            }
            if entry.owner != theirs.owner { out.append("DIFF \(path) owner: \(entry.owner) != \(theirs.owner)") }
            if entry.size != theirs.size || entry.digest != theirs.digest { out.append("DIFF \(path) content") }
            if entry.target != theirs.target { out.append("DIFF \(path) target") }
            if entry.device != theirs.device { out.append("DIFF \(path) device") }
            if entry.attributes != theirs.attributes { out.append("DIFF \(path) xattrs") }
            if entry.type != .directory || directoryTimes {
                if entry.mtime != theirs.mtime {
                    out.append(
                        "DIFF \(path) mtime: \(entry.mtime.seconds).\(entry.mtime.nanoseconds) != \(theirs.mtime.seconds).\(theirs.mtime.nanoseconds)"
                    )
                }
            }
        }
        for path in other.entries.keys where entries[path] == nil { out.append("EXTRA \(path)") }
        if linkGroups != other.linkGroups {
            out.append(
                "DIFF hard-link groups: \(linkGroups.sorted { $0.description < $1.description }) != \(other.linkGroups.sorted { $0.description < $1.description })"
            )
        }
        return out.sorted()
    }
}

/// `cp -a` (type, mode, owner, ns mtimes, xattrs, hard links, devices preserved).
func copyTree(_ source: String, _ destination: String) {
    let result = shell("cp -a \(shellQuote(source)) \(shellQuote(destination))")
    precondition(result.status == 0, "cp -a failed: \(result.err)")
}

/// Whether the tests run as root (devices, chown, trusted.* and security.* xattrs).
var runningAsRoot: Bool { geteuid() == 0 }
