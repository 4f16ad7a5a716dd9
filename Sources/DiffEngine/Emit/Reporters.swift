import Glibc
import LayerCore

/// Receives the changes of a diff in path order, as they are decided.
protocol ChangeReporter: AnyObject {
    /// One change.
    func report(_ change: Change) throws(DiffError)
    /// The end of the run.
    func finish(_ summary: DiffSummary) throws(DiffError)
}

/// Buffered writes to a descriptor (standard output), flushed when full, on request, or after
/// every line when streaming.
final class OutputBuffer {
    private let descriptor: CInt
    private let streaming: Bool
    private var bytes: [UInt8] = []
    private let name: String

    /// A buffer over `descriptor` (named `name` in errors); `streaming` flushes every line.
    init(descriptor: CInt, name: String = "standard output", streaming: Bool = false) {
        self.descriptor = descriptor
        self.streaming = streaming
        self.name = name
        bytes.reserveCapacity(64 * 1024)
    }

    /// Appends a line (a newline is added).
    func line(_ text: String) throws(DiffError) {
        bytes.append(contentsOf: text.utf8)
        bytes.append(0x0A)
        if streaming || bytes.count >= 60 * 1024 { try flush() }
    }

    /// Writes what is buffered.
    func flush() throws(DiffError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                Glibc.write(descriptor, raw.baseAddress.map { $0 + done }, raw.count - done)
            }
            if n < 0 {
                let error = Errno.current
                if error == .interrupted { continue }
                bytes.removeAll(keepingCapacity: true)
                throw DiffError(path: name, "cannot write", error)
            }
            done += n
        }
        bytes.removeAll(keepingCapacity: true)
    }
}

/// `A path` / `C path` / `D path` lines, like `docker diff`.
final class TextReporter: ChangeReporter {
    private let output: OutputBuffer
    /// A reporter writing to `output`.
    init(output: OutputBuffer) { self.output = output }
    func report(_ change: Change) throws(DiffError) {
        try output.line("\(change.kind.letter) \(change.displayPath)")
    }
    func finish(_ summary: DiffSummary) throws(DiffError) { try output.flush() }
}

/// One JSON object per line, flushed as each change is decided, then a summary line.
final class JSONReporter: ChangeReporter {
    private let output: OutputBuffer
    /// Extra members for the summary line (the layer digests), set before ``finish(_:)``.
    var layer: [(String, String)] = []

    /// A reporter writing to `output`.
    init(output: OutputBuffer) { self.output = output }

    func report(_ change: Change) throws(DiffError) {
        var fields = [
            "\"kind\":\(JSONReporter.quote(change.kind.rawValue))",
            "\"path\":\(JSONReporter.quote(change.displayPath))",
            "\"type\":\(JSONReporter.quote(JSONReporter.typeName(change.type)))",
        ]
        if let size = change.size { fields.append("\"size\":\(size)") }
        if change.kind == .changed {
            fields.append("\"changed\":[" + change.aspects.names.map(JSONReporter.quote).joined(separator: ",") + "]")
        }
        try output.line("{" + fields.joined(separator: ",") + "}")
    }

    func finish(_ summary: DiffSummary) throws(DiffError) {
        var fields: [String] = []
        for kind in ChangeKind.allCases {
            fields.append("\"\(kind.rawValue)\":\(summary.counts[kind] ?? 0)")
        }
        fields.append("\"bytes\":\((summary.bytes[.added] ?? 0) + (summary.bytes[.changed] ?? 0))")
        if !summary.skipped.isEmpty {
            fields.append("\"skipped\":[" + summary.skipped.map(JSONReporter.quote).joined(separator: ",") + "]")
        }
        for (key, value) in layer { fields.append("\(JSONReporter.quote(key)):\(value)") }
        try output.line("{\"summary\":{" + fields.joined(separator: ",") + "}}")
        try output.flush()
    }

    /// The JSON name of a file type.
    static func typeName(_ type: FileType) -> String {
        switch type {
        case .regular: "file"
        case .directory: "directory"
        case .symlink: "symlink"
        case .characterDevice: "char-device"
        case .blockDevice: "block-device"
        case .fifo: "fifo"
        case .socket: "socket"
        case .unknown: "unknown"
        }
    }

    /// A JSON string literal.
    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 {
                    out += "\\u00" + String(scalar.value, radix: 16).leftPadded(to: 2)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// `--stat`: counts and bytes per kind, at the end.
final class StatReporter: ChangeReporter {
    private let output: OutputBuffer
    /// Lines about the layer written, set before ``finish(_:)``.
    var layerLines: [String] = []

    /// A reporter writing to `output`.
    init(output: OutputBuffer) { self.output = output }
    func report(_ change: Change) throws(DiffError) {}

    func finish(_ summary: DiffSummary) throws(DiffError) {
        for kind in ChangeKind.allCases {
            let count = summary.counts[kind] ?? 0
            var line = "\(kind.rawValue):".padding(9) + "\(count)".leftAligned(8) + (count == 1 ? " entry" : " entries")
            if kind != .deleted { line += ", " + StatReporter.bytes(summary.bytes[kind] ?? 0) }
            try output.line(line)
        }
        try output.line("total:".padding(9) + "\(summary.changeCount)".leftAligned(8) + " changes")
        if summary.layerEntries > 0 || !layerLines.isEmpty {
            try output.line(
                "layer:".padding(9) + "\(summary.layerEntries)".leftAligned(8)
                    + " entries (\(summary.whiteouts) whiteouts, \(summary.opaqueMarkers) opaque), "
                    + StatReporter.bytes(summary.layerContentBytes) + " of content")
        }
        for line in layerLines { try output.line(line) }
        try output.flush()
    }

    /// `N bytes (1.2 MiB)`.
    static func bytes(_ count: Int64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = -1
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit < 0 { return "\(count) bytes" }
        let rounded = (value * 10).rounded() / 10
        return "\(count) bytes (\(rounded) \(units[unit]))"
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
    fileprivate func leftAligned(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
