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
            lowest layer that hides it. Whiteouts at the path are listed too.

            EXIT STATUS: 0 when every path is in the merged tree, 1 when one is not (or on an error), 64 on a
            usage error.

            EXAMPLES:
              layermount which base/ app/ -- /usr/bin/python3.11 /etc/passwd
            """)

    static func run(_ parsed: CommandLineParser.Parsed, output: OutputBuffer, errors: OutputBuffer) throws -> Int32 {
        let format = try InspectCommand.whiteoutFormat(parsed)
        let layerPaths = try InspectCommand.layers(parsed)
        guard let paths = parsed.afterSeparator, !paths.isEmpty else {
            throw CommandLineParser.UsageError("Missing expected argument '-- <path> ...'")
        }
        let hash = !parsed.flag("no-hash")
        let stack = try InspectedStack(paths: layerPaths, format: format, hashArchiveContent: hash)
        defer { stack.close() }
        let resolver = MergedPath(stack: stack)
        var reports: [PathReport] = []
        for path in InspectCommand.pathArguments(parsed) {
            reports.append(try resolver.report(path, hashContent: hash))
        }
        if parsed.flag("json") {
            var json = JSONWriter()
            json.beginDocument(command: "which")
            json.layers(stack)
            json.key("paths")
            json.beginArray()
            for report in reports { write(report, to: &json) }
            json.endArray()
            json.endObject()
            output.write(json.text + "\n")
        } else {
            for report in reports { output.write(text(report)) }
        }
        return reports.allSatisfy { $0.provider != nil } ? ExitCode.success : ExitCode.failure
    }

    static func text(_ report: PathReport) -> String {
        let path = report.path.absoluteDisplay
        var out = path
        if report.given != path && "/" + report.given != path { out += " (from \(report.given))" }
        if let provider = report.provider {
            out += ": layer \(provider.rawValue + 1)\n"
        } else {
            out += ": not in the merged tree: \(report.absence ?? "absent")\n"
        }
        out += versionLines(report.versions)
        if let literal = report.literalPath {
            out += "  as written, \(literal.absoluteDisplay) (a symlink replaces a parent):"
            out += report.literalVersions.isEmpty ? " no layer holds it\n" : "\n"
            out += versionLines(report.literalVersions)
        }
        return out
    }

    static func versionLines(_ versions: [PathVersion]) -> String {
        var out = ""
        for version in versions {
            out += "  " + EntryFormat.layerLabel(version.layer) + "  "
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
                if let hash = version.contentHash { out += ", xxh3 \(hash)" }
                if let target = version.linkTarget { out += " -> \(escapeForDisplay(target))" }
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

    static func writeVersions(_ versions: [PathVersion], to json: inout JSONWriter) {
        json.beginArray()
        for version in versions {
            json.beginObject()
            json.field("layer", version.layer.rawValue + 1)
            switch version.kind {
            case .whiteout:
                json.field("type", "whiteout")
                json.field("state", "whiteout")
            case .entry(let status):
                EntryFormat.writeMetadata(status, target: version.linkTarget, hash: version.contentHash, to: &json)
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
