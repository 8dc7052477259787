import CShim
import Glibc
import PoolvisorConfig
import PoolvisorCore
import PoolvisorLinux
import PoolvisorSystem

/// Parses a pools file's TOML in a short-lived child process: `poolvisor parse-toml` reads the text
/// from its stdin (a memfd) and writes the `ParsedDocument` as JSON to its stdout (a pipe).
///
/// Why a child: TOMLKit 0.6.0 never frees a parsed table (LebJe/TOMLKit#26), so parsing in the
/// supervisor grew it by every reload; and a parser crash on a hostile file would take down every
/// worker with it. In a child, what the parser leaks dies with it, and a crash is a refused reload.
///
/// The caller waits, but never without end: the child is killed at `timeout`, and its answer is
/// refused beyond `maximumAnswerBytes`. A parse of the largest allowed file takes milliseconds.
public enum ParserProcess {
    /// The child's side: reads the pools file's text from stdin, writes the `ParsedDocument` as JSON
    /// to stdout. Returns the exit status.
    /// - Parameter depthChecked: the supervisor has checked the text's depth (its fork of the spawn
    ///   server); a parser run by hand checks it itself.
    /// A spawn server forked for a parse runs this: only the supervisor asks (`parse`), after its own
    /// depth check. Give it to `Spawner(forkEntry:)`.
    public static let forkEntry: @convention(c) () -> Int32 = { ParserProcess.serve(depthChecked: true) }

    public static func serve(depthChecked: Bool = false) -> Int32 {
        guard case .success(let text) = RegularFile.readStream(STDIN_FILENO, limit: PoolsFileLoader.maximumFileBytes) else { return 2 }
        let document: ParsedDocument
        if !depthChecked, let deep = SourceLocator.tooDeep(in: text) {
            // The supervisor checks this first; a parser run by hand checks it too.
            document = .syntaxError(line: deep.line, column: deep.column, message: "nested deeper than \(SourceLocator.maximumDepth) levels")
        } else {
            document = TOMLDocument.parse(text)
        }
        return writeAll(STDOUT_FILENO, document.wire) ? 0 : 4
    }

    struct Failure: Error {
        var message: String
    }

    static let defaultTimeout = Duration.seconds(10)
    static let maximumAnswerBytes = 64 << 20

    /// Parses `text` in a fork of `spawner`'s spawn server when there is one (no exec: a reload of
    /// an unchanged file took 14 ms with one, most of it loading the binary), else in a new process
    /// running `executable parse-toml`.
    static func parse(
        _ text: String, executable: String, forkingFrom spawner: Spawner? = nil,
        timeout: Duration = defaultTimeout
    ) -> Result<ParsedDocument, Failure> {
        func fail(_ what: String) -> Result<ParsedDocument, Failure> {
            .failure(Failure(message: "could not parse the pools file: \(what); nothing was changed"))
        }
        let input = cshim_memfd_create("poolvisor-pools-file")
        guard input >= 0 else { return fail("memfd_create: \(SystemError.message(-input))") }
        defer { close(input) }
        guard writeAll(input, Array(text.utf8)), lseek(input, 0, SEEK_SET) == 0 else { return fail("writing its text to a memfd: \(SystemError.message(errno))") }
        var pipe: [Int32] = [-1, -1]
        guard cshim_pipe2(&pipe, O_CLOEXEC) == 0 else { return fail("pipe2: \(SystemError.message(errno))") }
        defer { close(pipe[0]) }
        _ = fcntl(pipe[0], F_SETFL, O_NONBLOCK)

        var child: Child
        if let spawner, let pid = spawner.forkParser(stdin: input, stdout: pipe[1]) {
            child = .forked(pid, server: spawner)
        } else {
            switch exec(executable, stdin: input, stdout: pipe[1]) {
            case .success(let pid): child = .executed(pid)
            case .failure(let why):
                close(pipe[1])
                return fail(why.message)
            }
        }
        close(pipe[1])

        let (answer, outcome) = collect(from: pipe[0], child: child, deadline: MonotonicClock.now() + timeout)
        switch outcome {
        case .timedOut:
            return fail("the parser took longer than \(timeout.humanReadable) and was killed")
        case .tooLarge:
            return fail("the parser's answer was larger than \(maximumAnswerBytes >> 20) MiB")
        case .serverLost:
            // The spawn server went away under the parse: parse once more the other way.
            return parse(text, executable: executable, forkingFrom: nil, timeout: timeout)
        case .exited(let status):
            if cshim_wifsignaled(status) != 0 {
                return fail("the TOML parser crashed (\(Signal(cshim_wtermsig(status)))) on it")
            }
            if cshim_wexitstatus(status) != 0 {
                return fail("the parser exited with status \(cshim_wexitstatus(status))")
            }
        }
        do {
            return .success(try ParsedDocument(wire: answer))
        } catch {
            return fail("the parser's answer was not understood (\(error)); is \(executable) the same poolvisor?")
        }
    }

    /// `executable parse-toml` in a new process, stderr to /dev/null.
    private static func exec(_ executable: String, stdin: Int32, stdout: Int32) -> Result<pid_t, Failure> {
        let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { if devNull >= 0 { close(devNull) } }
        var step: Int32 = 0
        var error: Int32 = 0
        let pid: pid_t = withCStringArray([executable, "parse-toml"]) { argv in
            withCStringArray([]) { envp in
                executable.withCString { path in
                    var request = cshim_spawn_request(
                        path: path, argv: argv, envp: envp, cwd: nil,
                        stdin_fd: stdin, stdout_fd: stdout, stderr_fd: devNull >= 0 ? devNull : stdout,
                        pdeathsig: SIGKILL, nofile_soft: -1, set_ids: 0, uid: 0, gid: 0, groups: nil, ngroups: 0,
                        set_nice: 0, nice: 0, umask: -1, cpu_mask: nil, cpu_mask_size: 0, cgroup_fds: nil, ncgroup_fds: 0)
                    return cshim_spawn(&request, &step, &error)
                }
            }
        }
        return pid > 0 ? .success(pid) : .failure(Failure(message: "starting \(executable) parse-toml: \(SystemError.message(error))"))
    }

    /// The parser's process and who reaps it.
    private enum Child {
        /// Ours (an exec): waited for through a pidfd and waitpid.
        case executed(pid_t)
        /// The spawn server's fork: its wait status comes on the server's socket.
        case forked(pid_t, server: Spawner)

        var pid: pid_t {
            switch self {
            case .executed(let pid), .forked(let pid, _): pid
            }
        }
    }

    private enum Outcome {
        case exited(Int32)
        case timedOut
        case tooLarge
        case serverLost
    }

    /// Reads the child's stdout to its end and waits for it to exit, within `timeout`; kills and reaps
    /// it otherwise at `deadline`. Waits on a pidfd (where the kernel has them, 5.3+) or the spawn
    /// server's socket beside the pipe.
    private static func collect(from fd: Int32, child: Child, deadline: Instant) -> ([UInt8], Outcome) {
        var answer: [UInt8] = []
        var status: Int32?
        let exitFD: Int32
        switch child {
        case .executed(let pid): exitFD = cshim_pidfd_open(pid)
        case .forked(_, let server): exitFD = server.forkStatusFD
        }
        defer { if case .executed = child, exitFD >= 0 { close(exitFD) } }
        /// The wait status: from waitpid, or the server's second answer (nil if the server is gone).
        func reap() -> Int32? {
            switch child {
            case .executed(let pid):
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                return status
            case .forked(_, let server):
                return server.forkStatus()
            }
        }
        func killAndReap(_ outcome: Outcome) -> ([UInt8], Outcome) {
            if status == nil {
                kill(child.pid, SIGKILL)
                if reap() == nil { return (answer, .serverLost) }
            }
            return (answer, outcome)
        }
        var chunk = [UInt8](repeating: 0, count: 65536)
        var open = true
        while open || (status == nil && exitFD >= 0) {
            let now = MonotonicClock.now()
            guard now < deadline else { return killAndReap(.timedOut) }
            var fds = [
                pollfd(fd: open ? fd : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: status == nil ? exitFD : -1, events: Int16(POLLIN), revents: 0),
            ]
            let ms = Int32(clamping: (deadline.nanoseconds - now.nanoseconds) / 1_000_000 + 1)
            let ready = poll(&fds, 2, ms)
            if ready < 0 && errno != EINTR { return killAndReap(.timedOut) }
            if fds[1].revents != 0 {
                guard let s = reap() else { return (answer, .serverLost) }
                status = s
            }
            guard open, fds[0].revents != 0 else { continue }
            while true {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    guard answer.count + n <= maximumAnswerBytes else { return killAndReap(.tooLarge) }
                    answer += chunk[0..<n]
                } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    open = false
                    break
                } else if errno == EAGAIN {
                    break
                }
            }
        }
        // The pipe is at its end and the child has exited (or, without a pidfd, is exiting: the end of
        // its output is its exit, since nothing else holds the pipe).
        if status == nil { status = reap() }
        guard let status else { return (answer, .serverLost) }
        return (answer, .exited(status))
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            written += n
        }
        return true
    }
}
