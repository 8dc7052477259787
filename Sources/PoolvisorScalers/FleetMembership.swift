import CShim
import Glibc
import PoolvisorCore
import PoolvisorSystem
import Synchronization

/// `[supervisor.fleet]` beside the loop: one thread with one Redis connection (reused, reconnected
/// with backoff, every call bounded by a timeout) keeps this host in the fleet's sorted set and reads
/// the live members back through an eventfd the loop watches. The loop only asks and never waits.
///
/// The set `poolvisor:fleet:<name>` maps each member id to the Redis server's time (ms) of its last
/// heartbeat, so hosts with skewed clocks agree on who is live: a heartbeat is `TIME`, then `ZADD`
/// self, `ZREMRANGEBYSCORE` the members older than the TTL, `ZRANGEBYSCORE` the live ones and
/// `PEXPIRE` the set (gone when every host is). Leaving is `ZREM` self.
public final class FleetMembership: @unchecked Sendable {
    private struct Work {
        var beat = false
        var leave = false
        var stop = false
    }

    private let config: FleetSpec
    private let endpoint: RedisEndpoint?
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
        case .redis(let url): endpoint = try? RedisEndpoint.parse(url.value).get()
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
        let client = endpoint.map { RedisClient(endpoint: $0, timeout: Scalers.timeout) }
        defer {
            client?.close()
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
                _ = client?.run([["ZREM", config.key, config.member]])
            }
            if batch.stop { return }
            guard batch.beat, !left else { continue }
            let result: Result<[String], ScalerError> =
                client.map(beat) ?? .failure(ScalerError("the Redis URL in $\(config.variable) is not valid"))
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
}
