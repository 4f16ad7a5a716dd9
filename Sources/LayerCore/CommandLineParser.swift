/// A small argument parser with help and error output in the style of swift-argument-parser:
/// `--opt v` and `--opt=v`, short flags, `--` ends options, positionals anywhere.
public struct CommandLineParser: Sendable {
    /// One option or flag.
    public struct Option: Sendable {
        /// The primary name, without dashes, used as the key of parsed values (`whiteout-format`).
        public var name: String
        /// A one-letter short name, or nil.
        public var short: Character?
        /// The value placeholder (`<format>`); nil for a flag.
        public var valueName: String?
        /// The help text.
        public var help: String
        /// The default value shown in help, or nil.
        public var defaultValue: String?
        /// Whether the option may be given more than once (values accumulate).
        public var repeatable: Bool

        /// Describes an option; `valueName` nil makes it a flag.
        public init(
            _ name: String, short: Character? = nil, value valueName: String? = nil, help: String,
            default defaultValue: String? = nil, repeatable: Bool = false
        ) {
            self.name = name
            self.short = short
            self.valueName = valueName
            self.help = help
            self.defaultValue = defaultValue
            self.repeatable = repeatable
        }
    }

    /// A command: its name, overview, usage line and the parts listed in help.
    public struct Command: Sendable {
        /// The command name as typed (`layermount` or `layermount inspect`).
        public var name: String
        /// One paragraph describing the command.
        public var overview: String
        /// The synopsis after `USAGE: ` (without the command name).
        public var usage: String
        /// Positional arguments: placeholder and help.
        public var arguments: [(String, String)]
        /// Options (`--help` is added automatically).
        public var options: [Option]
        /// Subcommands: name and help.
        public var subcommands: [(String, String)]
        /// Free text after the option list (exit status, examples).
        public var discussion: String

        /// Describes a command.
        public init(
            name: String, overview: String, usage: String, arguments: [(String, String)] = [],
            options: [Option] = [], subcommands: [(String, String)] = [], discussion: String = ""
        ) {
            self.name = name
            self.overview = overview
            self.usage = usage
            self.arguments = arguments
            self.options = options
            self.subcommands = subcommands
            self.discussion = discussion
        }
    }

    /// The result of parsing.
    public struct Parsed: Sendable {
        /// Values by option name; flags map to `["true"]` for each occurrence.
        public var values: [String: [String]] = [:]
        /// Positional arguments before a `--`.
        public var positionals: [String] = []
        /// Positional arguments after `--`, or nil when there was no `--`.
        public var afterSeparator: [String]?
        /// Whether `-h` / `--help` was given.
        public var wantsHelp = false

        /// The last value of option `name`, or nil.
        public func value(_ name: String) -> String? { values[name]?.last }

        /// Whether flag `name` was given.
        public func flag(_ name: String) -> Bool { values[name] != nil }

        /// All values of a repeatable option.
        public func all(_ name: String) -> [String] { values[name] ?? [] }
    }

    /// A usage error: printed as `Error: message`, the usage line and a `--help` hint; exit 64.
    public struct UsageError: Error, CustomStringConvertible, Sendable {
        /// The message after `Error: `.
        public var message: String
        /// Wraps a message.
        public init(_ message: String) { self.message = message }
        public var description: String { message }
    }

    /// The command being parsed.
    public let command: Command

    /// A parser for `command`.
    public init(_ command: Command) { self.command = command }

    /// Parses `arguments` (without the program name).
    ///
    /// - Throws: ``UsageError`` for an unknown option or a missing value.
    public func parse(_ arguments: [String]) throws(UsageError) -> Parsed {
        var parsed = Parsed()
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if parsed.afterSeparator != nil {
                parsed.afterSeparator?.append(argument)
                continue
            }
            if argument == "--" {
                parsed.afterSeparator = []
                continue
            }
            if argument == "-h" || argument == "--help" {
                parsed.wantsHelp = true
                continue
            }
            if argument.hasPrefix("--") {
                let body = argument.dropFirst(2)
                let name: String
                var inline: String?
                if let equals = body.firstIndex(of: "=") {
                    name = String(body[..<equals])
                    inline = String(body[body.index(after: equals)...])
                } else {
                    name = String(body)
                }
                guard let option = command.options.first(where: { $0.name == name }) else {
                    throw UsageError("Unknown option '--\(name)'")
                }
                try take(option, inline: inline, spelled: "--\(name)", arguments, &index, into: &parsed)
                continue
            }
            if argument.hasPrefix("-") && argument.count > 1 {
                var letters = Array(argument.dropFirst())
                while !letters.isEmpty {
                    let letter = letters.removeFirst()
                    guard let option = command.options.first(where: { $0.short == letter }) else {
                        throw UsageError("Unknown option '-\(letter)'")
                    }
                    if option.valueName != nil {
                        let inline = letters.isEmpty ? nil : String(letters)
                        try take(option, inline: inline, spelled: "-\(letter)", arguments, &index, into: &parsed)
                        letters = []
                    } else {
                        try take(option, inline: nil, spelled: "-\(letter)", arguments, &index, into: &parsed)
                    }
                }
                continue
            }
            parsed.positionals.append(argument)
        }
        return parsed
    }

    private func take(
        _ option: Option, inline: String?, spelled: String, _ arguments: [String], _ index: inout Int,
        into parsed: inout Parsed
    ) throws(UsageError) {
        let value: String
        if let valueName = option.valueName {
            if let inline {
                value = inline
            } else if index < arguments.count {
                value = arguments[index]
                index += 1
            } else {
                throw UsageError("Missing value for '\(spelled) \(valueName)'")
            }
        } else {
            guard inline == nil else { throw UsageError("'\(spelled)' takes no value") }
            value = "true"
        }
        if option.repeatable || option.valueName == nil {
            parsed.values[option.name, default: []].append(value)
        } else {
            parsed.values[option.name] = [value]
        }
    }

    /// The help text: OVERVIEW, USAGE, ARGUMENTS, OPTIONS, SUBCOMMANDS, then the discussion.
    public var helpText: String {
        var out = "OVERVIEW: \(command.overview)\n\nUSAGE: \(command.name) \(command.usage)\n"
        if !command.arguments.isEmpty {
            out += "\nARGUMENTS:\n"
            for (name, help) in command.arguments { out += Self.row(name, help) }
        }
        out += "\nOPTIONS:\n"
        for option in command.options {
            var label = option.short.map { "-\($0), " } ?? ""
            label += "--\(option.name)"
            if let valueName = option.valueName { label += " \(valueName)" }
            var help = option.help
            if let defaultValue = option.defaultValue { help += " (default: \(defaultValue))" }
            out += Self.row(label, help)
        }
        out += Self.row("-h, --help", "Show help information.")
        if !command.subcommands.isEmpty {
            out += "\nSUBCOMMANDS:\n"
            for (name, help) in command.subcommands { out += Self.row(name, help) }
            out += "\n  See '\(command.name) help <subcommand>' for detailed help.\n"
        }
        if !command.discussion.isEmpty { out += "\n" + command.discussion + "\n" }
        return out
    }

    /// The text printed for a usage error (to stderr, then exit 64).
    public func usageErrorText(_ error: UsageError) -> String {
        let tool = command.name.split(separator: " ").first.map(String.init) ?? command.name
        return "Error: \(error.message)\nUsage: \(command.name) \(command.usage)\n"
            + "  See '\(tool) --help' for more information.\n"
    }

    private static func row(_ label: String, _ help: String) -> String {
        let lead = "  " + label
        let width = 26
        let wrapped = wrap(help, width: 120 - width)
        var out = ""
        if lead.count < width - 1 {
            out += lead + String(repeating: " ", count: width - lead.count) + (wrapped.first ?? "") + "\n"
        } else {
            out += lead + "\n" + String(repeating: " ", count: width) + (wrapped.first ?? "") + "\n"
        }
        for line in wrapped.dropFirst() { out += String(repeating: " ", count: width) + line + "\n" }
        return out
    }

    private static func wrap(_ text: String, width: Int) -> [String] {
        var lines: [String] = []
        var current = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: true) {
            if current.isEmpty {
                current = String(word)
            } else if current.count + 1 + word.count > width {
                lines.append(current)
                current = String(word)
            } else {
                current += " " + word
            }
        }
        if !current.isEmpty { lines.append(current) }
        return lines.isEmpty ? [""] : lines
    }
}

/// Exit codes shared by the tools.
public enum ExitCode {
    /// Success.
    public static let success: Int32 = 0
    /// A runtime failure (`Error: <path>: <reason>`).
    public static let failure: Int32 = 1
    /// A usage error (sysexits EX_USAGE).
    public static let usage: Int32 = 64
}
