/// The operator's commands: `poolvisor scale` and `poolvisor restart` (reload has its own file).
extension Reconciler {
    mutating func scale(_ name: String, to replicas: Int, _ now: Instant) -> CommandOutcome {
        guard let p = poolIndex[name], !pools[p].removed else { return refusal(unknownPool: name) }
        if case .stopping = phase { return CommandOutcome(accepted: false, lines: ["poolvisor is stopping"]) }
        guard pools[p].spec.enabled else {
            return CommandOutcome(accepted: false, lines: ["pool \(name) is disabled in \(file.path); enable it there and reload"])
        }
        if let autoscaling = pools[p].spec.autoscaling {
            return CommandOutcome(
                accepted: false,
                lines: [
                    "pool \(name) is autoscaled (\(autoscaling.summary); \(autoscaling.rules.minReplicas)–\(autoscaling.rules.maxReplicas) replicas, now \(pools[p].desired)): the autoscaler sets its replicas",
                    "change min_replicas / max_replicas in [pools.\(name).autoscaling] of \(file.path) and reload, or set enabled = false there to scale it by hand",
                ])
        }
        guard (0...PoolSpec.maximumReplicas).contains(replicas) else {
            return CommandOutcome(accepted: false, lines: ["replicas must be between 0 and \(PoolSpec.maximumReplicas), not \(replicas)"])
        }
        let before = pools[p].desired
        let fileCount = pools[p].spec.replicas
        pools[p].want.scaledTo = replicas == fileCount ? nil : replicas
        unsettled.insert(name)
        recountDesired()
        if before != replicas { emit(.poolScaled, now, pool: name, "\(before) → \(replicas): poolvisor scale") }
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

    mutating func restart(_ name: String, _ now: Instant) -> CommandOutcome {
        guard let p = poolIndex[name], !pools[p].removed else { return refusal(unknownPool: name) }
        if case .stopping = phase { return CommandOutcome(accepted: false, lines: ["poolvisor is stopping"]) }
        let live = pools[p].replicas.count { $0.state.occupant != nil }
        guard live > 0 else { return CommandOutcome(accepted: true, lines: ["pool \(name) has no running workers; nothing to restart"]) }
        pools[p].want.generation += 1
        pools[p].rollout = Rollout(reason: "poolvisor restart", startedAt: now)
        emit(.rolloutStarted, now, pool: name, "poolvisor restart")
        unsettled.insert(name)
        let allowance = pools[p].spec.rolloutAllowance(desired: pools[p].desired)
        var lines = ["pool \(name): rolling restart of \(plural(live, "worker")), at most \(allowance) at a time, each replacement ready before the next"]
        if let budget = pools[p].spec.disruptionBudget {
            lines.append("within the disruption budget (\(budget)): at least \(pools[p].minimumReady) stay ready")
        }
        log(.notice, lines[0])
        return CommandOutcome(accepted: true, lines: lines)
    }

    func refusal(unknownPool name: String) -> CommandOutcome {
        let known = pools.filter { !$0.removed }.map(\.spec.name)
        return CommandOutcome(accepted: false, lines: ["no pool '\(name)'\(Suggestion.didYouMean(name, known)); pools: \(known.joined(separator: ", "))"])
    }

    /// Drops a removed pool whose last worker has exited.
    mutating func forget(_ p: Int) {
        let name = pools[p].spec.name
        pools.remove(at: p)
        reindex()
        unsettled.remove(name)
        actions.append(.forget(pool: name))
        log(.info, "pool \(name) removed")
    }

    /// Loudly, once per pool (again if its resources change): limits that are written but not enforced.
    mutating func warnAboutUnenforcedLimits() {
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
}
