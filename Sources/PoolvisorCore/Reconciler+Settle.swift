/// Towards the desired state: after every event, each unsettled pool takes one step.
extension Reconciler {
    mutating func afterEvent(_ now: Instant) {
        if phase == .starting || phase == .running, !unsettled.isEmpty, startedAt != nil {
            for name in unsettled.sorted() {
                guard let p = poolIndex[name] else { unsettled.remove(name); continue }
                if settle(p, now) { unsettled.remove(name) }
            }
        }
        if phase == .starting, startedAt != nil, counts.ready >= counts.desired {
            phase = .running
            actions.append(.tellSystemd(.ready))
            emit(.supervisorReady, now, nil, "\(counts.ready)/\(counts.desired) workers ready")
            let took = startedAt.map { now.since($0).humanReadable } ?? "?"
            log(.notice, counts.desired == 1 ? "the worker is ready (\(took))" : "all \(counts.desired) workers ready (\(took))")
        }
        if case .stopping = phase, counts.live == 0, jobs.allSatisfy(\.runs.isEmpty) {
            phase = .stopped
            log(.notice, "all workers stopped")
            actions.append(.exit(code: 0))
        }
        // A deadline that no longer applies must not wake an idle supervisor.
        while let timer = timers.first, !applies(timer, nil) { timers.popFirst() }
    }

    /// One step of pool `p` towards `desired` replicas of its current generation.
    /// Returns whether the pool is there (nothing left to do).
    mutating func settle(_ p: Int, _ now: Instant) -> Bool {
        if !pools[p].released {
            // Held until every depends_on holds; looked at again after each event until then.
            if pools[p].desired > 0, !pools[p].removed, let why = waitingFor(p) {
                if pools[p].held != why {
                    pools[p].held = why
                    log(.info, "pool \(pools[p].spec.name) is held: \(why)")
                }
                return false
            }
            if pools[p].desired > 0 {
                if pools[p].held != nil { log(.notice, "pool \(pools[p].spec.name): its dependencies are met; starting") }
                pools[p].released = true
                pools[p].held = nil
            }
        }
        let active = fill(p, now)
        let (surplusWaiting, ready) = scaleIn(p, active: active, now)
        while let last = pools[p].replicas.last, last.state == .vacant {
            pools[p].replicas.removeLast()
        }
        if pools[p].removed, pools[p].replicas.isEmpty, pools[p].workers.isEmpty {
            forget(p)
            return true
        }
        return rollOut(p, ready: ready, surplusWaiting: surplusWaiting, now)
    }

    /// Missing replicas start at once, like a Deployment scaling up: the lowest vacant slot first.
    /// Returns how many slots are wanted now.
    private mutating func fill(_ p: Int, _ now: Instant) -> Int {
        let desired = pools[p].desired
        var active = pools[p].activeSlots
        guard active < desired else { return active }
        // The vacant slots, lowest last, found once: a search per new replica was O(N²) at 10,000.
        var vacant = Array(pools[p].replicas.indices.filter { pools[p].replicas[$0].state == .vacant }.reversed())
        pools[p].replicas.reserveCapacity(pools[p].replicas.count + desired - active - vacant.count)
        while active < desired {
            let i: Int
            if let v = vacant.popLast() {
                i = v
            } else {
                i = pools[p].replicas.count
                pools[p].replicas.append(Replica(id: ReplicaID(pool: pools[p].spec.name, index: i), generation: pools[p].generation))
            }
            apply(.fill, p, i, now)
            active += 1
        }
        return active
    }

    /// Surplus replicas go. Which ones: those not ready first, then idle workers (BUSY=0, or never
    /// said), busy ones last; the highest index first among equals. A ready one only within the
    /// disruption budget. Returns how many wait for the budget, and how many ready workers are left.
    private mutating func scaleIn(_ p: Int, active: Int, _ now: Instant) -> (waiting: Int, ready: Int) {
        var ready = pools[p].readyWorkers
        var surplus = active - pools[p].desired
        guard surplus > 0 else { return (0, ready) }
        let going = pools[p].removed || !pools[p].spec.enabled
        let cause: Drain.Cause = going ? .poolRemoved : .scaleDown
        let floor = going ? 0 : pools[p].minimumReady
        let candidates = pools[p].replicas.indices.filter { pools[p].replicas[$0].state != .vacant }.sorted { a, b in
            let ka = Self.removalRank(pools[p].view(a)), kb = Self.removalRank(pools[p].view(b))
            return ka != kb ? ka < kb : a > b
        }
        for i in candidates where surplus > 0 {
            if pools[p].view(i).isReady {
                guard ready - 1 >= floor else { return (surplus, ready) }
                ready -= 1
            }
            apply(.scaleIn(cause), p, i, now)
            surplus -= 1
        }
        return (0, ready)
    }

    /// The order in which a scale-down picks replicas: no ready worker (nothing is lost), then an idle
    /// one (BUSY=0, or never said), then a busy one.
    private static func removalRank(_ view: ReplicaView) -> Int {
        switch view {
        case .ready(let w): w.busy == true ? 2 : 1
        case .pending, .starting, .running, .backOff, .draining, .exited: 0
        }
    }

    /// Workers of an older generation are replaced: not-ready ones at once, ready ones while fewer
    /// than the rollout allowance are unavailable and the budget's floor holds.
    private mutating func rollOut(_ p: Int, ready: Int, surplusWaiting: Int, _ now: Instant) -> Bool {
        let name = pools[p].spec.name, desired = pools[p].desired, generation = pools[p].generation
        let floor = pools[p].removed || !pools[p].spec.enabled ? 0 : pools[p].minimumReady
        var ready = ready, outdated = 0, current = true
        var unavailable = pools[p].activeSlots - pools[p].readyWorkers
        let allowance = pools[p].spec.rolloutAllowance(desired: desired)
        var waiting: String?
        for i in pools[p].replicas.indices where pools[p].replicas[i].state != .vacant && pools[p].replicas[i].generation < generation {
            current = false
            switch pools[p].view(i) {
            case .starting, .running, .backOff:
                apply(.replace, p, i, now)
            case .ready:
                if unavailable >= allowance {
                    outdated += 1
                    waiting = waiting ?? "\(plural(unavailable, "replica")) not ready (max_unavailable \(allowance))"
                } else if ready - 1 < floor {
                    outdated += 1
                    waiting = waiting ?? "disruption budget: \(ready) ready, at least \(floor) must stay"
                } else {
                    unavailable += 1
                    ready -= 1
                    apply(.replace, p, i, now)
                    emit(.rolloutProgressed, now, pools[p].replicas[i].id, "replacing replica \(i)")
                }
            case .draining, .pending, .exited:
                break  // a watchdog restart or a spawn under way starts the new generation anyway
            }
        }
        if surplusWaiting > 0, waiting == nil {
            waiting = "scale-down of \(plural(surplusWaiting, "replica")) waits for the disruption budget: \(ready) ready, at least \(floor) must stay"
        }
        pools[p].rollout?.waiting = waiting
        // Every wanted slot held by a ready worker of the current generation (replacements just asked
        // for above are pending, so they count as not ready).
        let active = pools[p].activeSlots
        let allReady = current && active == desired && pools[p].readyWorkers == active
        if allReady { pools[p].olderTemplates = [:] }
        if let rollout = pools[p].rollout, allReady {
            pools[p].rollout = nil
            emit(.rolloutDone, now, pool: name, rollout.reason)
            log(.notice, "pool \(name): rolling replacement complete (\(rollout.reason); took \(now.since(rollout.startedAt).humanReadable))")
        }
        return outdated == 0 && surplusWaiting == 0 && active == desired && (pools[p].rollout == nil || allReady)
    }

    // MARK: - Launches

    /// Everything the edge needs to start `id`'s worker now, with a serial of its own. The `.spawn`
    /// action carries the id; the edge asks for the launch when its turn comes, for the pool as it is then.
    public mutating func launch(for id: ReplicaID) -> WorkerLaunch {
        launches += 1
        var launch = WorkerLaunch(replica: id, template: spec(of: id).template, notifyDirectory: notifyDirectory)
        launch.serial = launches
        return launch
    }
}
