import CShim
import Glibc
import PoolvisorCore
import PoolvisorSystem
import Synchronization

/// The queue triggers' readers, beside the event loop: one thread per autoscaled pool with a PostgreSQL
/// or Redis trigger, each owning its one connection (reused, reconnected with backoff, every call
/// bounded by a timeout). The loop asks for a reading by writing a byte to the source's pipe and never
/// waits; the thread hands the sample back through a mutex-guarded outbox and an eventfd the loop
/// watches. A source whose call hangs holds up only its own pool, and only until its timeout.
public final class Scalers {
    /// Called on the loop thread with each reading.
    public typealias Delivery = (_ pool: String, _ sample: TriggerSample) -> Void

    /// Every network call of a source is bounded by this; the core counts a reading not back after
    /// twice as long as failed (`Reconciler.overdueQueueReading`).
    static let timeout: Duration = Reconciler.queueCallTimeout

    private let deliver: Delivery
    private let outbox = Outbox()
    /// Readable when readings wait: the loop watches it and calls `collect()`.
    public let wakeup: Int32
    private var sources: [String: Source] = [:]
    /// Pools whose reading is under way: a poll while one is out is not sent twice.
    private var pending: Set<String> = []
    private var serial: UInt64 = 0

    public init(deliver: @escaping Delivery) throws {
        self.deliver = deliver
        wakeup = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard wakeup >= 0 else { throw SystemError("eventfd") }
    }

    deinit { close(wakeup) }

    /// Starts, keeps or replaces each pool's source for the pools file now in force. A source whose
    /// trigger did not change keeps its connection.
    public func update(pools: [PoolSpec]) {
        var wanted: [String: QueueTrigger] = [:]
        for pool in pools where pool.enabled {
            if let trigger = pool.autoscaling?.queue { wanted[pool.name] = trigger }
        }
        for (name, source) in sources where wanted[name] != source.trigger {
            source.stop()
            sources[name] = nil
            pending.remove(name)
        }
        for (name, trigger) in wanted where sources[name] == nil {
            serial += 1
            do {
                sources[name] = try Source(pool: name, trigger: trigger, serial: serial, outbox: outbox, wakeup: wakeup)
            } catch {
                deliver(name, TriggerSample(trigger: trigger.name, reading: .failure(ScalerError("cannot start the scaler thread: \(error)"))))
            }
        }
    }

    /// Whether the pool has a queue source.
    public func hasSource(_ pool: String) -> Bool { sources[pool] != nil }

    /// Asks the pool's source for a reading, unless one is still under way (the core asks again only
    /// once the last one has come back, or is overdue: then its result will still come). Returns
    /// whether it asked.
    @discardableResult
    public func read(_ pool: String) -> Bool {
        guard let source = sources[pool], !pending.contains(pool) else { return false }
        pending.insert(pool)
        source.request()
        return true
    }

    public func stopAll() {
        for source in sources.values { source.stop() }
        sources = [:]
    }

    /// Hands the readings that arrived to `deliver`, on the loop thread.
    public func collect() {
        var n: UInt64 = 0
        _ = Glibc.read(wakeup, &n, 8)
        for result in outbox.take() {
            // A source replaced by a reload may still answer: only the current one counts.
            guard let source = sources[result.pool], source.serial == result.serial else { continue }
            pending.remove(result.pool)
            deliver(result.pool, result.sample)
        }
    }

    struct Result: Sendable {
        var pool: String
        var serial: UInt64
        var sample: TriggerSample
    }

    /// Readings on their way from the threads to the loop.
    final class Outbox: Sendable {
        private let results = Mutex<[Result]>([])
        func put(_ r: Result) { results.withLock { $0.append(r) } }
        func take() -> [Result] {
            results.withLock { r in
                defer { r = [] }; return r
            }
        }
    }

    /// One pool's queue source and its thread. The loop thread only calls `request` and `stop`; the
    /// connection lives on the source's own thread.
    final class Source: Sendable {
        let pool: String
        let trigger: QueueTrigger
        let serial: UInt64
        private let outbox: Outbox
        private let wakeup: Int32
        /// The loop writes "r" (read) or "q" (quit); the thread blocks reading it.
        private let requests: (read: Int32, write: Int32)

        init(pool: String, trigger: QueueTrigger, serial: UInt64, outbox: Outbox, wakeup: Int32) throws {
            self.pool = pool
            self.trigger = trigger
            self.serial = serial
            self.outbox = outbox
            self.wakeup = wakeup
            var fds: [Int32] = [-1, -1]
            guard cshim_pipe2(&fds, O_CLOEXEC) == 0 else { throw SystemError("pipe2") }
            requests = (fds[0], fds[1])
            do {
                try startDetachedThread(self) { [unowned self] in self.run() }
            } catch {
                close(fds[0])
                close(fds[1])
                throw error
            }
        }

        func request() { send(UInt8(ascii: "r")) }

        /// The thread finishes its current call (bounded by the timeout), closes its connection and ends.
        func stop() {
            send(UInt8(ascii: "q"))
            close(requests.write)
        }

        private func send(_ byte: UInt8) {
            var b = byte
            _ = write(requests.write, &b, 1)
        }

        private func run() {
            defer { close(requests.read) }
            var reader = Reader(trigger: trigger)
            defer { reader.close() }
            var byte: UInt8 = 0
            while true {
                let n = Glibc.read(requests.read, &byte, 1)
                if n < 0 && errno == EINTR { continue }
                guard n == 1, byte == UInt8(ascii: "r") else { return }
                let sample = TriggerSample(trigger: trigger.name, reading: reader.read())
                outbox.put(Result(pool: pool, serial: serial, sample: sample))
                var one: UInt64 = 1
                _ = write(wakeup, &one, 8)
            }
        }
    }

    /// The connection of one source, on its thread.
    private struct Reader {
        let trigger: QueueTrigger
        private var postgres: PostgresClient?
        private var redis: RedisClient?
        private var queue: RedisQueue?

        init(trigger: QueueTrigger) {
            self.trigger = trigger
            switch trigger.source {
            case .postgres(let connection, _):
                postgres = PostgresClient(connectionString: connection.value, timeout: Scalers.timeout)
            case .redis(let url, let queue):
                if case .success(let endpoint) = RedisEndpoint.parse(url.value) {
                    redis = RedisClient(endpoint: endpoint, timeout: Scalers.timeout)
                }
                self.queue = queue
            }
        }

        mutating func read() -> Swift.Result<TriggerReading, ScalerError> {
            let value: Swift.Result<Double, ScalerError>
            switch trigger.source {
            case .postgres(_, let query):
                value = postgres!.queryNumber(query)
            case .redis:
                guard let redis, let queue else { return .failure(ScalerError("the Redis URL in $\(trigger.connectionVariable) is not valid")) }
                var now = timespec()
                clock_gettime(CLOCK_REALTIME, &now)
                let ms = Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
                value = redis.run(queue.commands(nowMilliseconds: ms)).flatMap { queue.depth($0) }
            }
            return value.map { .queue(name: trigger.name, value: $0, target: trigger.target, activation: trigger.activation) }
        }

        func close() {
            postgres?.close()
            redis?.close()
        }
    }
}
