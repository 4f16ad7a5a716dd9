import Foundation
import Glibc
import LayerCore
import TestSupport
import Testing

/// What a signalled run left: exit status and output.
struct SignalledRun {
    var status: Int32
    var out: String
    var err: String
}

/// Runs `layermount` with `arguments`, waits until `ready()` holds (polling every 2 ms, at
/// most `timeout` seconds), sends `signal` from this process, and waits for the exit.
///
/// - Returns: the result, and whether the signal was sent while the command was still running.
func layermountSignalled(
    _ arguments: [String], environment: [String: String], signal: Int32, timeout: TimeInterval = 120,
    when ready: () -> Bool
) throws -> (SignalledRun, sentMidRun: Bool) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: builtExecutable("layermount"))
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let outFile = TemporaryDirectory(prefix: "layermount-signal")
    _ = FileManager.default.createFile(atPath: outFile.url("out"), contents: nil)
    _ = FileManager.default.createFile(atPath: outFile.url("err"), contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outFile.url("out")))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: outFile.url("err")))
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    var sent = false
    while process.isRunning && Date() < deadline {
        if ready() {
            sent = process.isRunning
            kill(process.processIdentifier, signal)
            break
        }
        usleep(2_000)
    }
    if !sent { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    let status =
        process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    let result = SignalledRun(
        status: status, out: (try? String(contentsOfFile: outFile.url("out"), encoding: .utf8)) ?? "",
        err: (try? String(contentsOfFile: outFile.url("err"), encoding: .utf8)) ?? "")
    return (result, sent)
}

/// The names in `directory` (empty when it is missing).
func names(in directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
}

/// Whether anything is below `directory` (one level down counts).
func hasGrandchildren(_ directory: String) -> Bool {
    names(in: directory).contains { !names(in: directory + "/" + $0).isEmpty }
}

@Suite("inspect commands stopped by a signal leave nothing behind", .tags(.medium), .serialized)
struct InspectInterruptTests {
    /// Three tarball layers of a few thousand incompressible files each (enough work that a
    /// signal sent once the first output appears arrives mid-run).
    static func tarballs(_ temp: TemporaryDirectory) throws -> [String] {
        let source = temp.url("src")
        let made = shell(
            "mkdir -p \(shellQuote(source)) && cd \(shellQuote(source)) && for d in $(seq 1 8); do mkdir d$d; "
                + "head -c 1500000 /dev/urandom | split -b 20000 -a 3 - d$d/f; done")
        try #require(made.status == 0, "\(made.err)")
        let tarballs = [temp.url("l1.tar"), temp.url("l2.tar.gz"), temp.url("l3.tar.zst")]
        for (tarball, flag) in zip(tarballs, ["", "-z", "--zstd"]) {
            let packed = shell("tar -C \(shellQuote(source)) \(flag) -cf \(shellQuote(tarball)) .")
            try #require(packed.status == 0, "\(packed.err)")
        }
        return tarballs
    }

    static let signals: [(Int32, Int32)] = [(SIGINT, 130), (SIGTERM, 143), (SIGHUP, 129)]

    /// flatten to a tarball: the `.partial-` file and the scratch skeletons are removed.
    @Test func flattenToATarballLeavesNoPartialFile() throws {
        let temp = TemporaryDirectory()
        let layers = try Self.tarballs(temp)
        for (signal, status) in Self.signals {
            let scratch = temp.url("scratch\(signal)")
            let outputs = temp.url("out\(signal)")
            mkdir(scratch, 0o700)
            mkdir(outputs, 0o755)
            let (result, midRun) = try layermountSignalled(
                ["flatten"] + layers + ["--to", outputs + "/k.tar.gz"], environment: ["TMPDIR": scratch],
                signal: signal
            ) { names(in: outputs).contains { $0.hasPrefix("k.tar.gz.partial-") } }
            #expect(midRun, "the command ended before the signal: make the input bigger")
            #expect(result.status == status, "signal \(signal): \(result.err)")
            #expect(result.err.isEmpty, "\(result.err)")
            #expect(names(in: outputs) == [], "signal \(signal)")
            #expect(names(in: scratch) == [], "signal \(signal)")
        }
    }

    /// flatten to a directory: the scratch skeletons and the half-built tree are removed; a
    /// destination flatten created is removed, an existing empty one stays empty.
    @Test func flattenToADirectoryLeavesNothingPartial() throws {
        let temp = TemporaryDirectory()
        let layers = try Self.tarballs(temp)
        for (signal, status) in Self.signals {
            for existing in signal == SIGTERM ? [true] : [false] {
                let scratch = temp.url("scratch\(signal)\(existing)")
                let parent = temp.url("out\(signal)\(existing)")
                mkdir(scratch, 0o700)
                mkdir(parent, 0o755)
                let destination = parent + "/dir"
                if existing { mkdir(destination, 0o755) }
                let (result, midRun) = try layermountSignalled(
                    ["flatten"] + layers + ["--to", destination], environment: ["TMPDIR": scratch], signal: signal
                ) { hasGrandchildren(destination) }
                #expect(midRun, "the command ended before the signal: make the input bigger")
                #expect(result.status == status, "signal \(signal): \(result.err)")
                #expect(result.err.isEmpty, "\(result.err)")
                #expect(names(in: parent) == (existing ? ["dir"] : []), "signal \(signal)")
                #expect(names(in: destination) == [], "signal \(signal)")
                #expect(names(in: scratch) == [], "signal \(signal)")
            }
        }
    }

    /// inspect (and ls, which) of tarball layers: the skeletons are removed even when the
    /// signal comes while they are being built, and no error is printed.
    @Test(arguments: [["inspect"], ["ls", "-lR"], ["which"]])
    func readingCommandsLeaveNoScratch(command: [String]) throws {
        let temp = TemporaryDirectory()
        let layers = try Self.tarballs(temp)
        for (signal, status) in command == ["inspect"] ? Self.signals : [Self.signals[0]] {
            let scratch = temp.url("scratch\(signal)")
            mkdir(scratch, 0o700)
            var arguments = command + layers
            if command == ["which"] { arguments += ["--", "/d1/f1"] }
            // Once the second layer's skeleton has entries, the index is being built.
            let (result, midRun) = try layermountSignalled(arguments, environment: ["TMPDIR": scratch], signal: signal)
            {
                names(in: scratch).contains { hasGrandchildren(scratch + "/" + $0 + "/layer2") }
            }
            #expect(midRun, "the command ended before the signal: make the input bigger")
            #expect(result.status == status, "\(command) signal \(signal): \(result.err)")
            #expect(result.err.isEmpty, "\(command): \(result.err)")
            #expect(result.out.isEmpty, "\(command)")
            #expect(names(in: scratch) == [], "\(command) signal \(signal)")
        }
    }
}
