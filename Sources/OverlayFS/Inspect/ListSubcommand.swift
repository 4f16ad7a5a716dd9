import LayerCore

/// `layermount ls LAYER... -- [PATH]`: the merged listing with each entry's layer.
enum ListSubcommand: Subcommand {
    static let description = CommandLineParser.Command(
        name: "layermount ls",
        overview: "List a directory of the merged tree with the layer each entry comes from, without mounting.",
        usage: "[-l] [-R] [--whiteout-format <format>] [--json] <layer> ... [-- <path>]",
        arguments: [
            InspectCommand.layersArgument,
            (
                "<path>",
                "A directory (or file) of the merged tree; symlinks in it are followed, as inside the mount. "
                    + "(default: /)"
            ),
        ],
        options: [
            CommandLineParser.Option("long", short: "l", help: "Long format: mode, links, owner, size, time (UTC)."),
            CommandLineParser.Option("recursive", short: "R", help: "List subdirectories recursively."),
            InspectCommand.whiteoutFormatOption,
            InspectCommand.jsonOption,
        ],
        discussion: """
            Each line starts with the layer providing the entry (L1 is the bottom layer). The listing is the one
            the mount's readdir returns, sorted by name bytes; owners are numeric. With -R a subdirectory that
            cannot be read is reported (an Error: line on stderr, "error" on its JSON entry) and the listing goes
            on; the exit status is then 1.

            EXAMPLES:
              layermount ls base/ app/ -- /usr/bin
              layermount ls -lR base/ app/ -- /etc
            """)

    static func run(_ invocation: Invocation, output: OutputBuffer, errors: OutputBuffer) throws -> Int32 {
        let format = try invocation.whiteoutFormat()
        let layerPaths = try invocation.layers()
        let paths = invocation.afterSeparator ?? []
        guard paths.count <= 1 else {
            throw CommandLineParser.UsageError(
                "Unexpected argument '\(invocation.display(paths[1]))': give one path after '--'")
        }
        let long = invocation.flag("long")
        let recursive = invocation.flag("recursive")
        let json = invocation.flag("json")
        // ls shows no hashes: tarball content is not hashed.
        let stack = try InspectedStack(layers: layerPaths, format: format, hashArchiveContent: false)
        defer { stack.close() }
        let merged = MergedPath(stack: stack)
        let raw = invocation.mergedPaths().first ?? [0x2F]
        let path = try merged.canonical(raw, followLast: true)
        var writer = JSONWriter()
        var unreadable = 0
        if json {
            writer.beginDocument(command: "ls")
            writer.layers(stack)
            writer.field("path", path.absoluteDisplay)
            writer.key("entries")
            writer.beginArray()
        }
        switch try merged.resolve(path) {
        case .root(let directories):
            try WalkStack.run { () throws(PathError) in
                try list(
                    directories, at: path, merged: merged, long: long, recursive: recursive, output: output,
                    json: json ? writer : nil, writer: &writer, header: false, errors: errors, unreadable: &unreadable)
            }
        case .found(let entry, let parent):
            if entry.status.type == .directory {
                try WalkStack.run { () throws(PathError) in
                    try list(
                        entry.directories, at: path, merged: merged, long: long, recursive: recursive,
                        output: output, json: json ? writer : nil, writer: &writer, header: false, errors: errors,
                        unreadable: &unreadable)
                }
            } else {
                var single = try merged.listing(parent, at: path.parent, long: true, recursive: false)
                single = single.filter { $0.name == path.lastName }
                emit(single, in: path.parent, stack: stack, long: long, output: output, json: json, writer: &writer)
            }
        case .whitedOut(let layer, let prefix):
            throw PathError(
                path: path.absoluteDisplay,
                reason:
                    "not in the merged tree (deleted by a whiteout of \(prefix.absoluteDisplay) in layer \(layer.rawValue + 1))"
            )
        case .absent(let prefix):
            throw PathError(
                path: path.absoluteDisplay,
                reason: prefix == path
                    ? "no such file or directory in the merged tree"
                    : "no such file or directory in the merged tree (\(prefix.absoluteDisplay) is missing)")
        case .notDirectory(let prefix, _, let type):
            throw PathError(
                path: path.absoluteDisplay, reason: "not a directory (\(prefix.absoluteDisplay) is a \(type))")
        }
        if json {
            writer.endArray()
            writer.endObject()
            output.write(writer.takeText() + "\n")
        }
        return unreadable == 0 ? ExitCode.success : ExitCode.failure
    }

    private static func list(
        _ directories: [LayerDirectory], at path: RelativePath, merged: MergedPath, long: Bool, recursive: Bool,
        output: OutputBuffer, json: JSONWriter?, writer: inout JSONWriter, header: Bool, errors: OutputBuffer,
        unreadable: inout Int
    ) throws(PathError) {
        guard WalkStack.hasRoom() else {
            throw PathError(
                path: path.absoluteDisplay,
                reason: "directories nested too deeply to list (\(path.components.count) levels)")
        }
        let entries: [ListedEntry]
        do {
            entries = try merged.listing(directories, at: path, long: long, recursive: recursive)
        } catch {
            // A subdirectory that cannot be read is reported and skipped, as ls -R does; the
            // listing goes on and the exit status says something was missed.
            guard header else { throw error }
            output.flush()
            errors.write("Error: \(error.description)\n")
            errors.flush()
            unreadable += 1
            return
        }
        if json == nil && recursive {
            if header { output.write("\n") }
            output.write(path.absoluteDisplay + ":\n")
        }
        emit(entries, in: path, stack: merged.stack, long: long, output: output, json: json != nil, writer: &writer)
        guard recursive else { return }
        for entry in entries where entry.type == .directory {
            if let problem = entry.unreadable {
                output.flush()
                errors.write("Error: \(problem.description)\n")
                errors.flush()
                unreadable += 1
                continue
            }
            try list(
                entry.directories, at: path.appending(entry.name), merged: merged, long: long, recursive: true,
                output: output, json: json, writer: &writer, header: true, errors: errors, unreadable: &unreadable)
        }
    }

    private static func emit(
        _ entries: [ListedEntry], in path: RelativePath, stack: InspectedStack, long: Bool, output: OutputBuffer,
        json: Bool, writer: inout JSONWriter
    ) {
        if json {
            for entry in entries {
                writer.beginObject()
                writer.field("path", path.appending(entry.name).absoluteDisplay)
                writer.field("name", entry.name.description)
                writer.field("layer", entry.layer.rawValue + 1)
                if let status = entry.status {
                    EntryFormat.writeMetadata(status, target: entry.linkTarget, hash: nil, to: &writer)
                } else {
                    writer.field("type", EntryFormat.typeWord(entry.type))
                }
                if let problem = entry.unreadable { writer.field("error", problem.description) }
                writer.endObject()
            }
            if writer.text.utf8.count > 1 << 20 { output.write(writer.takeText()) }
            return
        }
        guard long else {
            for entry in entries {
                output.write(EntryFormat.layerLabel(entry.layer) + "  " + entry.name.description + "\n")
            }
            return
        }
        var rows: [[String]] = []
        for entry in entries {
            guard let status = entry.status else { continue }
            rows.append([
                EntryFormat.modeString(status), String(status.linkCount), String(status.userID), String(status.groupID),
                EntryFormat.sizeText(status), EntryFormat.date(status.modificationTime),
                EntryFormat.layerLabel(entry.layer),
            ])
        }
        var widths = Array(repeating: 0, count: 7)
        for row in rows { for (column, cell) in row.enumerated() { widths[column] = max(widths[column], cell.count) } }
        var index = 0
        for entry in entries {
            guard entry.status != nil else { continue }
            let row = rows[index]
            index += 1
            var line = row[0] + " " + padLeft(row[1], widths[1]) + " " + padRight(row[2], widths[2]) + " "
            line += padRight(row[3], widths[3]) + " " + padLeft(row[4], widths[4]) + " " + row[5] + " "
            line += padRight(row[6], widths[6]) + " " + entry.name.description
            if let target = entry.linkTarget { line += " -> " + escapeForDisplay(target) }
            output.write(line + "\n")
        }
    }
}
