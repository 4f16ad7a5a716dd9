import LayerCore

/// `layermount flatten LAYER... --to DIR | --to FILE.tar[.gz|.zst]`.
enum FlattenSubcommand: Subcommand {
    static let description = CommandLineParser.Command(
        name: "layermount flatten",
        overview: "Write a stack's merged tree as one plain directory or one layer tarball, without mounting.",
        usage: "[--whiteout-format <format>] [--json] <layer> ... --to <dir> | --to <file>.tar[.gz|.zst]",
        arguments: [InspectCommand.layersArgument],
        options: [
            CommandLineParser.Option(
                "to", value: "<destination>",
                help: "Where to write: a name ending in .tar, .tar.gz (.tgz) or .tar.zst (.tzst) is written as an "
                    + "OCI layer tarball (replaced atomically if it exists); anything else is a directory, created "
                    + "or empty."),
            InspectCommand.whiteoutFormatOption,
            InspectCommand.jsonOption,
        ],
        discussion: """
            The result is the tree the mount serves, as copying it out of the mount would give: every visible entry
            with its type, mode, owner, times, xattrs (overlay-private ones dropped), content, link target and
            device numbers; names that are one inode in a layer stay hard links; whiteouts and opaque markers are
            applied, never copied. Entries are written in bytewise path order, so a tarball of the same stack is
            byte-identical (PAX, gzip without timestamp). Tarball layers are extracted to a scratch directory
            first ($TMPDIR, default /var/tmp). Without root, ownership and privileged xattrs are not kept and
            device nodes are skipped (listed, exit 1). A failed directory target keeps what was written.

            EXAMPLES:
              layermount flatten base/ app/ --to rootfs/
              layermount flatten layer1.tar.gz layer2.tar.gz --to image.tar.zst
            """)

    static func run(_ parsed: CommandLineParser.Parsed, output: OutputBuffer, errors: OutputBuffer) throws -> Int32 {
        let format = try InspectCommand.whiteoutFormat(parsed)
        var paths = try InspectCommand.layers(parsed)
        if let extra = parsed.afterSeparator { paths += extra }
        guard let destination = parsed.value("to"), !destination.isEmpty else {
            throw CommandLineParser.UsageError("Missing expected argument '--to <destination>'")
        }
        let target = FlattenTarget(destination)
        let stack = try InspectedStack(paths: paths, format: format, extractArchives: true)
        defer { stack.close() }
        var summary = try Flattener.flatten(stack, to: target)
        summary.skipped = stack.extractionSkipped + summary.skipped
        if parsed.flag("json") {
            var json = JSONWriter()
            json.beginDocument(command: "flatten")
            json.layers(stack)
            json.field("to", destination)
            switch target {
            case .directory: json.field("kind", "directory")
            case .archive(_, let compression): json.field("kind", compression == .none ? "tar" : "tar+\(compression)")
            }
            json.field("entries", summary.entries)
            json.field("files", summary.files)
            json.field("directories", summary.directories)
            json.field("symlinks", summary.symlinks)
            json.field("specials", summary.specials)
            json.field("hard_links", summary.hardLinks)
            json.field("bytes", summary.bytes)
            if let archive = summary.archive {
                json.field("size", archive.size)
                json.field("digest", archive.digest.description)
                json.field("diff_id", archive.diffID.description)
                json.field("media_type", archive.compression.mediaType)
            }
            json.key("skipped")
            json.beginArray()
            for line in summary.skipped { json.value(line) }
            json.endArray()
            json.endObject()
            output.write(json.text + "\n")
        } else {
            var line = "\(destination): \(summary.entries) entries (\(summary.files) files, "
            line += "\(summary.directories) directories, \(summary.symlinks) symlinks, \(summary.specials) other), "
            line += "\(humanBytes(summary.bytes)) of file data"
            if let archive = summary.archive {
                line += "; \(archive.compression.mediaType), \(humanBytes(archive.size)), digest \(archive.digest), "
                line += "diff_id \(archive.diffID)"
            }
            output.write(line + "\n")
        }
        for line in summary.skipped { errors.write("warning: skipped \(line)\n") }
        if !summary.skipped.isEmpty {
            errors.write("Error: \(destination): \(summary.skipped.count) entries could not be written (see above)\n")
            return ExitCode.failure
        }
        return ExitCode.success
    }
}
