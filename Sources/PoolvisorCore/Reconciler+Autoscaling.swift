/// Autoscaled pools: their triggers are read on a timer, and the readings move the pool's want.
extension Reconciler {
    /// Asks the edge to read the pool's triggers now, and again one polling interval later.
    mutating func pollNow(_ name: String, _ now: Instant) {
        guard let p = poolIndex[name], let interval = pools[p].autoscale?.config.pollingInterval else { return }
        actions.append(.readTriggers(pool: name))
        let next = now + interval
        nextPoll[name] = next
        timers.schedule(.poll(pool: name, at: next), at: next)
    }

    /// A round of trigger readings for an autoscaled pool.
    mutating func autoscale(_ name: String, _ samples: [TriggerSample], _ now: Instant) {
        guard phase == .starting || phase == .running, let p = poolIndex[name], var state = pools[p].autoscale else { return }
        let before = state.replicas
        for record in state.apply(samples, pool: name, at: now) { log(record.level, record.message) }
        pools[p].want.autoscale = state
        if state.replicas != before {
            unsettled.insert(name)
            recountDesired()
        }
    }

    /// A reload turned autoscaling on or off, or changed it. Returns the line for the reload's output.
    mutating func reconfigureAutoscaling(_ p: Int, from old: Pool, _ now: Instant) -> String {
        let name = pools[p].spec.name
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
}
