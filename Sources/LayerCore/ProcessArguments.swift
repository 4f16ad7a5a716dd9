/// The process's command line as the bytes the shell passed.
///
/// `CommandLine.arguments` replaces bytes that are not UTF-8 with U+FFFD, so a path such as
/// `lay\xffer` would silently name another file (`lay\u{FFFD}er`). Commands that take paths as
/// Swift strings use ``utf8()`` and refuse such an argument; commands that work on bytes use
/// ``raw()``.
public enum ProcessArguments {
    /// The arguments without the program name, byte for byte.
    public static func raw() -> [[UInt8]] {
        (1..<Int(CommandLine.argc)).map { index -> [UInt8] in
            guard let pointer = CommandLine.unsafeArgv[index] else { return [] }
            var bytes: [UInt8] = []
            var offset = 0
            while pointer[offset] != 0 {
                bytes.append(UInt8(bitPattern: pointer[offset]))
                offset += 1
            }
            return bytes
        }
    }

    /// An argument that is not valid UTF-8.
    public struct NotUTF8: Error, CustomStringConvertible {
        /// The argument's position (1 is the first after the program name).
        public var position: Int
        /// The argument's bytes.
        public var bytes: [UInt8]

        public var description: String {
            "argument \(position) '\(escapeForDisplay(bytes))' is not valid UTF-8: this command takes paths "
                + "as UTF-8 text (rename the file or reach it through a symlink with a UTF-8 name)"
        }
    }

    /// The arguments without the program name, decoded strictly as UTF-8.
    ///
    /// - Throws: ``NotUTF8`` for the first argument that is not valid UTF-8.
    public static func utf8() throws(NotUTF8) -> [String] {
        try strictlyDecoded(raw())
    }

    /// `arguments` decoded strictly as UTF-8.
    ///
    /// - Throws: ``NotUTF8`` for the first one that is not valid UTF-8.
    public static func strictlyDecoded(_ arguments: [[UInt8]]) throws(NotUTF8) -> [String] {
        var strings: [String] = []
        for (index, bytes) in arguments.enumerated() {
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw NotUTF8(position: index + 1, bytes: bytes)
            }
            strings.append(text)
        }
        return strings
    }
}
