import PoolvisorCore

/// Why the edge could not do what it was asked, in words for the log and status.
public struct EdgeFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// The clock the shell reads when it hands an event to the core: CLOCK_MONOTONIC, or a test's.
public protocol EdgeClock: AnyObject {
    func monotonicNow() -> Instant
}

/// Starts a worker (its notify socket, output, cgroup): its pid, or why not.
public protocol WorkerSpawner: AnyObject {
    func spawn(_ launch: WorkerLaunch) -> Result<Int32, EdgeFailure>
}

/// Sends a signal to a worker's process group (SIGKILL reaches its cgroup and escaped descendants too).
public protocol Signaller: AnyObject {
    func signal(processGroup: Int32, _ signal: Signal)
}

/// systemd, when poolvisor runs under it: READY=1, RELOADING=1, STOPPING=1, with the STATUS= line.
public protocol ServiceManager: AnyObject {
    func tell(_ notification: SystemdNotification, status: String)
}

/// Reads an autoscaled pool's triggers without blocking; the readings come back as `.triggersRead`
/// through `Shell.feed`, now or later.
public protocol TriggerReader: AnyObject {
    func readTriggers(pool: String, queue: Bool)
}

/// The wall clock as civil time in a time zone, for scheduled jobs: nil when the zone is unknown here,
/// and how far into the current minute the clock is.
public protocol CivilClock: AnyObject {
    func civilTime(in timeZone: String) -> (time: CivilTime?, secondsIntoMinute: Double)
}

/// Runs workers' probes without blocking; each answer comes back as `.probed` through `Shell.feed`,
/// now or later, unless the attempt was cancelled first.
public protocol Prober: AnyObject {
    func probe(_ run: ProbeRun)
    func cancelProbe(attempt: UInt64)
}

/// The rest of what the edge keeps per pool, the log, and the one timer the core asks for.
public protocol EdgeBookkeeping: AnyObject {
    func log(_ record: LogRecord)
    /// The pools in force changed (at the start, after a reload).
    func poolsInForce(_ pools: [PoolSpec])
    /// A removed pool is gone for good.
    func forget(pool: String)
    /// A lifecycle event happened.
    func record(_ event: LifecycleEvent)
    /// Write the workers' heartbeats and read their busy keys (`[supervisor.redis_events]`).
    func heartbeat(_ beats: [WorkerBeat])
    /// Register this host in its fleet and read the members (`[supervisor.fleet]`); report `.fleetRead`.
    func fleetHeartbeat()
    /// Take this host out of its fleet now.
    func fleetLeave()
    /// Wake the loop with `.deadlineReached` at this instant (nil: never).
    func arm(deadline: Instant?)
}

/// Everything the shell drives. The daemon is the real one; tests give fakes.
public typealias Edge = EdgeClock & CivilClock & WorkerSpawner & Signaller & ServiceManager & TriggerReader & Prober & EdgeBookkeeping

/// The one interpreter of the core's actions: feeds the events the edge reports to the `Reconciler`
/// one at a time, in the order they happened (an event reported while an earlier one's actions are
/// being carried out waits its turn), and carries out the actions through the `Edge`. Spawns wait in
/// a queue and go out a slice of time at a time (`spawnWaiting(until:)`). It decides nothing.
public final class Shell {
    public var reconciler: Reconciler
    private unowned let edge: any Edge
    /// Set by `.exit`: the supervisor is done.
    public private(set) var exitCode: Int32?
    /// The STATUS= line systemd last got.
    public private(set) var sentStatus = ""
    private var events: [Event] = []
    private var feeding = false
    private var spawnQueue = SpawnQueue()

    public init(reconciler: Reconciler, edge: any Edge) {
        self.reconciler = reconciler
        self.edge = edge
    }

    /// The replicas waiting to be spawned, for an in-place upgrade to hand over.
    var waitingSpawns: [ReplicaID] { spawnQueue.waitingInOrder }

    /// Takes over what the image before an in-place upgrade left waiting and last told systemd.
    func resume(spawns: [ReplicaID], sentStatus: String) {
        for id in spawns { spawnQueue.push(id) }
        self.sentStatus = sentStatus
    }

    /// Something happened at the edge.
    public func feed(_ event: Event) {
        events.append(event)
        guard !feeding else { return }
        feeding = true
        drainEvents()
    }

    /// An operator's order; its actions are carried out before it returns.
    public func perform(_ command: Command) -> CommandOutcome {
        let (outcome, actions) = reconciler.perform(command, at: edge.monotonicNow())
        let outer = feeding
        feeding = true
        execute(actions)
        if !outer { drainEvents() }
        return outcome
    }

    /// Whether spawns wait for a slice.
    public var spawnsWaiting: Bool { !spawnQueue.isEmpty }

    /// Spawns what waits until `deadline` (looked at every 8 spawns), or all of it with nil. A replica
    /// no longer pending (scaled down, removed or stopped meanwhile) is skipped. Returns how many.
    @discardableResult
    public func spawnWaiting(until deadline: Instant?) -> Int {
        var spawned = 0
        while let id = spawnQueue.pop() {
            guard reconciler.replica(id)?.state == .pending else { continue }
            switch edge.spawn(reconciler.launch(for: id)) {
            case .success(let pid): feed(.spawned(id, pid: pid))
            case .failure(let failure): feed(.spawnFailed(id, reason: failure.reason))
            }
            spawned += 1
            if let deadline, spawned % 8 == 0, edge.monotonicNow() >= deadline { break }
        }
        return spawned
    }

    /// The edge sent this STATUS= line itself.
    public func statusSent(_ line: String) { sentStatus = line }

    private func drainEvents() {
        var next = 0
        while next < events.count {
            let event = events[next]
            next += 1
            execute(reconciler.handle(event, at: edge.monotonicNow()))
        }
        events.removeAll(keepingCapacity: true)
        feeding = false
        edge.arm(deadline: reconciler.nextDeadline)
    }

    private func execute(_ actions: [Action]) {
        for action in actions {
            switch action {
            case .spawn(let id): spawnQueue.push(id)
            case .signal(let group, let signal): edge.signal(processGroup: group, signal)
            case .log(let record): edge.log(record)
            case .tellSystemd(let notification):
                sentStatus = reconciler.statusLine
                edge.tell(notification, status: sentStatus)
            case .readTriggers(let pool, let queue): edge.readTriggers(pool: pool, queue: queue)
            case .startJob(let job, let run):
                // At once, not in the spawn queue: a job is one process, and its pools wait for it.
                guard let launch = reconciler.jobLaunch(job, run: run) else { continue }
                switch edge.spawn(launch) {
                case .success(let pid): feed(.jobSpawned(job: job, run: run, pid: pid))
                case .failure(let failure): feed(.jobSpawnFailed(job: job, run: run, reason: failure.reason))
                }
            case .readClock(let job, let zone):
                let (time, seconds) = edge.civilTime(in: zone)
                feed(.clockRead(job: job, time, secondsIntoMinute: seconds))
            case .probe(let run): edge.probe(run)
            case .cancelProbe(let attempt): edge.cancelProbe(attempt: attempt)
            case .poolsInForce(let pools): edge.poolsInForce(pools)
            case .forget(let pool): edge.forget(pool: pool)
            case .event(let event): edge.record(event)
            case .heartbeat(let beats): edge.heartbeat(beats)
            case .fleetHeartbeat: edge.fleetHeartbeat()
            case .fleetLeave: edge.fleetLeave()
            case .exit(let code): exitCode = code
            }
        }
    }
}
