/// What the edge reports: the start, exits, notify messages, stop signals.
extension Reconciler {
    mutating func start(_ now: Instant) {
        guard startedAt == nil else { return }
        startedAt = now
        emit(.supervisorStarting, now, nil, "\(file.path)")
        let enabled = pools.filter(\.spec.enabled).map { "\($0.spec.name) ×\($0.desired)\($0.autoscale == nil ? "" : " (autoscaled)")" }
        let disabled = pools.filter { !$0.spec.enabled }.map(\.spec.name)
        let total = pools.filter(\.spec.enabled).reduce(0) { $0 + $1.desired }
        // The edge's per-pool parts (queue readers first) before the first reading is asked of them.
        actions.append(.poolsInForce(pools.map(\.spec)))
        log(
            .notice,
            "starting \(plural(enabled.count, "pool")) with \(plural(total, "worker"))"
                + (enabled.isEmpty ? "" : ": " + enabled.joined(separator: ", "))
                + (disabled.isEmpty ? "" : "; disabled: " + disabled.joined(separator: ", ")))
        for p in pools.indices {
            unsettled.insert(pools[p].spec.name)
            if pools[p].autoscale != nil { pollNow(pools[p].spec.name, now) }
        }
        recountDesired()
        warnAboutUnenforcedLimits()
        startJobs(now)
        if file.supervisor.redisEvents != nil { heartbeat(now) }
        if fleet != nil { fleetHeartbeat(now) }
        actions.append(.tellSystemd(.extendStartTimeout(file.supervisor.readyTimeout + .seconds(5))))
        timers.schedule(.readyTimeout, at: now + file.supervisor.readyTimeout)
    }

    mutating func exited(pid: Int32, _ status: WaitStatus, oomKilled: Bool, _ now: Instant) {
        if jobExited(pid, status, now) { return }
        // An adopted orphan (we are its subreaper) is no worker: reaping it was all there was to do.
        guard let worker = worker(pid) else { return }
        // Whatever the worker left in its process group goes with it, as in a pod. While stopping, the
        // edge's final sweep kills every leftover at once (they are all re-parented to the supervisor).
        if phase == .running || phase == .starting { actions.append(.signal(processGroup: pid, .kill)) }
        let holdsSlot = replica(worker.replica)?.state.occupant == pid
        guard case .gone(let reason)? = apply(.exited(status, oomKilled: oomKilled), to: pid, now),
            let p = poolIndex[worker.replica.pool]
        else { return }
        if holdsSlot {
            apply(.occupantExited(reason), p, worker.replica.index, now, worker: worker)
        } else if pools[p].removed, pools[p].workers.isEmpty, pools[p].replicas.isEmpty {
            forget(p)
        }
    }

    mutating func notified(pid: Int32, _ message: NotifyMessage, _ now: Instant) {
        guard let name = pidIndex[pid], let p = poolIndex[name], pools[p].workers[pid] != nil else { return }
        let spec = pools[p].spec
        if let status = message.status { pools[p].workers[pid]!.status = status }
        if let busy = message.busy, pools[p].workers[pid]!.busy != busy {
            pools[p].workers[pid]!.busy = busy
            emit(busy ? .workerBusy : .workerIdle, now, pools[p].workers[pid]!.replica, pid: pid)
        }
        if message.watchdogPing || message.ready, let watchdog = spec.watchdog, pools[p].workers[pid]!.state.isServing {
            if pools[p].workers[pid]!.lastWatchdogPing == nil { timers.schedule(.watchdog(pid: pid), at: now + watchdog) }
            pools[p].workers[pid]!.lastWatchdogPing = now
        }
        if message.ready { apply(.readyReported, to: pid, now, because: "READY=1") }
        if message.watchdogTrigger { apply(.drain(drain(for: .watchdog, spec, now)), to: pid, now, because: "it sent WATCHDOG=trigger") }
    }

    mutating func stop(_ signal: Signal, _ now: Instant) {
        switch phase {
        case .stopping(forced: false) where signal == .interrupt:
            phase = .stopping(forced: true)
            log(.warning, "second \(signal): killing \(plural(counts.live, "worker")) now")
            for p in pools.indices {
                for pid in pools[p].workers.keys.sorted() { apply(.killNow, to: pid, now) }
            }
        case .stopping, .stopped:
            log(.info, "\(signal) while stopping: already draining (a second SIGINT kills at once)")
        case .starting, .running:
            phase = .stopping(forced: false)
            emit(.supervisorStopping, now, nil, "\(signal)")
            if fleet != nil { actions.append(.fleetLeave) }
            let longest = pools.filter { !$0.workers.isEmpty }.map(\.spec.drain).max() ?? .zero
            actions.append(.tellSystemd(.stopping(extendTimeout: longest + .seconds(5))))
            let stopSignals = Set(pools.map(\.spec.stopSignal))
            let first = stopSignals.count == 1 ? stopSignals.first!.description : "each pool's stop_signal"
            log(.notice, "\(signal): draining \(plural(counts.live, "worker")) (\(first) now, SIGKILL after up to \(longest.humanReadable))")
            for p in pools.indices {
                pools[p].rollout = nil
                // A pending slot is one the edge has not spawned yet (a wave is spawned a slice at a
                // time): it never will be.
                for i in pools[p].replicas.indices { apply(.stop, p, i, now) }
            }
            for j in jobs.indices.reversed() where j < jobs.count {
                for number in jobs[j].runs.map(\.number) { stopRun(j, number, as: .failed("stopped: poolvisor is stopping"), now) }
            }
            unsettled = []
        }
    }
}
