import Glibc
import LayerCore

/// How entries are printed by `which` and `ls`: `ls -l`-style text and the shared JSON entry
/// object.
enum EntryFormat {
    /// `drwxr-xr-x`, with `s`/`S`/`t`/`T` for setuid, setgid and sticky.
    static func modeString(_ status: FileStatus) -> String {
        var text = String(status.type == .regular ? "-" : status.type.letter)
        let bits = status.permissions
        let names: [Character] = ["r", "w", "x"]
        for group in 0..<3 {
            let shift = UInt32(6 - group * 3)
            for position in 0..<3 {
                let set = bits & (UInt32(1) << (shift + UInt32(2 - position))) != 0
                var letter: Character = set ? names[position] : "-"
                if position == 2 {
                    let special: UInt32 = group == 0 ? 0o4000 : group == 1 ? 0o2000 : 0o1000
                    if bits & special != 0 {
                        let mark: Character = group == 2 ? "t" : "s"
                        letter = set ? mark : Character(mark.uppercased())
                    }
                }
                text.append(letter)
            }
        }
        return text
    }

    /// The permission bits in octal, four digits (`0755`).
    static func octal(_ status: FileStatus) -> String {
        let digits = String(status.permissions, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// `2023-03-13 10:13` in UTC.
    static func date(_ time: Timestamp) -> String {
        var seconds = time_t(time.seconds)
        var broken = tm()
        guard gmtime_r(&seconds, &broken) != nil else { return "?" }
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M", &broken)
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The size column: bytes, or `major, minor` for a device.
    static func sizeText(_ status: FileStatus) -> String {
        switch status.type {
        case .characterDevice, .blockDevice: "\(status.deviceMajor), \(status.deviceMinor)"
        default: String(status.size)
        }
    }

    /// The type word used in JSON (`file`, `directory`, `symlink`, `fifo`, `socket`,
    /// `char-device`, `block-device`).
    static func typeWord(_ type: FileType) -> String {
        switch type {
        case .regular: "file"
        case .directory: "directory"
        case .symlink: "symlink"
        case .fifo: "fifo"
        case .socket: "socket"
        case .characterDevice: "char-device"
        case .blockDevice: "block-device"
        case .unknown: "unknown"
        }
    }

    /// `L2`: the short layer label of text listings (1-based, bottom first).
    static func layerLabel(_ layer: LayerIndex) -> String { "L\(layer.rawValue + 1)" }

    /// Writes the metadata fields of the shared entry object.
    static func writeMetadata(
        _ status: FileStatus, target: [UInt8]?, hash: ContentHash?, to json: inout JSONWriter
    ) {
        json.field("type", typeWord(status.type))
        json.field("mode", octal(status))
        json.field("uid", status.userID)
        json.field("gid", status.groupID)
        json.field("size", status.size)
        json.field("nlink", status.linkCount)
        json.field("mtime", status.modificationTime.seconds)
        json.field("mtime_nsec", status.modificationTime.nanoseconds)
        if status.type == .characterDevice || status.type == .blockDevice {
            json.field("rdev", "\(status.deviceMajor):\(status.deviceMinor)")
        }
        if let target { json.field("target", escapeForDisplay(target)) }
        if let hash { json.field("xxh3_128", hash.description) }
    }
}
