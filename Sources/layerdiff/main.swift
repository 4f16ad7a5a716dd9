import DiffEngine
import Glibc
import LayerCore

// Parses, runs and maps the outcome to diff(1)'s exit status: all in LayerDiffCommand.
// Paths are taken as text: an argument that is not UTF-8 is refused (exit 2, diff(1)'s
// "trouble") rather than decoded lossily into the name of another file.
// Before anything is opened: no tree or output may land on a closed 0, 1 or 2.
FileDescriptor.openStandardDescriptors()
do {
    exit(LayerDiffCommand.main(try ProcessArguments.utf8()))
} catch {
    let message = Array("Error: \(error)\n".utf8)
    _ = message.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    exit(2)
}
