import Foundation
import Glibc

// Real PostgreSQL and Redis servers for the tests: each on 127.0.0.1 on a free port, in a fresh
// directory under /tmp, started as a child of the test process through `setpriv --pdeathsig KILL` from a
// thread that never ends (so a killed test run does not leave them behind), stopped and removed by
// `destroy()` or deinit. Readiness is a condition polled with a deadline, never a fixed sleep.

/// How the servers' children are started: as `user` (when the tests run as root) and with a parent-death
/// signal, through setpriv (util-linux).
private func privilegePrefix(user: String?) -> [String] {
    guard let setpriv = findExecutable("setpriv") else { return [] }
    var prefix = [setpriv]
    if let user, geteuid() == 0 {
        prefix += ["--reuid=\(user)", "--regid=\(user)", "--init-groups"]
    }
    return prefix + ["--pdeathsig", "KILL", "--"]
}

// MARK: - What both servers share

/// One server process of a test: started on a free loopback port (another if the port was taken
/// meanwhile), stopped with its own signal, restarted on the same port and directory, and removed
/// with its directory. Subclasses say how to `launch` it.
public class LocalServer: @unchecked Sendable {
    public fileprivate(set) var port = 0
    /// The temporary directory the server keeps everything in.
    public let directory: String

    fileprivate let lock = NSLock()
    /// The running server's pid; set and cleared by `launch` and `stop`, under `lock`.
    fileprivate var pid: pid_t?
    private var destroyed = false
    /// "PostgreSQL", "redis-server": for error messages.
    private let name: String
    private let stopSignal: Int32

    fileprivate init(name: String, directory: String, stopSignal: Int32) {
        self.name = name
        self.directory = directory
        self.stopSignal = stopSignal
    }

    deinit { destroy() }

    /// Starts the server on `port` and waits until it is ready. nil when it is; otherwise why not.
    /// Called with `lock` held.
    fileprivate func launch() throws -> String? { fatalError("LocalServer.launch is for subclasses") }

    /// Starts on a free port, trying another while the failure says the port was taken (`clash`).
    fileprivate func startOnFreePort(clash: (String) -> Bool) throws {
        var failures: [String] = []
        for _ in 0..<5 {
            port = try freeLoopbackPort()
            guard let failure = try lock.withLock({ try launch() }) else { return }
            failures.append(failure)
            // Another process took the port between freeLoopbackPort and the bind: try another.
            guard clash(failure) else { break }
        }
        throw TestServerError("\(name) did not start: \(failures.joined(separator: "\n---\n"))")
    }

    /// Whether the server is running (as far as this object knows).
    public var isRunning: Bool { lock.withLock { pid != nil } }

    /// Sends the server's stop signal and waits until it has exited. Does nothing when stopped.
    public func stop() {
        lock.withLock {
            guard let pid else { return }
            terminate(pid, signal: stopSignal, timeout: .seconds(30))
            self.pid = nil
        }
    }

    /// Starts the stopped server again on the same port and directory, and waits until it is ready.
    public func restart() throws {
        stop()
        try lock.withLock {
            guard !destroyed else { throw TestServerError("\(name) was destroyed") }
            if let failure = try launch() { throw TestServerError("\(name) did not restart: \(failure)") }
        }
    }

    /// Stops the server and removes its directory. Idempotent.
    public func destroy() {
        stop()
        lock.withLock {
            guard !destroyed else { return }
            destroyed = true
            removeDirectory(directory)
        }
    }
}

// MARK: - PostgreSQL

/// A PostgreSQL cluster (initdb in a temporary directory) with a role `poolvisor`, which logs in with a
/// random password over TCP (scram-sha-256), and its database `poolvisor`. Local (UNIX socket)
/// connections are trusted, which is how `sql` runs its statements.
public final class PostgresServer: LocalServer, @unchecked Sendable {
    public let host = "127.0.0.1"
    public let user = "poolvisor"
    public let database = "poolvisor"
    /// Random for each server, so that tests can check it never appears in a message.
    public let password: String
    // `directory`: `data/` is the cluster, the UNIX socket and `postgres.log` sit beside it.
    private let bindir: String

    /// `postgresql://poolvisor:PASSWORD@127.0.0.1:PORT/poolvisor`
    public var url: String { "postgresql://\(user):\(password)@\(host):\(port)/\(database)" }
    public var dataDirectory: String { directory + "/data" }
    public var logPath: String { directory + "/postgres.log" }
    /// The log so far (for failure messages).
    public var log: String { readFile(logPath) }

    private init(bindir: String, directory: String, password: String) {
        self.bindir = bindir
        self.password = password
        // Fast shutdown.
        super.init(name: "PostgreSQL", directory: directory, stopSignal: SIGINT)
    }

    /// initdb, start, and create the role and database. Takes about a second.
    public static func start() throws -> PostgresServer {
        let bindir = try findPostgresBinaries()
        let directory = try makeTemporaryDirectory(prefix: "poolvisor-pg")
        let server = PostgresServer(bindir: bindir, directory: directory, password: "pv-" + randomToken(20))
        do {
            try server.initialize()
            try server.startOnFreePort { $0.contains("could not bind") || $0.contains("could not create any TCP/IP sockets") }
            _ = try server.psql(
                as: "postgres", database: "postgres",
                [
                    "CREATE ROLE \(server.user) LOGIN PASSWORD '\(server.password)'",
                    "CREATE DATABASE \(server.database) OWNER \(server.user)",
                ])
        } catch {
            server.destroy()
            throw error
        }
        return server
    }

    /// Runs `statement` (psql -At over the UNIX socket, as `poolvisor`, or as `postgres` with
    /// `asSuperuser`) and returns its output, trimmed. Throws with psql's message when it fails.
    @discardableResult
    public func sql(_ statement: String, asSuperuser: Bool = false) throws -> String {
        try psql(as: asSuperuser ? "postgres" : user, database: database, [statement])
    }

    // MARK: Setting up

    private static func findPostgresBinaries() throws -> String {
        var candidates: [String] = []
        if let pgConfig = findExecutable("pg_config"),
            let output = try? runCommand([pgConfig, "--bindir"], timeout: .seconds(10)), output.succeeded
        {
            candidates.append(output.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        candidates += versions.compactMap(Int.init).sorted(by: >).map { "/usr/lib/postgresql/\($0)/bin" }
        guard let bindir = candidates.first(where: { access($0 + "/postgres", X_OK) == 0 && access($0 + "/initdb", X_OK) == 0 })
        else {
            throw TestServerError("no PostgreSQL server binaries (postgres, initdb) in \(candidates); install postgresql")
        }
        return bindir
    }

    private func initialize() throws {
        if geteuid() == 0 {
            guard let postgres = userIDs("postgres") else {
                throw TestServerError("PostgreSQL refuses to run as root and there is no postgres user")
            }
            guard chown(directory, postgres.uid, postgres.gid) == 0 else {
                throw TestServerError("chown \(directory): \(String(cString: strerror(errno)))")
            }
        }
        let initdb = try runCommand(
            privilegePrefix(user: "postgres") + [
                bindir + "/initdb", "-D", dataDirectory, "-A", "trust", "-U", "postgres", "--no-sync",
                "--no-instructions", "-E", "UTF8", "--locale=C",
            ],
            workingDirectory: directory, timeout: .seconds(120))
        guard initdb.succeeded else { throw TestServerError("initdb failed: \(initdb.diagnostics)") }
        // Passwords over TCP; the UNIX socket (inside `directory`) is trusted for `sql`.
        let hba = """
            local all all trust
            host all all 127.0.0.1/32 scram-sha-256
            host all all ::1/128 scram-sha-256

            """
        let hbaPath = dataDirectory + "/pg_hba.conf"
        try hba.write(toFile: hbaPath, atomically: false, encoding: .utf8)
        if geteuid() == 0, let postgres = userIDs("postgres") { _ = chown(hbaPath, postgres.uid, postgres.gid) }
    }

    /// Starts the postmaster on `port` and waits until it is ready. nil when it is; otherwise why not
    /// (the log's tail). Called with `lock` held.
    override fileprivate func launch() throws -> String? {
        let logOffset = (try? FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int) ?? 0
        let log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard log >= 0 else { throw TestServerError("open \(logPath): \(String(cString: strerror(errno)))") }
        defer { close(log) }
        let argv =
            privilegePrefix(user: "postgres") + [
                bindir + "/postgres", "-D", dataDirectory, "-p", String(port), "-k", directory,
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "shared_buffers=8MB", "-c", "max_connections=30",
                "-c", "max_wal_senders=0", "-c", "wal_level=minimal", "-c", "logging_collector=off",
            ]
        let child = try LauncherThread.shared.spawn(
            SpawnRequest(argv: argv, workingDirectory: directory, stdout: log, stderr: log))
        pid = child
        let pidFile = dataDirectory + "/postmaster.pid"
        var exited = false
        // postmaster.pid's eighth line becomes "ready" once connections are accepted (what pg_ctl -w reads).
        let ready = poll(timeout: .seconds(60)) {
            if reapIfExited(child) != nil {
                exited = true
                return true
            }
            let lines = readFile(pidFile).split(separator: "\n", omittingEmptySubsequences: false)
            return lines.count >= 8 && lines[7].trimmingCharacters(in: .whitespaces) == "ready"
        }
        if ready && !exited { return nil }
        if !exited { terminate(child, signal: SIGQUIT, timeout: .seconds(5)) }
        pid = nil
        let text = readFile(logPath)
        let newText = text.utf8.count > logOffset ? String(decoding: text.utf8.dropFirst(logOffset), as: UTF8.self) : text
        return (exited ? "postgres exited: " : "postgres was not ready within 60 s: ") + tail(newText)
    }

    private func psql(as role: String, database: String, _ statements: [String]) throws -> String {
        var argv = [
            bindir + "/psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", directory, "-p", String(port), "-U", role, "-d", database,
        ]
        for statement in statements { argv += ["-c", statement] }
        let output = try runCommand(
            argv, environment: ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PGCONNECT_TIMEOUT": "10"],
            timeout: .seconds(120))
        guard output.succeeded else { throw TestServerError("psql failed: \(output.diagnostics)") }
        return output.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

// MARK: - Redis

/// A redis-server (no persistence) on 127.0.0.1 and on a UNIX socket in its directory, optionally with a
/// password (`requirepass`). DEBUG is allowed from local connections (for DEBUG SLEEP).
public final class RedisServer: LocalServer, @unchecked Sendable {
    public let password: String?

    private let executable: String

    /// `redis://:PASSWORD@127.0.0.1:PORT/0`, or `redis://127.0.0.1:PORT` without a password.
    public var url: String {
        if let password { return "redis://:\(password)@127.0.0.1:\(port)/0" }
        return "redis://127.0.0.1:\(port)"
    }
    public var socketPath: String { directory + "/redis.sock" }
    /// `unix://[:PASSWORD@]/tmp/…/redis.sock`
    public var unixURL: String { "unix://" + (password.map { ":\($0)@" } ?? "") + socketPath }
    public var logPath: String { directory + "/redis.log" }
    public var log: String { readFile(logPath) }

    private init(executable: String, directory: String, password: String?) {
        self.executable = executable
        self.password = password
        super.init(name: "redis-server", directory: directory, stopSignal: SIGTERM)
    }

    public static func start(password: String? = nil) throws -> RedisServer {
        guard let executable = findExecutable("redis-server") else {
            throw TestServerError("redis-server is not installed (apt-get install redis-server)")
        }
        let directory = try makeTemporaryDirectory(prefix: "poolvisor-redis")
        let server = RedisServer(executable: executable, directory: directory, password: password)
        do {
            try server.startOnFreePort { $0.contains("Address already in use") }
            return server
        } catch {
            server.destroy()
            throw error
        }
    }

    /// redis-cli against the server (with its password); the output, trimmed. Error replies are output
    /// too (redis-cli exits 0 for them); a failure to connect throws.
    @discardableResult
    public func cli(_ arguments: String...) throws -> String {
        guard let redisCLI = findExecutable("redis-cli") else { throw TestServerError("redis-cli is not installed") }
        var argv = [redisCLI, "-h", "127.0.0.1", "-p", String(port)]
        if let password { argv += ["-a", password, "--no-auth-warning"] }
        let output = try runCommand(argv + arguments, timeout: .seconds(60))
        guard output.succeeded else { throw TestServerError("redis-cli failed: \(output.diagnostics)") }
        return output.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Starts redis-server on `port` and waits until it answers PING. nil when it does; otherwise why
    /// not. Called with `lock` held. Nothing is persisted, so a restart starts empty.
    override fileprivate func launch() throws -> String? {
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard log >= 0 else { throw TestServerError("open \(logPath): \(String(cString: strerror(errno)))") }
        defer { close(log) }
        var argv =
            privilegePrefix(user: nil) + [
                executable, "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", directory, "--daemonize", "no", "--unixsocket", socketPath, "--unixsocketperm", "700",
                "--enable-debug-command", "local", "--loglevel", "warning",
            ]
        if let password { argv += ["--requirepass", password] }
        let child = try LauncherThread.shared.spawn(
            SpawnRequest(argv: argv, workingDirectory: directory, stdout: log, stderr: log))
        pid = child
        var exited = false
        let ready = poll(timeout: .seconds(30)) {
            if reapIfExited(child) != nil {
                exited = true
                return true
            }
            return answersPing()
        }
        if ready && !exited { return nil }
        if !exited { terminate(child, signal: SIGKILL, timeout: .seconds(5)) }
        pid = nil
        return (exited ? "redis-server exited: " : "redis-server was not ready within 30 s: ") + tail(readFile(logPath))
    }

    /// Sends PING over a raw socket: "+PONG" (or "-NOAUTH" with a password) means it is serving.
    private func answersPing() -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return false }
        let ping = Array("PING\r\n".utf8)
        guard send(fd, ping, ping.count, Int32(MSG_NOSIGNAL)) == ping.count else { return false }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = recv(fd, &buffer, buffer.count, 0)
        guard n > 0 else { return false }
        let reply = String(decoding: buffer[0..<n], as: UTF8.self)
        return reply.hasPrefix("+PONG") || reply.hasPrefix("-NOAUTH")
    }
}
