// layermount: mount a stack of layer directories as one read-only merged tree.
//
// main.swift only parses, calls the library and maps errors to exit codes. Subcommands are
// chosen by the first argument (add a case below); anything else is the mount command line.
import Glibc
import LayerCore
import OverlayFS

/// Writes `text` to stdout (one write(2), no buffering to flush before exit).
func printOut(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
}

/// Writes `text` to stderr.
func printError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

/// The mount command line: `layermount [OPTIONS] LAYER... MOUNTPOINT`, `-o lowerdir=`,
/// `--unmount MOUNTPOINT`.
func mountMain(_ arguments: [String]) -> Int32 {
    let action: MountCommand.Action
    do {
        action = try MountCommand.parse(arguments)
    } catch {
        printError(CommandLineParser(MountCommand.command).usageErrorText(error))
        return ExitCode.usage
    }
    do {
        switch action {
        case .help:
            printOut(MountCommand.help)
            return ExitCode.success
        case .version:
            printOut(LayerCoreModule.version + "\n")
            return ExitCode.success
        case .unmount(let mountPoint):
            try MountPoint.unmount(mountPoint)
            return ExitCode.success
        case .mount(let configuration):
            return try LayerMount.run(configuration)
        }
    } catch {
        printError("Error: \(error)\n")
        return ExitCode.failure
    }
}

/// `layermount help [SUBCOMMAND]`.
func helpMain(_ arguments: [String]) -> Int32 {
    switch arguments.first {
    case nil, "mount":
        printOut(MountCommand.help)
        return ExitCode.success
    case let other?:
        printError(
            "Error: Unknown subcommand '\(other)'\nUsage: layermount help [<subcommand>]\n"
                + "  See 'layermount --help' for more information.\n")
        return ExitCode.usage
    }
}

// Before anything is opened: no layer or output may land on a closed 0, 1 or 2.
FileDescriptor.openStandardDescriptors()
// The lossy decoding is only used to pick the subcommand.
let lossyArguments = Array(CommandLine.arguments.dropFirst())
// The stack-reading subcommands (inspect, which, ls, and `help <one of them>`).
// They read the raw argument bytes themselves (paths need not be UTF-8) and handle SIGINT/SIGTERM/SIGHUP.
if InspectCommand.handles(lossyArguments) { exit(InspectCommand.main()) }
// The mount takes its paths as text: refuse an argument that is not UTF-8 rather than mount
// another path (CommandLine.arguments would replace the bad bytes with U+FFFD).
let arguments: [String]
do {
    arguments = try ProcessArguments.utf8()
} catch {
    printError("Error: \(error)\n")
    exit(ExitCode.usage)
}
let status: Int32
switch arguments.first {
case "help":
    status = helpMain(Array(arguments.dropFirst()))
default:
    status = mountMain(arguments)
}
exit(status)
