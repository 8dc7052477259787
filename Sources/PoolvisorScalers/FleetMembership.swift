import CShim
import Glibc
import PoolvisorCore
import PoolvisorSystem
import Synchronization

/// `[supervisor.fleet]` beside the loop: one thread with one Redis or PostgreSQL connection (reused,
/// reconnected with backoff, every call bounded by a timeout) keeps this host in the fleet's store and
/// reads the live members back through an eventfd the loop watches. The loop only asks and never waits.
///
/// Both stores stamp a heartbeat with the server's clock, so hosts with skewed clocks agree on who is
/// live. In Redis the set `poolvisor:fleet:<name>` maps each member id to the server's time (ms) of its
/// last heartbeat: a heartbeat is `TIME`, then `ZADD` self, `ZREMRANGEBYSCORE` the members older than
/// the TTL, `ZRANGEBYSCORE` the live ones and `PEXPIRE` the set (gone when every host is). Leaving is
/// `ZREM` self. In PostgreSQL the table `poolvisor_fleet_members (fleet, member, seen)` (created if
/// missing) gets this host's row upserted with `now()`, the rows older than the TTL deleted and the
/// live members read, in one statement; leaving deletes the row.
public final class FleetMembership: @unchecked Sendable {
    private struct Work {
        var beat = false
        var leave = false
        var stop = false
    }

    /// Where the members meet, as the thread connects to it.
    private enum Store {
        case redis(RedisEndpoint)
        case postgres(String)
        case invalid(ScalerError)
    }

    /// The thread's connection.
    private enum Client {
        case redis(RedisClient)
        case postgres(PostgresClient)
        case invalid(ScalerError)

        func close() {
            switch self {
            case .redis(let c): c.close()
            case .postgres(let c): c.close()
            case .invalid: break
            }
        }
    }

    private let config: FleetSpec
    private let store: Store
    /// PostgreSQL: the members' table exists (created by this thread, or found).
    private var tableReady = false
    private let work = Mutex(Work())
    private let wakeThread: (read: Int32, write: Int32)
    private let answer = Mutex<Result<[String], ScalerError>?>(nil)
    /// Written by the thread when it has left the fleet and ended.
    private let finished: Int32
    /// Readable when an answer waits: the loop watches it and calls `collect()`.
    public let wakeup: Int32
    private let deliver: (Result<[String], ScalerError>) -> Void

    /// - Parameter deliver: on the loop thread, with the live members or why the store failed.
    public init(_ config: FleetSpec, deliver: @escaping (Result<[String], ScalerError>) -> Void) throws {
        self.config = config
        self.deliver = deliver
        switch config.store {
        case .redis(let url):
            switch RedisEndpoint.parse(url.value) {
            case .success(let endpoint): store = .redis(endpoint)
            case .failure: store = .invalid(ScalerError("the Redis URL in $\(config.variable) is not valid"))
            }
        case .postgres(let conninfo): store = .postgres(conninfo.value)
        }
        wakeup = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard wakeup >= 0 else { throw SystemError("eventfd") }
        finished = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard finished >= 0 else { throw SystemError("eventfd") }
        var fds: [Int32] = [-1, -1]
        guard cshim_pipe2(&fds, O_CLOEXEC | O_NONBLOCK) == 0 else { throw SystemError("pipe2") }
        wakeThread = (fds[0], fds[1])
        try startDetachedThread(self) { [unowned self] in self.run() }
    }

    /// Asks for a heartbeat; one still under way is not asked twice.
    public func heartbeat() {
        work.withLock { $0.beat = true }
        poke()
    }

    /// Takes this host out of the fleet (poolvisor is stopping); heartbeats asked later are not sent.
    public func leave() {
        work.withLock { $0.leave = true }
        poke()
    }

    /// Leaves the fleet and ends the thread, waiting up to `timeout` for it (the process is exiting:
    /// the others should not wait a TTL for this host's share).
    public func stop(waitingUpTo timeout: Duration) {
        work.withLock {
            $0.leave = true
            $0.stop = true
        }
        poke()
        var pfd = pollfd(fd: finished, events: Int16(POLLIN), revents: 0)
        _ = poll(&pfd, 1, Int32(clamping: timeout.nanosecondsClamped / 1_000_000))
    }

    /// Hands the heartbeat's answer to `deliver`, on the loop thread.
    public func collect() {
        var n: UInt64 = 0
        _ = Glibc.read(wakeup, &n, 8)
        if let result = answer.withLock({ a -> Result<[String], ScalerError>? in
            defer { a = nil }
            return a
        }) {
            deliver(result)
        }
    }

    private func poke() {
        var b: UInt8 = 1
        _ = write(wakeThread.write, &b, 1)
    }

    private func run() {
        let client: Client =
            switch store {
            case .redis(let endpoint): .redis(RedisClient(endpoint: endpoint, timeout: Scalers.timeout))
            case .postgres(let conninfo): .postgres(PostgresClient(connectionString: conninfo, timeout: Scalers.timeout))
            case .invalid(let error): .invalid(error)
            }
        defer {
            client.close()
            close(wakeThread.read)
            close(wakeThread.write)
            var one: UInt64 = 1
            _ = write(finished, &one, 8)
        }
        var buffer = [UInt8](repeating: 0, count: 64)
        var left = false
        while true {
            var pfd = pollfd(fd: wakeThread.read, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, -1)
            while read(wakeThread.read, &buffer, buffer.count) > 0 {}
            let batch = work.withLock { w -> Work in
                defer { w = Work() }
                return w
            }
            if batch.leave && !left {
                left = true
                switch client {
                case .redis(let redis): _ = redis.run([["ZREM", config.key, config.member]])
                case .postgres(let postgres):
                    _ = postgres.command("DELETE FROM \(FleetSpec.table) WHERE fleet = \(literal(config.name)) AND member = \(literal(config.member))")
                case .invalid: break
                }
            }
            if batch.stop { return }
            guard batch.beat, !left else { continue }
            let result: Result<[String], ScalerError> =
                switch client {
                case .redis(let redis): beat(redis)
                case .postgres(let postgres): beat(postgres)
                case .invalid(let error): .failure(error)
                }
            answer.withLock { $0 = result }
            var one: UInt64 = 1
            _ = write(wakeup, &one, 8)
        }
    }

    /// One heartbeat: the server's time, then self registered and the live members read.
    private func beat(_ client: RedisClient) -> Result<[String], ScalerError> {
        client.run([["TIME"]]).flatMap { replies -> Result<[RedisValue], ScalerError> in
            guard case .array(let parts)? = replies.first, parts.count == 2, case .string(let seconds) = parts[0], case .string(let micros) = parts[1],
                let s = Int64(seconds), let us = Int64(micros)
            else { return .failure(ScalerError("Redis answered TIME with something else than seconds and microseconds")) }
            let now = s * 1000 + us / 1000
            let ttl = config.ttl.nanosecondsClamped / 1_000_000
            return client.run([
                ["ZADD", config.key, String(now), config.member],
                ["ZREMRANGEBYSCORE", config.key, "-inf", String(now - ttl)],
                ["ZRANGEBYSCORE", config.key, "(\(now - ttl)", "+inf"],
                ["PEXPIRE", config.key, String(ttl * 2)],
            ])
        }.flatMap { replies in
            for reply in replies {
                if case .error(let message) = reply { return .failure(ScalerError("Redis refused the fleet's heartbeat: \(message)")) }
            }
            guard replies.count == 4, case .array(let items) = replies[2] else {
                return .failure(ScalerError("Redis answered ZRANGEBYSCORE with something else than a list"))
            }
            return .success(items.compactMap { if case .string(let member) = $0 { member } else { nil } })
        }
    }

    /// One heartbeat in PostgreSQL: the table made if missing, then one statement that upserts this
    /// host's row, deletes the stale ones and lists the live members (this host among them: the
    /// statement's reads see the rows as they were before it).
    private func beat(_ client: PostgresClient) -> Result<[String], ScalerError> {
        if !tableReady {
            let create =
                "CREATE TABLE IF NOT EXISTS \(FleetSpec.table) (fleet text NOT NULL, member text NOT NULL, seen timestamptz NOT NULL, PRIMARY KEY (fleet, member))"
            if case .failure(let error) = client.command(create) {
                return .failure(ScalerError("PostgreSQL refused to create \(FleetSpec.table): \(error.message)"))
            }
            tableReady = true
        }
        let fleet = literal(config.name)
        let member = literal(config.member)
        let live = "now() - make_interval(secs => \(Double(config.ttl.nanosecondsClamped) / 1e9))"
        let sql = """
            WITH beat AS (INSERT INTO \(FleetSpec.table) (fleet, member, seen) VALUES (\(fleet), \(member), now()) \
            ON CONFLICT (fleet, member) DO UPDATE SET seen = EXCLUDED.seen), \
            gone AS (DELETE FROM \(FleetSpec.table) WHERE fleet = \(fleet) AND member <> \(member) AND seen <= \(live)) \
            SELECT string_agg(member, E'\\n') FROM (SELECT member FROM \(FleetSpec.table) \
            WHERE fleet = \(fleet) AND member <> \(member) AND seen > \(live) UNION SELECT \(member)) AS live
            """
        return client.queryText(sql).map { $0.split(separator: "\n").map(String.init) }
    }

    /// A string as an SQL literal (standard_conforming_strings, the default since PostgreSQL 9.1).
    private func literal(_ text: String) -> String {
        "'" + text.replacing("'", with: "''") + "'"
    }
}
