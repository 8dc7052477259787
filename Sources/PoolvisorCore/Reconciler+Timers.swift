/// The core's timers: readiness, watchdog, drain deadlines, backoff, the ready timeout, trigger polls.
/// Each is checked by `applies` before it acts, and moot ones are dropped so an idle supervisor sleeps.
extension Reconciler {
    mutating func fire(_ timer: Timer, _ now: Instant) {
        guard applies(timer, now) else { return }
        switch timer {
        case .readiness(let pid):
            apply(.readyAfterStart, to: pid, now)
        case .workerReadyTimeout(let pid):
            apply(.readyTimeout, to: pid, now)
        case .probe(let pid, let kind, _):
            runProbe(pid, kind, now)
        case .probeTimeout(let pid, let kind, let attempt):
            probeTimedOut(pid, kind, attempt, now)
        case .backoffOver(let id):
            apply(.backoffOver, to: id, now)
        case .watchdog(let pid):
            guard let w = worker(pid), let interval = spec(of: w.replica).watchdog, let last = w.lastWatchdogPing else { return }
            if last + interval <= now {
                apply(.drain(drain(for: .watchdog, spec(of: w.replica), now)), to: pid, now, because: "no WATCHDOG=1 for \(interval.humanReadable)")
            } else {
                timers.schedule(.watchdog(pid: pid), at: last + interval)
            }
        case .drainDeadline(let pid):
            apply(.drainDeadline, to: pid, now)
        case .poll(let name, _):
            pollNow(name, now)
        case .jobBackoffOver, .jobDrainDeadline, .jobDeadline, .jobClock:
            fireJobTimer(timer, now)
        case .heartbeat:
            heartbeat(now)
        case .fleetHeartbeat:
            fleetHeartbeat(now)
        case .readyTimeout:
            let blocked = blockedByFailedJobs
            guard blocked.isEmpty else {
                log(.error, "not telling systemd READY=1: \(blocked.joined(separator: ", ")) cannot start (\(pools.first { $0.spec.name == blocked[0] }?.held ?? "?"))")
                return
            }
            phase = .running
            actions.append(.tellSystemd(.ready))
            emit(.supervisorReady, now, nil, "\(counts.ready)/\(counts.desired) workers ready after the ready timeout")
            log(.warning, "\(counts.ready) of \(plural(counts.desired, "worker")) ready after \(file.supervisor.readyTimeout.humanReadable); telling systemd READY=1 anyway")
        }
    }

    /// Whether a timer still means something: the one check both `fire` and the pruning of moot
    /// deadlines use, so an idle supervisor is never woken for nothing.
    func applies(_ timer: Timer, _ now: Instant?) -> Bool {
        switch timer {
        case .readiness(let pid):
            return worker(pid)?.state.awaiting.contains(.delay) == true
        case .workerReadyTimeout(let pid):
            return worker(pid)?.state.isStarting == true
        case .probe(let pid, let kind, let at):
            return tally(pid, kind)?.due == at
        case .probeTimeout(let pid, let kind, let attempt):
            return tally(pid, kind)?.inFlight == attempt
        case .backoffOver(let id):
            guard case .backOff(let until)? = replica(id)?.state else { return false }
            return now.map { until <= $0 } ?? true
        case .watchdog(let pid):
            return worker(pid)?.state.isServing == true
        case .drainDeadline(let pid):
            guard case .draining(let drain)? = worker(pid)?.state else { return false }
            return now.map { drain.deadline <= $0 } ?? true
        case .jobBackoffOver, .jobDrainDeadline, .jobDeadline, .jobClock:
            return jobTimerApplies(timer, now)
        case .heartbeat(let at):
            return nextHeartbeat == at && (phase == .starting || phase == .running)
        case .fleetHeartbeat(let at):
            return nextFleetHeartbeat == at && (phase == .starting || phase == .running)
        case .readyTimeout:
            return phase == .starting
        case .poll(let name, let at):
            guard nextPoll[name] == at, phase == .starting || phase == .running, let pool = pool(named: name) else { return false }
            return pool.autoscale != nil && !pool.removed && pool.spec.enabled
        }
    }
}
