import CShim
import Glibc
import PoolvisorCore
import PoolvisorSystem

/// Starts worker processes through the CShim vfork+exec spawner: own process group, default signal
/// dispositions and an empty mask, PDEATHSIG=SIGKILL (no worker outlives a SIGKILLed supervisor),
/// stdin from /dev/null, stdout and stderr into one pipe the supervisor relays, or into a given file
/// (a journal stream).
///
/// The spawn server also parses pools files: a fork of it runs `ParserProcess.serve` (see
/// `forkParser`). Create the spawner first thing, before the first parse and before any other thread:
/// the server is a copy of the process as it is then. Used from the loop thread only.
public final class Spawner: @unchecked Sendable {
    public struct Spawned {
        public var pid: Int32
        /// Read end of the worker's stdout+stderr pipe, non-blocking; nil when output went to a given fd.
        public var output: Int32?
    }

    private let devNull: Int32
    private let nofileSoft: Int64
    /// The spawn server's socket (see `cshim_spawn_server_start`), or -1 to spawn in this process.
    private var server: Int32 = -1
    /// The spawn server's pid: a child of the supervisor that is not a worker.
    public private(set) var serverPID: Int32 = 0
    /// Why spawning went back into this process, to be logged once.
    public private(set) var serverFailure: String?
    /// When set, every process spawned carries its marker (`POOLVISOR_RUN`) and is watched by it.
    public var guardian: Guardian?
    /// The spawn server's socket, -1 without one.
    var serverSocket: Int32 { server }

    /// - Parameter nofileSoft: the soft RLIMIT_NOFILE workers get (the supervisor's own before it raised it).
    /// - Parameter useServer: spawn through a spawn server (start it now, while this is the only thread).
    /// - Parameter forkEntry: what a fork of the server runs when asked (`cshim_spawn_server_fork`):
    ///   the pools-file parser, `ParserProcess.serve`.
    public init(nofileSoft: Int64, useServer: Bool = true, forkEntry: (@convention(c) () -> Int32)? = nil) throws {
        devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard devNull >= 0 else { throw SystemError("open /dev/null") }
        self.nofileSoft = nofileSoft
        cshim_spawn_prepare()
        if useServer {
            if let forkEntry { cshim_spawn_server_set_fork_entry(forkEntry) }
            var pid: pid_t = 0
            let fd = cshim_spawn_server_start(&pid)
            if fd >= 0 {
                server = fd
                serverPID = pid
            } else {
                serverFailure = "cannot start the spawn server (\(SystemError.message(-fd))); spawning in the supervisor itself"
            }
        }
    }

    deinit {
        close(devNull)
        stopServer()
    }

    /// Closes the spawn server's socket, and with `wait` waits for the server to exit (at once: it
    /// exits when its socket closes), so that it is not taken for a leftover process.
    /// The soft RLIMIT_NOFILE workers get.
    public var workerFileLimit: Int64 { nofileSoft }

    public func stopServer(wait: Bool = false) {
        guard server >= 0 else { return }
        close(server)
        server = -1
        if wait && serverPID > 0 {
            var status: Int32 = 0
            while waitpid(serverPID, &status, 0) < 0 && errno == EINTR {}
        }
    }

    /// Starts `ParserProcess.serve` in a fork of the spawn server with these as its stdin and stdout:
    /// nil when there is no server (then the caller execs a parser itself). Follow with `forkStatus`.
    public func forkParser(stdin: Int32, stdout: Int32) -> pid_t? {
        guard server >= 0 else { return nil }
        let pid = cshim_spawn_server_fork(server, stdin, stdout)
        if pid > 0 { return pid }
        if -pid != ENOSYS { lost(errno: -pid) }
        return nil
    }

    /// Readable once the wait status of the forked parser has come.
    public var forkStatusFD: Int32 { server }

    /// The forked parser's wait status, once it has exited (blocks until then); nil if the server is
    /// gone (it is not used again).
    public func forkStatus() -> Int32? {
        guard server >= 0 else { return nil }
        var status: Int32 = 0
        let rc = cshim_spawn_server_fork_status(server, &status)
        guard rc == 0 else {
            lost(errno: -rc)
            return nil
        }
        return status
    }

    private func lost(errno error: Int32) {
        serverFailure = "the spawn server failed (\(SystemError.message(error))); spawning in the supervisor itself from now on"
        stopServer()
    }

    /// - Parameter output: the worker's stdout and stderr (the caller keeps and closes it); nil for a
    ///   new pipe whose read end is returned.
    /// - Parameter cgroups: open `cgroup.procs` files the worker joins before anything else.
    /// - Parameter throughServer: spawn through the spawn server (when there is one); else here, which
    ///   is quicker while the supervisor holds few files (no round trip to the server).
    public func spawn(_ launch: WorkerLaunch, output given: Int32? = nil, cgroups: [Int32] = [], throughServer: Bool = true) -> Result<Spawned, SystemError> {
        var pipe: [Int32] = [-1, given ?? -1]
        if given == nil {
            guard cshim_pipe2(&pipe, O_CLOEXEC) == 0 else { return .failure(SystemError("pipe2")) }
            _ = fcntl(pipe[0], F_SETFL, O_NONBLOCK)
        }
        defer { if given == nil { close(pipe[1]) } }

        var step: Int32 = 0
        var error: Int32 = 0
        let groups: [UInt32] = launch.identity?.groups ?? []
        let mask = launch.cpus.map(Spawner.cpuMask)
        var environment = launch.environment.assignments
        if let guardian {
            let prefix = Guardian.variable + "="
            environment.removeAll { $0.hasPrefix(prefix) }
            environment.append(guardian.assignment)
        }
        let pid: pid_t = withCStringArray(launch.arguments) { argv in
            withCStringArray(environment) { envp in
                launch.executable.withCString { path in
                    withOptionalCString(launch.workingDirectory) { cwd in
                        groups.withUnsafeBufferPointer { groupList in
                            withOptionalBytes(mask) { cpuMask in
                                cgroups.withUnsafeBufferPointer { cgroupFDs in
                                    var request = cshim_spawn_request(
                                        path: path, argv: argv, envp: envp, cwd: cwd,
                                        stdin_fd: devNull, stdout_fd: pipe[1], stderr_fd: pipe[1],
                                        pdeathsig: SIGKILL, nofile_soft: nofileSoft,
                                        set_ids: launch.identity == nil ? 0 : 1, uid: launch.identity?.uid ?? 0,
                                        gid: launch.identity?.gid ?? 0, groups: groupList.baseAddress, ngroups: Int32(groups.count),
                                        set_nice: launch.nice == nil ? 0 : 1, nice: Int32(launch.nice ?? 0),
                                        umask: launch.umask.map { Int32($0) } ?? -1,
                                        cpu_mask: cpuMask.baseAddress, cpu_mask_size: Int32(cpuMask.count),
                                        cgroup_fds: cgroupFDs.baseAddress, ncgroup_fds: Int32(cgroups.count))
                                    return spawn(&request, &step, &error, throughServer: throughServer)
                                }
                            }
                        }
                    }
                }
            }
        }
        guard pid > 0 else {
            if given == nil { close(pipe[0]) }
            return .failure(SystemError(Spawner.describe(step: step, launch), errno: error))
        }
        guardian?.watch(pid)
        return .success(Spawned(pid: pid, output: given == nil ? pipe[0] : nil))
    }

    /// Through the spawn server while it works; in this process once it does not.
    private func spawn(_ request: inout cshim_spawn_request, _ step: inout Int32, _ error: inout Int32, throughServer: Bool) -> pid_t {
        if server >= 0 && throughServer {
            var failed: pid_t = 0
            let pid = cshim_spawn_via_server(server, &request, &step, &error, &failed)
            if failed > 0 {
                // The child was created and failed before exec: it is ours to reap.
                var status: Int32 = 0
                while waitpid(failed, &status, 0) < 0 && errno == EINTR {}
            }
            guard step == Int32(CSHIM_SPAWN_FAILED_SERVER) else { return pid }
            lost(errno: error)
        }
        return cshim_spawn(&request, &step, &error)
    }

    private static func describe(step: Int32, _ launch: WorkerLaunch) -> String {
        switch Int(step) {
        case Int(CSHIM_SPAWN_FAILED_FORK): "vfork"
        case Int(CSHIM_SPAWN_FAILED_SETPGID): "setpgid"
        case Int(CSHIM_SPAWN_FAILED_PDEATHSIG): "prctl(PR_SET_PDEATHSIG)"
        case Int(CSHIM_SPAWN_FAILED_PARENT_GONE): "parent exited during spawn"
        case Int(CSHIM_SPAWN_FAILED_CHDIR): "chdir \(launch.workingDirectory ?? "")"
        case Int(CSHIM_SPAWN_FAILED_DUP2): "dup2"
        case Int(CSHIM_SPAWN_FAILED_RLIMIT): "setrlimit(RLIMIT_NOFILE)"
        case Int(CSHIM_SPAWN_FAILED_SETGROUPS): "setgroups for user \(launch.identity?.user ?? "")"
        case Int(CSHIM_SPAWN_FAILED_SETGID): "setgid \(launch.identity?.gid ?? 0)"
        case Int(CSHIM_SPAWN_FAILED_SETUID): "setuid to user \(launch.identity?.user ?? "")"
        case Int(CSHIM_SPAWN_FAILED_NICE): "setpriority (nice \(launch.nice ?? 0))"
        case Int(CSHIM_SPAWN_FAILED_CGROUP): "joining its cgroup"
        case Int(CSHIM_SPAWN_FAILED_AFFINITY): "sched_setaffinity (cpus \(launch.cpus.map(CPUList.describe) ?? ""))"
        default: "exec \(launch.executable)"
        }
    }
}

extension Spawner {
    /// A cpu_set_t-style mask: bit n of byte n/8 for CPU n, in whole 8-byte words as the kernel wants.
    static func cpuMask(_ cpus: [Int]) -> [UInt8] {
        let highest = cpus.max() ?? 0
        var mask = [UInt8](repeating: 0, count: (highest / 64 + 1) * 8)
        for cpu in cpus { mask[cpu / 8] |= UInt8(1) << UInt8(cpu % 8) }
        return mask
    }
}

public func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
    guard let bytes else { return body(UnsafeBufferPointer(start: nil, count: 0)) }
    return bytes.withUnsafeBufferPointer(body)
}

/// Calls `body` with a NULL-terminated `char *const *` array of copies of `strings`.
public func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

public func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}
