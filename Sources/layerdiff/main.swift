import DiffEngine
import Glibc

// Parses, runs and maps the outcome to diff(1)'s exit status: all in LayerDiffCommand.
exit(LayerDiffCommand.main(Array(CommandLine.arguments.dropFirst())))
