import Foundation
import Glibc

/// Why a test server could not be started or used.
public struct TestServerError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

// MARK: - Spawning

/// What to run. The child gets /dev/null on stdin, `stdout` and `stderr`, an empty signal mask and
/// default dispositions (the test runner blocks some signals: a PostgreSQL with SIGINT blocked would
/// never shut down), and no other inherited descriptor (tests running in parallel may hold some
/// without CLOEXEC). The test servers and the integration harness both spawn through this.
public struct SpawnRequest: Sendable {
    public var argv: [String]
    public var environment: [String: String]
    public var workingDirectory: String?
    public var stdout: Int32
    public var stderr: Int32
    /// The child leads a process group of its own.
    public var newProcessGroup: Bool

    public init(
        argv: [String], environment: [String: String] = ["PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"],
        workingDirectory: String? = nil, stdout: Int32, stderr: Int32, newProcessGroup: Bool = false
    ) {
        self.argv = argv
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.stdout = stdout
        self.stderr = stderr
        self.newProcessGroup = newProcessGroup
    }
}

/// Why a spawn failed.
public enum SpawnError: Error, CustomStringConvertible, Sendable {
    /// A glibc extension the request needs is missing (it has been there since glibc 2.34).
    case unsupported(call: String)
    /// posix_spawn itself failed, with this errno (the program is missing, not executable, …).
    case failed(executable: String, errno: Int32)

    public var description: String {
        switch self {
        case .unsupported(let call): "\(call) is not available"
        case .failed(let executable, let errno): "cannot start \(executable): \(String(cString: strerror(errno)))"
        }
    }
}

/// posix_spawn with what `SpawnRequest` says; argv[0] is the executable's path.
public func spawnProcess(_ request: SpawnRequest) throws(SpawnError) -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, request.stdout, 1)
    posix_spawn_file_actions_adddup2(&actions, request.stderr, 2)
    if let directory = request.workingDirectory {
        guard let addchdir = GlibcExtras.addChdir else {
            throw .unsupported(call: "posix_spawn_file_actions_addchdir_np")
        }
        _ = addchdir(&actions, directory)
    }
    if let addclosefrom = GlibcExtras.addClosefrom { _ = addclosefrom(&actions, 3) }

    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    // Every bit, not sigfillset (which leaves out glibc's internal 32 and 33, which would then be ignored).
    // glibc's posix_spawn would set the left-out ones to SIG_IGN in the child, which survives exec.
    var allSignals = sigset_t()
    _ = withUnsafeMutableBytes(of: &allSignals) { $0.initializeMemory(as: UInt8.self, repeating: 0xff) }
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    posix_spawnattr_setsigdefault(&attributes, &allSignals)
    var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
    if request.newProcessGroup {
        flags |= POSIX_SPAWN_SETPGROUP
        posix_spawnattr_setpgroup(&attributes, 0)
    }
    posix_spawnattr_setflags(&attributes, Int16(flags))

    let argv = request.argv.map { strdup($0) } + [nil]
    let envp = request.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        argv.forEach { free($0) }
        envp.forEach { free($0) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, request.argv[0], &actions, &attributes, argv, envp)
    guard rc == 0 else { throw .failed(executable: request.argv[0], errno: rc) }
    return pid
}

/// glibc functions Swift's Glibc module does not export (it is built without _GNU_SOURCE).
private enum GlibcExtras {
    typealias FileActionsInt = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    typealias FileActionsPath = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    static let addClosefrom: FileActionsInt? = lookup("posix_spawn_file_actions_addclosefrom_np")
    static let addChdir: FileActionsPath? = lookup("posix_spawn_file_actions_addchdir_np")

    private static func lookup<F>(_ name: String) -> F? {
        guard let symbol = dlsym(nil, name) else { return nil }  // RTLD_DEFAULT is the null handle on glibc
        return unsafeBitCast(symbol, to: F.self)
    }
}

/// One long-lived thread that starts the servers. A server runs under `setpriv --pdeathsig KILL`, and
/// the kernel sends that signal when the *thread* that spawned it ends, not the process: a test's own
/// thread (a pool thread that may be retired when idle) would take the server down with it. This
/// thread never ends, so the servers die exactly when the test process does, even on SIGKILL.
final class LauncherThread: @unchecked Sendable {
    static let shared = LauncherThread()

    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []

    private init() {
        let thread = Thread { [self] in run() }
        thread.name = "test-server launcher"
        thread.start()
    }

    private func run() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }

    func spawn(_ request: SpawnRequest) throws -> pid_t {
        let done = NSCondition()
        nonisolated(unsafe) var outcome: Result<pid_t, Error>?
        condition.lock()
        jobs.append {
            let result = Result { try spawnProcess(request) }
            done.lock()
            outcome = result
            done.signal()
            done.unlock()
        }
        condition.signal()
        condition.unlock()
        done.lock()
        while outcome == nil { done.wait() }
        let result = outcome!
        done.unlock()
        return try result.get()
    }
}

// MARK: - Waiting

/// Polls `condition` every few milliseconds until it holds or `timeout` passes.
func poll(timeout: Duration, every interval: Duration = .milliseconds(10), _ condition: () throws -> Bool) rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while true {
        if try condition() { return true }
        if clock.now >= deadline { return false }
        Thread.sleep(forTimeInterval: Double(interval.components.attoseconds) / 1e18 + Double(interval.components.seconds))
    }
}

/// Reaps `pid` if it has exited; its raw wait status, or nil while it runs.
func reapIfExited(_ pid: pid_t) -> Int32? {
    var status: Int32 = 0
    while true {
        let rc = waitpid(pid, &status, WNOHANG)
        if rc == pid { return status }
        if rc == 0 { return nil }
        if errno == EINTR { continue }
        return -1  // ECHILD: already reaped
    }
}

/// Sends `signal`, waits up to `timeout` for the exit, then SIGKILLs and reaps.
func terminate(_ pid: pid_t, signal: Int32, timeout: Duration) {
    if reapIfExited(pid) != nil { return }
    kill(pid, signal)
    if poll(timeout: timeout, every: .milliseconds(5), { reapIfExited(pid) != nil }) { return }
    kill(pid, SIGKILL)
    _ = poll(timeout: .seconds(10), every: .milliseconds(5)) { reapIfExited(pid) != nil }
}

// MARK: - One-shot commands

public struct CommandOutput: Sendable {
    /// The raw wait status.
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs a command to completion (killing it after `timeout`) and collects its output.
public func runCommand(
    _ argv: [String], environment: [String: String]? = nil, workingDirectory: String? = nil,
    timeout: Duration = .seconds(60)
) throws -> CommandOutput {
    var outPipe: [Int32] = [-1, -1]
    var errPipe: [Int32] = [-1, -1]
    guard pipe(&outPipe) == 0 else { throw TestServerError("pipe: \(String(cString: strerror(errno)))") }
    guard pipe(&errPipe) == 0 else {
        close(outPipe[0]); close(outPipe[1])
        throw TestServerError("pipe: \(String(cString: strerror(errno)))")
    }
    // Not close-on-exec from birth, but every child here is spawned with closefrom(3) (spawnProcess).
    for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    var request = SpawnRequest(argv: argv, workingDirectory: workingDirectory, stdout: outPipe[1], stderr: errPipe[1])
    if let environment { request.environment = environment }
    let pid: pid_t
    do {
        pid = try spawnProcess(request)
    } catch {
        (outPipe + errPipe).forEach { _ = close($0) }
        throw error
    }
    close(outPipe[1])
    close(errPipe[1])
    defer {
        close(outPipe[0])
        close(errPipe[0])
    }

    var out: [UInt8] = []
    var err: [UInt8] = []
    var open: [Int32] = [outPipe[0], errPipe[0]]
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    var buffer = [UInt8](repeating: 0, count: 65536)
    while !open.isEmpty {
        let left = deadline - clock.now
        if left <= .zero {
            kill(pid, SIGKILL)
            _ = poll(timeout: .seconds(10)) { reapIfExited(pid) != nil }
            throw TestServerError("\(argv.joined(separator: " ")) did not finish within \(timeout)")
        }
        var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let milliseconds = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
        let rc = Glibc.poll(&fds, nfds_t(fds.count), milliseconds)
        if rc < 0, errno != EINTR { throw TestServerError("poll: \(String(cString: strerror(errno)))") }
        for descriptor in fds where descriptor.revents != 0 {
            let n = read(descriptor.fd, &buffer, buffer.count)
            if n > 0 {
                if descriptor.fd == outPipe[0] { out += buffer[0..<n] } else { err += buffer[0..<n] }
            } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                open.removeAll { $0 == descriptor.fd }
            }
        }
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return CommandOutput(
        status: status, stdout: String(decoding: out, as: UTF8.self),
        stderr: String(decoding: err, as: UTF8.self))
}

extension CommandOutput {
    public var succeeded: Bool { status == 0 }
    /// stderr (or stdout) trimmed, for error messages.
    public var diagnostics: String {
        let text = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? stdout.trimmingCharacters(in: .whitespacesAndNewlines) : text
    }
}

// MARK: - Ports, directories, users

/// A TCP port on 127.0.0.1 that was free a moment ago: bound to port 0, read back, closed. A server
/// that then fails to bind it (another process got it first) is started again on another one.
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestServerError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw TestServerError("bind: \(String(cString: strerror(errno)))") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw TestServerError("getsockname: \(String(cString: strerror(errno)))") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
func acceptsConnections(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}

/// A fresh directory under /tmp (short, so that UNIX socket paths fit in 108 bytes).
func makeTemporaryDirectory(prefix: String) throws -> String {
    var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else {
        throw TestServerError("mkdtemp: \(String(cString: strerror(errno)))")
    }
    return String(cString: made)
}

func removeDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

func findExecutable(_ name: String) -> String? {
    for directory in ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let path = "\(directory)/\(name)"
        if access(path, X_OK) == 0 { return path }
    }
    return nil
}

/// The uid and gid of `name`, or nil.
func userIDs(_ name: String) -> (uid: uid_t, gid: gid_t)? {
    guard let entry = getpwnam(name) else { return nil }
    return (entry.pointee.pw_uid, entry.pointee.pw_gid)
}

/// A random string of `count` letters and digits (for passwords the tests can look for in messages).
func randomToken(_ count: Int) -> String {
    let alphabet = Array("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
    return String((0..<count).map { _ in alphabet.randomElement()! })
}

func readFile(_ path: String) -> String {
    (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
}

/// The last `count` lines of a log, for error messages.
func tail(_ text: String, lines count: Int = 15) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).suffix(count).joined(separator: "\n")
}
