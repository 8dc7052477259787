/// The two funnels: every change of a worker's or a slot's state goes through `apply(_:to:)`, which
/// asks the machine (`WorkerState.decide`, `SlotState.decide`), changes the state, keeps the counts,
/// carries out the orders and emits the log record.
extension Reconciler {
    // MARK: - Workers

    /// Feeds `event` to the worker with this pid. `why` completes the log line (READY=1, the watchdog).
    /// Returns the state the worker went to, nil when it stayed.
    @discardableResult
    mutating func apply(_ event: WorkerEvent, to pid: Int32, _ now: Instant, because why: String? = nil) -> WorkerState? {
        guard let name = pidIndex[pid], let p = poolIndex[name], let worker = pools[p].workers[pid] else { return nil }
        let step = WorkerState.decide(worker.state, event)
        guard let next = step.next else { return nil }
        counts.add(worker.state, -1)
        counts.add(next, 1)
        if worker.state == .ready { pools[p].readyWorkers -= 1 }
        if next == .ready { pools[p].readyWorkers += 1 }
        // A rollout or a scale-down waiting for ready workers may go on (or must wait) now.
        if (worker.state == .ready) != (next == .ready) { unsettled.insert(pools[p].spec.name) }
        pools[p].workers[pid]!.state = next
        let spec = pools[p].spec
        for order in step.orders {
            switch order {
            case .armWatchdog:
                pools[p].workers[pid]!.readyAt = now
                if let watchdog = spec.watchdog, pools[p].workers[pid]!.lastWatchdogPing == nil {
                    pools[p].workers[pid]!.lastWatchdogPing = now
                    timers.schedule(.watchdog(pid: pid), at: now + watchdog)
                }
            case .startDrain:
                guard let drain = next.drain else { continue }
                actions.append(.signal(processGroup: pid, drain.signal))
                timers.schedule(.drainDeadline(pid: pid), at: drain.deadline)
            case .kill:
                actions.append(.signal(processGroup: pid, .kill))
            case .beginProbes:
                beginProbes(pid, p, [.readiness, .liveness], now)
            }
        }
        if !next.isServing, pools[p].probing[pid] != nil { stopProbes(pid, p) }
        let retired = pools[p].retired.contains(pid)
        if case .gone = next {
            pools[p].workers[pid] = nil
            pools[p].retired.remove(pid)
            pidIndex[pid] = nil
        }
        logWorker(worker, from: worker.state, to: next, event, retired: retired, spec, why)
        emitWorker(worker, from: worker.state, to: next, event, why, now)
        return next
    }

    /// The log record of a worker's transition. How a worker holding a slot ended is the slot's to say.
    private mutating func logWorker(
        _ worker: Worker, from old: WorkerState, to next: WorkerState, _ event: WorkerEvent,
        retired: Bool, _ spec: PoolSpec, _ why: String?
    ) {
        let id = worker.replica, pid = worker.pid
        switch (old, next) {
        case (_, .ready):
            logLazily(why == nil ? .debug : .info, "worker \(id) is ready" + (why.map { " (\($0))" } ?? ""), id, pid)
        case (.ready, .running):
            logLazily(.warning, "worker \(id) is not ready: its readiness probe failed (\(why ?? "?")); it keeps running", id, pid)
        case (_, .running(let awaiting)):
            guard event == .readyTimeout else { return }
            let timeout = spec.readyTimeout.humanReadable
            logLazily(.warning, "worker \(id) is not ready within \(timeout) (waiting for \(awaiting.words)); it keeps running, not ready", id, pid)
        case (.draining(let d), .killing):
            guard event == .drainDeadline else { return }  // a second SIGINT says it once for all
            let cause = retired ? ", \(d.cause.rawValue)" : ""
            logLazily(.warning, "worker \(id) (pid \(pid)\(cause)) did not exit within its drain period; sending SIGKILL", id, pid)
        case (_, .draining(let d)), (_, .killing(let d)):
            let signal = d.period == .zero ? Signal.kill : d.signal
            switch d.cause {
            case .watchdog:
                logLazily(.error, "worker \(id) (pid \(pid)) watchdog timeout: \(why ?? "missed"); sending \(signal)", id, pid)
            case .livenessProbe, .startupProbe:
                logLazily(.error, "worker \(id) (pid \(pid)) \(d.cause.rawValue): \(d.why ?? "?"); sending \(signal)", id, pid)
            case .shutdown:
                logLazily(.debug, "draining worker \(id) (pid \(pid))", id, pid)
            case .scaleDown, .replaced, .poolRemoved:
                logLazily(.info, "draining worker \(id) (pid \(pid)): \(d.cause.rawValue)", id, pid)
            }
        case (_, .gone(let reason)):
            guard retired else { return }
            let level: LogRecord.Level
            if case .killing = old { level = .warning } else { level = .info }
            let cause = old.drain.map { ", \($0.cause.rawValue)" } ?? ""
            logLazily(level, "worker \(id) (pid \(pid)\(cause)) stopped: \(reason)", id, pid)
        case (_, .starting):
            return
        }
    }

    /// The lifecycle event of a worker's transition, if it is one.
    private mutating func emitWorker(_ worker: Worker, from old: WorkerState, to next: WorkerState, _ event: WorkerEvent, _ why: String?, _ now: Instant) {
        let id = worker.replica, pid = worker.pid
        switch (old, next) {
        case (_, .ready):
            emit(.workerReady, now, id, pid: pid, why)
        case (.ready, .running):
            emit(.workerNotReady, now, id, pid: pid, why)
        case (.draining, .killing):
            if event == .drainDeadline { emit(.workerKilled, now, id, pid: pid, "did not exit within its drain period") }
        case (_, .draining(let d)), (_, .killing(let d)):
            emit(.workerDraining, now, id, pid: pid, d.cause.rawValue + (d.why.map { ": \($0)" } ?? ""))
        case (_, .gone(let reason)):
            if reason == .oomKilled { emit(.workerOOMKilled, now, id, pid: pid, "over its memory_limit") }
            emit(.workerStopped, now, id, pid: pid, "\(reason)")
        case (_, .running), (_, .starting):
            return
        }
    }

    /// The drain a cause starts: the pool's stop signal and period, or, for the watchdog, SIGABRT (a
    /// Python or Node worker prints where it hung) and SIGKILL after a short grace period, like
    /// systemd's WatchdogSignal.
    /// A failed liveness or startup probe drains as Kubernetes kills a container: the stop signal, and
    /// the probe's `termination_grace_period_seconds` or the pool's drain.
    func drain(for cause: Drain.Cause, _ spec: PoolSpec, _ now: Instant, why: String? = nil) -> Drain {
        switch cause {
        case .watchdog: Drain(cause: cause, signal: .abort, period: min(spec.drain, .seconds(5)), from: now)
        case .livenessProbe:
            Drain(cause: cause, signal: spec.stopSignal, period: spec.probes.liveness?.terminationGracePeriod ?? spec.drain, from: now, why: why)
        case .startupProbe:
            Drain(cause: cause, signal: spec.stopSignal, period: spec.probes.startup?.terminationGracePeriod ?? spec.drain, from: now, why: why)
        case .shutdown, .scaleDown, .replaced, .poolRemoved: Drain(cause: cause, signal: spec.stopSignal, period: spec.drain, from: now)
        }
    }

    // MARK: - Slots

    mutating func apply(_ event: SlotEvent, to id: ReplicaID, _ now: Instant, worker: Worker? = nil) {
        guard let p = poolIndex[id.pool], pools[p].replicas.indices.contains(id.index) else {
            if case .spawned(let pid) = event { actions.append(.signal(processGroup: pid, .kill)) }
            return
        }
        apply(event, p, id.index, now, worker: worker)
    }

    /// Feeds `event` to slot `i` of pool `p`. `worker` is the one that exited, for `.occupantExited`.
    mutating func apply(_ event: SlotEvent, _ p: Int, _ i: Int, _ now: Instant, worker: Worker? = nil) {
        let id = pools[p].replicas[i].id
        let step = SlotState.decide(pools[p].replicas[i].state, event)
        if let next = step.next { setSlot(p, i, next) }
        for order in step.orders {
            switch order {
            case .spawn:
                pools[p].replicas[i].generation = pools[p].generation
                actions.append(.spawn(id))
            case .restart(let reason):
                restart(p, i, after: worker, reason: reason, now)
            case .armBackoff:
                if case .backOff(let until) = pools[p].replicas[i].state { timers.schedule(.backoffOver(id), at: until) }
            case .retire(let pid, let cause):
                pools[p].retired.insert(pid)
                apply(.drain(drain(for: cause, pools[p].spec, now)), to: pid, now)
            case .drain(let pid):
                apply(.drain(drain(for: .shutdown, pools[p].spec, now)), to: pid, now)
            case .record(let reason):
                pools[p].replicas[i].lastExit = reason
                pools[p].replicas[i].lastExitAt = now
                let pid = worker?.pid ?? 0
                logLazily(reason == .killedAfterDrainDeadline ? .warning : .info, "worker \(id) (pid \(pid)) stopped: \(reason)", id, pid)
            case .resetCrashStreak:
                pools[p].replicas[i].crashStreak = 0
            case .killStray(let pid):
                actions.append(.signal(processGroup: pid, .kill))
                logLazily(.warning, "pid \(pid) was spawned for \(id), which no longer wants a worker; killed it", id, pid)
            }
        }
        if case .spawned(let pid) = event, case .occupied(pid)? = step.next { adopt(pid, p, i, now) }
    }

    private mutating func setSlot(_ p: Int, _ i: Int, _ state: SlotState) {
        let old = pools[p].replicas[i].state
        counts.add(old, -1)
        counts.add(state, 1)
        if (old == .vacant) != (state == .vacant) { pools[p].activeSlots += state == .vacant ? -1 : 1 }
        pools[p].replicas[i].state = state
    }

    /// A freshly spawned worker holds slot `i`: it is known by its pid from now on, and its readiness
    /// is timed.
    private mutating func adopt(_ pid: Int32, _ p: Int, _ i: Int, _ now: Instant) {
        let id = pools[p].replicas[i].id
        let spec = pools[p].spec
        let awaiting = spec.awaiting
        pools[p].workers[pid] = Worker(pid: pid, replica: id, startedAt: now, generation: pools[p].replicas[i].generation, awaiting: awaiting)
        pidIndex[pid] = id.pool
        counts.add(WorkerState.starting(awaiting), 1)
        logLazily(.info, "worker \(id) started, pid \(pid)", id, pid)
        emit(.workerStarted, now, id, pid: pid)
        if awaiting.contains(.delay), case .started(let after) = spec.readiness {
            if after == .zero {
                apply(.readyAfterStart, to: pid, now)
            } else {
                timers.schedule(.readiness(pid: pid), at: now + after)
            }
        }
        if !awaiting.subtracting(.delay).isEmpty { timers.schedule(.workerReadyTimeout(pid: pid), at: now + spec.readyTimeout) }
        if !spec.probes.isEmpty { beginProbes(pid, p, spec.probes.startup == nil ? [.readiness, .liveness] : [.startup], now) }
    }

    /// A worker ended on its own (or failed to start): count it and start the next one, at once the
    /// first time after a stable run, then with exponential backoff.
    private mutating func restart(_ p: Int, _ i: Int, after worker: Worker?, reason: ExitReason, _ now: Instant) {
        var r = pools[p].replicas[i]
        let id = r.id
        let policy = pools[p].spec.backoff
        if let worker, now.since(worker.startedAt) >= policy.resetAfter { r.crashStreak = 0 }
        let delay = policy.delay(afterConsecutiveExits: r.crashStreak, unit: Double.random(in: 0..<1, using: &random))
        r.crashStreak += 1
        r.restarts += 1
        r.lastExit = reason
        r.lastExitAt = now
        pools[p].replicas[i] = r
        let pid = worker?.pid
        func what() -> String { pid.map { "worker \(id) (pid \($0)) exited: \(reason)" } ?? "worker \(id) \(reason)" }
        let level: LogRecord.Level = reason.isClean ? .notice : .warning
        emit(.workerRestarting, now, id, pid: pid, delay == .zero ? "now, after \(reason)" : "in \(delay.humanReadable) (CrashLoopBackOff), after \(reason)")
        if delay == .zero {
            pools[p].replicas[i].generation = pools[p].generation
            actions.append(.spawn(id))  // before the log line: the replacement's start is what latency is measured by
            logLazily(level, "\(what()); restarting now", id, pid)
        } else {
            logLazily(level, "\(what()); restarting in \(delay.humanReadable) (CrashLoopBackOff)", id, pid)
            apply(.holdOff(until: now + delay), p, i, now)
        }
    }
}
