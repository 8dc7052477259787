/// The supervisor's brain: takes an `Event` and the current `Instant`, updates the replicas' states,
/// and returns the `Action`s the edge must carry out, plus one `nextDeadline` to be woken at.
/// It does no I/O, so a thousand replicas and hours of backoff are tested in milliseconds.
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
        public internal(set) var replicas: [Replica]
    }

    public private(set) var file: PoolsFile
    public private(set) var phase: Phase = .starting
    /// Every pool of the file, enabled or not, sorted by name.
    public private(set) var pools: [Pool]
    public private(set) var startedAt: Instant?
    /// The lowest level of log records the edge will print; lower ones are not produced at all.
    public var logLevel: LogRecord.Level = .debug

    private let notifyDirectory: String?
    private var poolIndex: [String: Int] = [:]
    private var pidIndex: [Int32: ReplicaID] = [:]
    private var timers = TimerQueue<Timer>()
    private var random: SplitMix64
    private var counts = Counts()
    private var actions: [Action] = []

    private enum Timer: Sendable {
        case readiness(ReplicaID, pid: Int32)
        case backoffOver(ReplicaID)
        case watchdog(ReplicaID, pid: Int32)
        case drainDeadline(ReplicaID, pid: Int32)
        case readyTimeout
    }

    /// Running totals, kept by `transition` so that no event needs a scan over all replicas.
    private struct Counts: Sendable {
        var desired = 0
        var ready = 0
        /// Pending, or with a worker process (including draining ones).
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
        self.pools = file.pools.map { Pool(spec: $0, replicas: []) }
        for (i, p) in pools.enumerated() { poolIndex[p.spec.name] = i }
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
            let enabled = pools.count { $0.spec.enabled }
            var line = "\(plural(enabled, "pool")), \(counts.ready)/\(counts.desired) workers ready"
            if counts.backOff > 0 { line += ", \(counts.backOff) in CrashLoopBackOff" }
            return line
        }
    }

    public var desiredWorkers: Int { counts.desired }
    public var readyWorkers: Int { counts.ready }

    public func replica(_ id: ReplicaID) -> Replica? {
        guard let p = poolIndex[id.pool], pools[p].replicas.indices.contains(id.index) else { return nil }
        return pools[p].replicas[id.index]
    }

    public func replica(forPid pid: Int32) -> ReplicaID? { pidIndex[pid] }

    public mutating func handle(_ event: Event, at now: Instant) -> [Action] {
        actions = []
        switch event {
        case .start: start(now)
        case .spawned(let id, let pid): spawned(id, pid: pid, now)
        case .spawnFailed(let id, let reason): spawnFailed(id, reason: reason, now)
        case .exited(let pid, let status): exited(pid: pid, status, now)
        case .notified(let id, let message): notified(id, message, now)
        case .deadlineReached:
            while let timer = timers.popDue(now) { fire(timer, now) }
        case .stopRequested(let signal): stop(signal, now)
        }
        afterEvent(now)
        return actions
    }

    // MARK: - Events

    private mutating func start(_ now: Instant) {
        guard startedAt == nil else { return }
        startedAt = now
        let enabled = pools.filter(\.spec.enabled).map { "\($0.spec.name) ×\($0.spec.replicas)" }
        let disabled = pools.filter { !$0.spec.enabled }.map(\.spec.name)
        let total = pools.filter(\.spec.enabled).reduce(0) { $0 + $1.spec.replicas }
        log(.notice, "starting \(plural(enabled.count, "pool")) with \(plural(total, "worker"))"
            + (enabled.isEmpty ? "" : ": " + enabled.joined(separator: ", "))
            + (disabled.isEmpty ? "" : "; disabled: " + disabled.joined(separator: ", ")))
        for p in pools.indices where pools[p].spec.enabled {
            let spec = pools[p].spec
            counts.desired += spec.replicas
            pools[p].replicas = (0..<spec.replicas).map { Replica(id: ReplicaID(pool: spec.name, index: $0)) }
            for r in pools[p].replicas.indices {
                counts.add(.pending, 1)
                actions.append(.spawn(launch(for: pools[p].replicas[r].id)))
            }
        }
        timers.schedule(.readyTimeout, at: now + file.supervisor.readyTimeout)
    }

    private mutating func spawned(_ id: ReplicaID, pid: Int32, _ now: Instant) {
        guard let r = replica(id), r.state == .pending else { return }
        pidIndex[pid] = id
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
            timers.schedule(.readiness(id, pid: pid), at: now + after)
        case .notify:
            timers.schedule(.readiness(id, pid: pid), at: now + spec.readyTimeout)
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
        // An adopted orphan (we are its subreaper) has no replica: reaping it was all there was to do.
        guard let id = pidIndex.removeValue(forKey: pid), let r = replica(id), let worker = r.state.worker, worker.pid == pid else { return }
        // Whatever the worker left in its process group goes with it, as in a pod. While stopping, the
        // edge's final sweep kills every leftover at once (they are all re-parented to the supervisor).
        if phase == .running || phase == .starting { actions.append(.signal(processGroup: pid, .kill)) }
        switch r.state {
        case .starting, .running, .ready:
            if case .stopping = phase {
                finish(id, worker, reason: status.exitReason, now)
            } else {
                restart(id, after: worker, reason: status.exitReason, now)
            }
        case .draining(_, let drain):
            let reason: ExitReason = drain.cause == .watchdog ? .watchdog
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

    private mutating func notified(_ id: ReplicaID, _ message: NotifyMessage, _ now: Instant) {
        guard let r = replica(id), var worker = r.state.worker else { return }
        let spec = spec(of: id)
        if let status = message.status { worker.status = status }
        if let busy = message.busy { worker.busy = busy }
        if message.watchdogPing || message.ready, let watchdog = spec.watchdog {
            if worker.lastWatchdogPing == nil { timers.schedule(.watchdog(id, pid: worker.pid), at: now + watchdog) }
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
            }
        case .stopping, .stopped:
            log(.info, "\(signal) while stopping: already draining (a second SIGINT kills at once)")
        case .starting, .running:
            phase = .stopping(forced: false)
            let longest = pools.filter { $0.replicas.contains { $0.state.isAlive } }.map(\.spec.drain).max() ?? .zero
            actions.append(.tellSystemd(.stopping(extendTimeout: longest + .seconds(5))))
            log(.notice, "\(signal): draining \(plural(counts.live, "worker")) (SIGTERM now, SIGKILL after up to \(longest.humanReadable))")
            for p in pools.indices {
                for r in pools[p].replicas.indices {
                    let id = pools[p].replicas[r].id
                    switch pools[p].replicas[r].state {
                    case .starting(let w), .running(let w), .ready(let w):
                        beginDrain(id, w, cause: .shutdown, then: .stay, now)
                    case .draining(let w, var drain):
                        drain.then = .stay
                        setState(id, .draining(w, drain))
                    case .backOff:
                        transition(id, to: .exited)
                    case .pending, .exited:
                        break
                    }
                }
            }
        }
    }

    private mutating func fire(_ timer: Timer, _ now: Instant) {
        switch timer {
        case .readiness(let id, let pid):
            guard let r = replica(id), case .starting(let worker) = r.state, worker.pid == pid else { return }
            switch spec(of: id).readiness {
            case .started:
                becomeReady(id, worker, now, why: nil)
            case .notify:
                let timeout = spec(of: id).readyTimeout
                transition(id, to: .running(worker), .warning, "worker \(id) has not sent READY=1 within \(timeout.humanReadable); it keeps running, not ready", pid: pid)
            }
        case .backoffOver(let id):
            guard let r = replica(id), case .backOff(let until) = r.state, until <= now else { return }
            spawn(id)
        case .watchdog(let id, let pid):
            guard let r = replica(id), let worker = r.state.worker, worker.pid == pid, !r.state.isDraining,
                  let interval = spec(of: id).watchdog, let last = worker.lastWatchdogPing else { return }
            if last + interval <= now {
                watchdogKill(id, worker, now, why: "no WATCHDOG=1 for \(interval.humanReadable)")
            } else {
                timers.schedule(.watchdog(id, pid: pid), at: last + interval)
            }
        case .drainDeadline(let id, let pid):
            guard let r = replica(id), case .draining(let worker, var drain) = r.state, worker.pid == pid,
                  !drain.killed, drain.deadline <= now else { return }
            drain.killed = true
            actions.append(.signal(processGroup: pid, .kill))
            transition(id, to: .draining(worker, drain), .warning, "worker \(id) (pid \(pid)) did not exit within its drain period; sending SIGKILL", pid: pid)
        case .readyTimeout:
            guard phase == .starting else { return }
            phase = .running
            actions.append(.tellSystemd(.ready))
            log(.warning, "\(counts.ready) of \(plural(counts.desired, "worker")) ready after \(file.supervisor.readyTimeout.humanReadable); telling systemd READY=1 anyway")
        }
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
        transition(id, to: .pending)
        actions.append(.spawn(launch(for: id)))
    }

    private mutating func becomeReady(_ id: ReplicaID, _ worker: Worker, _ now: Instant, why: String?) {
        var w = worker
        w.readyAt = now
        if let watchdog = spec(of: id).watchdog, w.lastWatchdogPing == nil {
            w.lastWatchdogPing = now
            timers.schedule(.watchdog(id, pid: w.pid), at: now + watchdog)
        }
        transition(id, to: .ready(w), why == nil ? .debug : .info, "worker \(id) is ready" + (why.map { " (\($0))" } ?? ""), pid: w.pid)
    }

    /// A worker ended on its own (or failed to start): count it and start the next one, at once the
    /// first time after a stable run, then with exponential backoff.
    private mutating func restart(_ id: ReplicaID, after worker: Worker?, reason: ExitReason, _ now: Instant) {
        let p = poolIndex[id.pool]!
        let policy = pools[p].spec.backoff
        var r = pools[p].replicas[id.index]
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
        let period = spec(of: id).drain
        var drain = Drain(cause: cause, then: then, deadline: now + period)
        if period == .zero {
            drain.killed = true
            actions.append(.signal(processGroup: worker.pid, .kill))
        } else {
            actions.append(.signal(processGroup: worker.pid, .terminate))
            timers.schedule(.drainDeadline(id, pid: worker.pid), at: drain.deadline)
        }
        transition(id, to: .draining(worker, drain), .debug, "draining worker \(id) (pid \(worker.pid))", pid: worker.pid)
    }

    /// Like systemd's WatchdogSignal: SIGABRT (a Python or Node worker prints where it hung), then SIGKILL
    /// if it is still there after a short grace period.
    private mutating func watchdogKill(_ id: ReplicaID, _ worker: Worker, _ now: Instant, why: String) {
        let grace = min(spec(of: id).drain, .seconds(5))
        var drain = Drain(cause: .watchdog, then: .restart, deadline: now + grace)
        if grace == .zero {
            drain.killed = true
            actions.append(.signal(processGroup: worker.pid, .kill))
        } else {
            actions.append(.signal(processGroup: worker.pid, .abort))
            timers.schedule(.drainDeadline(id, pid: worker.pid), at: drain.deadline)
        }
        transition(id, to: .draining(worker, drain), .error, "worker \(id) (pid \(worker.pid)) watchdog timeout: \(why); sending SIGABRT", pid: worker.pid)
    }

    // MARK: - After every event

    private mutating func afterEvent(_ now: Instant) {
        if phase == .starting, startedAt != nil, counts.ready == counts.desired {
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
        while let timer = timers.first, isMoot(timer) { timers.popFirst() }
    }

    /// The same checks `fire` makes, without firing: would this timer do nothing now?
    private func isMoot(_ timer: Timer) -> Bool {
        switch timer {
        case .readiness(let id, let pid):
            guard case .starting(let w)? = replica(id)?.state else { return true }
            return w.pid != pid
        case .backoffOver(let id):
            guard case .backOff? = replica(id)?.state else { return true }
            return false
        case .watchdog(let id, let pid):
            guard let state = replica(id)?.state, let w = state.worker else { return true }
            return w.pid != pid || state.isDraining
        case .drainDeadline(let id, let pid):
            guard case .draining(let w, let drain)? = replica(id)?.state else { return true }
            return w.pid != pid || drain.killed
        case .readyTimeout:
            return phase != .starting
        }
    }

    // MARK: - Helpers

    private func spec(of id: ReplicaID) -> PoolSpec { pools[poolIndex[id.pool]!].spec }

    private func launch(for id: ReplicaID) -> WorkerLaunch {
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
                            workingDirectory: spec.workingDirectory, notifySocket: socket)
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
