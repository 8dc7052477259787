/// `[supervisor.fleet]`: every `heartbeat_seconds` the edge registers this host in the fleet's store
/// and reads the live members back; the autoscaled pools' queue and cron triggers are then split
/// between them (`FleetShare`, applied in `autoscale`). A supervisor without a fleet never wakes for it.
extension Reconciler {
    mutating func fleetHeartbeat(_ now: Instant) {
        guard let fleet, phase == .starting || phase == .running else {
            nextFleetHeartbeat = nil
            return
        }
        actions.append(.fleetHeartbeat)
        let at = now + fleet.spec.heartbeat
        nextFleetHeartbeat = at
        timers.schedule(.fleetHeartbeat(at: at), at: at)
    }

    /// A heartbeat's answer: the members now, or why the store failed. A change of members is logged
    /// and emitted, and the autoscaled pools are read again at once, so that a host that left has its
    /// share taken over without waiting for the next poll.
    mutating func fleetRead(_ result: Result<[String], ScalerError>, _ now: Instant) {
        guard var state = fleet else { return }
        let hadError = state.error
        let change = state.read(result, at: now)
        fleet = state
        let name = state.spec.name
        if let error = state.error, error != hadError {
            log(.warning, "fleet \(name): \(error); autoscaled pools hold their replicas (or fall back) until the members are known again")
        } else if state.error == nil, hadError != nil {
            log(.notice, "fleet \(name): the store answers again (\(plural(state.members.count, "member")))")
        }
        guard let change else { return }
        var what: [String] = []
        if !change.joined.isEmpty { what.append("joined: " + change.joined.joined(separator: ", ")) }
        if !change.left.isEmpty { what.append("left: " + change.left.joined(separator: ", ")) }
        let detail = "\(plural(state.members.count, "member")); " + what.joined(separator: "; ")
        emit(.fleetChanged, now, nil, detail)
        log(.notice, "fleet \(name): \(detail)")
        guard phase == .starting || phase == .running else { return }
        for pool in pools where pool.autoscale != nil && pool.spec.enabled && !pool.removed {
            pollNow(pool.spec.name, now)
        }
    }
}
