import LayerCore

extension FileDescriptor {
    /// Copies the content of this open regular file (`size` bytes) to the empty, open regular
    /// file `destination`, keeping holes, like ``LayerCore/FileDescriptor/copyContents(to:size:piece:beforeEachPiece:)``,
    /// in pieces of at most 16 MiB with ``Interruption`` checked before each, so a signal stops
    /// even the copy of a huge file promptly.
    ///
    /// - Throws: the errno of the failing read, write or truncate; `EINTR` when stopped.
    func copyContentsInterruptibly(to destination: FileDescriptor, size: Int64) throws(Errno) {
        try copyContents(to: destination, size: size, piece: 16 << 20) { () throws(Errno) in
            try Interruption.shared.checkErrno()
        }
    }
}
