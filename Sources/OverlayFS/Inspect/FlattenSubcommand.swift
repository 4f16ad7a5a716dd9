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
                    + "OCI layer tarball (replaced atomically if it exists); other compression suffixes (.tar.xz, "
                    + ".bz2, a bare .gz) are refused; anything else is a directory, created or empty.",
                repeatable: true),
            InspectCommand.whiteoutFormatOption,
            InspectCommand.jsonOption,
        ],
        discussion: """
            The result is the tree the mount serves, as copying it out of the mount would give: every visible entry
            with its type, mode, owner, times, xattrs (overlay-private ones, trusted.overlay.* and user.overlay.*,
            dropped), content, link target and device numbers; names that are one inode in a layer stay hard links
            (a hard link to a symlink too); whiteouts and opaque markers are applied, never copied. Entries are
            written in bytewise path order, so a tarball of the same stack is byte-identical (PAX, gzip without
            timestamp); a tarball layer's implied root and parents are 0755, 0:0, mtime 0. Tarball layers are read
            into a scratch directory first (under $TMPDIR, default /var/tmp). Without root, ownership and
            privileged xattrs are not kept and device nodes are skipped (listed, exit 1).

            Nothing partial is left behind: a tarball is written next to the target and renamed over it; a
            directory is built in a hidden directory inside the destination and moved into place at the end. On an
            error, SIGINT, SIGTERM or SIGHUP the partial output is removed (and the destination too, if flatten
            created it); a signal exits with 128 + its number.

            EXAMPLES:
              layermount flatten base/ app/ --to rootfs/
              layermount flatten layer1.tar.gz layer2.tar.gz --to image.tar.zst
            """)

    static func run(_ invocation: Invocation, output: OutputBuffer, errors: OutputBuffer) throws -> Int32 {
        let format = try invocation.whiteoutFormat()
        var paths = try invocation.layers()
        if let extra = invocation.afterSeparator { paths += extra.map { CommandLinePath(bytes: invocation.bytes($0)) } }
        guard let destination = try invocation.path("to", valueName: "<destination>"), !destination.bytes.isEmpty
        else {
            throw CommandLineParser.UsageError("Missing expected argument '--to <destination>'")
        }
        if let suffix = FlattenTarget.unsupportedSuffix(of: destination) {
            throw CommandLineParser.UsageError(
                "The value '\(destination)' is invalid for '--to <destination>': flatten cannot write '\(suffix)' "
                    + "files; name a layer tarball .tar, .tar.gz (.tgz) or .tar.zst (.tzst), or a directory")
        }
        let target = FlattenTarget(destination)
        let stack = try InspectedStack(
            layers: paths, format: format, hashArchiveContent: false, keepArchiveContent: true)
        defer { stack.close() }
        let summary = try Flattener.flatten(stack, to: target)
        if invocation.flag("json") {
            var json = JSONWriter()
            json.beginDocument(command: "flatten")
            json.layers(stack)
            json.field("to", destination.description)
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
            output.write(summaryLine(summary, destination: destination.description) + "\n")
        }
        for line in summary.skipped { errors.write("warning: skipped \(line)\n") }
        if !summary.skipped.isEmpty {
            errors.write(
                "Error: \(destination): "
                    + "\(InspectSubcommand.counted(summary.skipped.count, "entry", "entries")) could not be written "
                    + "(see above)\n")
            return ExitCode.failure
        }
        return ExitCode.success
    }

    /// `DEST: 3 entries (1 file, 1 directory, 1 symlink, 0 other), 2 B of file data[; tarball]`.
    static func summaryLine(_ summary: FlattenSummary, destination: String) -> String {
        let counted = InspectSubcommand.counted
        var line = "\(destination): \(counted(summary.entries, "entry", "entries")) ("
        line += "\(counted(summary.files, "file", nil)), \(counted(summary.directories, "directory", "directories")), "
        line += "\(counted(summary.symlinks, "symlink", nil)), \(summary.specials) other"
        if summary.hardLinks > 0 { line += "; \(counted(summary.hardLinks, "hard link", nil))" }
        line += "), \(humanBytes(summary.bytes)) of file data"
        if let archive = summary.archive {
            line += "; \(archive.compression.mediaType), \(humanBytes(archive.size)), digest \(archive.digest), "
            line += "diff_id \(archive.diffID)"
        }
        return line
    }
}
