import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

@Suite("ArchiveReader on input that is not an archive", .tags(.small))
struct ArchiveReaderInputTests {
    @Test(arguments: ["", "just text, not a tar archive\n", String(repeating: "\u{1}", count: 2000)])
    func notAnArchiveThrowsInsteadOfCrashing(content: String) throws {
        let temp = TemporaryDirectory()
        LayerBuilder.apply([.file("input", content)], in: temp.path)
        let input = try FileDescriptor.open(path: temp.url("input"), flags: O_RDONLY)
        #expect(throws: ArchiveError.self) {
            let reader = try ArchiveReader(input: input)
            while try reader.next() != nil {}
        }
    }
}
