/// Autoscaled pools: their triggers are read on a timer, and the readings move the pool's want.
extension Reconciler {
    /// Every network call of a queue reader is bounded by this (the edge's timeout).
    public static let queueCallTimeout = Duration.seconds(5)
    /// A queue reading not back after this is stuck where no timeout reaches (a host name lookup:
    /// neither libpq nor hiredis bounds getaddrinfo). Each poll then counts it as failed, so the pool's
    /// fallback, its other triggers and status go on, until the reader's call returns.
    public static let overdueQueueReading = queueCallTimeout * 2

    /// Asks the edge to read the pool's triggers now, and again one polling interval later. A queue
    /// reading still under way is not asked for twice: the round waits for it, or once it is overdue,
    /// goes on without it, counting it as failed.
    mutating func pollNow(_ name: String, _ now: Instant) {
        guard let p = poolIndex[name], let config = pools[p].autoscale?.config else { return }
        if let queue = config.queue {
            if let since = queueReadSince[name] {
                let waited = now.since(since)
                if waited >= Self.overdueQueueReading {
                    let why =
                        "no reading for \(waited.humanReadable): the scaler is stuck where its \(Self.queueCallTimeout.humanReadable) timeout does not reach (a host name lookup that gets no answer?)"
                    overdueQueueReadings[name] = TriggerSample(trigger: queue.name, reading: .failure(ScalerError(why)))
                    actions.append(.readTriggers(pool: name, queue: false))
                }
            } else {
                queueReadSince[name] = now
                actions.append(.readTriggers(pool: name, queue: true))
            }
        } else {
            actions.append(.readTriggers(pool: name, queue: false))
        }
        let next = now + config.pollingInterval
        nextPoll[name] = next
        timers.schedule(.poll(pool: name, at: next), at: next)
    }

    /// A round of trigger readings for an autoscaled pool.
    mutating func autoscale(_ name: String, _ samples: [TriggerSample], _ now: Instant) {
        var samples = samples
        let queue = pool(named: name)?.autoscale?.config.queue?.name
        if samples.contains(where: { $0.trigger == queue }) {
            queueReadSince[name] = nil
            overdueQueueReadings[name] = nil
        } else if let overdue = overdueQueueReadings.removeValue(forKey: name) {
            samples.insert(overdue, at: 0)
        }
        guard phase == .starting || phase == .running, let p = poolIndex[name], var state = pools[p].autoscale else { return }
        // In a fleet the share is an input like a reading: not knowing it holds the pool or falls back,
        // never runs the fleet's whole count here.
        var share = FleetShare.alone
        if let fleet, state.config.queue != nil || state.config.cron != nil {
            switch fleet.share(at: now) {
            case .success(let s): share = s
            case .failure(let e): samples.append(TriggerSample(trigger: fleet.triggerName, reading: .failure(e)))
            }
        }
        let before = state.replicas
        for record in state.apply(samples, share: share, pool: name, at: now) { log(record.level, record.message) }
        pools[p].want.autoscale = state
        if state.replicas != before {
            unsettled.insert(name)
            recountDesired()
            emit(.poolScaled, now, pool: name, "\(before) → \(state.replicas): \(state.reason)")
        }
    }

    /// A reload turned autoscaling on or off, or changed it. Returns the line for the reload's output.
    mutating func reconfigureAutoscaling(_ p: Int, from old: Pool, _ now: Instant) -> String {
        let name = pools[p].spec.name
        if pools[p].spec.autoscaling?.queue != old.spec.autoscaling?.queue { forgetQueueReading(name) }
        guard let config = pools[p].spec.autoscaling else {
            pools[p].want.autoscale = nil
            return "autoscaling off: back to the file's \(plural(pools[p].spec.replicas, "replica"))"
        }
        if var state = old.autoscale {
            for record in state.reconfigure(config, pool: name, at: now) { log(record.level, record.message) }
            pools[p].want.autoscale = state
            if config.queue != old.spec.autoscaling?.queue || config.cron != old.spec.autoscaling?.cron || config.cpuTarget != old.spec.autoscaling?.cpuTarget {
                pollNow(name, now)
            }
            return "autoscaling changed (\(config.summary); \(config.rules.minReplicas)–\(config.rules.maxReplicas) replicas; applies at once)"
        }
        let current = config.rules.bounded(old.desired)
        pools[p].want.scaledTo = nil
        pools[p].want.autoscale = AutoscaleState(config: config, replicas: current)
        pollNow(name, now)
        return "autoscaling on (\(config.summary); \(config.rules.minReplicas)–\(config.rules.maxReplicas) replicas), from \(plural(current, "replica"))"
    }

    /// The edge drops a queue reader whose trigger changed, or whose pool went or was disabled: a
    /// reading it had under way will not come.
    mutating func forgetQueueReading(_ name: String) {
        queueReadSince[name] = nil
        overdueQueueReadings[name] = nil
    }
}
