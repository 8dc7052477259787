import Foundation
import Glibc
import Testing

/// A temporary directory with a pools file, and a supervisor running it with its own runtime
/// directory (so tests running in parallel never share notify sockets).
final class Scenario: @unchecked Sendable {
    let dir: TempDir
    let configPath: String
    private(set) var supervisor: PoolvisorProcess!

    /// `@DIR@` in `pools` stands for the scenario's directory.
    init(_ pools: String, files: [String: String] = [:]) throws {
        dir = try TempDir()
        for (name, contents) in files { dir.write(name, contents, mode: 0o600) }
        configPath = dir.write("pools.toml", pools.replacingOccurrences(of: "@DIR@", with: dir.path))
    }

    /// `wrapper`: a command that ends by exec'ing the rest of its arguments (`poolvisor run …`), so
    /// that the supervisor keeps the wrapper's pid (e.g. `unshare --mount sh -c '…; exec "$@"'`).
    @discardableResult
    func start(environment: [String: String] = [:], arguments: [String] = [], through wrapper: [String] = []) throws -> PoolvisorProcess {
        var env = ["RUNTIME_DIRECTORY": dir.path + "/run", "LANG": "C.UTF-8"]
        env.merge(environment) { $1 }
        if let executable = wrapper.first {
            supervisor = try PoolvisorProcess(
                executable: executable,
                arguments: wrapper.dropFirst() + [try Harness.requirePoolvisorBinary(), "run", "--config", configPath] + arguments,
                environment: env)
        } else {
            supervisor = try PoolvisorProcess(config: configPath, extraArguments: arguments, environment: env)
        }
        return supervisor
    }

    /// The supervisor's worker processes (its direct children), with their environment. The parser
    /// child of a reload under way (`poolvisor parse-toml`), the spawn server and the guardian are not
    /// workers.
    var workers: [(pid: Int32, env: [String: String])] {
        ProcFS.children(of: supervisor.pid).compactMap { pid in
            guard ProcFS.isAlive(pid), ProcFS.commandLine(of: pid)?.dropFirst().first != "parse-toml",
                ProcFS.comm(of: pid) != "poolvisor-spawn", ProcFS.comm(of: pid) != "poolvisor-guard",
                let env = ProcFS.environment(of: pid)
            else { return nil }
            return (pid, env)
        }
    }

    /// The pid a worker wrote into the file `name` in the scenario's directory, once it is there.
    func waitForPID(in name: String, timeout: Duration = .seconds(15)) -> Int32? {
        var pid: Int32?
        _ = waitUntil(timeout: timeout) {
            pid = dir.read(name).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            return pid != nil
        }
        return pid
    }

    /// pid of the live worker in `pool`/`replica`, if there is one.
    func worker(_ pool: String, _ replica: Int) -> Int32? {
        workers.first { $0.env["POOLVISOR_POOL"] == pool && $0.env["POOLVISOR_REPLICA"] == String(replica) }?.pid
    }

    /// The guardian (a child of the supervisor named `poolvisor-guard`), once it is there.
    var guardian: Int32? {
        ProcFS.children(of: supervisor.pid).first { ProcFS.isAlive($0) && ProcFS.comm(of: $0) == "poolvisor-guard" }
    }

    func waitForWorkers(_ count: Int, timeout: Duration = .seconds(15)) -> Bool {
        waitUntil(timeout: timeout) { workers.count == count }
    }

    /// The workers and every process below them, once there are `count`: the trees that must go with
    /// poolvisor. nil if they never number `count`.
    func waitForWorkerTrees(count: Int) -> [Int32]? {
        var pids: [Int32] = []
        let found = waitUntil {
            let workers = workers.map(\.pid)
            pids = workers + workers.flatMap { ProcFS.descendants(of: $0) }
            return pids.count == count
        }
        return found ? pids : nil
    }

    /// Stops the supervisor with SIGTERM and returns its exit status, once everything it printed has
    /// been read (its last lines can still be in the pipe when it has exited).
    func stop(timeout: Duration = .seconds(20)) -> Int32? {
        supervisor.signal(SIGTERM)
        let status = supervisor.waitForExit(timeout: timeout)
        if status != nil { _ = supervisor.waitForOutputEnd(timeout: .seconds(5)) }
        return status
    }
}

/// A shell worker: `sh -c script`.
func shell(_ script: String) -> String {
    let escaped = script.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    return "[\"/bin/sh\", \"-c\", \"\(escaped)\"]"
}

/// A Python worker: `python3 -c script`.
func python(_ script: String) -> String {
    let escaped = script.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    return "[\"/usr/bin/python3\", \"-c\", \"\(escaped)\"]"
}

/// Python that sends one sd_notify datagram per argument to $NOTIFY_SOCKET.
let pythonNotify = """
    import os, socket, sys, time
    def notify(msg):
        addr = os.environ['NOTIFY_SOCKET']
        if addr.startswith('@'): addr = '\\0' + addr[1:]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(msg.encode(), addr); s.close()

    """
