import Glibc
import LayerCore

/// A directory of one side, listed: its open descriptor and its entries, sorted by name.
struct Listing: Sendable {
    /// The directory, open `O_RDONLY | O_DIRECTORY`.
    let directory: FileDescriptor
    /// The entries with metadata (empty when only names were asked for).
    let entries: [SideEntry]
    /// The names, sorted (also filled when only names were asked for).
    let names: [FileName]
}

/// Opens and lists one directory of one side on a pool thread, so the walk finds the listing
/// ready when it gets there.
final class ListingJob: Job, @unchecked Sendable {
    // @unchecked Sendable: see Job (the result is written once before `finished`).
    /// Where the directory is: open already, or a name in an open parent.
    enum Source: Sendable {
        case open(FileDescriptor)
        case child(FileDescriptor, FileName)
    }

    private let source: Source
    private let path: RelativePath
    private let reader: SideReader
    private let namesOnly: Bool
    private var result: Result<Listing, DiffError> = .failure(DiffError(path: "", reason: "not listed"))

    /// A job listing the directory at `path` of the side read by `reader`.
    ///
    /// - Parameter namesOnly: list names without examining entries (the lower side of an
    ///   overlay diff, where most names are only counted).
    init(_ source: Source, path: RelativePath, reader: SideReader, namesOnly: Bool = false) {
        self.source = source
        self.path = path
        self.reader = reader
        self.namesOnly = namesOnly
    }

    override func execute(_ context: WorkerContext) {
        result = Result { () throws(DiffError) -> Listing in
            let directory: FileDescriptor
            switch source {
            case .open(let fd): directory = fd
            case .child(let parent, let name): directory = try reader.openDirectory(name, in: parent, path: path)
            }
            if namesOnly {
                do throws(Errno) {
                    let names = try TreeWalker.names(of: directory, sorted: true)
                    return Listing(directory: directory, entries: [], names: names)
                } catch {
                    throw DiffError(path: reader.display(path), "cannot list directory", error)
                }
            }
            let entries = try reader.entries(of: directory, path: path)
            return Listing(directory: directory, entries: entries, names: entries.map(\.name))
        }
    }

    /// The listing; call after the job finished.
    ///
    /// - Throws: the ``DiffError`` the listing met.
    func listing() throws(DiffError) -> Listing { try result.get() }
}
