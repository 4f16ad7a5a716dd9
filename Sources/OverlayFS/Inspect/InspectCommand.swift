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

    /// Runs a subcommand. Data goes to stdout, diagnostics to stderr.
    ///
    /// - Parameter arguments: the arguments without the program name, starting with the
    ///   subcommand (or `help`).
    /// - Returns: the exit status: 0 success, 1 runtime failure (`Error: <path>: <reason>`), 64
    ///   usage error; `which` also returns 1 when a path is not in the merged tree.
    public static func run(arguments: [String]) -> Int32 {
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
            errors.write("Error: Unknown subcommand '\(name)'\n")
            return ExitCode.usage
        }
        let parser = CommandLineParser(command.description)
        do {
            let parsed = try parser.parse(rest)
            if parsed.wantsHelp {
                output.write(parser.helpText)
                return ExitCode.success
            }
            return try command.run(parsed, output: output, errors: errors)
        } catch let error as CommandLineParser.UsageError {
            output.flush()
            errors.write(parser.usageErrorText(error))
            return ExitCode.usage
        } catch let error as PathError {
            output.flush()
            errors.write("Error: \(error.description)\n")
            return ExitCode.failure
        } catch {
            output.flush()
            errors.write("Error: \(error)\n")
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

    static func whiteoutFormat(_ parsed: CommandLineParser.Parsed) throws(CommandLineParser.UsageError)
        -> WhiteoutFormat
    {
        guard let text = parsed.value("whiteout-format") else { return .auto }
        guard let format = WhiteoutFormat(rawValue: text) else {
            throw CommandLineParser.UsageError(
                "The value '\(text)' is invalid for '--whiteout-format <format>' (auto, oci or overlay)")
        }
        return format
    }

    /// The paths after `--` as bytes. Taken from the raw process arguments when they line up
    /// (Swift's `CommandLine.arguments` replaces bytes that are not UTF-8), then the `\xHH` escapes
    /// the commands print are decoded, so a path copied from their output names the same file.
    static func pathArguments(_ parsed: CommandLineParser.Parsed) -> [[UInt8]] {
        let given = parsed.afterSeparator ?? []
        var raw: [[UInt8]] = given.map { Array($0.utf8) }
        let argv = (0..<Int(CommandLine.argc)).map { index -> [UInt8] in
            guard let pointer = CommandLine.unsafeArgv[index] else { return [] }
            var bytes: [UInt8] = []
            var offset = 0
            while pointer[offset] != 0 {
                bytes.append(UInt8(bitPattern: pointer[offset]))
                offset += 1
            }
            return bytes
        }
        if let separator = argv.firstIndex(of: Array("--".utf8)), argv.count - separator - 1 == given.count {
            let tail = Array(argv[(separator + 1)...])
            if zip(tail, given).allSatisfy({ String(decoding: $0.0, as: UTF8.self) == $0.1 }) { raw = tail }
        }
        return raw.map(unescapeDisplay)
    }

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

    static func layers(_ parsed: CommandLineParser.Parsed) throws(CommandLineParser.UsageError) -> [String] {
        guard !parsed.positionals.isEmpty else {
            throw CommandLineParser.UsageError("Missing expected argument '<layer> ...'")
        }
        return parsed.positionals
    }
}

/// One subcommand: its help and its body.
protocol Subcommand {
    /// The command's help and options.
    static var description: CommandLineParser.Command { get }
    /// Runs it on parsed arguments.
    static func run(_ parsed: CommandLineParser.Parsed, output: OutputBuffer, errors: OutputBuffer) throws -> Int32
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
