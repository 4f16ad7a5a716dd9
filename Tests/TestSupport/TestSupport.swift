import Foundation
import Glibc
import LayerCore

/// A fresh 0700 directory under `$TMPDIR` (or /var/tmp when that is tmpfs-less), removed when
/// the object goes away (after `chmod -R u+w`).
public final class TemporaryDirectory: @unchecked Sendable {
    // @unchecked: immutable after init; deinit is the only mutation.
    /// The directory's absolute path.
    public let path: String

    /// Creates the directory.
    public init(prefix: String = "layermount-test") {
        let base = ProcessInfo.processInfo.environment["LAYERMOUNT_TEST_TMP"] ?? "/var/tmp"
        var template = Array("\(base)/\(prefix).XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> Bool in
            guard let base = buffer.baseAddress else { return false }
            return mkdtemp(base) != nil
        }
        precondition(made, "mkdtemp failed under \(base): \(Errno.current)")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        chmod(path, 0o700)
    }

    /// `path/relative`.
    public func url(_ relative: String) -> String { relative.isEmpty ? path : path + "/" + relative }

    deinit {
        _ = shell("chmod -R u+w \(shellQuote(path)) 2>/dev/null; rm -rf --one-file-system \(shellQuote(path))")
    }
}

/// Quotes a string for /bin/sh.
public func shellQuote(_ s: String) -> String {
    "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// The result of running a process.
public struct ProcessResult: Sendable {
    /// The exit status (or 128 + signal).
    public var status: Int32
    /// Everything written to stdout.
    public var stdout: Data
    /// Everything written to stderr.
    public var stderr: Data
    /// stdout as UTF-8 text (lossy).
    public var out: String { String(decoding: stdout, as: UTF8.self) }
    /// stderr as UTF-8 text (lossy).
    public var err: String { String(decoding: stderr, as: UTF8.self) }
}

/// Runs `executable` with `arguments`, draining stdout and stderr while it runs, and waits at
/// most `timeout` seconds (then SIGKILL, status 137).
@discardableResult
public func run(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
    stdin: Data? = nil, timeout: TimeInterval = 120
) -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let outPipe = Pipe()
    let errPipe = Pipe()
    let inPipe = Pipe()
    process.standardOutput = outPipe
    process.standardError = errPipe
    process.standardInput = stdin == nil ? FileHandle.nullDevice : inPipe
    let collected = Collected()
    let group = DispatchGroup()
    for (pipe, isOut) in [(outPipe, true), (errPipe, false)] {
        group.enter()
        DispatchQueue.global().async {
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            collected.set(data, isOut: isOut)
            group.leave()
        }
    }
    do {
        try process.run()
    } catch {
        return ProcessResult(status: 127, stdout: Data(), stderr: Data("cannot run \(executable): \(error)".utf8))
    }
    if let stdin {
        inPipe.fileHandleForWriting.write(stdin)
        try? inPipe.fileHandleForWriting.close()
    }
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
    }
    process.waitUntilExit()
    group.wait()
    let status =
        process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    return ProcessResult(status: status, stdout: collected.out, stderr: collected.err)
}

/// Runs a /bin/sh command line and returns its result.
@discardableResult
public func shell(_ command: String, timeout: TimeInterval = 300) -> ProcessResult {
    run("/bin/sh", ["-c", command], timeout: timeout)
}

private final class Collected: @unchecked Sendable {
    // @unchecked: every access goes through `lock`.
    private let lock = NSLock()
    private var outData = Data()
    private var errData = Data()
    func set(_ data: Data, isOut: Bool) {
        lock.lock()
        if isOut { outData = data } else { errData = data }
        lock.unlock()
    }
    var out: Data { lock.lock(); defer { lock.unlock() }; return outData }
    var err: Data { lock.lock(); defer { lock.unlock() }; return errData }
}

/// The directory holding the built executables (`.build/debug` or what `LAYERMOUNT_BIN_DIR` says).
public func builtProductsDirectory() -> String {
    if let dir = ProcessInfo.processInfo.environment["LAYERMOUNT_BIN_DIR"] { return dir }
    // The test bundle lives in .build/<config>/; the executables sit beside it.
    let bundle = Bundle.main.bundleURL
    var url = bundle
    for _ in 0..<4 {
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("layermount").path) { return url.path }
        url = url.deletingLastPathComponent()
    }
    return bundle.path
}

/// The path of a built executable (`layermount`, `layerdiff`).
public func builtExecutable(_ name: String) -> String {
    builtProductsDirectory() + "/" + name
}

/// The whole contents of a file read with `read(2)` until end of file, or nil when it cannot
/// be opened. Unlike `FileManager.contents(atPath:)` this reads all of a `/proc` file, whose
/// size `stat` reports as 0 (Foundation then returns only the first chunk).
public func readWholeFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { return count == 0 ? bytes : nil }
        bytes.append(contentsOf: chunk[0..<count])
    }
}
