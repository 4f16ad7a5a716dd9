/// A small streaming JSON writer with ordered keys, for the `--json` output of the inspect
/// commands (one schema, documented in README.md).
///
/// Values are written as they come: objects and arrays are opened and closed explicitly, commas
/// are placed automatically. File names are bytes: they are written as their display form (see
/// ``LayerCore/escapeForDisplay(_:)``), which is valid UTF-8 and escapes invalid bytes, control
/// characters and backslashes as `\xHH`, so every name maps to one string and back.
public struct JSONWriter {
    /// The text written so far.
    public private(set) var text = ""
    private var needsComma: [Bool] = [false]
    private var afterKey = false
    private let pretty: Bool

    /// A writer; `pretty` indents with two spaces per level.
    public init(pretty: Bool = true) { self.pretty = pretty }

    private mutating func beginValue() {
        if afterKey {
            afterKey = false
            return
        }
        if needsComma[needsComma.count - 1] { text += "," }
        if pretty && needsComma.count > 1 { newline() }
        needsComma[needsComma.count - 1] = true
    }

    private mutating func newline() {
        text += "\n"
        text += String(repeating: "  ", count: needsComma.count - 1)
    }

    /// Opens an object (`{`).
    public mutating func beginObject() {
        beginValue()
        text += "{"
        needsComma.append(false)
    }

    /// Closes the innermost object (`}`).
    public mutating func endObject() { close("}") }

    /// Opens an array (`[`).
    public mutating func beginArray() {
        beginValue()
        text += "["
        needsComma.append(false)
    }

    /// Closes the innermost array (`]`).
    public mutating func endArray() { close("]") }

    private mutating func close(_ bracket: String) {
        let hadItems = needsComma.removeLast()
        if pretty && hadItems { newline() }
        text += bracket
    }

    /// Writes a key of the current object; the next value belongs to it.
    public mutating func key(_ name: String) {
        beginValue()
        Self.appendString(name, to: &text)
        text += pretty ? ": " : ":"
        afterKey = true
    }

    /// Writes a string value.
    public mutating func value(_ string: String) {
        beginValue()
        Self.appendString(string, to: &text)
    }

    /// Writes an integer value.
    public mutating func value<I: BinaryInteger>(_ number: I) {
        beginValue()
        text += String(number)
    }

    /// Writes a number with up to six decimals.
    public mutating func value(_ number: Double) {
        beginValue()
        guard number.isFinite else {
            text += "null"
            return
        }
        let scaled = (number * 1_000_000).rounded()
        var digits = String(Int64(scaled) / 1_000_000) + "."
        let fraction = String(abs(Int64(scaled) % 1_000_000))
        digits += String(repeating: "0", count: 6 - fraction.count) + fraction
        if number < 0 && Int64(scaled) / 1_000_000 == 0 { digits = "-" + digits }
        text += digits
    }

    /// Writes a boolean value.
    public mutating func value(_ flag: Bool) {
        beginValue()
        text += flag ? "true" : "false"
    }

    /// Writes `null`.
    public mutating func null() {
        beginValue()
        text += "null"
    }

    /// Writes `key: value` for a string.
    public mutating func field(_ name: String, _ string: String) {
        key(name)
        value(string)
    }

    /// Writes `key: value` for an integer.
    public mutating func field<I: BinaryInteger>(_ name: String, _ number: I) {
        key(name)
        value(number)
    }

    /// Writes `key: value` for a boolean.
    public mutating func field(_ name: String, _ flag: Bool) {
        key(name)
        value(flag)
    }

    /// Writes `key: value` for a number, or `null` when `number` is nil.
    public mutating func field(_ name: String, _ number: Double?) {
        key(name)
        if let number { value(number) } else { null() }
    }

    /// Writes `key: value` for an optional string, or `null`.
    public mutating func field(_ name: String, _ string: String?) {
        key(name)
        if let string { value(string) } else { null() }
    }

    /// Takes the text written so far, leaving the writer empty (for streaming large outputs).
    public mutating func takeText() -> String {
        defer { text = "" }
        return text
    }

    /// Appends `string` as a JSON string literal (quotes, escapes).
    public static func appendString(_ string: String, to out: inout String) {
        out += "\""
        var needsEscaping = false
        for unit in string.utf8 where unit < 0x20 || unit == 0x22 || unit == 0x5C {
            needsEscaping = true
            break
        }
        if !needsEscaping {
            out += string
            out += "\""
            return
        }
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}
