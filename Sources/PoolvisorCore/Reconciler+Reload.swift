/// A reload: the new pools file is compared pool by pool with the running one, and only what changed
/// is applied (a changed worker template rolls the pool; other settings apply at once).
extension Reconciler {
    mutating func reload(_ result: PoolsFileReading, _ now: Instant) -> CommandOutcome {
        let path = result.file?.path ?? file.path
        if case .stopping = phase {
            return CommandOutcome(accepted: false, lines: ["poolvisor is stopping; \(path) was not reloaded"])
        }
        if phase == .running { actions.append(.tellSystemd(.reloading(file: path))) }
        guard let new = result.file else {
            let errors = result.diagnostics.errors.count
            let outcome = CommandOutcome(
                accepted: false, lines: ["\(path) rejected (\(plural(errors, "error"))); nothing changed, the previous pools file keeps running"],
                diagnostics: result.diagnostics)
            lastReload = ReloadRecord(at: now, outcome: outcome)
            reloadsRefused += 1
            emit(.reloadRefused, now, nil, outcome.lines[0] + result.diagnostics.errors.prefix(3).map { "; \($0.description)" }.joined())
            log(.error, outcome.lines[0])
            for d in result.diagnostics { log(d.severity == .error ? .error : .warning, d.description) }
            if phase == .running { actions.append(.tellSystemd(.ready)) }
            return outcome
        }
        var lines: [String] = []
        // The edge's per-pool parts (queue readers first) before a reading is asked of them.
        actions.append(.poolsInForce(new.pools))
        for d in result.diagnostics { log(.warning, d.description) }
        if new.supervisor.controlSocket != file.supervisor.controlSocket || new.supervisor.controlGroup != file.supervisor.controlGroup {
            lines.append("control_socket and control_group take effect when poolvisor restarts")
        }
        if new.supervisor.metricsListen != file.supervisor.metricsListen {
            lines.append("metrics_listen takes effect when poolvisor restarts")
        }
        if new.supervisor.fleet != file.supervisor.fleet { lines.append("[supervisor.fleet] takes effect when poolvisor restarts") }
        if new.supervisor.readyTimeout != file.supervisor.readyTimeout { lines.append("ready_timeout_seconds: applies at the next start") }
        if new.supervisor.queues != file.supervisor.queues { lines.append("queues changed (checked with the file; nothing to restart)") }

        let names = Set(pools.map(\.spec.name)).union(new.pools.map(\.name)).sorted()
        for name in names {
            switch (poolIndex[name], new.pool(named: name)) {
            case (nil, let spec?): lines.append(add(spec, now))
            case (let p?, nil): if let line = remove(p) { lines.append(line) }
            case (let p?, let spec?): lines.append(update(p, to: spec, now))
            case (nil, nil): break
            }
        }
        lines += reloadJobs(new.jobs, now)
        file = new
        recountDesired()
        warnAboutUnenforcedLimits()
        let outcome = CommandOutcome(accepted: true, lines: ["\(new.path) reloaded"] + lines, diagnostics: result.diagnostics)
        lastReload = ReloadRecord(at: now, outcome: outcome)
        reloadsApplied += 1
        emit(.reloadApplied, now, nil, lines.isEmpty ? "nothing changed" : lines.joined(separator: "; "))
        for line in outcome.lines { log(.notice, line) }
        if phase == .running { actions.append(.tellSystemd(.ready)) }
        return outcome
    }

    /// A pool new in the file.
    private mutating func add(_ spec: PoolSpec, _ now: Instant) -> String {
        let pool = Pool(spec: spec)
        forgetQueueReading(spec.name)
        pools.append(pool)
        reindex()
        unsettled.insert(spec.name)
        if pool.autoscale != nil && spec.enabled { pollNow(spec.name, now) }
        guard spec.enabled else { return "pool \(spec.name): new, disabled" }
        return "pool \(spec.name): new, starting \(plural(pool.desired, "worker"))" + (spec.autoscaling.map { " (autoscaled, \($0.summary))" } ?? "")
    }

    /// A pool gone from the file: it drains, and is forgotten once its last worker has exited.
    private mutating func remove(_ p: Int) -> String? {
        guard !pools[p].removed else { return nil }
        forgetQueueReading(pools[p].spec.name)
        let live = pools[p].replicas.count { $0.state.occupant != nil }
        pools[p].want.inFile = false
        pools[p].rollout = nil
        unsettled.insert(pools[p].spec.name)
        return "pool \(pools[p].spec.name): removed from the file, draining \(plural(live, "worker"))"
    }

    /// A pool in both files: only what changed is applied. Returns the line for the reload's output.
    private mutating func update(_ p: Int, to spec: PoolSpec, _ now: Instant) -> String {
        let old = pools[p], name = spec.name
        let live = old.replicas.count { $0.state.occupant != nil }
        var what: [String] = []
        var settings = spec.settingChanges(from: old.spec)
        pools[p].want.spec = spec
        reconfigureProbes(p, from: old.spec.probes, now)
        if spec.autoscaling != old.spec.autoscaling {
            settings.removeAll { $0 == "autoscaling" }
            what.append(reconfigureAutoscaling(p, from: old, now))
        } else if spec.enabled && !old.spec.enabled && pools[p].autoscale != nil {
            pollNow(name, now)
        }
        if old.removed {
            pools[p].want.inFile = true
            what.append("back in the file")
        }
        if spec.enabled != old.spec.enabled {
            what.append(spec.enabled ? "enabled" : "disabled")
            forgetQueueReading(name)
        }
        if let line = rescale(p, from: old) { what.append(line) }
        if pools[p].desired != old.desired { emit(.poolScaled, now, pool: name, "\(old.desired) → \(pools[p].desired): the pools file") }
        let workerChanges = spec.workerChanges(from: old.spec)
        if !workerChanges.isEmpty {
            if live > 0 { pools[p].olderTemplates[pools[p].want.generation] = old.spec.template }
            pools[p].want.generation += 1
            let reason = workerChanges.joined(separator: ", ")
            if live > 0 {
                pools[p].rollout = Rollout(reason: reason, startedAt: now)
                emit(.rolloutStarted, now, pool: name, reason)
                what.append("\(reason) changed: rolling replacement of \(plural(live, "worker")) (at most \(spec.rolloutAllowance(desired: pools[p].desired)) at a time)")
            } else {
                what.append("\(reason) changed")
            }
        }
        if !settings.isEmpty { what.append("\(settings.joined(separator: ", ")) changed (applies without a restart)") }
        guard !what.isEmpty else {
            return "pool \(name): unchanged" + (live > 0 ? " (\(plural(live, "worker")) \(live == 1 ? "keeps" : "keep") running)" : "")
        }
        unsettled.insert(name)
        return "pool \(name): " + what.joined(separator: "; ")
    }

    /// The file's replicas against a runtime scale: a changed count in the file wins.
    private mutating func rescale(_ p: Int, from old: Pool) -> String? {
        let spec = pools[p].spec
        if spec.autoscaling != nil {
            return nil  // the autoscaler sets the replicas; the file's are only where a fresh start begins
        } else if spec.replicas != old.spec.replicas, let scaled = old.scaledTo {
            pools[p].want.scaledTo = nil
            return "replicas \(old.spec.replicas) → \(spec.replicas) in the file, replacing the runtime scale to \(scaled)"
        } else if spec.replicas != old.spec.replicas {
            return "replicas \(old.spec.replicas) → \(spec.replicas)"
        } else if let scaled = old.scaledTo {
            return "keeps its runtime scale of \(scaled) (the file's replicas did not change)"
        }
        return nil
    }
}
