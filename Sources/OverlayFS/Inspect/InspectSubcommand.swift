import LayerCore

/// `layermount inspect LAYER...`: per layer what it adds, hides and wastes; totals; efficiency;
/// the largest wasted files.
enum InspectSubcommand: Subcommand {
    static let description = CommandLineParser.Command(
        name: "layermount inspect",
        overview: "Show what each layer of a stack adds, hides and wastes, without mounting it.",
        usage: "[--whiteout-format <format>] [--top <n>] [--jobs <n>] [--json] <layer> ...",
        arguments: [InspectCommand.layersArgument],
        options: [
            InspectCommand.whiteoutFormatOption,
            CommandLineParser.Option(
                "top", value: "<n>", help: "How many of the largest wasted files to list.", default: "10"),
            CommandLineParser.Option(
                "jobs", short: "j", value: "<n>",
                help: "Threads walking the layers; the result does not depend on it.", default: "the CPUs, at most 8"),
            InspectCommand.jsonOption,
        ],
        discussion: """
            Per layer: the entries and bytes it holds, its whiteouts and opaque directories, the bytes of lower
            files it shadows (a newer entry at the same path) or deletes (whiteouts, opaque directories, a file
            over a directory), and its dead weight: its own bytes that upper layers make invisible. Bytes are
            regular files' sizes, each inode once per layer. Efficiency = bytes visible in the merged tree /
            bytes stored in all layers. The merged tree is the one `layermount LAYER... MNT` serves.

            EXAMPLES:
              layermount inspect base/ app/ config/
              layermount inspect --json layer1.tar.gz layer2.tar.zst | jq .efficiency
            """)

    static func run(_ invocation: Invocation, output: OutputBuffer, errors: OutputBuffer) throws -> Int32 {
        let format = try invocation.whiteoutFormat()
        var paths = try invocation.layers()
        if let extra = invocation.afterSeparator { paths += extra.map { CommandLinePath(bytes: invocation.bytes($0)) } }
        var top = 10
        if let text = invocation.value("top") {
            guard let value = Int(text), value >= 0 else {
                throw CommandLineParser.UsageError("The value '\(text)' is invalid for '--top <n>'")
            }
            top = value
        }
        var jobs = StackReport.defaultWorkers
        if let text = invocation.value("jobs") {
            guard let value = Int(text), value >= 1, value <= 256 else {
                throw CommandLineParser.UsageError("The value '\(text)' is invalid for '--jobs <n>'")
            }
            jobs = value
        }
        let stack = try InspectedStack(layers: paths, format: format)
        defer { stack.close() }
        let report = try StackReport.compute(stack, top: top, workers: jobs)
        if invocation.flag("json") {
            output.write(json(report, stack: stack))
        } else {
            output.write(text(report, stack: stack))
        }
        return ExitCode.success
    }

    static func text(_ report: StackReport, stack: InspectedStack) -> String {
        var out = ""
        let headers = [
            "LAYER", "ENTRIES", "BYTES", "WHITEOUTS", "OPAQUE", "SHADOWS", "DELETES", "DEAD", "VISIBLE",
        ]
        var rows: [[String]] = []
        func row(_ label: String, _ figures: LayerFigures) -> [String] {
            [
                label, String(figures.entries), humanBytes(figures.bytes), String(figures.whiteouts),
                String(figures.opaqueDirectories), humanBytes(figures.shadowedBytes), humanBytes(figures.deletedBytes),
                humanBytes(figures.deadBytes), humanBytes(figures.visibleBytes),
            ]
        }
        for (position, figures) in report.layers.enumerated() { rows.append(row(String(position + 1), figures)) }
        rows.append(row("total", report.total))
        var widths = headers.map(\.count)
        for cells in rows {
            for (column, cell) in cells.enumerated() { widths[column] = max(widths[column], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            var text = padRight(cells[0], widths[0])
            for column in 1..<cells.count { text += "  " + padLeft(cells[column], widths[column]) }
            return text
        }
        out += line(headers) + "  PATH\n"
        for (position, cells) in rows.enumerated() {
            if position < stack.layers.count {
                let layer = stack.layers[position]
                out += line(cells) + "  \(layer.path) (\(layer.kind.label))\n"
            } else {
                out += line(cells) + "\n"
            }
        }
        let merged = report.merged
        out += "\nmerged tree: \(counted(merged.entries, "entry", "entries")) ("
        out += "\(counted(merged.files, "file")), \(counted(merged.directories, "directory", "directories")), "
        out += "\(counted(merged.symlinks, "symlink")), \(merged.specials) other), \(humanBytes(merged.bytes))\n"
        let total = report.total
        if let efficiency = report.efficiency {
            out += "efficiency: \(fixed(efficiency * 100, decimals: 1))% (\(merged.bytes) bytes visible / "
            out += "\(total.bytes) bytes stored; \(total.deadBytes) bytes of dead weight)\n"
        } else {
            out += "efficiency: n/a (the layers store no file bytes)\n"
        }
        if !report.wasted.isEmpty {
            out += "\nlargest wasted files:\n"
            let sizeWidth = report.wasted.map { humanBytes($0.size).count }.max() ?? 4
            for file in report.wasted {
                let how = file.hiding.isShadowing ? "shadowed" : "deleted"
                out += "  " + padLeft(humanBytes(file.size), sizeWidth) + "  layer \(file.layer.rawValue + 1), "
                out += "\(how) by layer \(file.hiding.layer.rawValue + 1)"
                if file.sameContentAsHider == true { out += " (same content: a metadata-only copy-up)" }
                out += "  \(file.path)\n"
            }
        }
        return out
    }

    /// `1 file`, `2 files`.
    static func counted(_ count: Int, _ singular: String, _ plural: String? = nil) -> String {
        "\(count) " + (count == 1 ? singular : plural ?? singular + "s")
    }

    static func json(_ report: StackReport, stack: InspectedStack) -> String {
        var json = JSONWriter()
        json.beginDocument(command: "inspect")
        json.layers(stack)
        json.key("figures")
        json.beginArray()
        for (position, figures) in report.layers.enumerated() {
            json.beginObject()
            json.field("layer", position + 1)
            write(figures, to: &json)
            json.endObject()
        }
        json.endArray()
        json.key("total")
        json.beginObject()
        write(report.total, to: &json)
        json.endObject()
        json.key("merged")
        json.beginObject()
        json.field("entries", report.merged.entries)
        json.field("files", report.merged.files)
        json.field("directories", report.merged.directories)
        json.field("symlinks", report.merged.symlinks)
        json.field("specials", report.merged.specials)
        json.field("bytes", report.merged.bytes)
        json.endObject()
        json.field("efficiency", report.efficiency)
        json.key("wasted")
        json.beginArray()
        for file in report.wasted {
            json.beginObject()
            json.field("path", file.path)
            json.field("layer", file.layer.rawValue + 1)
            json.field("size", file.size)
            json.field("hidden_by", file.hiding.layer.rawValue + 1)
            json.field("how", file.hiding.isShadowing ? "shadowed" : "deleted")
            json.key("same_content")
            if let same = file.sameContentAsHider { json.value(same) } else { json.null() }
            json.endObject()
        }
        json.endArray()
        json.endObject()
        return json.text + "\n"
    }

    private static func write(_ figures: LayerFigures, to json: inout JSONWriter) {
        json.field("entries", figures.entries)
        json.field("files", figures.files)
        json.field("directories", figures.directories)
        json.field("symlinks", figures.symlinks)
        json.field("specials", figures.specials)
        json.field("extra_hard_links", figures.extraHardLinks)
        json.field("bytes", figures.bytes)
        json.field("whiteouts", figures.whiteouts)
        json.field("opaque_directories", figures.opaqueDirectories)
        json.field("visible_entries", figures.visibleEntries)
        json.field("visible_bytes", figures.visibleBytes)
        json.field("dead_entries", figures.deadEntries)
        json.field("dead_bytes", figures.deadBytes)
        json.field("shadowed_entries", figures.shadowedEntries)
        json.field("shadowed_bytes", figures.shadowedBytes)
        json.field("deleted_entries", figures.deletedEntries)
        json.field("deleted_bytes", figures.deletedBytes)
    }
}
