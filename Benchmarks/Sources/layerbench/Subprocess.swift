import Glibc

/// What a finished child process did: its exit status, what it wrote to stdout (counted, and
/// kept when asked), what it wrote to stderr, and its resource usage from `wait4(2)`.
struct ProcessResult {
    /// The exit status (0...255), or 128 + signal number when it was killed.
    var status: Int32
    /// Bytes written to stdout.
    var outputBytes: Int
    /// Newlines written to stdout.
    var outputLines: Int
    /// Stdout, when the caller asked to keep it (up to the limit it gave).
    var output: [UInt8]
    /// Stderr (the first 64 KiB).
    var errorText: String
    /// Peak resident set size of the child and the descendants it waited for, in KiB.
    var peakRSSKiB: Int
    /// User plus system CPU seconds of the child and its waited-for descendants.
    var cpuSeconds: Double

    /// Stdout as text.
    var outputText: String { String(decoding: output, as: UTF8.self) }
}

/// A failure to run a command, or a command that exited with an unexpected status.
struct CommandError: Error, CustomStringConvertible {
    var description: String
}

/// Starts programs with `posix_spawnp(3)` (no shell), drains their stdout through a pipe while
/// they run, and reaps them with `wait4(2)` so that their peak RSS and CPU time are known.
enum Subprocess {
    /// Runs `arguments` (the first is the program, looked up in PATH) and waits for it.
    ///
    /// - Parameters:
    ///   - arguments: the program and its arguments.
    ///   - directory: the working directory of the child (default: inherited).
    ///   - keepOutput: how many bytes of stdout to keep in ``ProcessResult/output``.
    ///   - allowedStatus: exit statuses that count as success (`diff` exits 1 on a difference).
    /// - Returns: the result.
    /// - Throws: ``CommandError`` when the program cannot be started or exits with another status.
    @discardableResult
    static func run(
        _ arguments: [String], directory: String? = nil, keepOutput: Int = 0, allowedStatus: Set<Int32> = [0]
    ) throws -> ProcessResult {
        let result = try spawnAndWait(arguments, directory: directory, keepOutput: keepOutput)
        guard allowedStatus.contains(result.status) else {
            let message = result.errorText.isEmpty ? result.outputText : result.errorText
            throw CommandError(
                description: "\(arguments.joined(separator: " ")) exited with status \(result.status)"
                    + (message.isEmpty ? "" : ": " + String(message.suffix(600))))
        }
        return result
    }

    /// Runs a command line through `/bin/sh -c` (for set-up steps, never for timed work).
    @discardableResult
    static func shell(_ command: String, keepOutput: Int = 1 << 20, allowedStatus: Set<Int32> = [0]) throws
        -> ProcessResult
    {
        try run(["/bin/sh", "-c", command], keepOutput: keepOutput, allowedStatus: allowedStatus)
    }

    /// Starts `arguments` in the background with stdin from /dev/null and stdout and stderr
    /// appended to `logPath`; returns its pid. The caller reaps it with ``reap(_:)``.
    static func start(_ arguments: [String], logPath: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        return try spawn(arguments, actions: &actions)
    }

    /// Waits for a child started by ``start(_:logPath:)`` and returns its exit status.
    @discardableResult
    static func reap(_ pid: pid_t) -> Int32 {
        var status: CInt = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return decode(status)
    }

    /// Whether a child started by ``start(_:logPath:)`` has exited (reaping it if so).
    static func hasExited(_ pid: pid_t) -> Bool {
        var status: CInt = 0
        let result = waitpid(pid, &status, WNOHANG)
        return result == pid || (result < 0 && errno == ECHILD)
    }

    private static func spawnAndWait(_ arguments: [String], directory: String?, keepOutput: Int) throws
        -> ProcessResult
    {
        var pipeEnds: [CInt] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else {
            throw CommandError(description: "pipe: \(String(cString: strerror(errno)))")
        }
        // This process starts children from one thread only, so setting close-on-exec after
        // pipe(2) cannot leak the descriptors into another child.
        for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let errorFile = tmpfile()
        defer { if let errorFile { fclose(errorFile) } }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 1)
        if let errorFile { posix_spawn_file_actions_adddup2(&actions, fileno(errorFile), 2) }

        let pid: pid_t
        do {
            pid = try spawn(arguments, actions: &actions, directory: directory)
        } catch {
            close(pipeEnds[0])
            close(pipeEnds[1])
            throw error
        }
        close(pipeEnds[1])

        var result = ProcessResult(
            status: 0, outputBytes: 0, outputLines: 0, output: [], errorText: "", peakRSSKiB: 0, cpuSeconds: 0)
        let bufferSize = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = read(pipeEnds[0], buffer.baseAddress, bufferSize)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
            result.outputBytes += count
            result.outputLines += chunk.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
            if result.output.count < keepOutput {
                result.output.append(contentsOf: chunk.prefix(keepOutput - result.output.count))
            }
        }
        close(pipeEnds[0])

        var status: CInt = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        result.status = decode(status)
        result.peakRSSKiB = usage.ru_maxrss
        result.cpuSeconds =
            Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
            + Double(usage.ru_stime.tv_usec) / 1e6
        if let errorFile {
            rewind(errorFile)
            var bytes = [UInt8](repeating: 0, count: 65_536)
            let count = fread(&bytes, 1, bytes.count, errorFile)
            result.errorText = String(decoding: bytes.prefix(count), as: UTF8.self)
        }
        return result
    }

    /// Spawns; with `directory`, the child starts there. glibc's posix_spawn_file_actions_addchdir_np
    /// is not visible to Swift, so the parent changes directory around the spawn (it starts
    /// children from one thread only).
    private static func spawn(
        _ arguments: [String], actions: inout posix_spawn_file_actions_t, directory: String? = nil
    ) throws -> pid_t {
        guard let program = arguments.first else { throw CommandError(description: "empty command") }
        var saved: CInt = -1
        if let directory {
            saved = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard saved >= 0, chdir(directory) == 0 else {
                let error = errno
                if saved >= 0 { close(saved) }
                throw CommandError(description: "cannot enter \(directory): \(String(cString: strerror(error)))")
            }
        }
        defer {
            if saved >= 0 {
                _ = fchdir(saved)
                close(saved)
            }
        }
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let error = posix_spawnp(&pid, program, &actions, nil, argv, environ)
        guard error == 0 else {
            throw CommandError(description: "cannot run \(program): \(String(cString: strerror(error)))")
        }
        return pid
    }

    private static func decode(_ status: CInt) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}

/// Quotes `text` for /bin/sh.
func shellQuote(_ text: String) -> String {
    "'" + text.replacingAll("'", with: "'\\''") + "'"
}

extension String {
    /// This string with every `target` replaced by `replacement`.
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for character in self {
            if character == target { out += replacement } else { out.append(character) }
        }
        return out
    }
}
