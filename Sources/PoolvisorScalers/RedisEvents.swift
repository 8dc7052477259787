import CShim
import Glibc
import PoolvisorCore
import PoolvisorSystem
import Synchronization

/// `[supervisor.redis_events]` beside the loop: one thread with one Redis connection (reused,
/// reconnected with backoff, every call bounded by a timeout) XADDs the lifecycle events to a stream
/// and writes the workers' heartbeat hashes; busy keys it reads come back through an eventfd the loop
/// watches. The loop only queues and never waits. While Redis is down, events beyond `maximumQueued`
/// are dropped and counted, never queued without bound.
public final class RedisEvents: @unchecked Sendable {
    /// Queued events at most; older ones are dropped first.
    public static let maximumQueued = 10_000

    private struct Work {
        var events: [[String]] = []
        var beats: [[[String]]] = []
        var busyKeys: [(pid: Int32, key: String)] = []
        var stop = false
    }

    private let config: RedisEventsSpec
    private let endpoint: RedisEndpoint?
    private let work = Mutex(Work())
    private let wakeThread: (read: Int32, write: Int32)
    private let busyOut = Mutex<[Int32: Bool]?>(nil)
    private let droppedCount = Atomic<Int>(0)
    private let failure = Mutex<String?>(nil)
    /// Readable when busy keys were read: the loop watches it and calls `collect()`.
    public let wakeup: Int32
    private let deliver: ([Int32: Bool]) -> Void

    /// - Parameter deliver: on the loop thread, with the busy keys read (by pid).
    public init(_ config: RedisEventsSpec, deliver: @escaping ([Int32: Bool]) -> Void) throws {
        self.config = config
        self.deliver = deliver
        endpoint = try? RedisEndpoint.parse(config.endpoint.value).get()
        wakeup = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard wakeup >= 0 else { throw SystemError("eventfd") }
        var fds: [Int32] = [-1, -1]
        guard cshim_pipe2(&fds, O_CLOEXEC | O_NONBLOCK) == 0 else { throw SystemError("pipe2") }
        wakeThread = (fds[0], fds[1])
        try startDetachedThread(self) { [unowned self] in self.run() }
    }

    /// Events dropped because Redis was unreachable or too slow.
    public var dropped: Int { droppedCount.load(ordering: .relaxed) }
    /// Why the last call failed, if it did (never the URL).
    public var lastFailure: String? { failure.withLock { $0 } }

    /// Queues an event: `type`, `queue`, `timestamp`, `pool`, `replica`, `pid`, `reason`.
    public func publish(_ fields: [(String, String)]) {
        var command = ["XADD", config.stream, "MAXLEN", "~", String(config.maxlen), "*"]
        for (k, v) in fields {
            command.append(k)
            command.append(v)
        }
        let overflow = work.withLock { w -> Int in
            w.events.append(command)
            let over = w.events.count - Self.maximumQueued
            if over > 0 { w.events.removeFirst(over) }
            return max(over, 0)
        }
        if overflow > 0 { droppedCount.add(overflow, ordering: .relaxed) }
        poke()
    }

    /// Queues the heartbeats (each replacing the last unsent one of its key) and busy-key reads.
    public func heartbeat(_ beats: [(key: String, fields: [(String, String)])], busyKeys: [(pid: Int32, key: String)]) {
        let ttl = String(max(Int(config.heartbeatTTL.seconds.rounded(.up)), 1))
        let commands: [[[String]]] = beats.map { beat in
            [["HSET", beat.key] + beat.fields.flatMap { [$0.0, $0.1] }, ["EXPIRE", beat.key, ttl]]
        }
        work.withLock { w in
            w.beats = commands  // only the newest round matters
            w.busyKeys = busyKeys
        }
        poke()
    }

    public func stop() {
        work.withLock { $0.stop = true }
        poke()
    }

    /// What an in-place upgrade carries to the next image: the events queued and not yet taken by the
    /// thread, and the count of those dropped, so that `poolvisor_redis_events_dropped_total` goes on.
    public struct Handover: Codable, Sendable {
        public var queued: [[String]]
        public var dropped: Int
        public init(queued: [[String]], dropped: Int) {
            self.queued = queued
            self.dropped = dropped
        }
    }

    /// Takes the queued events out (the thread, which ends with this image, no longer sends them).
    public func handover() -> Handover {
        let queued = work.withLock { w -> [[String]] in
            defer { w.events = [] }
            return w.events
        }
        return Handover(queued: queued, dropped: dropped)
    }

    /// Queues the events an earlier image handed over, before any this one publishes, and goes on
    /// counting from its dropped count.
    public func adopt(_ handover: Handover) {
        let overflow = work.withLock { w -> Int in
            w.events = handover.queued.filter { $0.first == "XADD" } + w.events
            let over = w.events.count - Self.maximumQueued
            if over > 0 { w.events.removeFirst(over) }
            return max(over, 0)
        }
        droppedCount.add(max(handover.dropped, 0) + overflow, ordering: .relaxed)
        poke()
    }

    /// Hands the busy keys read to `deliver`, on the loop thread.
    public func collect() {
        var n: UInt64 = 0
        _ = Glibc.read(wakeup, &n, 8)
        if let busy = busyOut.withLock({ b -> [Int32: Bool]? in
            defer { b = nil }
            return b
        }) {
            deliver(busy)
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
        }
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            var pfd = pollfd(fd: wakeThread.read, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, -1)
            while read(wakeThread.read, &buffer, buffer.count) > 0 {}
            let batch = work.withLock { w -> Work in
                defer {
                    w.events = []
                    w.beats = []
                    w.busyKeys = []
                }
                return w
            }
            if batch.stop { return }
            guard let client else {
                droppedCount.add(batch.events.count, ordering: .relaxed)
                failure.withLock { $0 = "the Redis URL in $\(config.variable) is not valid" }
                continue
            }
            let commands = batch.events + batch.beats.flatMap { $0 } + batch.busyKeys.map { ["EXISTS", $0.key] }
            guard !commands.isEmpty else { continue }
            switch client.run(commands) {
            case .success(let replies):
                failure.withLock { $0 = nil }
                guard !batch.busyKeys.isEmpty else { continue }
                let answers = replies.suffix(batch.busyKeys.count)
                var busy: [Int32: Bool] = [:]
                for (asked, reply) in zip(batch.busyKeys, answers) {
                    if case .integer(let n) = reply { busy[asked.pid] = n > 0 }
                }
                busyOut.withLock { $0 = busy }
                var one: UInt64 = 1
                _ = write(wakeup, &one, 8)
            case .failure(let error):
                droppedCount.add(batch.events.count, ordering: .relaxed)
                failure.withLock { $0 = error.message }
            }
        }
    }
}
