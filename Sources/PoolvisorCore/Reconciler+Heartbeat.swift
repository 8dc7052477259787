/// `[supervisor.redis_events]`: every `heartbeat_seconds` each worker's heartbeat (and, for pools with
/// `busy_from`, the key that says it is busy) goes to the edge, which writes and reads Redis beside
/// the loop. A supervisor without it never wakes for this.
extension Reconciler {
    mutating func heartbeat(_ now: Instant) {
        guard let config = file.supervisor.redisEvents, phase == .starting || phase == .running else {
            nextHeartbeat = nil
            return
        }
        var beats: [WorkerBeat] = []
        for pool in pools {
            for (i, replica) in pool.replicas.enumerated() {
                guard let worker = pool.view(i).worker else { continue }
                beats.append(
                    WorkerBeat(
                        key: "\(config.keyPrefix):\(file.supervisor.name):\(pool.spec.name):\(i)", pid: worker.pid, state: pool.view(i).name,
                        startedAt: worker.startedAt, restarts: replica.restarts, busy: worker.busy,
                        busyKey: pool.spec.busyKey.map { $0.replacing("{pid}", with: String(worker.pid)) }))
            }
        }
        if !beats.isEmpty { actions.append(.heartbeat(beats)) }
        let at = now + config.heartbeat
        nextHeartbeat = at
        timers.schedule(.heartbeat(at: at), at: at)
    }

    /// The busy keys read: a worker whose key exists is busy (as BUSY=1), one whose key is gone idle.
    mutating func busyKeysRead(_ busy: [Int32: Bool], _ now: Instant) {
        for (pid, isBusy) in busy.sorted(by: { $0.key < $1.key }) {
            guard let name = pidIndex[pid], let p = poolIndex[name], pools[p].spec.busyKey != nil, let worker = pools[p].workers[pid],
                worker.busy != isBusy
            else { continue }
            pools[p].workers[pid]!.busy = isBusy
            emit(isBusy ? .workerBusy : .workerIdle, now, worker.replica, pid: pid, "busy key")
        }
    }
}
