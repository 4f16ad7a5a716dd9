import Glibc
import LayerCore

/// The `layermount` subcommands that read a stack without mounting it: `inspect`, `which`, `ls`
/// and `flatten`. `main.swift` calls ``handles(_:)`` on its arguments and, when true, exits with
/// ``run(arguments:)``; everything else (the mount) stays with the mount's parser.
public enum InspectCommand {
    /// The subcommands, with their one-line help, for the top-level `SUBCOMMANDS:` section.
    public static let subcommands: [(String, String)] = [
        ("inspect", "Show what each layer adds, hides and wastes, without mounting."),
        ("which", "Show which layer provides a path and every version it shadows."),
        ("ls", "List a merged directory with each entry's layer."),
        ("flatten", "Write the merged tree as a plain directory or a layer tarball."),
    ]

    /// Whether `arguments` (without the program name) name one of these subcommands, directly or
    /// as `help <subcommand>`.
    public static func handles(_ arguments: [String]) -> Bool {
        guard let first = arguments.first else { return false }
        if subcommands.contains(where: { $0.0 == first }) { return true }
        if first == "help", arguments.count >= 2 { return subcommands.contains { $0.0 == arguments[1] } }
        return false
    }

    /// The process's arguments, without the program name, as the bytes the shell passed
    /// (`CommandLine.arguments` replaces bytes that are not UTF-8 with U+FFFD).
    public static func processArguments() -> [[UInt8]] { ProcessArguments.raw() }

    /// The command-line entry point for `main.swift`: installs the signal handling of
    /// ``Interruption`` (call it before any other thread starts), raises the open-file limit and
    /// runs the subcommand named by the process's arguments.
    ///
    /// - Returns: the exit status (see ``run(rawArguments:)``).
    public static func main() -> Int32 {
        Interruption.shared.install()
        _ = FileDescriptor.raiseOpenFileLimit()
        return run(rawArguments: processArguments())
    }

    /// Runs a subcommand on string arguments (see ``run(rawArguments:)``).
    public static func run(arguments: [String]) -> Int32 {
        run(rawArguments: arguments.map { Array($0.utf8) })
    }

    /// Runs a subcommand. Data goes to stdout, diagnostics to stderr.
    ///
    /// - Parameter rawArguments: the arguments without the program name, starting with the
    ///   subcommand (or `help`), as bytes: paths are used exactly as given.
    /// - Returns: the exit status: 0 success, 1 runtime failure (`Error: <path>: <reason>`), 64
    ///   usage error, 128 + the signal when SIGINT, SIGTERM or SIGHUP stopped it (130, 143,
    ///   129); `which` also returns 1 when a path is not in the merged tree.
    public static func run(rawArguments: [[UInt8]]) -> Int32 {
        let (arguments, table) = Invocation.encode(rawArguments)
        guard var name = arguments.first else { return ExitCode.usage }
        var rest = Array(arguments.dropFirst())
        if name == "help", let sub = rest.first {
            name = sub
            rest = ["--help"]
        }
        let output = OutputBuffer.standardOutput()
        let errors = OutputBuffer.standardError()
        defer {
            output.flush()
            errors.flush()
        }
        let command: any Subcommand.Type
        switch name {
        case "inspect": command = InspectSubcommand.self
        case "which": command = WhichSubcommand.self
        case "ls": command = ListSubcommand.self
        case "flatten": command = FlattenSubcommand.self
        default:
            errors.write("Error: Unknown subcommand '\(escapeForDisplay(Array(name.utf8)))'\n")
            return ExitCode.usage
        }
        let parser = CommandLineParser(command.description)
        do {
            let parsed = try parser.parse(rest)
            if parsed.wantsHelp {
                output.write(parser.helpText)
                return ExitCode.success
            }
            let status = try command.run(Invocation(parsed: parsed, table: table), output: output, errors: errors)
            if let signal = Interruption.shared.signal, status != ExitCode.success { return 128 + signal }
            return status
        } catch let error as CommandLineParser.UsageError {
            output.flush()
            errors.write(parser.usageErrorText(error))
            return ExitCode.usage
        } catch {
            output.flush()
            if let signal = Interruption.shared.signal { return 128 + signal }
            if let error = error as? PathError {
                errors.write("Error: \(error.description)\n")
            } else {
                errors.write("Error: \(error)\n")
            }
            return ExitCode.failure
        }
    }

    /// The `--whiteout-format` option shared by the subcommands.
    static let whiteoutFormatOption = CommandLineParser.Option(
        "whiteout-format", value: "<format>",
        help: "Whiteout markers of directory layers: auto (both), oci (.wh. files) or overlay (char 0/0 devices, "
            + "opaque xattrs). Tarball layers always use OCI markers.", default: "auto")

    /// The `--json` flag shared by the subcommands.
    static let jsonOption = CommandLineParser.Option(
        "json", help: "Print machine-readable JSON (the schema is in README.md).")

    /// The layers argument help.
    static let layersArgument = (
        "<layer> ...",
        "The layers, bottom (base) first: layer directories (either whiteout format) or OCI layer tarballs "
            + "(.tar, .tar.gz, .tar.zst, any compression)."
    )

    /// Decodes the `\xHH` escapes of ``LayerCore/escapeForDisplay(_:)``; other backslashes stay.
    static func unescapeDisplay(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var index = 0
        func hex(_ byte: UInt8) -> UInt8? {
            switch byte {
            case 0x30...0x39: byte - 0x30
            case 0x61...0x66: byte - 0x61 + 10
            case 0x41...0x46: byte - 0x41 + 10
            default: nil
            }
        }
        while index < bytes.count {
            if bytes[index] == 0x5C, index + 3 < bytes.count, bytes[index + 1] == 0x78,
                let high = hex(bytes[index + 2]), let low = hex(bytes[index + 3])
            {
                out.append(high << 4 | low)
                index += 4
                continue
            }
            out.append(bytes[index])
            index += 1
        }
        return out
    }
}

/// A parsed command line whose values keep the bytes the shell passed.
///
/// ``CommandLineParser`` works on strings, so an argument that is not UTF-8 is handed to it as a
/// placeholder (a NUL, which no argument can hold, and its position) and mapped back to its bytes
/// afterwards; an `--option=VALUE` argument keeps its option name.
struct Invocation {
    /// What the parser made of the arguments.
    let parsed: CommandLineParser.Parsed
    /// Placeholder to bytes.
    let table: [String: [UInt8]]

    /// The arguments for the parser and the placeholder table.
    static func encode(_ arguments: [[UInt8]]) -> ([String], [String: [UInt8]]) {
        var strings: [String] = []
        var table: [String: [UInt8]] = [:]
        var afterSeparator = false
        for (index, bytes) in arguments.enumerated() {
            if let text = String(validating: bytes, as: UTF8.self) {
                strings.append(text)
                if text == "--" { afterSeparator = true }
                continue
            }
            let placeholder = "\u{0}\(index)"
            if !afterSeparator && bytes.first == 0x2D {
                if bytes.starts(with: [0x2D, 0x2D]), let equals = bytes.firstIndex(of: 0x3D),
                    let option = String(validating: bytes[..<equals], as: UTF8.self)
                {
                    table[placeholder] = Array(bytes[(equals + 1)...])
                    strings.append(option + "=" + placeholder)
                } else {
                    // Not an option of ours whatever it is; the parser's error shows it.
                    strings.append(escapeForDisplay(bytes))
                }
                continue
            }
            table[placeholder] = bytes
            strings.append(placeholder)
        }
        return (strings, table)
    }

    /// The bytes of a parsed value.
    func bytes(_ value: String) -> [UInt8] {
        if value.hasPrefix("\u{0}"), let bytes = table[value] { return bytes }
        return Array(value.utf8)
    }

    /// A parsed value for messages (``LayerCore/escapeForDisplay(_:)``).
    func display(_ value: String) -> String { escapeForDisplay(bytes(value)) }

    /// Whether flag `name` was given.
    func flag(_ name: String) -> Bool { parsed.flag(name) }

    /// The last value of option `name`, as text (for options whose values are words or numbers).
    func value(_ name: String) -> String? { parsed.value(name).map(display) }

    /// The value of option `name` as a path; a usage error when it is given more than once.
    func path(_ name: String, valueName: String) throws(CommandLineParser.UsageError) -> CommandLinePath? {
        let values = parsed.all(name)
        if values.count > 1 {
            throw CommandLineParser.UsageError(
                "'--\(name) \(valueName)' is given \(values.count) times ("
                    + values.map { "'\(display($0))'" }.joined(separator: ", ") + "); give it once")
        }
        return values.first.map { CommandLinePath(bytes: bytes($0)) }
    }

    /// The arguments after `--`, nil without `--`.
    var afterSeparator: [String]? { parsed.afterSeparator }

    /// The `--whiteout-format` value.
    func whiteoutFormat() throws(CommandLineParser.UsageError) -> WhiteoutFormat {
        guard let text = value("whiteout-format") else { return .auto }
        guard let format = WhiteoutFormat(rawValue: text) else {
            throw CommandLineParser.UsageError(
                "The value '\(text)' is invalid for '--whiteout-format <format>' (auto, oci or overlay)")
        }
        return format
    }

    /// The layer paths (the positional arguments), as bytes.
    func layers() throws(CommandLineParser.UsageError) -> [CommandLinePath] {
        guard !parsed.positionals.isEmpty else {
            throw CommandLineParser.UsageError("Missing expected argument '<layer> ...'")
        }
        return parsed.positionals.map { CommandLinePath(bytes: bytes($0)) }
    }

    /// The paths of the merged tree after `--`, as bytes, with the `\xHH` escapes the commands
    /// print decoded, so a path copied from their output names the same file.
    func mergedPaths() -> [[UInt8]] {
        (parsed.afterSeparator ?? []).map { InspectCommand.unescapeDisplay(bytes($0)) }
    }
}

/// One subcommand: its help and its body.
protocol Subcommand {
    /// The command's help and options.
    static var description: CommandLineParser.Command { get }
    /// Runs it on parsed arguments.
    static func run(_ invocation: Invocation, output: OutputBuffer, errors: OutputBuffer) throws -> Int32
}

/// Formats a byte count for people: `512 B`, `1.5 KiB`, `189.7 MiB`.
func humanBytes(_ bytes: Int64) -> String {
    if bytes < 1024 && bytes > -1024 { return "\(bytes) B" }
    let units = ["KiB", "MiB", "GiB", "TiB", "PiB"]
    var value = Double(bytes) / 1024
    var unit = 0
    while abs(value) >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return fixed(value, decimals: 1) + " " + units[unit]
}

/// `value` with `decimals` digits after the point.
func fixed(_ value: Double, decimals: Int) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = Int64((abs(value) * scale).rounded())
    let whole = scaled / Int64(scale)
    var text = String(whole)
    if decimals > 0 {
        let fraction = String(scaled % Int64(scale))
        text += "." + String(repeating: "0", count: decimals - fraction.count) + fraction
    }
    return value < 0 && scaled != 0 ? "-" + text : text
}

/// Pads `text` on the left to `width` characters.
func padLeft(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
}

/// Pads `text` on the right to `width` characters.
func padRight(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

extension InspectedStack.Kind {
    /// `directory`, or `tar` / `tar+gzip` / `tar+zstd`.
    public var label: String {
        switch self {
        case .directory: "directory"
        case .archive(let compression): compression == "none" ? "tar" : "tar+\(compression)"
        }
    }
}

extension JSONWriter {
    /// Writes the `layers` array every command's JSON starts with.
    mutating func layers(_ stack: InspectedStack) {
        key("layers")
        beginArray()
        for layer in stack.layers {
            beginObject()
            field("layer", layer.index.rawValue + 1)
            field("path", layer.path)
            field("kind", layer.kind.label)
            field("whiteout_format", layer.format.rawValue)
            endObject()
        }
        endArray()
    }

    /// Opens the top-level object with the schema version and command name.
    mutating func beginDocument(command: String) {
        beginObject()
        field("schema", "layermount-inspect/1")
        field("command", command)
    }
}
