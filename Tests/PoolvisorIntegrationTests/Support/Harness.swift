import CShim
import Foundation
import Glibc
import TestServers
import Testing

// Support code for the integration tests: locating the `poolvisor` binary, temporary directories,
// launching the real supervisor and watching its output, and waiting on facts with deadlines.
//
// Everything that blocks here (waitForExit, waitForLine, waitUntil, ...) waits on its own
// Foundation threads and condition variables, never on Swift concurrency tasks, so it is safe to
// call from synchronous or asynchronous @Test functions alike.

// MARK: - Errors

enum HarnessError: Error, CustomStringConvertible {
    case binaryNotFound(String)
    case spawnFailed(executable: String, errno: Int32)
    case system(call: String, errno: Int32)

    var description: String {
        switch self {
        case .binaryNotFound(let message):
            return message
        case .spawnFailed(let executable, let code):
            return "posix_spawn(\(executable)) failed: \(String(cString: strerror(code))) (errno \(code))"
        case .system(let call, let code):
            return "\(call) failed: \(String(cString: strerror(code))) (errno \(code))"
        }
    }
}

// MARK: - Harness

enum Harness {
    /// Where the `poolvisor` executable is expected: `$POOLVISOR_BIN` if set, else next to the running
    /// test bundle (`swift test` runs it from `.build/<triple>/debug/`, where `swift build` puts
    /// `poolvisor`). This only computes the path; `requirePoolvisorBinary()` (and `PoolvisorProcess`)
    /// check that it exists and fail with a clear message if not.
    static var poolvisorBinary: String {
        if let override = ProcessInfo.processInfo.environment["POOLVISOR_BIN"], !override.isEmpty {
            return override
        }
        if let exe = ProcFS.readLink("/proc/self/exe") {
            let sibling = (exe as NSString).deletingLastPathComponent + "/poolvisor"
            if access(sibling, X_OK) == 0 { return sibling }
        }
        // Fallback for runners that live elsewhere: the package's own build directory.
        let fromWorkingDirectory = FileManager.default.currentDirectoryPath + "/.build/debug/poolvisor"
        if access(fromWorkingDirectory, X_OK) == 0 { return fromWorkingDirectory }
        if let exe = ProcFS.readLink("/proc/self/exe") {
            return (exe as NSString).deletingLastPathComponent + "/poolvisor"
        }
        return fromWorkingDirectory
    }

    /// `poolvisorBinary`, checked to be an executable file.
    static func requirePoolvisorBinary() throws -> String {
        let path = poolvisorBinary
        guard access(path, X_OK) == 0, !FileManager.default.isDirectory(path) else {
            let source =
                ProcessInfo.processInfo.environment["POOLVISOR_BIN"].map { "POOLVISOR_BIN=\($0)" }
                ?? "next to the test bundle (\(ProcFS.readLink("/proc/self/exe") ?? "?"))"
            throw HarnessError.binaryNotFound(
                "poolvisor binary not found at \(path) (looked \(source)); build it first with `swift build`, "
                    + "or set POOLVISOR_BIN to its path")
        }
        return path
    }

    /// The environment a supervisor gets unless a test says otherwise.
    static let minimalEnvironment: [String: String] = [
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/root",
    ]

    /// Set POOLVISOR_TEST_ECHO=1 to copy every captured output line to the test runner's stderr.
    static var echoOutput: Bool {
        ProcessInfo.processInfo.environment["POOLVISOR_TEST_ECHO"].map { $0 != "" && $0 != "0" } ?? false
    }

    /// Runs `poolvisor <arguments>` to completion (e.g. `check --config x`) and returns what it did.
    /// On timeout the process tree is killed and `status` is nil.
    static func run(
        _ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(30)
    ) throws -> CompletedRun {
        try complete(PoolvisorProcess(arguments: arguments, environment: environment), timeout: timeout)
    }

    /// Runs any program to completion (a helper tool, not poolvisor).
    static func run(
        executable: String, _ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(30)
    ) throws -> CompletedRun {
        try complete(PoolvisorProcess(executable: executable, arguments: arguments, environment: environment), timeout: timeout)
    }

    private static func complete(_ process: PoolvisorProcess, timeout: Duration) -> CompletedRun {
        let status = process.waitForExit(timeout: timeout)
        if status == nil { process.terminate() }
        _ = process.waitForOutputEnd(timeout: .seconds(5))
        return CompletedRun(
            status: status, exitStatus: process.exitStatus,
            stdout: process.stdoutLines, stderr: process.stderrLines)
    }

    struct CompletedRun: Sendable {
        /// Exit code, or 128 + signal; nil if it timed out.
        var status: Int32?
        var exitStatus: ExitStatus?
        var stdout: [String]
        var stderr: [String]
        var allOutput: String { (stdout + stderr).joined(separator: "\n") }
    }
}

// MARK: - Waiting

extension Duration {
    var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}

/// Polls `condition` every `poll` until it is true (returns true) or `timeout` passes (returns false).
/// The condition is always evaluated at least once, and once more at the deadline.
@discardableResult
func waitUntil(
    timeout: Duration = .seconds(10), poll: Duration = .milliseconds(20), _ condition: () throws -> Bool
) rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while true {
        if try condition() { return true }
        let now = clock.now
        if now >= deadline { return false }
        let nap = min(poll, now.duration(to: deadline))
        Thread.sleep(forTimeInterval: nap.timeInterval)
        if clock.now >= deadline { return try condition() }
    }
}

/// `waitUntil`, recording a test issue ("timed out after …: <message>") if the deadline passes.
@discardableResult
func expectEventually(
    _ message: @autoclosure () -> String = "condition never became true",
    timeout: Duration = .seconds(10),
    poll: Duration = .milliseconds(20),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () throws -> Bool
) rethrows -> Bool {
    if try waitUntil(timeout: timeout, poll: poll, condition) { return true }
    Issue.record(Comment(rawValue: "timed out after \(timeout): \(message())"), sourceLocation: sourceLocation)
    return false
}

// MARK: - TempDir

/// A fresh directory `/tmp/poolvisor-test-XXXXXX`, removed (recursively) on `remove()` or deinit.
final class TempDir: @unchecked Sendable {
    let path: String
    private let lock = NSLock()
    private var removed = false

    init() throws {
        var template = Array("/tmp/poolvisor-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let made else { throw HarnessError.system(call: "mkdtemp", errno: errno) }
        path = String(cString: made)
        // Readable by workers that run as another user.
        chmod(path, 0o755)
    }

    deinit { remove() }

    /// `path/name`.
    func url(_ name: String) -> String { name.hasPrefix("/") ? name : path + "/" + name }

    /// Writes `contents` to `path/name` with exactly `mode` (not subject to the umask), creating parent
    /// directories. Returns the full path. A failure is recorded as a test issue.
    @discardableResult
    func write(_ name: String, _ contents: String, mode: mode_t = 0o644) -> String {
        let full = url(name)
        do {
            try FileManager.default.createDirectory(
                atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
            guard fd >= 0 else { throw HarnessError.system(call: "open(\(full))", errno: errno) }
            defer { close(fd) }
            let bytes = Array(contents.utf8)
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw HarnessError.system(call: "write(\(full))", errno: errno)
                }
                offset += n
            }
            guard fchmod(fd, mode) == 0 else { throw HarnessError.system(call: "fchmod(\(full))", errno: errno) }
        } catch {
            Issue.record("TempDir.write(\(name)) failed: \(error)")
        }
        return full
    }

    /// Creates `path/name` (and parents); returns the full path.
    @discardableResult
    func makeDirectory(_ name: String, mode: mode_t = 0o755) -> String {
        let full = url(name)
        do {
            try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
            chmod(full, mode)
        } catch {
            Issue.record("TempDir.makeDirectory(\(name)) failed: \(error)")
        }
        return full
    }

    /// Contents of `path/name`, or nil if it cannot be read.
    func read(_ name: String) -> String? {
        ProcFS.readText(url(name))
    }

    func exists(_ name: String) -> Bool { access(url(name), F_OK) == 0 }

    /// Deletes the directory and everything in it. Idempotent.
    func remove() {
        lock.lock()
        defer { lock.unlock() }
        guard !removed else { return }
        removed = true
        try? FileManager.default.removeItem(atPath: path)
    }
}

// MARK: - Exit status

enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    /// Reaped by someone else (waitid failed), so the status is lost.
    case unknown

    /// Shell convention: the exit code, or 128 + signal number.
    var code: Int32 {
        switch self {
        case .exited(let code): return code
        case .signaled(let sig): return 128 + sig
        case .unknown: return -1
        }
    }

    var description: String {
        switch self {
        case .exited(let code): return "exited(\(code))"
        case .signaled(let sig): return "killed by signal \(sig)"
        case .unknown: return "exit status unknown"
        }
    }
}

// MARK: - Output capture

/// Lines read from a child's stdout and stderr, filled by two reader threads.
final class OutputCapture: @unchecked Sendable {
    enum Stream: Sendable { case stdout, stderr }

    private let condition = NSCondition()
    private var stdout: [String] = []
    private var stderr: [String] = []
    private var combined: [String] = []
    private var openStreams = 2
    let label: String

    init(label: String) { self.label = label }

    func append(_ line: String, from stream: Stream) {
        condition.lock()
        switch stream {
        case .stdout: stdout.append(line)
        case .stderr: stderr.append(line)
        }
        combined.append(line)
        condition.broadcast()
        condition.unlock()
        if Harness.echoOutput {
            FileHandle.standardError.write(Data("[\(label) \(stream)] \(line)\n".utf8))
        }
    }

    func close(_ stream: Stream) {
        condition.lock()
        openStreams -= 1
        condition.broadcast()
        condition.unlock()
    }

    var stdoutLines: [String] { condition.withLock { stdout } }
    var stderrLines: [String] { condition.withLock { stderr } }
    /// Both streams, in the order the reader threads saw the lines.
    var allLines: [String] { condition.withLock { combined } }

    /// Waits until some line (already captured or arriving later) satisfies `predicate`.
    func waitForLine(timeout: Duration, where predicate: (String) -> Bool) -> String? {
        let deadline = Date(timeIntervalSinceNow: timeout.timeInterval)
        condition.lock()
        defer { condition.unlock() }
        var checked = 0
        while true {
            while checked < combined.count {
                if predicate(combined[checked]) { return combined[checked] }
                checked += 1
            }
            if openStreams == 0 { return nil }
            if !condition.wait(until: deadline) {
                // One last look at whatever arrived with the timeout.
                return combined[checked...].first(where: predicate)
            }
        }
    }

    /// Waits until both streams reached EOF (every holder of the pipes' write ends closed them).
    func waitForEnd(timeout: Duration) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout.timeInterval)
        condition.lock()
        defer { condition.unlock() }
        while openStreams > 0 {
            if !condition.wait(until: deadline) { return openStreams == 0 }
        }
        return true
    }

    /// Reads `fd` to EOF on a new thread, splitting into lines; closes `fd` at the end.
    func startReader(fd: Int32, stream: Stream) {
        let thread = Thread { [self] in
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                pending.append(contentsOf: buffer[0..<n])
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    append(String(decoding: pending[..<newline], as: UTF8.self), from: stream)
                    pending.removeSubrange(...newline)
                }
            }
            if !pending.isEmpty { append(String(decoding: pending, as: UTF8.self), from: stream) }
            Glibc.close(fd)
            close(stream)
        }
        thread.name = "\(label) \(stream) reader"
        thread.start()
    }
}

extension FileManager {
    fileprivate func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}

// MARK: - PoolvisorProcess

/// A running `poolvisor` (or any other executable), started with posix_spawn: stdin is /dev/null,
/// stdout and stderr are captured line by line, the signal mask is empty and every signal (glibc's
/// internal 32 and 33 included) has its default disposition, as under systemd — nothing of the test
/// runner's signal state leaks in (it links CShim, whose constructor blocks SIGCHLD/SIGTERM/SIGINT/
/// SIGHUP, and its threads block most signals) — and no descriptor other than 0-2 is inherited.
///
/// The child stays in the test runner's process group. `terminate()` (also run by deinit) kills the
/// process and every descendant, so a failing test does not leak workers.
final class PoolvisorProcess: @unchecked Sendable {
    let pid: Int32
    let executable: String
    let arguments: [String]
    let environment: [String: String]

    private let output: OutputCapture
    private let state = ExitState()

    /// Shared with the waiter thread (which must not retain the process object, or deinit would never
    /// run). The waiter reaps only while holding `condition`, so while it is held and `status` is nil
    /// the pid cannot have been reaped and reused: signalling it is safe.
    private final class ExitState: @unchecked Sendable {
        let condition = NSCondition()
        var status: ExitStatus?
        /// Descendants seen so far, pid → start time (to recognise them despite pid reuse).
        var knownDescendants: [Int32: UInt64] = [:]
    }

    /// `poolvisor run --config <config> <extraArguments...>`.
    convenience init(
        config: String, extraArguments: [String] = [], environment: [String: String] = [:],
        workingDirectory: String? = nil
    ) throws {
        try self.init(
            arguments: ["run", "--config", config] + extraArguments, environment: environment,
            workingDirectory: workingDirectory)
    }

    /// `poolvisor <arguments...>`.
    convenience init(
        arguments: [String], environment: [String: String] = [:], workingDirectory: String? = nil
    ) throws {
        try self.init(
            executable: Harness.requirePoolvisorBinary(), arguments: arguments,
            environment: environment, workingDirectory: workingDirectory)
    }

    /// Any executable (absolute path). `environment` is applied on top of `Harness.minimalEnvironment`
    /// (or on top of the test runner's environment with `inheritEnvironment`); `argv[0]` is `executable`.
    init(
        executable: String, arguments: [String], environment: [String: String] = [:],
        inheritEnvironment: Bool = false, workingDirectory: String? = nil, newProcessGroup: Bool = false
    ) throws {
        var env = inheritEnvironment ? ProcessInfo.processInfo.environment : Harness.minimalEnvironment
        env.merge(environment) { _, new in new }
        self.executable = executable
        self.arguments = arguments
        self.environment = env

        var stdoutPipe: [Int32] = [-1, -1]
        var stderrPipe: [Int32] = [-1, -1]
        guard cshim_pipe2(&stdoutPipe, O_CLOEXEC) == 0 else { throw HarnessError.system(call: "pipe2", errno: errno) }
        guard cshim_pipe2(&stderrPipe, O_CLOEXEC) == 0 else {
            let e = errno
            Glibc.close(stdoutPipe[0]); Glibc.close(stdoutPipe[1])
            throw HarnessError.system(call: "pipe2", errno: e)
        }

        let child: pid_t
        do {
            child = try spawnProcess(
                SpawnRequest(
                    argv: [executable] + arguments, environment: env, workingDirectory: workingDirectory,
                    stdout: stdoutPipe[1], stderr: stderrPipe[1], newProcessGroup: newProcessGroup))
        } catch {
            Glibc.close(stdoutPipe[0]); Glibc.close(stdoutPipe[1])
            Glibc.close(stderrPipe[0]); Glibc.close(stderrPipe[1])
            switch error {
            case .unsupported(let call): throw HarnessError.system(call: call, errno: ENOSYS)
            case .failed(_, let errno): throw HarnessError.spawnFailed(executable: executable, errno: errno)
            }
        }
        Glibc.close(stdoutPipe[1])
        Glibc.close(stderrPipe[1])
        pid = child
        let name = (executable as NSString).lastPathComponent
        output = OutputCapture(label: "\(name) \(child)")
        output.startReader(fd: stdoutPipe[0], stream: .stdout)
        output.startReader(fd: stderrPipe[0], stream: .stderr)
        startWaiter()
    }

    deinit { terminate() }

    private func startWaiter() {
        let pid = self.pid
        let state = self.state
        let thread = Thread {
            // Wait without reaping, then reap and record under the lock (see `ExitState`).
            var info = siginfo_t()
            var rc: Int32
            repeat { rc = waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) } while rc < 0 && errno == EINTR
            state.condition.lock()
            var raw: Int32 = 0
            var result = ExitStatus.unknown
            if rc == 0, waitpid(pid, &raw, 0) == pid {
                if cshim_wifexited(raw) != 0 {
                    result = .exited(cshim_wexitstatus(raw))
                } else if cshim_wifsignaled(raw) != 0 {
                    result = .signaled(cshim_wtermsig(raw))
                }
            }
            state.status = result
            state.condition.broadcast()
            state.condition.unlock()
        }
        thread.name = "pid \(pid) waiter"
        thread.start()
    }

    // MARK: Output

    var stdoutLines: [String] { output.stdoutLines }
    var stderrLines: [String] { output.stderrLines }
    /// Every captured line of both streams, newline-joined.
    var allOutput: String { output.allLines.joined(separator: "\n") }

    /// Whether a line containing `text` appeared (or appears within `timeout`) on stdout or stderr.
    func waitForLine(containing text: String, timeout: Duration = .seconds(10)) -> Bool {
        output.waitForLine(timeout: timeout) { $0.contains(text) } != nil
    }

    /// The first line on either stream satisfying `predicate`, waiting up to `timeout` for it.
    func waitForLine(timeout: Duration = .seconds(10), where predicate: (String) -> Bool) -> String? {
        output.waitForLine(timeout: timeout, where: predicate)
    }

    /// Waits until both output pipes are closed by everyone holding them.
    func waitForOutputEnd(timeout: Duration = .seconds(10)) -> Bool {
        output.waitForEnd(timeout: timeout)
    }

    // MARK: Lifecycle

    /// How it ended, once reaped.
    var exitStatus: ExitStatus? { state.condition.withLock { state.status } }

    var isRunning: Bool {
        state.condition.lock()
        defer { state.condition.unlock() }
        return state.status == nil && ProcFS.isAlive(pid)
    }

    /// Sends `sig` unless the process has already been reaped (never signals a recycled pid).
    func signal(_ sig: Int32) {
        state.condition.lock()
        defer { state.condition.unlock() }
        if state.status == nil { Glibc.kill(pid, sig) }
    }

    /// Waits for the process to exit. Returns its exit code (128 + signal if killed by one), or nil if
    /// it is still running after `timeout`.
    @discardableResult
    func waitForExit(timeout: Duration = .seconds(10)) -> Int32? {
        let deadline = Date(timeIntervalSinceNow: timeout.timeInterval)
        state.condition.lock()
        defer { state.condition.unlock() }
        while state.status == nil {
            if !state.condition.wait(until: deadline) { break }
        }
        return state.status?.code
    }

    /// The process's current descendants (workers and their children), breadth first. Every pid seen
    /// here is remembered, so `terminate()` kills it even if it has been reparented by then.
    var descendants: [Int32] {
        state.condition.lock()
        defer { state.condition.unlock() }
        guard state.status == nil else { return [] }  // reaped: the pid may belong to someone else now
        let found = ProcFS.descendants(of: pid)
        remember(found)
        return found
    }

    /// The process's current children (empty once it has been reaped).
    var children: [Int32] {
        state.condition.lock()
        defer { state.condition.unlock() }
        return state.status == nil ? ProcFS.children(of: pid) : []
    }

    /// SIGKILLs the supervisor only and reaps it. Its workers are left alone (to observe what happens
    /// to orphans), but they are remembered and `terminate()`/deinit will still kill survivors.
    @discardableResult
    func kill(timeout: Duration = .seconds(10)) -> Int32? {
        state.condition.lock()
        if state.status == nil {
            remember(ProcFS.descendants(of: pid))
            Glibc.kill(pid, SIGKILL)
        }
        state.condition.unlock()
        return waitForExit(timeout: timeout)
    }

    /// Kills the supervisor and every descendant, and reaps the supervisor. Idempotent.
    ///
    /// The supervisor is stopped first so it cannot start new workers; descendants are collected
    /// (and stopped, so they cannot fork either) until the set is stable; then all are SIGKILLed.
    func terminate() {
        state.condition.lock()
        if state.status == nil {
            Glibc.kill(pid, SIGSTOP)
            var stopped: Set<Int32> = []
            for _ in 0..<50 {
                let fresh = ProcFS.descendants(of: pid).filter { !stopped.contains($0) }
                if fresh.isEmpty { break }
                for child in fresh { Glibc.kill(child, SIGSTOP) }
                stopped.formUnion(fresh)
                remember(fresh)
            }
            Glibc.kill(pid, SIGKILL)
        }
        let survivors = state.knownDescendants
        state.condition.unlock()
        for (child, startTime) in survivors where ProcFS.stat(of: child)?.startTime == startTime {
            Glibc.kill(child, SIGKILL)
        }
        // Orphans that were stopped before their parent died would stay stopped: kill covers that.
        if waitForExit(timeout: .seconds(10)) == nil {
            FileHandle.standardError.write(Data("poolvisor harness: pid \(pid) did not die after SIGKILL\n".utf8))
        }
    }

    /// Remembers descendants (call with the state lock held) so they can be killed after reparenting.
    private func remember(_ pids: [Int32]) {
        for child in pids {
            if let start = ProcFS.stat(of: child)?.startTime { state.knownDescendants[child] = start }
        }
    }
}
