import Foundation

/// A plain-text table: a header row, then rows; columns are padded to their widest cell, the
/// first `leftColumns` left-aligned and the rest right-aligned.
struct TextTable {
    var header: [String]
    var rows: [[String]] = []
    var leftColumns = 1
    /// Whether the last column is left-aligned too (free text).
    var lastLeft = false

    init(_ header: [String], leftColumns: Int = 1, lastLeft: Bool = false) {
        self.header = header
        self.leftColumns = leftColumns
        self.lastLeft = lastLeft
    }

    mutating func add(_ row: [String]) { rows.append(row) }

    var text: String {
        let all = [header] + rows
        let columns = all.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in all { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        var out = ""
        for (number, row) in all.enumerated() {
            var line = ""
            for index in 0..<columns {
                let cell = index < row.count ? row[index] : ""
                let pad = String(repeating: " ", count: widths[index] - cell.count)
                let left = index < leftColumns || (lastLeft && index == columns - 1)
                line += left ? cell + pad : pad + cell
                if index < columns - 1 { line += "  " }
            }
            while line.last == " " { line.removeLast() }
            out += line + "\n"
            if number == 0 { out += String(repeating: "-", count: widths.reduce(0, +) + 2 * (columns - 1)) + "\n" }
        }
        return out
    }
}

/// `12.3 ms`, `1.23 s`, `456 µs`.
func formatSeconds(_ seconds: Double?) -> String {
    guard let seconds else { return "-" }
    if seconds >= 10 { return String(format: "%.1f s", seconds) }
    if seconds >= 1 { return String(format: "%.2f s", seconds) }
    if seconds >= 0.1 { return String(format: "%.0f ms", seconds * 1000) }
    if seconds >= 0.01 { return String(format: "%.1f ms", seconds * 1000) }
    if seconds >= 0.001 { return String(format: "%.2f ms", seconds * 1000) }
    return String(format: "%.0f µs", seconds * 1e6)
}

/// `1.23x`.
func formatRatio(_ ratio: Double?) -> String {
    guard let ratio, ratio.isFinite else { return "-" }
    return ratio >= 100 ? String(format: "%.0fx", ratio) : String(format: "%.2fx", ratio)
}

/// `±3%`.
func formatSpread(_ spread: Double?) -> String {
    guard let spread else { return "" }
    return String(format: "±%.0f%%", spread * 100)
}

/// `1.5 GiB`, `12.0 MiB`, `900 B`.
func formatBytes(_ bytes: Int) -> String {
    let value = Double(bytes)
    if value >= 1_073_741_824 { return String(format: "%.2f GiB", value / 1_073_741_824) }
    if value >= 1_048_576 { return String(format: "%.1f MiB", value / 1_048_576) }
    if value >= 1024 { return String(format: "%.1f KiB", value / 1024) }
    return "\(bytes) B"
}

/// `123,456`.
func formatCount(_ count: Int) -> String {
    let digits = String(abs(count))
    var out = ""
    for (index, character) in digits.enumerated() {
        if index > 0 && (digits.count - index) % 3 == 0 { out.append(",") }
        out.append(character)
    }
    return (count < 0 ? "-" : "") + out
}

/// `%.0f` style with a unit.
func formatNumber(_ value: Double?, _ format: String = "%.0f") -> String {
    guard let value, value.isFinite else { return "-" }
    return String(format: format, value)
}

/// The 1-, 5- and 15-minute load averages and the number of CPUs.
func loadAverage() -> String {
    let text = readTextFile("/proc/loadavg") ?? ""
    let parts = text.split(separator: " ").prefix(3).joined(separator: " ")
    return "load average \(parts) on \(ProcessInfo.processInfo.activeProcessorCount) CPUs"
}

/// A warning line when the 1-minute load average exceeds the CPU count (other work competes
/// for the CPUs, so absolute times are inflated; ratios of interleaved samples hold better).
func loadWarning() -> String {
    let first = (readTextFile("/proc/loadavg") ?? "").split(separator: " ").first.flatMap { Double($0) } ?? 0
    let cpus = Double(ProcessInfo.processInfo.activeProcessorCount)
    guard first > cpus else { return "" }
    return String(
        format: "warning: load average %.1f on %.0f CPUs: other work competes for the CPUs; absolute times are "
            + "inflated and noisy (the interleaved ratios hold better); rerun when the machine is quiet\n",
        first, cpus)
}

/// Writes `text` to stdout (unbuffered).
func emit(_ text: String) { writeAll(STDOUT_FILENO, text) }

/// Writes `text` to stderr (unbuffered).
func emitError(_ text: String) { writeAll(STDERR_FILENO, text) }

private func writeAll(_ fd: CInt, _ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { return }
        bytes = bytes.dropFirst(count)
    }
}

/// Met / MISSED with the figure.
func verdict(_ met: Bool) -> String { met ? "met" : "MISSED" }
