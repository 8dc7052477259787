/// The supervisor's brain: takes an `Event` or a `Command` and the current `Instant`, updates the
/// replicas' states, and returns the `Action`s the edge must carry out, plus one `nextDeadline` to be
/// woken at. It does no I/O, so a thousand replicas, rollouts and hours of backoff are tested in
/// milliseconds.
///
/// Desired state is per pool: `desired` replicas of the pool's current `generation`. After every event
/// the pools that are not there yet ("unsettled") take one step towards it: start missing replicas,
/// retire surplus ones (highest index first), and replace workers of an older generation a few at a
/// time — the Deployment rolling update — within the pool's disruption budget.
public struct Reconciler: Sendable {
    public enum Phase: Sendable, Equatable {
        /// Workers are coming up; systemd has not been told READY=1 yet.
        case starting
        case running
        case stopping(forced: Bool)
        case stopped
    }

    public struct Pool: Sendable {
        public internal(set) var spec: PoolSpec
        /// The replica slots by index. After a scale-down some are `vacant` (the idle workers went, not
        /// necessarily the highest); surplus ones stay while a scale-down waits for its budget.
        public internal(set) var replicas: [Replica] = []
        /// Workers that left their slot and are draining.
        public internal(set) var retiring: [RetiringWorker] = []
        /// Bumped whenever what a worker runs changes (or on `restart`); older workers are replaced.
        public internal(set) var generation = 0
        /// `poolvisor scale`: replicas to run instead of the file's, until the file's count changes.
        public internal(set) var scaledTo: Int?
        /// Gone from the pools file: draining, and forgotten once its last worker exits.
        public internal(set) var removed = false
        public internal(set) var rollout: Rollout?
        /// `[autoscaling]`: the autoscaler's replicas replace the file's and `poolvisor scale`.
        public internal(set) var autoscale: AutoscaleState?

        init(spec: PoolSpec) {
            self.spec = spec
            autoscale = spec.autoscaling.map { AutoscaleState(config: $0, replicas: $0.initialReplicas) }
        }

        /// How many replicas the pool should run now.
        public var desired: Int { removed || !spec.enabled ? 0 : (autoscale?.replicas ?? scaledTo ?? spec.replicas) }
        /// The disruption budget's floor for `desired`: ready workers a voluntary disruption keeps.
        public var minimumReady: Int { spec.disruptionBudget?.minimumReady(of: desired) ?? 0 }
    }

    /// A rolling replacement in progress.
    public struct Rollout: Sendable, Equatable {
        /// "environment (DATABASE_URL)", "poolvisor restart".
        public var reason: String
        public var startedAt: Instant
        /// Why no further worker is being replaced right now, when that is the case.
        public var waiting: String?
    }

    /// The outcome of the last reload, for status.
    public struct ReloadRecord: Sendable, Equatable {
        public var at: Instant
        public var outcome: CommandOutcome
    }

    public private(set) var file: PoolsFile
    public private(set) var phase: Phase = .starting
    /// Every pool of the file, enabled or not, and removed ones still draining; sorted by name.
    public private(set) var pools: [Pool]
    public private(set) var startedAt: Instant?
    public private(set) var lastReload: ReloadRecord?
    /// The lowest level of log records the edge will print; lower ones are not produced at all.
    public var logLevel: LogRecord.Level = .debug
    /// Why `[pools.X.resources]` limits cannot be enforced on this host, or nil when they are. The edge
    /// says; the reconciler warns once per pool, in the log and in status.
    public var limitsUnenforced: String?
    /// Pools already warned about, with the resources they were warned for.
    private var warnedLimits: [String: Resources] = [:]

    private let notifyDirectory: String?
    private var poolIndex: [String: Int] = [:]
    private var pidIndex: [Int32: Place] = [:]
    /// Pools whose replicas are not yet what they should be; looked at after every event.
    private var unsettled: Set<String> = []
    private var timers = TimerQueue<Timer>()
    private var random: SplitMix64
    private var counts = Counts()
    private var actions: [Action] = []
    private var launches: UInt64 = 0
    /// The next reading of each autoscaled pool's triggers.
    private var nextPoll: [String: Instant] = [:]

    /// Where a worker process is.
    private enum Place: Sendable {
        case slot(ReplicaID)
        /// Left its slot (the id is the slot it had) and draining.
        case retiring(ReplicaID)
    }

    private enum Timer: Sendable {
        case readiness(pid: Int32)
        case backoffOver(ReplicaID)
        case watchdog(pid: Int32)
        case drainDeadline(pid: Int32)
        case readyTimeout
        /// Time to read an autoscaled pool's triggers.
        case poll(pool: String, at: Instant)
    }

    /// Running totals, kept by `setState` so that no event needs a scan over all replicas.
    private struct Counts: Sendable {
        var desired = 0
        var ready = 0
        /// Pending, or with a worker process (including draining and retiring ones).
        var live = 0
        var backOff = 0
        var draining = 0

        mutating func add(_ s: ReplicaState, _ d: Int) {
            switch s {
            case .pending, .starting, .running: live += d
            case .ready: live += d; ready += d
            case .draining: live += d; draining += d
            case .backOff: backOff += d
            case .exited: break
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
        reindex()
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

    /// The slot whose current worker has this pid (not a retiring worker's).
    public func replica(forPid pid: Int32) -> ReplicaID? {
        if case .slot(let id)? = pidIndex[pid] { return id }
        return nil
    }

    /// Every live worker that has, or had, this slot: the edge matches a notify message's sender to one.
    public func workers(inSlot id: ReplicaID) -> [Worker] {
        guard let p = poolIndex[id.pool] else { return [] }
        var out = pools[p].retiring.filter { $0.id == id }.map(\.worker)
        if let w = replica(id)?.state.worker { out.append(w) }
        return out
    }

    // MARK: - Entry points

    public mutating func handle(_ event: Event, at now: Instant) -> [Action] {
        actions = []
        switch event {
        case .start: start(now)
        case .spawned(let id, let pid): spawned(id, pid: pid, now)
        case .spawnFailed(let id, let reason): spawnFailed(id, reason: reason, now)
        case .exited(let pid, let status): exited(pid: pid, status, now)
        case .outOfMemory(let pid): outOfMemory(pid: pid)
        case .notified(let pid, let message): notified(pid: pid, message, now)
        case .deadlineReached:
            while let timer = timers.popDue(now) { fire(timer, now) }
        case .stopRequested(let signal): stop(signal, now)
        case .triggersRead(let pool, let samples): autoscale(pool, samples, now)
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
        }
        afterEvent(now)
        return (outcome, actions)
    }

    // MARK: - Events

    private mutating func start(_ now: Instant) {
        guard startedAt == nil else { return }
        startedAt = now
        let enabled = pools.filter(\.spec.enabled).map { "\($0.spec.name) ×\($0.desired)\($0.autoscale == nil ? "" : " (autoscaled)")" }
        let disabled = pools.filter { !$0.spec.enabled }.map(\.spec.name)
        let total = pools.filter(\.spec.enabled).reduce(0) { $0 + $1.desired }
        log(.notice, "starting \(plural(enabled.count, "pool")) with \(plural(total, "worker"))"
            + (enabled.isEmpty ? "" : ": " + enabled.joined(separator: ", "))
            + (disabled.isEmpty ? "" : "; disabled: " + disabled.joined(separator: ", ")))
        for p in pools.indices {
            unsettled.insert(pools[p].spec.name)
            if pools[p].autoscale != nil { pollNow(pools[p].spec.name, now) }
        }
        recountDesired()
        warnAboutUnenforcedLimits()
        timers.schedule(.readyTimeout, at: now + file.supervisor.readyTimeout)
    }

    private mutating func spawned(_ id: ReplicaID, pid: Int32, _ now: Instant) {
        guard let r = replica(id), r.state == .pending else { return }
        pidIndex[pid] = .slot(id)
        let worker = Worker(pid: pid, startedAt: now)
        let spec = spec(of: id)
        transition(id, to: .starting(worker), .info, "worker \(id) started, pid \(pid)", pid: pid)
        if case .stopping = phase {
            beginDrain(id, worker, cause: .shutdown, then: .stay, now)
            return
        }
        switch spec.readiness {
        case .started(let after) where after == .zero:
            becomeReady(id, worker, now, why: nil)
        case .started(let after):
            timers.schedule(.readiness(pid: pid), at: now + after)
        case .notify:
            timers.schedule(.readiness(pid: pid), at: now + spec.readyTimeout)
        }
    }

    private mutating func spawnFailed(_ id: ReplicaID, reason: String, _ now: Instant) {
        guard let r = replica(id), r.state == .pending else { return }
        if case .stopping = phase {
            transition(id, to: .exited, .error, "worker \(id) could not be started: \(reason)")
            return
        }
        restart(id, after: nil, reason: .spawnFailed(reason), now)
    }

    private mutating func exited(pid: Int32, _ status: WaitStatus, _ now: Instant) {
        // An adopted orphan (we are its subreaper) has no place: reaping it was all there was to do.
        guard let place = pidIndex.removeValue(forKey: pid) else { return }
        // Whatever the worker left in its process group goes with it, as in a pod. While stopping, the
        // edge's final sweep kills every leftover at once (they are all re-parented to the supervisor).
        if phase == .running || phase == .starting { actions.append(.signal(processGroup: pid, .kill)) }
        switch place {
        case .retiring(let id):
            retiredWorkerExited(id, pid: pid, status, now)
        case .slot(let id):
            guard let r = replica(id), let worker = r.state.worker, worker.pid == pid else { return }
            let natural: ExitReason = worker.outOfMemory ? .oomKilled : status.exitReason
            switch r.state {
            case .starting, .running, .ready:
                if case .stopping = phase {
                    finish(id, worker, reason: natural, now)
                } else {
                    restart(id, after: worker, reason: natural, now)
                }
            case .draining(_, let drain):
                let reason: ExitReason = worker.outOfMemory ? .oomKilled : drain.cause == .watchdog ? .watchdog
                    : drain.killed ? .killedAfterDrainDeadline : status.exitReason
                if drain.then == .restart, phase == .running || phase == .starting {
                    restart(id, after: worker, reason: reason, now)
                } else {
                    finish(id, worker, reason: reason, now)
                }
            case .pending, .backOff, .exited:
                break
            }
        }
    }

    private mutating func retiredWorkerExited(_ id: ReplicaID, pid: Int32, _ status: WaitStatus, _ now: Instant) {
        guard let p = poolIndex[id.pool], let i = pools[p].retiring.firstIndex(where: { $0.worker.pid == pid }) else { return }
        let gone = pools[p].retiring.remove(at: i)
        counts.add(.draining(gone.worker, gone.drain), -1)
        let reason: ExitReason = gone.worker.outOfMemory ? .oomKilled : gone.drain.killed ? .killedAfterDrainDeadline : status.exitReason
        logLazily(gone.drain.killed ? .warning : .info, "worker \(id) (pid \(pid), \(gone.drain.cause.rawValue)) stopped: \(reason)", id, pid)
        if pools[p].removed, pools[p].retiring.isEmpty, pools[p].replicas.isEmpty { forget(p) }
    }

    private mutating func outOfMemory(pid: Int32) {
        switch pidIndex[pid] {
        case .slot(let id)?:
            guard let p = poolIndex[id.pool], var w = pools[p].replicas[id.index].state.worker else { return }
            w.outOfMemory = true
            switch pools[p].replicas[id.index].state {
            case .starting: setState(id, .starting(w))
            case .running: setState(id, .running(w))
            case .ready: setState(id, .ready(w))
            case .draining(_, let d): setState(id, .draining(w, d))
            case .pending, .backOff, .exited: break
            }
        case .retiring(let id)?:
            guard let p = poolIndex[id.pool], let i = pools[p].retiring.firstIndex(where: { $0.worker.pid == pid }) else { return }
            pools[p].retiring[i].worker.outOfMemory = true
        case nil:
            break
        }
    }

    private mutating func notified(pid: Int32, _ message: NotifyMessage, _ now: Instant) {
        switch pidIndex[pid] {
        case .retiring(let id)?:
            guard let p = poolIndex[id.pool], let i = pools[p].retiring.firstIndex(where: { $0.worker.pid == pid }) else { return }
            if let status = message.status { pools[p].retiring[i].worker.status = status }
            if let busy = message.busy { pools[p].retiring[i].worker.busy = busy }
        case .slot(let id)?:
            notified(id, message, now)
        case nil:
            break
        }
    }

    private mutating func notified(_ id: ReplicaID, _ message: NotifyMessage, _ now: Instant) {
        guard let r = replica(id), var worker = r.state.worker else { return }
        let spec = spec(of: id)
        if let status = message.status { worker.status = status }
        if let busy = message.busy { worker.busy = busy }
        if message.watchdogPing || message.ready, let watchdog = spec.watchdog {
            if worker.lastWatchdogPing == nil { timers.schedule(.watchdog(pid: worker.pid), at: now + watchdog) }
            worker.lastWatchdogPing = now
        }
        switch r.state {
        case .starting where message.ready, .running where message.ready:
            becomeReady(id, worker, now, why: "READY=1")
        case .starting: setState(id, .starting(worker))
        case .running: setState(id, .running(worker))
        case .ready: setState(id, .ready(worker))
        case .draining(_, let drain): setState(id, .draining(worker, drain))
        case .pending, .backOff, .exited: break
        }
        if message.watchdogTrigger, let r = replica(id), r.state.isAlive, !r.state.isDraining {
            watchdogKill(id, worker, now, why: "it sent WATCHDOG=trigger")
        }
    }

    private mutating func stop(_ signal: Signal, _ now: Instant) {
        switch phase {
        case .stopping(forced: false) where signal == .interrupt:
            phase = .stopping(forced: true)
            log(.warning, "second \(signal): killing \(plural(counts.live, "worker")) now")
            for p in pools.indices {
                for r in pools[p].replicas.indices {
                    if case .draining(let w, var drain) = pools[p].replicas[r].state, !drain.killed {
                        drain.killed = true
                        actions.append(.signal(processGroup: w.pid, .kill))
                        setState(pools[p].replicas[r].id, .draining(w, drain))
                    }
                }
                for i in pools[p].retiring.indices where !pools[p].retiring[i].drain.killed {
                    pools[p].retiring[i].drain.killed = true
                    actions.append(.signal(processGroup: pools[p].retiring[i].worker.pid, .kill))
                }
            }
        case .stopping, .stopped:
            log(.info, "\(signal) while stopping: already draining (a second SIGINT kills at once)")
        case .starting, .running:
            phase = .stopping(forced: false)
            let longest = pools.filter { $0.replicas.contains { $0.state.isAlive } || !$0.retiring.isEmpty }.map(\.spec.drain).max() ?? .zero
            actions.append(.tellSystemd(.stopping(extendTimeout: longest + .seconds(5))))
            let stopSignals = Set(pools.map(\.spec.stopSignal))
            let first = stopSignals.count == 1 ? stopSignals.first!.description : "each pool's stop_signal"
            log(.notice, "\(signal): draining \(plural(counts.live, "worker")) (\(first) now, SIGKILL after up to \(longest.humanReadable))")
            for p in pools.indices {
                pools[p].rollout = nil
                for r in pools[p].replicas.indices {
                    let id = pools[p].replicas[r].id
                    switch pools[p].replicas[r].state {
                    case .starting(let w), .running(let w), .ready(let w):
                        beginDrain(id, w, cause: .shutdown, then: .stay, now)
                    case .draining(let w, var drain):
                        drain.then = .stay
                        setState(id, .draining(w, drain))
                    case .backOff, .pending:
                        // A pending worker is one the edge has not spawned yet (a wave is spawned a
                        // slice at a time): it never will be.
                        transition(id, to: .exited)
                    case .exited:
                        break
                    }
                }
            }
            unsettled = []
        }
    }

    private mutating func fire(_ timer: Timer, _ now: Instant) {
        guard applies(timer, now) else { return }
        switch timer {
        case .readiness(let pid):
            guard case .slot(let id)? = pidIndex[pid], case .starting(let worker)? = replica(id)?.state else { return }
            switch spec(of: id).readiness {
            case .started:
                becomeReady(id, worker, now, why: nil)
            case .notify:
                let timeout = spec(of: id).readyTimeout
                transition(id, to: .running(worker), .warning, "worker \(id) has not sent READY=1 within \(timeout.humanReadable); it keeps running, not ready", pid: pid)
            }
        case .backoffOver(let id):
            spawn(id)
        case .watchdog(let pid):
            guard case .slot(let id)? = pidIndex[pid], let worker = replica(id)?.state.worker,
                  let interval = spec(of: id).watchdog, let last = worker.lastWatchdogPing else { return }
            if last + interval <= now {
                watchdogKill(id, worker, now, why: "no WATCHDOG=1 for \(interval.humanReadable)")
            } else {
                timers.schedule(.watchdog(pid: pid), at: last + interval)
            }
        case .drainDeadline(let pid):
            switch pidIndex[pid] {
            case .slot(let id)?:
                guard case .draining(let worker, var drain)? = replica(id)?.state else { return }
                drain.killed = true
                actions.append(.signal(processGroup: pid, .kill))
                transition(id, to: .draining(worker, drain), .warning, "worker \(id) (pid \(pid)) did not exit within its drain period; sending SIGKILL", pid: pid)
            case .retiring(let id)?:
                guard let p = poolIndex[id.pool], let i = pools[p].retiring.firstIndex(where: { $0.worker.pid == pid }) else { return }
                pools[p].retiring[i].drain.killed = true
                actions.append(.signal(processGroup: pid, .kill))
                log(.warning, "worker \(id) (pid \(pid), \(pools[p].retiring[i].drain.cause.rawValue)) did not exit within its drain period; sending SIGKILL", id, pid)
            case nil:
                return
            }
        case .poll(let name, _):
            pollNow(name, now)
        case .readyTimeout:
            phase = .running
            actions.append(.tellSystemd(.ready))
            log(.warning, "\(counts.ready) of \(plural(counts.desired, "worker")) ready after \(file.supervisor.readyTimeout.humanReadable); telling systemd READY=1 anyway")
        }
    }

    /// Whether a timer still means something: the one check both `fire` and the pruning of moot
    /// deadlines use, so an idle supervisor is never woken for nothing.
    private func applies(_ timer: Timer, _ now: Instant?) -> Bool {
        switch timer {
        case .readiness(let pid):
            guard case .slot(let id)? = pidIndex[pid], case .starting? = replica(id)?.state else { return false }
            return true
        case .backoffOver(let id):
            guard case .backOff(let until)? = replica(id)?.state else { return false }
            return now.map { until <= $0 } ?? true
        case .watchdog(let pid):
            guard case .slot(let id)? = pidIndex[pid], let state = replica(id)?.state else { return false }
            return state.isAlive && !state.isDraining
        case .drainDeadline(let pid):
            switch pidIndex[pid] {
            case .slot(let id)?:
                guard case .draining(_, let drain)? = replica(id)?.state else { return false }
                return !drain.killed && now.map { drain.deadline <= $0 } ?? true
            case .retiring(let id)?:
                guard let r = pool(named: id.pool)?.retiring.first(where: { $0.worker.pid == pid }) else { return false }
                return !r.drain.killed && now.map { r.drain.deadline <= $0 } ?? true
            case nil:
                return false
            }
        case .readyTimeout:
            return phase == .starting
        case .poll(let name, let at):
            guard nextPoll[name] == at, phase == .starting || phase == .running, let pool = pool(named: name) else { return false }
            return pool.autoscale != nil && !pool.removed && pool.spec.enabled
        }
    }

    // MARK: - Commands

    private mutating func reload(_ result: PoolsFileDecoder.Result, _ now: Instant) -> CommandOutcome {
        let path = result.file?.path ?? file.path
        if case .stopping = phase {
            return CommandOutcome(accepted: false, lines: ["poolvisor is stopping; \(path) was not reloaded"])
        }
        guard let new = result.file else {
            let errors = result.diagnostics.errors.count
            let outcome = CommandOutcome(accepted: false, lines: ["\(path) rejected (\(plural(errors, "error"))); nothing changed, the previous pools file keeps running"],
                                         diagnostics: result.diagnostics)
            lastReload = ReloadRecord(at: now, outcome: outcome)
            log(.error, outcome.lines[0])
            for d in result.diagnostics { log(d.severity == .error ? .error : .warning, d.description) }
            if phase == .running { actions.append(.tellSystemd(.ready)) }
            return outcome
        }
        var lines: [String] = []
        for d in result.diagnostics { log(.warning, d.description) }
        if new.supervisor.controlSocket != file.supervisor.controlSocket || new.supervisor.controlGroup != file.supervisor.controlGroup {
            lines.append("control_socket and control_group take effect when poolvisor restarts")
        }
        if new.supervisor.readyTimeout != file.supervisor.readyTimeout { lines.append("ready_timeout_seconds: applies at the next start") }

        let names = Set(pools.map(\.spec.name)).union(new.pools.map(\.name)).sorted()
        for name in names {
            let spec = new.pool(named: name)
            guard let p = poolIndex[name] else {
                // A new pool.
                let spec = spec!
                let pool = Pool(spec: spec)
                pools.append(pool)
                reindex()
                unsettled.insert(name)
                if pool.autoscale != nil && spec.enabled { pollNow(name, now) }
                lines.append(spec.enabled ? "pool \(name): new, starting \(plural(pool.desired, "worker"))" + (spec.autoscaling.map { " (autoscaled, \($0.summary))" } ?? "") : "pool \(name): new, disabled")
                continue
            }
            let old = pools[p]
            let live = old.replicas.count { $0.state.isAlive }
            guard let spec else {
                if !old.removed {
                    pools[p].removed = true
                    pools[p].rollout = nil
                    unsettled.insert(name)
                    lines.append("pool \(name): removed from the file, draining \(plural(live, "worker"))")
                }
                continue
            }
            var what: [String] = []
            let workerChanges = spec.workerChanges(from: old.spec)
            var settings = spec.settingChanges(from: old.spec)
            pools[p].spec = spec
            if spec.autoscaling != old.spec.autoscaling {
                settings.removeAll { $0 == "autoscaling" }
                what.append(reconfigureAutoscaling(p, from: old, now))
            } else if spec.enabled && !old.spec.enabled && pools[p].autoscale != nil {
                pollNow(name, now)
            }
            if old.removed {
                pools[p].removed = false
                what.append("back in the file")
            }
            if spec.enabled != old.spec.enabled { what.append(spec.enabled ? "enabled" : "disabled") }
            if spec.autoscaling != nil {
                // The autoscaler sets the replicas; the file's are only where a fresh start begins.
            } else if spec.replicas != old.spec.replicas, let scaled = old.scaledTo {
                pools[p].scaledTo = nil
                what.append("replicas \(old.spec.replicas) → \(spec.replicas) in the file, replacing the runtime scale to \(scaled)")
            } else if spec.replicas != old.spec.replicas {
                what.append("replicas \(old.spec.replicas) → \(spec.replicas)")
            } else if let scaled = old.scaledTo {
                what.append("keeps its runtime scale of \(scaled) (the file's replicas did not change)")
            }
            if !workerChanges.isEmpty {
                pools[p].generation += 1
                let reason = workerChanges.joined(separator: ", ")
                if live > 0 {
                    pools[p].rollout = Rollout(reason: reason, startedAt: now)
                    what.append("\(reason) changed: rolling replacement of \(plural(live, "worker")) (at most \(spec.rolloutAllowance(desired: pools[p].desired)) at a time)")
                } else {
                    what.append("\(reason) changed")
                }
            }
            if !settings.isEmpty { what.append("\(settings.joined(separator: ", ")) changed (applies without a restart)") }
            if what.isEmpty {
                lines.append("pool \(name): unchanged" + (live > 0 ? " (\(plural(live, "worker")) \(live == 1 ? "keeps" : "keep") running)" : ""))
            } else {
                unsettled.insert(name)
                lines.append("pool \(name): " + what.joined(separator: "; "))
            }
        }
        file = new
        recountDesired()
        warnAboutUnenforcedLimits()
        let outcome = CommandOutcome(accepted: true, lines: ["\(new.path) reloaded"] + lines, diagnostics: result.diagnostics)
        lastReload = ReloadRecord(at: now, outcome: outcome)
        for line in outcome.lines { log(.notice, line) }
        if phase == .running { actions.append(.tellSystemd(.ready)) }
        return outcome
    }

    private mutating func scale(_ name: String, to replicas: Int, _ now: Instant) -> CommandOutcome {
        guard let p = poolIndex[name], !pools[p].removed else { return refusal(unknownPool: name) }
        if case .stopping = phase { return CommandOutcome(accepted: false, lines: ["poolvisor is stopping"]) }
        guard pools[p].spec.enabled else {
            return CommandOutcome(accepted: false, lines: ["pool \(name) is disabled in \(file.path); enable it there and reload"])
        }
        if let autoscaling = pools[p].spec.autoscaling {
            return CommandOutcome(accepted: false, lines: [
                "pool \(name) is autoscaled (\(autoscaling.summary); \(autoscaling.rules.minReplicas)–\(autoscaling.rules.maxReplicas) replicas, now \(pools[p].desired)): the autoscaler sets its replicas",
                "change min_replicas / max_replicas in [pools.\(name).autoscaling] of \(file.path) and reload, or set enabled = false there to scale it by hand",
            ])
        }
        guard (0...PoolsFileDecoder.maximumReplicas).contains(replicas) else {
            return CommandOutcome(accepted: false, lines: ["replicas must be between 0 and \(PoolsFileDecoder.maximumReplicas), not \(replicas)"])
        }
        let before = pools[p].desired
        let fileCount = pools[p].spec.replicas
        pools[p].scaledTo = replicas == fileCount ? nil : replicas
        unsettled.insert(name)
        recountDesired()
        var lines = [before == replicas ? "pool \(name) already has \(plural(replicas, "replica"))" : "pool \(name) scaled from \(before) to \(plural(replicas, "replica"))"]
        if replicas == fileCount {
            lines.append("that is what \(file.path) says, so no runtime scale remains")
        } else {
            lines.append("this lasts until a reload of a pools file that changes \(name)'s replicas (\(file.path) says \(fileCount)); a restart of poolvisor goes back to the file")
        }
        if replicas < before, let budget = pools[p].spec.disruptionBudget {
            lines.append("scale-down within the disruption budget (\(budget)): workers drain while at least \(pools[p].minimumReady) stay ready")
        }
        log(.notice, lines[0] + " (poolvisor scale)")
        return CommandOutcome(accepted: true, lines: lines)
    }

    private mutating func restart(_ name: String, _ now: Instant) -> CommandOutcome {
        guard let p = poolIndex[name], !pools[p].removed else { return refusal(unknownPool: name) }
        if case .stopping = phase { return CommandOutcome(accepted: false, lines: ["poolvisor is stopping"]) }
        let live = pools[p].replicas.count { $0.state.isAlive }
        guard live > 0 else { return CommandOutcome(accepted: true, lines: ["pool \(name) has no running workers; nothing to restart"]) }
        pools[p].generation += 1
        pools[p].rollout = Rollout(reason: "poolvisor restart", startedAt: now)
        unsettled.insert(name)
        let allowance = pools[p].spec.rolloutAllowance(desired: pools[p].desired)
        var lines = ["pool \(name): rolling restart of \(plural(live, "worker")), at most \(allowance) at a time, each replacement ready before the next"]
        if let budget = pools[p].spec.disruptionBudget {
            lines.append("within the disruption budget (\(budget)): at least \(pools[p].minimumReady) stay ready")
        }
        log(.notice, lines[0])
        return CommandOutcome(accepted: true, lines: lines)
    }

    // MARK: - Autoscaling

    /// Asks the edge to read the pool's triggers now, and again one polling interval later.
    private mutating func pollNow(_ name: String, _ now: Instant) {
        guard let p = poolIndex[name], let interval = pools[p].autoscale?.config.pollingInterval else { return }
        actions.append(.readTriggers(pool: name))
        let next = now + interval
        nextPoll[name] = next
        timers.schedule(.poll(pool: name, at: next), at: next)
    }

    /// A round of trigger readings for an autoscaled pool.
    private mutating func autoscale(_ name: String, _ samples: [TriggerSample], _ now: Instant) {
        guard phase == .starting || phase == .running, let p = poolIndex[name], var state = pools[p].autoscale else { return }
        let before = state.replicas
        for record in state.apply(samples, pool: name, at: now) { log(record.level, record.message) }
        pools[p].autoscale = state
        if state.replicas != before {
            unsettled.insert(name)
            recountDesired()
        }
    }

    /// A reload turned autoscaling on or off, or changed it. Returns the line for the reload's output.
    private mutating func reconfigureAutoscaling(_ p: Int, from old: Pool, _ now: Instant) -> String {
        let name = pools[p].spec.name
        guard let config = pools[p].spec.autoscaling else {
            pools[p].autoscale = nil
            return "autoscaling off: back to the file's \(plural(pools[p].spec.replicas, "replica"))"
        }
        if var state = old.autoscale {
            for record in state.reconfigure(config, pool: name, at: now) { log(record.level, record.message) }
            pools[p].autoscale = state
            if config.queue != old.spec.autoscaling?.queue || config.cron != old.spec.autoscaling?.cron || config.cpuTarget != old.spec.autoscaling?.cpuTarget {
                pollNow(name, now)
            }
            return "autoscaling changed (\(config.summary); \(config.rules.minReplicas)–\(config.rules.maxReplicas) replicas; applies at once)"
        }
        let current = config.rules.bounded(old.desired)
        pools[p].scaledTo = nil
        pools[p].autoscale = AutoscaleState(config: config, replicas: current)
        pollNow(name, now)
        return "autoscaling on (\(config.summary); \(config.rules.minReplicas)–\(config.rules.maxReplicas) replicas), from \(plural(current, "replica"))"
    }

    private func refusal(unknownPool name: String) -> CommandOutcome {
        let known = pools.filter { !$0.removed }.map(\.spec.name)
        return CommandOutcome(accepted: false, lines: ["no pool '\(name)'\(Suggestion.didYouMean(name, known)); pools: \(known.joined(separator: ", "))"])
    }

    // MARK: - Towards the desired state

    /// One step of pool `p` towards `desired` replicas of its current generation.
    /// Returns whether the pool is there (nothing left to do).
    private mutating func settle(_ p: Int, _ now: Instant) -> Bool {
        let name = pools[p].spec.name
        let desired = pools[p].desired
        let generation = pools[p].generation

        // Missing replicas start at once, like a Deployment scaling up: the lowest vacated slot first.
        var active = pools[p].replicas.count { !$0.vacant }
        // The vacated slots, lowest last, found once: a search per new replica was O(N²) at 10,000.
        var vacated = active < desired ? pools[p].replicas.indices.filter { pools[p].replicas[$0].vacant && pools[p].replicas[$0].state == .exited }.reversed() : []
        if active < desired { pools[p].replicas.reserveCapacity(pools[p].replicas.count + desired - active - vacated.count) }
        while active < desired {
            if let i = vacated.popLast() {
                pools[p].replicas[i].vacant = false
                spawn(pools[p].replicas[i].id)
            } else {
                let id = ReplicaID(pool: name, index: pools[p].replicas.count)
                pools[p].replicas.append(Replica(id: id, generation: generation))
                counts.add(.pending, 1)
                actions.append(.spawn(id))
            }
            active += 1
        }
        for i in pools[p].replicas.indices where !pools[p].replicas[i].vacant && pools[p].replicas[i].state == .exited {
            spawn(pools[p].replicas[i].id)
        }

        // Surplus replicas go. Which ones: those not ready first, then idle workers (BUSY=0, or never
        // said), busy ones last; the highest index first among equals. A ready one only within the
        // disruption budget.
        var ready = pools[p].replicas.count { !$0.vacant && $0.state.isReady }
        let going = pools[p].removed || !pools[p].spec.enabled
        let cause: Drain.Cause = going ? .poolRemoved : .scaleDown
        let floor = going ? 0 : pools[p].minimumReady
        var surplus = active - desired
        var surplusWaiting = 0
        if surplus > 0 {
            let candidates = pools[p].replicas.indices.filter { !pools[p].replicas[$0].vacant }.sorted { a, b in
                let ka = Self.removalRank(pools[p].replicas[a].state), kb = Self.removalRank(pools[p].replicas[b].state)
                return ka != kb ? ka < kb : a > b
            }
            for i in candidates where surplus > 0 {
                let id = pools[p].replicas[i].id
                switch pools[p].replicas[i].state {
                case .ready(let w):
                    guard ready - 1 >= floor else {
                        surplusWaiting = surplus
                        surplus = 0
                        continue
                    }
                    ready -= 1
                    retire(id, w, cause: cause, now)
                    transition(id, to: .exited)
                case .starting(let w), .running(let w):
                    retire(id, w, cause: cause, now)
                    transition(id, to: .exited)
                case .draining(let w, var drain):
                    if drain.then == .restart {
                        drain.then = .stay
                        setState(id, .draining(w, drain))
                    }
                case .backOff:
                    transition(id, to: .exited)
                case .exited:
                    break
                case .pending:
                    continue  // its spawn is under way; the next step retires it
                }
                pools[p].replicas[i].vacant = true
                surplus -= 1
            }
        }
        while let last = pools[p].replicas.last, last.vacant, last.state == .exited {
            pools[p].replicas.removeLast()
        }
        if pools[p].removed, pools[p].replicas.isEmpty, pools[p].retiring.isEmpty {
            forget(p)
            return true
        }

        // Workers of an older generation are replaced: not-ready ones at once, ready ones while fewer
        // than the rollout allowance are unavailable and the budget's floor holds.
        var outdated = 0
        var unavailable = pools[p].replicas.count { !$0.vacant && !$0.state.isReady }
        let allowance = pools[p].spec.rolloutAllowance(desired: desired)
        var waiting: String?
        for i in pools[p].replicas.indices where !pools[p].replicas[i].vacant && pools[p].replicas[i].generation < generation {
            let id = pools[p].replicas[i].id
            switch pools[p].replicas[i].state {
            case .starting(let w), .running(let w):
                replace(id, w, now)
            case .backOff:
                pools[p].replicas[i].crashStreak = 0
                spawn(id)
            case .ready(let w):
                if unavailable >= allowance {
                    outdated += 1
                    waiting = waiting ?? "\(plural(unavailable, "replica")) not ready (max_unavailable \(allowance))"
                } else if ready - 1 < floor {
                    outdated += 1
                    waiting = waiting ?? "disruption budget: \(ready) ready, at least \(floor) must stay"
                } else {
                    unavailable += 1
                    ready -= 1
                    replace(id, w, now)
                }
            case .draining, .pending, .exited:
                break  // a watchdog restart or a spawn under way starts the new generation anyway
            }
        }
        if surplusWaiting > 0, waiting == nil {
            waiting = "scale-down of \(plural(surplusWaiting, "replica")) waits for the disruption budget: \(ready) ready, at least \(floor) must stay"
        }
        pools[p].rollout?.waiting = waiting
        let current = pools[p].replicas.filter { !$0.vacant }
        let allReady = current.count == desired && current.allSatisfy { $0.state.isReady && $0.generation == generation }
        if let rollout = pools[p].rollout, allReady {
            pools[p].rollout = nil
            log(.notice, "pool \(name): rolling replacement complete (\(rollout.reason); took \(now.since(rollout.startedAt).humanReadable))")
        }
        return outdated == 0 && surplusWaiting == 0 && current.count == desired && (pools[p].rollout == nil || allReady)
    }

    /// The order in which a scale-down picks replicas: no ready worker (nothing is lost), then an idle
    /// one (BUSY=0, or never said), then a busy one.
    private static func removalRank(_ state: ReplicaState) -> Int {
        switch state {
        case .ready(let w): w.busy == true ? 2 : 1
        default: 0
        }
    }

    /// The worker leaves its slot to drain, and a new worker of the current generation takes the slot.
    private mutating func replace(_ id: ReplicaID, _ worker: Worker, _ now: Instant) {
        retire(id, worker, cause: .replaced, now)
        spawn(id)
    }

    /// Moves the slot's worker to the pool's retiring workers and starts its drain. The caller gives
    /// the slot its next state.
    private mutating func retire(_ id: ReplicaID, _ worker: Worker, cause: Drain.Cause, _ now: Instant) {
        let p = poolIndex[id.pool]!
        let drain = startDrain(worker.pid, cause: cause, then: .stay, signal: pools[p].spec.stopSignal, period: pools[p].spec.drain, now)
        pidIndex[worker.pid] = .retiring(id)
        pools[p].retiring.append(RetiringWorker(id: id, worker: worker, drain: drain))
        counts.add(.draining(worker, drain), 1)
        logLazily(.info, "draining worker \(id) (pid \(worker.pid)): \(cause.rawValue)", id, worker.pid)
    }

    /// Drops a removed pool whose last worker has exited.
    private mutating func forget(_ p: Int) {
        let name = pools[p].spec.name
        pools.remove(at: p)
        reindex()
        unsettled.remove(name)
        actions.append(.forget(pool: name))
        log(.info, "pool \(name) removed")
    }

    /// Loudly, once per pool (again if its resources change): limits that are written but not enforced.
    private mutating func warnAboutUnenforcedLimits() {
        guard let why = limitsUnenforced else { return }
        for pool in pools where pool.spec.enabled && !pool.removed && pool.spec.resources.hasLimits {
            guard warnedLimits[pool.spec.name] != pool.spec.resources else { continue }
            warnedLimits[pool.spec.name] = pool.spec.resources
            log(.warning, "pool \(pool.spec.name): \(pool.spec.resources.limitNames.joined(separator: ", ")) NOT enforced: \(why)")
        }
    }

    /// What `status` says about a pool beyond its replicas.
    public func warnings(for pool: Pool) -> [String] {
        guard let why = limitsUnenforced, pool.spec.resources.hasLimits else { return [] }
        return ["resources limits NOT enforced: \(why)"]
    }

    private mutating func reindex() {
        pools.sort { $0.spec.name < $1.spec.name }
        poolIndex = [:]
        for (i, p) in pools.enumerated() { poolIndex[p.spec.name] = i }
    }

    private mutating func recountDesired() {
        counts.desired = pools.reduce(0) { $0 + $1.desired }
    }

    // MARK: - Transitions

    /// The one funnel every state change goes through: keeps the counts and emits the log record.
    private mutating func transition(_ id: ReplicaID, to state: ReplicaState, _ level: LogRecord.Level, _ message: @autoclosure () -> String, pid: Int32? = nil) {
        setState(id, state)
        logLazily(level, message(), id, pid)
    }

    private mutating func transition(_ id: ReplicaID, to state: ReplicaState) {
        setState(id, state)
    }

    private mutating func setState(_ id: ReplicaID, _ state: ReplicaState) {
        let p = poolIndex[id.pool]!
        counts.add(pools[p].replicas[id.index].state, -1)
        counts.add(state, 1)
        pools[p].replicas[id.index].state = state
    }

    private mutating func spawn(_ id: ReplicaID) {
        let p = poolIndex[id.pool]!
        pools[p].replicas[id.index].generation = pools[p].generation
        transition(id, to: .pending)
        actions.append(.spawn(id))
    }

    private mutating func becomeReady(_ id: ReplicaID, _ worker: Worker, _ now: Instant, why: String?) {
        var w = worker
        w.readyAt = now
        if let watchdog = spec(of: id).watchdog, w.lastWatchdogPing == nil {
            w.lastWatchdogPing = now
            timers.schedule(.watchdog(pid: w.pid), at: now + watchdog)
        }
        transition(id, to: .ready(w), why == nil ? .debug : .info, "worker \(id) is ready" + (why.map { " (\($0))" } ?? ""), pid: w.pid)
    }

    /// A worker ended on its own (or failed to start): count it and start the next one, at once the
    /// first time after a stable run, then with exponential backoff.
    private mutating func restart(_ id: ReplicaID, after worker: Worker?, reason: ExitReason, _ now: Instant) {
        let p = poolIndex[id.pool]!
        var r = pools[p].replicas[id.index]
        let policy = pools[p].spec.backoff
        if let worker, now.since(worker.startedAt) >= policy.resetAfter { r.crashStreak = 0 }
        let delay = policy.delay(afterConsecutiveExits: r.crashStreak, unit: Double.random(in: 0..<1, using: &random))
        r.crashStreak += 1
        r.restarts += 1
        r.lastExit = reason
        r.lastExitAt = now
        pools[p].replicas[id.index] = r
        func what() -> String { worker.map { "worker \(id) (pid \($0.pid)) exited: \(reason)" } ?? "worker \(id) \(reason)" }
        let level: LogRecord.Level = reason.isClean ? .notice : .warning
        if delay == .zero {
            spawn(id)  // before the log line: the replacement's start is what latency is measured by
            logLazily(level, "\(what()); restarting now", id, worker?.pid)
        } else {
            let until = now + delay
            transition(id, to: .backOff(until: until), level, "\(what()); restarting in \(delay.humanReadable) (CrashLoopBackOff)", pid: worker?.pid)
            timers.schedule(.backoffOver(id), at: until)
        }
    }

    /// A worker ended and its slot stays empty.
    private mutating func finish(_ id: ReplicaID, _ worker: Worker, reason: ExitReason, _ now: Instant) {
        let p = poolIndex[id.pool]!
        pools[p].replicas[id.index].lastExit = reason
        pools[p].replicas[id.index].lastExitAt = now
        let level: LogRecord.Level = reason == .killedAfterDrainDeadline ? .warning : .info
        transition(id, to: .exited, level, "worker \(id) (pid \(worker.pid)) stopped: \(reason)", pid: worker.pid)
    }

    private mutating func beginDrain(_ id: ReplicaID, _ worker: Worker, cause: Drain.Cause, then: Drain.Then, _ now: Instant) {
        let drain = startDrain(worker.pid, cause: cause, then: then, signal: spec(of: id).stopSignal, period: spec(of: id).drain, now)
        transition(id, to: .draining(worker, drain), .debug, "draining worker \(id) (pid \(worker.pid))", pid: worker.pid)
    }

    /// The start of every drain: `signal` to the worker's process group and SIGKILL due at the end of
    /// `period`, or SIGKILL at once when the period is zero.
    private mutating func startDrain(_ pid: Int32, cause: Drain.Cause, then: Drain.Then, signal: Signal, period: Duration, _ now: Instant) -> Drain {
        var drain = Drain(cause: cause, then: then, deadline: now + period)
        if period == .zero {
            drain.killed = true
            actions.append(.signal(processGroup: pid, .kill))
        } else {
            actions.append(.signal(processGroup: pid, signal))
            timers.schedule(.drainDeadline(pid: pid), at: drain.deadline)
        }
        return drain
    }

    /// Like systemd's WatchdogSignal: SIGABRT (a Python or Node worker prints where it hung), then SIGKILL
    /// if it is still there after a short grace period.
    private mutating func watchdogKill(_ id: ReplicaID, _ worker: Worker, _ now: Instant, why: String) {
        let grace = min(spec(of: id).drain, .seconds(5))
        let drain = startDrain(worker.pid, cause: .watchdog, then: .restart, signal: .abort, period: grace, now)
        transition(id, to: .draining(worker, drain), .error, "worker \(id) (pid \(worker.pid)) watchdog timeout: \(why); sending SIGABRT", pid: worker.pid)
    }

    // MARK: - After every event

    private mutating func afterEvent(_ now: Instant) {
        if phase == .starting || phase == .running, !unsettled.isEmpty, startedAt != nil {
            for name in unsettled.sorted() {
                guard let p = poolIndex[name] else { unsettled.remove(name); continue }
                if settle(p, now) { unsettled.remove(name) }
            }
        }
        if phase == .starting, startedAt != nil, counts.ready >= counts.desired {
            phase = .running
            actions.append(.tellSystemd(.ready))
            let took = startedAt.map { now.since($0).humanReadable } ?? "?"
            log(.notice, counts.desired == 1 ? "the worker is ready (\(took))" : "all \(counts.desired) workers ready (\(took))")
        }
        if case .stopping = phase, counts.live == 0 {
            phase = .stopped
            log(.notice, "all workers stopped")
            actions.append(.exit(code: 0))
        }
        // A deadline that no longer applies must not wake an idle supervisor.
        while let timer = timers.first, !applies(timer, nil) { timers.popFirst() }
    }

    // MARK: - Helpers

    private func spec(of id: ReplicaID) -> PoolSpec { pools[poolIndex[id.pool]!].spec }

    /// Everything the edge needs to start `id`'s worker now, with a serial of its own. The `.spawn`
    /// action carries one; an edge that spawns later asks again, for the pool as it is then.
    public mutating func launch(for id: ReplicaID) -> WorkerLaunch {
        launches += 1
        var launch = template(for: id)
        launch.serial = launches
        return launch
    }

    private func template(for id: ReplicaID) -> WorkerLaunch {
        let spec = spec(of: id)
        var env = spec.environment
        env[WorkerVariable.replica] = String(id.index)
        var socket: String?
        if spec.needsNotifySocket, let dir = notifyDirectory {
            socket = "\(dir)/\(id.pool).\(id.index)"
            env[WorkerVariable.notifySocket] = socket
        }
        if let watchdog = spec.watchdog {
            env[WorkerVariable.watchdogUsec] = String(watchdog.nanosecondsClamped / 1000)
        }
        return WorkerLaunch(replica: id, executable: spec.executable, arguments: spec.command, environment: env,
                            workingDirectory: spec.workingDirectory, notifySocket: socket, identity: spec.identity,
                            cpus: spec.cpus, nice: spec.nice, umask: spec.umask, resources: spec.resources)
    }

    private mutating func log(_ level: LogRecord.Level, _ message: String, _ id: ReplicaID? = nil, _ pid: Int32? = nil) {
        guard level >= logLevel else { return }
        actions.append(.log(LogRecord(level, message, replica: id, pid: pid)))
    }

    /// For per-worker events (every spawn, exit and restart): the text is only built when it will be
    /// printed. `message` must not read `self` (exclusivity): give it locals.
    private mutating func logLazily(_ level: LogRecord.Level, _ message: @autoclosure () -> String, _ id: ReplicaID?, _ pid: Int32?) {
        guard level >= logLevel else { return }
        actions.append(.log(LogRecord(level, message(), replica: id, pid: pid)))
    }
}

extension ReplicaState {
    var isAlive: Bool { worker != nil }
    var isDraining: Bool {
        if case .draining = self { return true }
        return false
    }
}

/// "1 worker", "3 workers".
public func plural(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }
