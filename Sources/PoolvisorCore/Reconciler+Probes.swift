/// Probes: each serving worker of a pool with probes is probed every `period_seconds` per kind, one
/// attempt at a time; the core times each attempt out, counts results against the thresholds, and
/// feeds the turns to the worker machine (startup passed, ready, not ready) or drains the worker
/// (liveness or startup failed).
extension Reconciler {
    /// The worker's probe of this kind as it stands, if it has one.
    public func tally(_ pid: Int32, _ kind: ProbeKind) -> ProbeTally? {
        guard let name = pidIndex[pid], let p = poolIndex[name] else { return nil }
        return pools[p].probing[pid]?[kind]
    }

    /// Starts the worker's probes of these kinds that its pool has: the first at `initial_delay_seconds`
    /// after the worker started (or now, when that has passed).
    mutating func beginProbes(_ pid: Int32, _ p: Int, _ kinds: [ProbeKind], _ now: Instant) {
        guard let worker = pools[p].workers[pid], worker.state.isServing else { return }
        let probes = pools[p].spec.probes
        var entry = pools[p].probing[pid] ?? WorkerProbes()
        for kind in kinds {
            guard let spec = probes[kind] else { continue }
            if let attempt = entry[kind]?.inFlight { actions.append(.cancelProbe(attempt: attempt)) }
            var tally = ProbeTally()
            let due = max(now, worker.startedAt + spec.initialDelay)
            tally.due = due
            entry[kind] = tally
            timers.schedule(.probe(pid: pid, kind, at: due), at: due)
        }
        pools[p].probing[pid] = entry
    }

    /// The worker stops serving: its probes end, and attempts under way are cancelled.
    mutating func stopProbes(_ pid: Int32, _ p: Int) {
        guard let entry = pools[p].probing.removeValue(forKey: pid) else { return }
        for kind in ProbeKind.allCases {
            if let attempt = entry[kind]?.inFlight { actions.append(.cancelProbe(attempt: attempt)) }
        }
    }

    /// A probe is due: the edge runs it, and the core fails it at its timeout unless it answered.
    mutating func runProbe(_ pid: Int32, _ kind: ProbeKind, _ now: Instant) {
        guard let name = pidIndex[pid], let p = poolIndex[name], let worker = pools[p].workers[pid], worker.state.isServing,
            let spec = pools[p].spec.probes[kind], pools[p].probing[pid]?[kind] != nil
        else { return }
        probeAttempts += 1
        let attempt = probeAttempts
        pools[p].probing[pid]![kind]!.inFlight = attempt
        pools[p].probing[pid]![kind]!.startedAt = now
        pools[p].probing[pid]![kind]!.due = nil
        timers.schedule(.probeTimeout(pid: pid, kind, attempt: attempt), at: now + spec.timeout)
        switch check(spec.handler, for: worker, p) {
        case .success(let check):
            actions.append(.probe(ProbeRun(attempt: attempt, pid: pid, kind: kind, check: check)))
        case .failure(let failure):
            probed(pid, kind, attempt, .failure(failure.reason), now)
        }
    }

    /// The attempt did not answer within `timeout_seconds`: the edge stops it, and it counts as failed.
    mutating func probeTimedOut(_ pid: Int32, _ kind: ProbeKind, _ attempt: UInt64, _ now: Instant) {
        guard let spec = spec(ofWorker: pid)?.probes[kind], tally(pid, kind)?.inFlight == attempt else { return }
        actions.append(.cancelProbe(attempt: attempt))
        probed(pid, kind, attempt, .failure("timed out after \(spec.timeout.humanReadable)"), now)
    }

    /// What an attempt found: counted, the next one scheduled `period_seconds` after this one started,
    /// and a turn of the thresholds carried to the worker.
    mutating func probed(_ pid: Int32, _ kind: ProbeKind, _ attempt: UInt64, _ outcome: ProbeOutcome, _ now: Instant) {
        guard let name = pidIndex[pid], let p = poolIndex[name], var tally = pools[p].probing[pid]?[kind], tally.inFlight == attempt,
            let spec = pools[p].spec.probes[kind], let worker = pools[p].workers[pid]
        else { return }
        tally.inFlight = nil
        let turn = tally.record(outcome, spec, at: now)
        // A startup probe runs until it first passes.
        if kind != .startup || tally.passing != true {
            let due = max(now, (tally.startedAt ?? now) + spec.period)
            tally.due = due
            timers.schedule(.probe(pid: pid, kind, at: due), at: due)
        }
        pools[p].probing[pid]![kind] = tally
        let id = worker.replica
        if case .failure(let why, _) = outcome, tally.failures == 1, turn == .none {
            logLazily(.info, "worker \(id) \(kind.rawValue) probe failed (1/\(spec.failureThreshold)): \(why)", id, pid)
        }
        if case .nowFailing(let why) = turn { emit(.probeFailed, now, id, pid: pid, "\(kind.rawValue): \(why) (\(spec.failureThreshold)/\(spec.failureThreshold))") }
        switch (kind, turn) {
        case (_, .none), (.liveness, .nowPassing):
            return
        case (.startup, .nowPassing):
            apply(.startupProbePassed, to: pid, now, because: "startup probe passed")
        case (.readiness, .nowPassing):
            apply(.readinessProbePassed, to: pid, now, because: "readiness probe passed")
        case (.readiness, .nowFailing(let why)):
            apply(.readinessProbeFailed, to: pid, now, because: "\(spec.failureThreshold)/\(spec.failureThreshold): \(why)")
        case (.startup, .nowFailing(let why)):
            apply(.drain(drain(for: .startupProbe, pools[p].spec, now, why: why)), to: pid, now)
        case (.liveness, .nowFailing(let why)):
            apply(.drain(drain(for: .livenessProbe, pools[p].spec, now, why: why)), to: pid, now)
        }
    }

    /// A reload changed the pool's probes: a changed kind starts afresh for every serving worker (a
    /// startup probe only for those still waiting for it), a removed one is met by those waiting for it.
    mutating func reconfigureProbes(_ p: Int, from old: Probes, _ now: Instant) {
        let new = pools[p].spec.probes
        let changed = ProbeKind.allCases.filter { new[$0] != old[$0] }
        guard !changed.isEmpty else { return }
        for pid in pools[p].workers.keys.sorted() {
            guard let worker = pools[p].workers[pid], worker.state.isServing else { continue }
            let awaiting = worker.state.awaiting
            var restart: [ProbeKind] = []
            for kind in changed {
                if new[kind] == nil {
                    if let attempt = pools[p].probing[pid]?[kind]?.inFlight { actions.append(.cancelProbe(attempt: attempt)) }
                    pools[p].probing[pid]?[kind] = nil
                    if kind == .startup, awaiting.contains(.startup) { apply(.startupProbePassed, to: pid, now, because: "startup probe removed") }
                    if kind == .readiness, awaiting.contains(.probe) { apply(.readinessProbePassed, to: pid, now, because: "readiness probe removed") }
                } else if kind != .startup || awaiting.contains(.startup) {
                    // Readiness and liveness wait for a startup probe still running.
                    if kind == .startup || !awaiting.contains(.startup) { restart.append(kind) }
                }
            }
            if !restart.isEmpty { beginProbes(pid, p, restart, now) }
            if pools[p].probing[pid]?.isEmpty == true { pools[p].probing[pid] = nil }
        }
    }

    private func spec(ofWorker pid: Int32) -> PoolSpec? {
        guard let name = pidIndex[pid], let p = poolIndex[name] else { return nil }
        return pools[p].spec
    }

    /// The handler for this replica, every template expanded.
    func check(_ handler: ProbeHandler, for worker: Worker, _ p: Int) -> Result<ProbeCheck, ProbeFailure> {
        let id = worker.replica
        func port(_ value: ProbeValue) -> Result<Int, ProbeFailure> {
            let text = value.value(for: id.index, pool: id.pool)
            guard let port = Int(text), (1...65535).contains(port) else { return .failure(ProbeFailure("port '\(text)' is not a port number (1-65535)")) }
            return .success(port)
        }
        switch handler {
        case .exec(let executable, let arguments):
            // As the worker runs: an outdated one during a rollout with its own generation's template.
            let template = pools[p].olderTemplates[worker.generation] ?? pools[p].spec.template
            var launch = WorkerLaunch(replica: id, template: template, notifyDirectory: nil)
            launch.executable = executable
            launch.arguments = arguments.map { $0.value(for: id.index, pool: id.pool) }
            launch.environment[WorkerVariable.watchdogUsec] = nil
            launch.resources = Resources()
            return .success(.exec(launch))
        case .httpGet(let host, let portValue, let path, let headers):
            return port(portValue).map { .httpGet(host: host, port: $0, path: path.value(for: id.index, pool: id.pool), headers: headers) }
        case .tcpSocket(let host, let portValue):
            return port(portValue).map { .tcpSocket(host: host, port: $0) }
        }
    }
}

/// Why a probe could not even be tried.
struct ProbeFailure: Error {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}
