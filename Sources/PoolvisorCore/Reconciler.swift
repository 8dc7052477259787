/// The supervisor's brain: takes an `Event` or a `Command` and the current `Instant`, updates what it
/// knows of the pools, and returns the `Action`s the edge must carry out, plus one `nextDeadline` to
/// be woken at. It does no I/O, so a thousand replicas, rollouts and hours of backoff are tested in
/// milliseconds.
///
/// Two small state machines do the bookkeeping: a `WorkerState` per process (keyed by pid) and a
/// `SlotState` per replica slot. Each decides every (state, event) pair in one exhaustive switch
/// (`WorkerState.decide`, `SlotState.decide`); `apply(_:to:)` is the one funnel that changes a state,
/// keeps the counts and emits the log record (Reconciler+Machines.swift).
///
/// Desired state is per pool (`PoolWant`): `desired` replicas of the pool's current `generation`.
/// After every event the pools that are not there yet ("unsettled") take one step towards it: fill
/// missing slots, empty surplus ones (idle workers first), and replace workers of an older generation
/// a few at a time — the Deployment rolling update — within the pool's disruption budget
/// (Reconciler+Settle.swift).
public struct Reconciler: Sendable, Codable {
    public enum Phase: Sendable, Equatable, Codable {
        /// Workers are coming up; systemd has not been told READY=1 yet.
        case starting
        case running
        case stopping(forced: Bool)
        case stopped
    }

    /// The outcome of the last reload, for status.
    public struct ReloadRecord: Sendable, Equatable, Codable {
        public var at: Instant
        public var outcome: CommandOutcome
    }

    public internal(set) var file: PoolsFile
    public internal(set) var phase: Phase = .starting
    /// Every pool of the file, enabled or not, and removed ones still draining; sorted by name.
    public internal(set) var pools: [Pool]
    /// Every job of the file, and removed ones still stopping; sorted by name.
    public internal(set) var jobs: [Job]
    public internal(set) var startedAt: Instant?
    public internal(set) var lastReload: ReloadRecord?
    /// Reloads applied and refused since the start, for metrics.
    public internal(set) var reloadsApplied = 0
    public internal(set) var reloadsRefused = 0
    /// In-place upgrades since the start: this reconciler was handed to a new image this many times.
    public internal(set) var upgrades = 0
    /// The lowest level of log records the edge will print; lower ones are not produced at all.
    public var logLevel: LogRecord.Level = .debug
    /// Why `[pools.X.resources]` limits cannot be enforced on this host, or nil when they are. The edge
    /// says; the reconciler warns once per pool, in the log and in status.
    public var limitsUnenforced: String?
    /// Pools already warned about, with the resources they were warned for.
    var warnedLimits: [String: Resources] = [:]

    let notifyDirectory: String?
    var poolIndex: [String: Int] = [:]
    /// Which pool each live worker process belongs to.
    var pidIndex: [Int32: String] = [:]
    var jobIndex: [String: Int] = [:]
    /// Which job each live job process belongs to.
    var jobPids: [Int32: String] = [:]
    /// Pools whose replicas are not yet what they should be; looked at after every event.
    var unsettled: Set<String> = []
    var timers = TimerQueue<Timer>()
    var random: SplitMix64
    var counts = Counts()
    var actions: [Action] = []
    var launches: UInt64 = 0
    /// The next reading of each autoscaled pool's triggers.
    var nextPoll: [String: Instant] = [:]
    /// When each pool's queue reading under way was asked for.
    var queueReadSince: [String: Instant] = [:]
    /// A queue reading counted as failed because it is overdue, for the round of the pool's other triggers.
    var overdueQueueReadings: [String: TriggerSample] = [:]
    /// Probe attempts so far: each has its number.
    var probeAttempts: UInt64 = 0
    /// When the next heartbeat is due.
    var nextHeartbeat: Instant?
    /// `[supervisor.fleet]` as the pools file at the start had it: the members and this host's place.
    public internal(set) var fleet: FleetState?
    /// When this host's next fleet heartbeat is due.
    var nextFleetHeartbeat: Instant?

    enum Timer: Sendable, Codable {
        /// `ready_after_seconds` of a worker have passed.
        case readiness(pid: Int32)
        /// `ready_timeout_seconds` of a worker have passed.
        case workerReadyTimeout(pid: Int32)
        /// A worker's probe of this kind is due (at `at`, its tally's `due`).
        case probe(pid: Int32, ProbeKind, at: Instant)
        /// A probe's timeout, if it has not answered by then.
        case probeTimeout(pid: Int32, ProbeKind, attempt: UInt64)
        /// A job run's next attempt may start.
        case jobBackoffOver(job: String, run: Int)
        /// A stopping job run's SIGKILL.
        case jobDrainDeadline(job: String, run: Int)
        /// A job run's `active_deadline_seconds`.
        case jobDeadline(job: String, run: Int)
        /// Time to read a scheduled job's clock again.
        case jobClock(job: String, at: Instant)
        /// Time for the workers' heartbeats (`[supervisor.redis_events]`).
        case heartbeat(at: Instant)
        /// Time to register this host in its fleet and read the members (`[supervisor.fleet]`).
        case fleetHeartbeat(at: Instant)
        case backoffOver(ReplicaID)
        case watchdog(pid: Int32)
        case drainDeadline(pid: Int32)
        case readyTimeout
        /// Time to read an autoscaled pool's triggers.
        case poll(pool: String, at: Instant)
    }

    /// Running totals, kept by the two funnels so that no event needs a scan over all replicas.
    struct Counts: Sendable, Codable {
        var desired = 0
        var ready = 0
        /// Pending slots and live worker processes (draining and retired ones included).
        var live = 0
        var backOff = 0
        var draining = 0

        mutating func add(_ s: WorkerState, _ d: Int) {
            switch s {
            case .starting, .running: live += d
            case .ready:
                live += d
                ready += d
            case .draining, .killing: live += d; draining += d
            case .gone: break
            }
        }

        mutating func add(_ s: SlotState, _ d: Int) {
            switch s {
            case .pending: live += d
            case .backOff: backOff += d
            case .vacant, .occupied, .releasing: break
            }
        }
    }

    /// - Parameters:
    ///   - notifyDirectory: where the edge binds each replica's NOTIFY_SOCKET (`<dir>/<pool>.<index>`).
    ///   - seed: for backoff jitter.
    public init(file: PoolsFile, notifyDirectory: String?, seed: UInt64 = 0x5EED) {
        self.file = file
        self.notifyDirectory = notifyDirectory
        self.random = SplitMix64(seed: seed)
        self.pools = file.pools.map { Pool(spec: $0) }
        self.jobs = file.jobs.map { Job(spec: $0) }
        self.fleet = file.supervisor.fleet.map(FleetState.init)
        reindex()
        reindexJobs()
    }

    /// When the reconciler next needs a `.deadlineReached` event, if ever.
    public var nextDeadline: Instant? { timers.next }

    /// The one-line summary for systemd's STATUS=: "3 pools, 7/7 workers ready". The edge sends it
    /// when it changes, at most once per loop iteration (a thousand workers coming up are one update).
    public var statusLine: String {
        switch phase {
        case .stopping, .stopped:
            return counts.live == 0 ? "stopped" : "stopping: \(plural(counts.live, "worker")) draining"
        case .starting, .running:
            let enabled = pools.count { $0.spec.enabled && !$0.removed }
            var line = "\(plural(enabled, "pool")), \(counts.ready)/\(counts.desired) workers ready"
            if counts.backOff > 0 { line += ", \(counts.backOff) in CrashLoopBackOff" }
            let rolling = pools.filter { $0.rollout != nil }.map(\.spec.name)
            if !rolling.isEmpty { line += ", rolling out \(rolling.joined(separator: ", "))" }
            if counts.draining > 0 { line += ", \(counts.draining) draining" }
            let held = pools.compactMap { p in p.held.map { "\(p.spec.name) \($0)" } }
            if !held.isEmpty { line += "; " + held.joined(separator: "; ") }
            if let r = lastReload, !r.outcome.accepted { line += "; last reload REJECTED, running the previous pools file" }
            return line
        }
    }

    public var desiredWorkers: Int { counts.desired }
    public var readyWorkers: Int { counts.ready }

    public func pool(named name: String) -> Pool? { poolIndex[name].map { pools[$0] } }

    public func replica(_ id: ReplicaID) -> Replica? {
        guard let p = poolIndex[id.pool], pools[p].replicas.indices.contains(id.index) else { return nil }
        return pools[p].replicas[id.index]
    }

    /// The slot and the worker holding it, as status shows them.
    public func view(_ id: ReplicaID) -> ReplicaView? {
        guard let p = poolIndex[id.pool], pools[p].replicas.indices.contains(id.index) else { return nil }
        return pools[p].view(id.index)
    }

    /// The live worker process with this pid, in its slot or retired.
    public func worker(_ pid: Int32) -> Worker? {
        guard let name = pidIndex[pid], let p = poolIndex[name] else { return nil }
        return pools[p].workers[pid]
    }

    /// The slot whose current worker has this pid (not a retired worker's).
    public func replica(forPid pid: Int32) -> ReplicaID? {
        guard let w = worker(pid), replica(w.replica)?.state.occupant == pid else { return nil }
        return w.replica
    }

    /// Every live worker that has, or had, this slot: the edge matches a notify message's sender to one.
    public func workers(inSlot id: ReplicaID) -> [Worker] {
        guard let p = poolIndex[id.pool] else { return [] }
        var out = pools[p].retired.compactMap { pools[p].workers[$0] }.filter { $0.replica == id }
        if let pid = replica(id)?.state.occupant, let w = pools[p].workers[pid] { out.append(w) }
        return out
    }

    // MARK: - Entry points

    public mutating func handle(_ event: Event, at now: Instant) -> [Action] {
        actions = []
        switch event {
        case .start: start(now)
        case .handedOver: resumeAfterHandover(now)
        case .spawned(let id, let pid): apply(.spawned(pid: pid), to: id, now)
        case .spawnFailed(let id, let reason): apply(.spawnFailed(reason), to: id, now)
        case .exited(let pid, let status, let oomKilled): exited(pid: pid, status, oomKilled: oomKilled, now)
        case .notified(let pid, let message): notified(pid: pid, message, now)
        case .deadlineReached:
            while let timer = timers.popDue(now) { fire(timer, now) }
        case .stopRequested(let signal): stop(signal, now)
        case .triggersRead(let pool, let samples): autoscale(pool, samples, now)
        case .probed(let pid, let kind, let attempt, let outcome): probed(pid, kind, attempt, outcome, now)
        case .jobSpawned(let job, let run, let pid): jobSpawned(job, run: run, pid: pid, now)
        case .jobSpawnFailed(let job, let run, let reason): jobSpawnFailed(job, run: run, reason: reason, now)
        case .clockRead(let job, let time, let seconds): clockRead(job, time, secondsIntoMinute: seconds, now)
        case .busyKeysRead(let busy): busyKeysRead(busy, now)
        case .fleetRead(let members): fleetRead(members, now)
        }
        afterEvent(now)
        return actions
    }

    public mutating func perform(_ command: Command, at now: Instant) -> (CommandOutcome, [Action]) {
        actions = []
        let outcome: CommandOutcome
        switch command {
        case .reload(let result): outcome = reload(result, now)
        case .scale(let name, let replicas): outcome = scale(name, to: replicas, now)
        case .restart(let name): outcome = restart(name, now)
        case .runJob(let name): outcome = runJob(name, now)
        }
        afterEvent(now)
        return (outcome, actions)
    }

    // MARK: - Helpers

    mutating func reindex() {
        pools.sort { $0.spec.name < $1.spec.name }
        poolIndex = [:]
        for (i, p) in pools.enumerated() { poolIndex[p.spec.name] = i }
    }

    mutating func recountDesired() {
        counts.desired = pools.reduce(0) { $0 + $1.desired }
    }

    func spec(of id: ReplicaID) -> PoolSpec { pools[poolIndex[id.pool]!].spec }

    mutating func log(_ level: LogRecord.Level, _ message: String, _ id: ReplicaID? = nil, _ pid: Int32? = nil) {
        guard level >= logLevel else { return }
        actions.append(.log(LogRecord(level, message, replica: id, pid: pid)))
    }

    /// A lifecycle event for the edge's ring, the journal and the Redis stream.
    mutating func emit(_ kind: LifecycleEvent.Kind, _ now: Instant, _ id: ReplicaID? = nil, pid: Int32? = nil, pool: String? = nil, _ detail: String? = nil) {
        actions.append(.event(LifecycleEvent(kind, at: now, pool: pool ?? id?.pool, replica: id?.index, pid: pid, detail: detail)))
    }

    /// For per-worker events (every spawn, exit and restart): the text is only built when it will be
    /// printed. `message` must not read `self` (exclusivity): give it locals.
    mutating func logLazily(_ level: LogRecord.Level, _ message: @autoclosure () -> String, _ id: ReplicaID?, _ pid: Int32?) {
        guard level >= logLevel else { return }
        actions.append(.log(LogRecord(level, message(), replica: id, pid: pid)))
    }
}

/// "1 worker", "3 workers".
public func plural(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }
