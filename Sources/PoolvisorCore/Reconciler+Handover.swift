/// An in-place upgrade: the whole reconciler is handed to the new image of the supervisor, which goes
/// on with it. What only the old image's edge knew is gone with it: the pools in force (its queue
/// readers' sources), probe attempts under way (their processes and sockets) and queue readings on its
/// threads. Each is asked for again at once, so
/// that no attempt times out as a failure nor a reading as overdue because of the upgrade.
extension Reconciler {
    mutating func resumeAfterHandover(_ now: Instant) {
        upgrades += 1
        emit(.supervisorUpgraded, now, nil, "upgrade \(upgrades): \(plural(counts.live, "worker")) kept")
        // The new edge knows nothing yet: the pools in force (queue sources, relay prefixes) first.
        actions.append(.poolsInForce(pools.map(\.spec)))
        log(.notice, "handed over: \(plural(counts.live, "worker")) kept, timers and history as they were")
        for p in pools.indices {
            for pid in pools[p].probing.keys.sorted() {
                for kind in ProbeKind.allCases where pools[p].probing[pid]?[kind]?.inFlight != nil {
                    pools[p].probing[pid]![kind]!.inFlight = nil
                    pools[p].probing[pid]![kind]!.due = now
                    timers.schedule(.probe(pid: pid, kind, at: now), at: now)
                }
            }
        }
        let waiting = queueReadSince.keys.sorted()
        queueReadSince = [:]
        overdueQueueReadings = [:]
        for name in waiting { pollNow(name, now) }
    }
}
