import Glibc
import LayerCore

/// The `layerdiff` command line: `layerdiff A B`, `layerdiff --upper UPPERDIR A`,
/// `layerdiff apply LAYER ROOT`. `main.swift` calls ``main(_:)`` and exits with its result.
///
/// Exit status follows diff(1): 0 when the trees are equal, 1 when they differ, 2 on trouble;
/// 64 for a usage error. `apply` exits 0 on success and 2 on trouble.
public enum LayerDiffCommand {
    /// `layerdiff`'s help and options.
    static let diffCommand = CommandLineParser.Command(
        name: "layerdiff",
        overview:
            "Compute the minimal, exact changeset that turns tree A into tree B, as a change list, an OCI layer tarball or a layer directory.",
        usage:
            "[<options>] <a> <b>\n       layerdiff [<options>] --upper <upperdir> <a>\n       layerdiff apply [<options>] <layer> <root>",
        arguments: [
            ("<a>", "The tree before (the lower side)."),
            ("<b>", "The tree after. Omitted with --upper."),
        ],
        options: [
            .init(
                "output", short: "o", value: "<file>",
                help:
                    "Write the changeset as an OCI layer tarball (PAX). The name picks the compression: .tar, .tar.gz or .tar.zst. Prints the layer's diff_id, digest, size and media type."
            ),
            .init(
                "layer-dir", value: "<dir>",
                help:
                    "Write the changeset as a layer directory (created; an existing one must be empty). It is built in a hidden .layerdiff-partial-XXXXXX and moved into place when complete; a failure or a signal removes it."
            ),
            .init(
                "whiteout-format", value: "<format>",
                help:
                    "Markers in --layer-dir: oci or overlay (kernel format). An overlay layer may hold real .wh.* files: apply it with 'apply --whiteout-format overlay'.",
                default: "oci"),
            .init(
                "upper", value: "<upperdir>",
                help:
                    "B is A seen through this overlay upper dir (after a build step): only the upper dir is walked, A only where the upper dir touches it."
            ),
            .init(
                "upper-format", value: "<format>",
                help: "Markers the upper dir uses: auto (both), overlay (char 0/0, opaque xattrs) or oci (.wh. files).",
                default: "auto"),
            .init("stat", help: "Print counts and bytes per kind of change instead of the list."),
            .init(
                "json", help: "Print one JSON object per change (streamed, in path order), then a summary object."),
            .init(
                "quiet", short: "q", help: "Print nothing on standard output and no progress; the exit status tells."),
            .init(
                "trust-mtime",
                help: "Take a regular file with equal size, mtime and metadata as unchanged without reading it."),
            .init(
                "ignore-mtime",
                help:
                    "A file whose content, mode, owner and xattrs are equal is unchanged even if its mtime moved (directories too)."
            ),
            .init(
                "mtime-clamp", value: "<epoch>",
                help:
                    "In the written layer, clamp mtimes later than this (seconds since the epoch). Default: $SOURCE_DATE_EPOCH."
            ),
            .init(
                "skip-unrepresentable",
                help:
                    "Leave out (and list on stderr) entries the layer cannot hold, such as names starting with .wh., instead of failing."
            ),
            .init(
                "compression-level", value: "<n>",
                help:
                    "gzip level 1-12 (default 6; 1 is about 3x faster, blobs about 9% larger) or zstd level 1-19 (default 3)."
            ),
            .init(
                "jobs", short: "j", value: "<n>", help: "Threads for hashing and listing.", default: "number of CPUs"),
            .init("version", help: "Show the version."),
        ],
        subcommands: [("apply", "Apply a layer (tarball or directory) onto a root directory, safely.")],
        discussion: """
            OUTPUT:
              Without --stat, --json or a layer, one line per change in path order: 'A /path' added,
              'C /path' changed, 'D /path' deleted (a deleted directory is one line). Bytes that are not
              printable UTF-8, and backslash, are written \\xHH. With -o, the layer's digests instead.

            EXIT STATUS:
              0  the trees are equal
              1  the trees differ
              2  trouble: a tree cannot be read, a change cannot be stored in the layer, an output fails
              64 usage error
              128 + the signal when SIGINT, SIGTERM or SIGHUP stopped it (130, 143, 129); no partial
                 layer is left
            """)

    /// `layerdiff apply`'s help and options.
    static let applyCommand = CommandLineParser.Command(
        name: "layerdiff apply",
        overview:
            "Apply an OCI layer (a tarball of any compression, or a layer directory) onto ROOT with the OCI semantics, never writing outside ROOT.",
        usage: "[<options>] <layer> <root>",
        arguments: [
            ("<layer>", "A layer tarball (.tar, .tar.gz, .tar.zst, ...) or a layer directory."),
            ("<root>", "The directory to change."),
        ],
        options: [
            .init(
                "whiteout-format", value: "<format>",
                help:
                    "Markers of a layer directory: auto (both), oci or overlay. Tarballs always use oci. A layer written with --layer-dir --whiteout-format overlay needs overlay (its .wh.* files are real files).",
                default: "auto")
        ],
        discussion: """
            Whiteouts and opaque markers remove lower content only and are applied first; a directory
            over a directory keeps it and takes the new attributes; anything else replaces what is
            there; directory mtimes are restored last. Absolute names, '..', paths through a symlink
            (in the layer or already in ROOT) and hard links leaving ROOT are refused, as are device
            nodes unless running as root. The layer is checked before ROOT is touched.

            EXIT STATUS:
              0  applied
              2  trouble (nothing is written outside ROOT)
              64 usage error
            """)

    /// Runs the command with `arguments` (without the program name) and returns the exit status.
    public static func main(_ arguments: [String]) -> Int32 {
        if arguments.first == "apply" { return apply(Array(arguments.dropFirst())) }
        if arguments.first == "help" {
            let topic = arguments.dropFirst().first
            print(
                topic == "apply" ? CommandLineParser(applyCommand).helpText : CommandLineParser(diffCommand).helpText,
                terminator: "")
            return 0
        }
        let parser = CommandLineParser(diffCommand)
        let parsed: CommandLineParser.Parsed
        do {
            parsed = try parser.parse(arguments)
        } catch {
            return usage(parser, error)
        }
        if parsed.wantsHelp {
            print(parser.helpText, terminator: "")
            return 0
        }
        if parsed.flag("version") {
            print(DiffEngineModule.version)
            return 0
        }
        let request: DiffRequest
        do {
            request = try DiffRequest(parsed)
        } catch {
            return usage(parser, error)
        }
        let cancellation = DiffCancellation()
        SignalStop.install(cancellation)
        do {
            let summary = try request.run(cancellation: cancellation)
            return summary.differs ? 1 : 0
        } catch {
            if let signal = cancellation.signal { return 128 + signal }
            fail("Error: \(error)")
            return 2
        }
    }

    /// `layerdiff apply`: parses, applies, returns the exit status.
    static func apply(_ arguments: [String]) -> Int32 {
        let parser = CommandLineParser(applyCommand)
        let parsed: CommandLineParser.Parsed
        do {
            parsed = try parser.parse(arguments)
        } catch {
            return usage(parser, error)
        }
        if parsed.wantsHelp {
            print(parser.helpText, terminator: "")
            return 0
        }
        let positionals = parsed.positionals + (parsed.afterSeparator ?? [])
        guard positionals.count >= 1 else { return usage(parser, .init("Missing expected argument '<layer>'")) }
        guard positionals.count >= 2 else { return usage(parser, .init("Missing expected argument '<root>'")) }
        guard positionals.count == 2 else {
            return usage(parser, .init("Unexpected argument '\(positionals[2])'"))
        }
        let formatName = parsed.value("whiteout-format") ?? "auto"
        guard let format = WhiteoutFormat(rawValue: formatName) else {
            return usage(parser, .init("The value '\(formatName)' is invalid for '--whiteout-format <format>'"))
        }
        do {
            let applier = try LayerApplier(root: positionals[1])
            try applier.apply(layer: positionals[0], directoryFormat: format)
            return 0
        } catch {
            fail("Error: \(error)")
            return 2
        }
    }

    /// Prints a usage error and returns 64.
    static func usage(_ parser: CommandLineParser, _ error: CommandLineParser.UsageError) -> Int32 {
        fail(parser.usageErrorText(error), newline: false)
        return ExitCode.usage
    }

    /// Writes `message` to standard error.
    static func fail(_ message: String, newline: Bool = true) {
        let text = newline ? message + "\n" : message
        _ = text.utf8CString.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count - 1) }
    }
}

/// One diff run as the command line asked for it.
struct DiffRequest {
    /// The tree before.
    var a: String
    /// The tree after, or the upper dir.
    var b: String
    /// Whether `b` is an overlay upper dir (`--upper`).
    var upper: Bool
    /// The upper dir's markers (`--upper-format`).
    var upperFormat: WhiteoutFormat = .auto
    /// Detection and layer policy.
    var options = DiffOptions()
    /// `-o`: the tarball and its compression.
    var archive: (path: String, compression: ArchiveCompression)?
    /// `--layer-dir`.
    var layerDirectory: String?
    /// `--whiteout-format` of the layer directory.
    var layerDirectoryFormat: LayerFormat = .oci
    /// `--stat`.
    var stat = false
    /// `--json`.
    var json = false
    /// `--quiet`.
    var quiet = false
    /// `--mtime-clamp` or `$SOURCE_DATE_EPOCH`.
    var clamp: Int64?
    /// `--compression-level`.
    var compressionLevel: Int?

    /// The request the parsed command line describes.
    ///
    /// - Throws: a usage error for a missing or invalid argument.
    init(_ parsed: CommandLineParser.Parsed) throws(CommandLineParser.UsageError) {
        let positionals = parsed.positionals + (parsed.afterSeparator ?? [])
        if let upperPath = parsed.value("upper") {
            guard let first = positionals.first else { throw .init("Missing expected argument '<a>'") }
            guard positionals.count == 1 else {
                throw .init("Unexpected argument '\(positionals[1])' (B is the --upper dir)")
            }
            a = first
            b = upperPath
            upper = true
            let name = parsed.value("upper-format") ?? "auto"
            guard let format = WhiteoutFormat(rawValue: name) else {
                throw .init("The value '\(name)' is invalid for '--upper-format <format>'")
            }
            upperFormat = format
        } else {
            guard positionals.count >= 1 else { throw .init("Missing expected argument '<a>'") }
            guard positionals.count >= 2 else { throw .init("Missing expected argument '<b>'") }
            guard positionals.count == 2 else { throw .init("Unexpected argument '\(positionals[2])'") }
            a = positionals[0]
            b = positionals[1]
            upper = false
        }
        stat = parsed.flag("stat")
        json = parsed.flag("json")
        quiet = parsed.flag("quiet")
        if stat && json { throw .init("'--stat' and '--json' cannot be used together") }
        options.trustModificationTime = parsed.flag("trust-mtime")
        options.ignoreModificationTime = parsed.flag("ignore-mtime")
        options.skipUnrepresentable = parsed.flag("skip-unrepresentable")
        if let jobs = parsed.value("jobs") {
            guard let count = Int(jobs), count >= 1, count <= 1024 else {
                throw .init("The value '\(jobs)' is invalid for '--jobs <n>': give a number from 1 to 1024")
            }
            options.jobs = count
        }
        if let output = parsed.value("output") {
            guard let compression = ArchiveCompression(fileName: output) else {
                throw .init("The value '\(output)' is invalid for '--output <file>': name it .tar, .tar.gz or .tar.zst")
            }
            archive = (output, compression)
            options.layerFormat = .oci
        }
        if let level = parsed.value("compression-level") {
            let limit = archive?.compression == .zstd ? 19 : 12
            guard let value = Int(level), value >= 1, value <= limit else {
                throw .init("The value '\(level)' is invalid for '--compression-level <n>': give 1 to \(limit)")
            }
            guard archive != nil && archive?.compression != ArchiveCompression.none else {
                throw .init("'--compression-level' needs '-o' with a .tar.gz or .tar.zst name")
            }
            compressionLevel = value
        }
        if let directory = parsed.value("layer-dir") {
            guard archive == nil else { throw .init("'--output' and '--layer-dir' cannot be used together") }
            layerDirectory = directory
            let name = parsed.value("whiteout-format") ?? "oci"
            switch name {
            case "oci": layerDirectoryFormat = .oci
            case "overlay": layerDirectoryFormat = .overlay
            default: throw .init("The value '\(name)' is invalid for '--whiteout-format <format>': oci or overlay")
            }
            options.layerFormat = layerDirectoryFormat
        }
        if let value = parsed.value("mtime-clamp") {
            guard let epoch = Int64(value), epoch >= 0 else {
                throw .init("The value '\(value)' is invalid for '--mtime-clamp <epoch>': give seconds since the epoch")
            }
            clamp = epoch
        } else if let value = getenv("SOURCE_DATE_EPOCH").map({ String(cString: $0) }), !value.isEmpty {
            guard let epoch = Int64(value), epoch >= 0 else {
                throw .init("SOURCE_DATE_EPOCH='\(value)' is not a number of seconds")
            }
            clamp = epoch
        }
    }

    /// The library run this request describes.
    var diff: LayerDiff {
        var diff = LayerDiff(a: a, b: b)
        if upper { diff.upperFormat = upperFormat }
        diff.options = options
        diff.mtimeClamp = clamp
        diff.compressionLevel = compressionLevel
        if let archive {
            diff.output = .archive(archive.path, archive.compression)
        } else if let layerDirectory {
            diff.output = .directory(layerDirectory, layerDirectoryFormat)
        }
        return diff
    }

    /// Runs the diff and prints what was asked.
    ///
    /// - Throws: ``DiffError`` on trouble, ``DiffError/interrupted`` when `cancellation` is
    ///   requested (no partial layer is left behind either way).
    func run(cancellation: DiffCancellation? = nil) throws(DiffError) -> DiffSummary {
        let stdout = OutputBuffer(descriptor: 1, streaming: json)
        var reporters: [ChangeReporter] = []
        var jsonReporter: JSONReporter?
        var statReporter: StatReporter?
        if !quiet {
            if json {
                let reporter = JSONReporter(output: stdout)
                jsonReporter = reporter
                reporters.append(reporter)
            } else if stat {
                let reporter = StatReporter(output: stdout)
                statReporter = reporter
                reporters.append(reporter)
            } else if archive == nil && layerDirectory == nil {
                reporters.append(TextReporter(output: stdout))
            }
        }
        let progress = (!quiet && isatty(2) == 1) ? Progress() : nil
        var diff = self.diff
        diff.cancellation = cancellation
        let result = try diff.run(reporters: reporters, progress: progress) { (result) throws(DiffError) in
            if let archive = result.archive {
                let lines = [
                    ("diff_id", archive.diffID.description), ("digest", archive.digest.description),
                    ("size", "\(archive.size)"), ("media_type", archive.compression.mediaType),
                ]
                jsonReporter?.layer = lines.map { ($0.0, $0.0 == "size" ? $0.1 : JSONReporter.quote($0.1)) }
                statReporter?.layerLines = lines.map { "\($0.0): \($0.1)" }
                if !quiet && !json && !stat {
                    for (key, value) in lines { try stdout.line("\(key): \(value)") }
                }
            }
            if let first = result.summary.markerLookalikes.first, let directory = layerDirectory {
                let count = result.summary.markerLookalikes.count
                LayerDiffCommand.fail(
                    "layerdiff: warning: \(directory) holds \(count) real file\(count == 1 ? "" : "s") named .wh.* (\(first)\(count > 1 ? ", ..." : "")); apply it with 'layerdiff apply --whiteout-format overlay', which does not take them for whiteouts"
                )
            }
            for skipped in result.summary.skipped {
                LayerDiffCommand.fail("layerdiff: skipped (the layer cannot hold it): \(skipped)")
            }
        }
        try stdout.flush()
        return result.summary
    }
}
