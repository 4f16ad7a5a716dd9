import LayerCore

/// `layermount which LAYER... -- PATH...`: the layer providing each path and every version below.
enum WhichSubcommand: Subcommand {
    static let description = CommandLineParser.Command(
        name: "layermount which",
        overview: "Show which layer provides each path and every lower version it shadows, without mounting.",
        usage: "[--whiteout-format <format>] [--no-hash] [--json] <layer> ... -- <path> ...",
        arguments: [
            InspectCommand.layersArgument,
            (
                "<path> ...",
                "Paths in the merged tree (absolute or relative to its root). Symlinks of the merged tree are "
                    + "followed for every component but the last, as inside the mount."
            ),
        ],
        options: [
            InspectCommand.whiteoutFormatOption,
            CommandLineParser.Option("no-hash", help: "Do not hash file contents (faster on large files)."),
            InspectCommand.jsonOption,
        ],
        discussion: """
            For each path: the layer that provides it, then every layer's version, top first: its type, size,
            content hash (XXH3-128) or link target, and whether it is visible, shadowed (a newer entry at the same
            path hides it) or deleted (a whiteout, an opaque directory or a non-directory above it), naming the
            lowest layer that hides it. Whiteouts at the path are listed too. Each version is the one the merged
            lookup looks up in its layer: below a renamed directory (kernel overlay redirect) or a renamed
            metacopy file, at the old path, shown after the layer ("L1 /old/x").

            Each path stands alone: one that cannot be resolved (a symlink loop, a name over 255 bytes, a file
            given with a trailing /) or whose versions cannot be read is reported (an Error: line on stderr, an
            "error" in JSON) and the others follow.

            EXIT STATUS: 0 when every path is in the merged tree, 1 when one is not or had an error, 64 on a usage
            error.

            EXAMPLES:
              layermount which base/ app/ -- /usr/bin/python3.11 /etc/passwd
            """)

    /// What `which` found for one path: a report, or why the path could not be resolved.
    enum Outcome {
        case report(PathReport)
        case failure(given: [UInt8], PathError)
    }

    static func run(_ invocation: Invocation, output: OutputBuffer, errors: OutputBuffer) throws -> Int32 {
        let format = try invocation.whiteoutFormat()
        let layerPaths = try invocation.layers()
        guard let paths = invocation.afterSeparator, !paths.isEmpty else {
            throw CommandLineParser.UsageError("Missing expected argument '-- <path> ...'")
        }
        let hash = !invocation.flag("no-hash")
        let stack = try InspectedStack(layers: layerPaths, format: format, hashArchiveContent: hash)
        defer { stack.close() }
        let resolver = MergedPath(stack: stack)
        var outcomes: [Outcome] = []
        // Each path stands alone: a path that cannot be resolved is reported and the others follow.
        for path in invocation.mergedPaths() {
            try Interruption.shared.check()
            do {
                outcomes.append(.report(try resolver.report(path, hashContent: hash)))
            } catch {
                if Interruption.shared.isRequested { throw error }
                outcomes.append(.failure(given: path, error))
            }
        }
        if invocation.flag("json") {
            var json = JSONWriter()
            json.beginDocument(command: "which")
            json.layers(stack)
            json.key("paths")
            json.beginArray()
            for outcome in outcomes {
                switch outcome {
                case .report(let report): write(report, to: &json)
                case .failure(let given, let error): write(failure: error, given: given, to: &json)
                }
            }
            json.endArray()
            json.endObject()
            output.write(json.text + "\n")
        } else {
            for outcome in outcomes {
                if case .report(let report) = outcome { output.write(text(report)) }
            }
        }
        var failed = false
        for outcome in outcomes {
            switch outcome {
            case .report(let report):
                for problem in report.problems { errors.write("Error: \(problem.description)\n") }
                failed = failed || report.provider == nil || !report.problems.isEmpty
            case .failure(_, let error):
                errors.write("Error: \(error.description)\n")
                failed = true
            }
        }
        return failed ? ExitCode.failure : ExitCode.success
    }

    static func text(_ report: PathReport) -> String {
        let path = report.path.absoluteDisplay
        var out = path
        var given = Substring(report.given)
        while given.count > 1 && given.hasSuffix("/") { given = given.dropLast() }
        if given != path && "/" + given != path { out += " (from \(report.given))" }
        if let provider = report.provider {
            out += ": layer \(provider.rawValue + 1)\n"
        } else {
            out += ": not in the merged tree: \(report.absence ?? "absent")\n"
        }
        out += versionLines(report.versions)
        if let literal = report.literalPath {
            let lexical = literal.absoluteDisplay
            out += "  as written (\(report.given.hasPrefix("/") ? report.given : "/" + report.given)"
            if report.given != lexical && "/" + report.given != lexical { out += ", lexically \(lexical)" }
            out += "), without following symlinks:"
            out += report.literalVersions.isEmpty ? " no layer holds it\n" : "\n"
            out += versionLines(report.literalVersions)
        }
        return out
    }

    static func versionLines(_ versions: [PathVersion]) -> String {
        var out = ""
        for version in versions {
            out += "  " + EntryFormat.layerLabel(version.layer)
            if let path = version.layerPath { out += " " + path.absoluteDisplay }
            out += "  "
            switch version.kind {
            case .whiteout:
                out += "whiteout\n"
                continue
            case .entry(let status):
                out += "\(status.type)"
                if status.type == .regular || status.type == .symlink { out += ", \(status.size) bytes" }
                if status.type == .characterDevice || status.type == .blockDevice {
                    out += " \(status.deviceMajor), \(status.deviceMinor)"
                }
                out += ", \(EntryFormat.octal(status)) \(status.userID):\(status.groupID)"
                if version.isMetacopy {
                    out += ", metadata only"
                    if let data = version.dataLayer { out += " (data from layer \(data.rawValue + 1))" }
                }
                if let hash = version.contentHash { out += ", xxh3 \(hash)" }
                if let target = version.linkTarget { out += " -> \(escapeForDisplay(target))" }
                if let problem = version.problem { out += ", unreadable: \(problem)" }
            }
            if let hiding = version.hiding {
                let how = hiding.isShadowing ? "shadowed" : "deleted"
                out += "  [\(how) by layer \(hiding.layer.rawValue + 1)"
                if let reason = version.reason, !hiding.isShadowing { out += ": \(reason)" }
                out += "]\n"
            } else {
                out += "  [visible]\n"
            }
        }
        return out
    }

    static func write(_ report: PathReport, to json: inout JSONWriter) {
        json.beginObject()
        json.field("path", report.path.absoluteDisplay)
        json.field("given", report.given)
        json.field("present", report.provider != nil)
        if let provider = report.provider {
            json.field("layer", provider.rawValue + 1)
        } else {
            json.key("layer")
            json.null()
        }
        if let absence = report.absence { json.field("absence", absence) }
        if let deletedBy = report.deletedBy { json.field("deleted_by", deletedBy.rawValue + 1) }
        json.key("versions")
        writeVersions(report.versions, to: &json)
        if let literal = report.literalPath {
            json.key("literal")
            json.beginObject()
            json.field("path", literal.absoluteDisplay)
            json.key("versions")
            writeVersions(report.literalVersions, to: &json)
            json.endObject()
        }
        json.endObject()
    }

    /// The JSON object of a path that could not be resolved.
    static func write(failure error: PathError, given: [UInt8], to json: inout JSONWriter) {
        json.beginObject()
        json.field("path", MergedPath.lexical(given)?.absoluteDisplay ?? escapeForDisplay(given))
        json.field("given", escapeForDisplay(given))
        json.field("present", false)
        json.key("layer")
        json.null()
        json.field("error", error.reason)
        json.key("versions")
        json.beginArray()
        json.endArray()
        json.endObject()
    }

    static func writeVersions(_ versions: [PathVersion], to json: inout JSONWriter) {
        json.beginArray()
        for version in versions {
            json.beginObject()
            json.field("layer", version.layer.rawValue + 1)
            if let path = version.layerPath { json.field("layer_path", path.absoluteDisplay) }
            switch version.kind {
            case .whiteout:
                json.field("type", "whiteout")
                json.field("state", "whiteout")
            case .entry(let status):
                EntryFormat.writeMetadata(status, target: version.linkTarget, hash: version.contentHash, to: &json)
                if version.isMetacopy {
                    json.field("metacopy", true)
                    if let data = version.dataLayer { json.field("data_layer", data.rawValue + 1) }
                }
                if let problem = version.problem { json.field("error", problem) }
                if let hiding = version.hiding {
                    json.field("state", hiding.isShadowing ? "shadowed" : "deleted")
                    json.field("hidden_by", hiding.layer.rawValue + 1)
                    if let reason = version.reason { json.field("reason", reason) }
                } else {
                    json.field("state", "visible")
                }
            }
            json.endObject()
        }
        json.endArray()
    }
}
