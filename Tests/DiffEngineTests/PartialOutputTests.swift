import DiffEngine
import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// A failed or stopped run leaves no partial layer: `--layer-dir` is built in a hidden
/// `.layerdiff-partial-XXXXXX` and moved into place only when complete, `-o` in a temporary
/// file; a failure, SIGINT or SIGTERM removes them and a rerun succeeds.
@Suite("No partial layer after a failure or a signal", .tags(.medium))
struct PartialOutputTests {
    static var layerdiff: String { builtExecutable("layerdiff") }

    /// The names in `directory` (hidden ones too).
    static func names(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    /// A and B in `temp`; B has files, a directory and (with `socket`) a socket after them.
    static func trees(_ temp: TemporaryDirectory, socket: Bool) throws {
        let pin = LayerStep.times("keep", seconds: 1_600_000_000)
        LayerBuilder.apply([.dir(""), .file("keep", "k"), pin], in: temp.url("a"))
        LayerBuilder.apply(
            [.dir(""), .file("keep", "k"), .file("a1", "1"), .file("a2", "2"), .file("dir/f", "f"), pin],
            in: temp.url("b"))
        if socket {
            let made = shell(
                "python3 -c \"import socket;socket.socket(socket.AF_UNIX).bind('\(temp.url("b"))/z-sock')\"")
            try #require(made.status == 0, "\(made.err)")
        }
    }

    @Test("a failed --layer-dir run leaves nothing, new or existing-empty destination; a rerun works")
    func failedRunLeavesNothing() throws {
        let temp = TemporaryDirectory()
        try Self.trees(temp, socket: true)
        mkdir(temp.url("out"), 0o755)
        mkdir(temp.url("out/empty"), 0o755)
        for destination in ["out/new", "out/empty"] {
            let failed = run(Self.layerdiff, [temp.url("a"), temp.url("b"), "--layer-dir", temp.url(destination)])
            #expect(failed.status == 2)
            #expect(failed.err.contains("z-sock: a socket cannot be stored"), "\(failed.err)")
            #expect(Self.names(temp.url(destination)) == [], "\(destination)")
        }
        #expect(Self.names(temp.url("out")) == ["empty"])
        unlink(temp.url("b/z-sock"))
        for destination in ["out/new", "out/empty"] {
            let rerun = run(Self.layerdiff, [temp.url("a"), temp.url("b"), "--layer-dir", temp.url(destination)])
            #expect(rerun.status == 1, "\(rerun.err)")
            #expect(Self.names(temp.url(destination)) == ["a1", "a2", "dir"])
            let applied = temp.url("applied-" + (destination as NSString).lastPathComponent)
            copyTree(temp.url("a"), applied)
            try LayerApplier(root: applied).apply(layer: temp.url(destination), directoryFormat: .oci)
            #expect(try TreeSnapshot(temp.url("b")).differences(to: TreeSnapshot(applied)) == [])
        }
        #expect(Self.names(temp.url("out")) == ["empty", "new"])
    }

    @Test("the layer dir built into an existing empty directory gets the root's metadata")
    func existingDirectoryTakesRootMetadata() throws {
        let temp = TemporaryDirectory()
        try Self.trees(temp, socket: false)
        LayerBuilder.apply(
            [
                .chmod("", 0o750), .xattr("", name: "user.root", value: "r"), .times("dir", seconds: 1_600_000_000),
                .times("", seconds: 1_600_000_100),
            ], in: temp.url("b"))
        mkdir(temp.url("dest"), 0o755)
        var diff = LayerDiff(a: temp.url("a"), b: temp.url("b"))
        diff.output = .directory(temp.url("dest"), .oci)
        _ = try diff.run()
        var status = stat()
        #expect(lstat(temp.url("dest"), &status) == 0)
        #expect(status.st_mode & 0o7777 == 0o750)
        #expect(status.st_mtim.tv_sec == 1_600_000_100)
        #expect(lstat(temp.url("dest/dir"), &status) == 0)
        #expect(status.st_mtim.tv_sec == 1_600_000_000)
        let value = shell("getfattr --only-values -n user.root \(shellQuote(temp.url("dest")))")
        #expect(value.out == "r")
    }

    @Test("a leftover scratch directory of a killed run is named in the refusal")
    func leftoverIsNamed() throws {
        let temp = TemporaryDirectory()
        try Self.trees(temp, socket: false)
        mkdir(temp.url("dest"), 0o755)
        mkdir(temp.url("dest/.layerdiff-partial-1234abcd"), 0o700)
        let result = run(Self.layerdiff, [temp.url("a"), temp.url("b"), "--layer-dir", temp.url("dest")])
        #expect(result.status == 2)
        #expect(
            result.err
                == "Error: \(temp.url("dest")): the layer directory holds only the partial output of a killed run (.layerdiff-partial-1234abcd); remove it first\n"
        )
    }

    /// Starts a run writing a large layer, waits until its partial output exists in `watch`,
    /// sends `signal`, and returns the exit status.
    static func interrupt(_ arguments: [String], watch: String, signal: Int32) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: layerdiff)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && process.isRunning
            && !names(watch).contains(where: { $0.contains(".layerdiff-") })
        {
            usleep(5_000)
        }
        try #require(process.isRunning, "the run ended before it could be interrupted")
        usleep(100_000)
        kill(process.processIdentifier, signal)
        let stop = Date().addingTimeInterval(30)
        while process.isRunning && Date() < stop { usleep(10_000) }
        #expect(!process.isRunning, "not stopped 30 s after the signal")
        process.waitUntilExit()
        return process.terminationStatus
    }

    @Test("SIGINT and SIGTERM remove the partial layer (directory and tarball); exit 128 + signal")
    func signalsRemoveThePartialLayer() throws {
        let temp = TemporaryDirectory()
        // A large sparse file: reading it takes long enough to be interrupted, and costs no space.
        LayerBuilder.apply([.dir(""), .dir("a"), .dir("b"), .file("b/small", "s"), .file("b/big", "")], in: temp.path)
        #expect(truncate(temp.url("b/big"), 4 << 30) == 0)
        mkdir(temp.url("out"), 0o755)
        mkdir(temp.url("out/empty"), 0o755)
        let a = temp.url("a")
        let b = temp.url("b")
        let interruptedNew = try Self.interrupt(
            [a, b, "--layer-dir", temp.url("out/new")], watch: temp.url("out"), signal: SIGINT)
        #expect(interruptedNew == 130)
        #expect(Self.names(temp.url("out")) == ["empty"])
        let interruptedEmpty = try Self.interrupt(
            [a, b, "--layer-dir", temp.url("out/empty")], watch: temp.url("out/empty"), signal: SIGTERM)
        #expect(interruptedEmpty == 143)
        #expect(Self.names(temp.url("out/empty")) == [])
        let interruptedTar = try Self.interrupt(
            [a, b, "-o", temp.url("out/layer.tar")], watch: temp.url("out"), signal: SIGTERM)
        #expect(interruptedTar == 143)
        #expect(Self.names(temp.url("out")) == ["empty"])
    }
}
