/// Jobs: commands that run to completion at the start (before the pools that depend on them), on a
/// schedule, or by `poolvisor run-job`. Each run goes through `JobRunState.decide` in one funnel, as
/// workers and slots do.
extension Reconciler {
    public func job(named name: String) -> Job? { jobIndex[name].map { jobs[$0] } }

    // MARK: - Starting runs

    /// At the start: unscheduled jobs run now; scheduled ones read their clock.
    mutating func startJobs(_ now: Instant) {
        for j in jobs.indices {
            if jobs[j].spec.schedule == nil {
                startRun(j, trigger: "start", now)
            } else {
                readClock(j)
            }
        }
    }

    /// Starts a new run of job `j` (its first attempt).
    @discardableResult
    mutating func startRun(_ j: Int, trigger: String, _ now: Instant) -> Int {
        jobs[j].started += 1
        let number = jobs[j].started
        let name = jobs[j].spec.name
        jobs[j].runs.append(JobRun(number: number, startedAt: now, trigger: trigger))
        if let deadline = jobs[j].spec.activeDeadline { timers.schedule(.jobDeadline(job: name, run: number), at: now + deadline) }
        log(.info, "job \(name): run \(number) starting (\(trigger))")
        emit(.jobStarted, now, pool: name, "run \(number) (\(trigger))")
        actions.append(.startJob(job: name, run: number))
        return number
    }

    /// A start asked for while runs are under way, as the job's concurrency policy says. Returns why
    /// not, if it does not start.
    mutating func startRespectingConcurrency(_ j: Int, trigger: String, _ now: Instant) -> Result<Int, CommandRefusal> {
        let name = jobs[j].spec.name
        if let run = jobs[j].runs.first {
            switch jobs[j].spec.concurrency {
            case .forbid:
                let pid = run.state.pid.map { ", pid \($0)" } ?? ""
                return .failure(CommandRefusal("job \(name) is already running (run \(run.number)\(pid)); concurrency_policy = \"Forbid\""))
            case .replace:
                for r in jobs[j].runs.map(\.number) { stopRun(j, r, as: .failed("replaced by run \(jobs[j].started + 1)"), now) }
            case .allow:
                break
            }
        }
        return .success(startRun(j, trigger: trigger, now))
    }

    /// `poolvisor run-job NAME`.
    mutating func runJob(_ name: String, _ now: Instant) -> CommandOutcome {
        guard let j = jobIndex[name], !jobs[j].removed else {
            let known = jobs.filter { !$0.removed }.map(\.spec.name)
            return CommandOutcome(accepted: false, lines: ["no job '\(name)'\(Suggestion.didYouMean(name, known))"])
        }
        guard phase == .starting || phase == .running else {
            return CommandOutcome(accepted: false, lines: ["poolvisor is stopping; job \(name) was not started"])
        }
        switch startRespectingConcurrency(j, trigger: "run-job", now) {
        case .failure(let refusal): return CommandOutcome(accepted: false, lines: [refusal.message])
        case .success(let number): return CommandOutcome(accepted: true, lines: ["job \(name): run \(number) started"])
        }
    }

    /// The launch of attempt of `run` of a job, when the edge starts it.
    public func jobLaunch(_ name: String, run: Int) -> WorkerLaunch? {
        guard let j = jobIndex[name] else { return nil }
        let template = jobs[j].spec.template
        var env = template.environment
        env[WorkerVariable.job] = name
        env[WorkerVariable.jobRun] = String(run)
        return WorkerLaunch(
            replica: ReplicaID(pool: name, index: run), executable: template.executable, arguments: template.command, environment: env,
            workingDirectory: template.workingDirectory, notifySocket: nil, identity: template.identity, cpus: template.cpus,
            nice: template.nice, umask: template.umask, resources: template.resources)
    }

    // MARK: - The funnel

    /// Feeds `event` to run `number` of job `j`: the one place a run's state changes.
    mutating func apply(_ event: JobRunEvent, job j: Int, run number: Int, _ now: Instant) {
        guard let r = jobs[j].runs.firstIndex(where: { $0.number == number }) else { return }
        let old = jobs[j].runs[r].state
        let step = JobRunState.decide(old, event)
        guard let next = step.next else { return }
        let name = jobs[j].spec.name
        jobs[j].runs[r].state = next
        if let pid = old.pid, next.pid != pid { jobPids[pid] = nil }
        if let pid = next.pid { jobPids[pid] = name }
        if case .exited(let status, _) = event, status != .exited(0) { jobs[j].runs[r].lastExit = status.exitReason }
        for order in step.orders {
            switch order {
            case .spawn:
                actions.append(.startJob(job: name, run: number))
            case .armBackoff:
                if case .backOff(let until, let attempt) = next {
                    timers.schedule(.jobBackoffOver(job: name, run: number), at: until)
                    let why = jobs[j].runs[r].lastExit.map { "\($0)" } ?? event.failure ?? "failed"
                    log(.warning, "job \(name): run \(number) attempt \(attempt) failed (\(why)); retrying in \(until.since(now).humanReadable)")
                }
            case .startDrain(let signal):
                guard case .stopping(let pid, let deadline, let end) = next else { continue }
                actions.append(.signal(processGroup: pid, signal))
                timers.schedule(.jobDrainDeadline(job: name, run: number), at: deadline)
                log(.info, "job \(name): stopping run \(number) (pid \(pid)): \(end)")
            case .kill:
                guard let pid = next.pid else { continue }
                actions.append(.signal(processGroup: pid, .kill))
                if case .stopping = old { log(.warning, "job \(name): run \(number) (pid \(pid)) did not stop within its drain period; sending SIGKILL") }
            }
        }
        if case .active(let pid, let attempt) = next, case .pending = old {
            log(.debug, "job \(name): run \(number) attempt \(attempt) started, pid \(pid)")
        }
        if case .ended(let end) = next { finish(j, r, end, now) }
    }

    /// A run is over: kept as the job's last, its dependants looked at again, a rerun started.
    private mutating func finish(_ j: Int, _ r: Int, _ end: JobRunEnd, _ now: Instant) {
        var run = jobs[j].runs.remove(at: r)
        run.endedAt = now
        jobs[j].last = run
        let name = jobs[j].spec.name
        let took = now.since(run.startedAt).humanReadable
        let dependants = pools.filter { $0.spec.dependsOn.contains(name) && !$0.removed }.map(\.spec.name)
        switch end {
        case .succeeded:
            emit(.jobSucceeded, now, pool: name, "run \(run.number) (\(took))")
            jobs[j].completed = true
            log(.notice, "job \(name): run \(run.number) succeeded (\(took))")
        case .failed(let why):
            emit(.jobFailed, now, pool: name, "run \(run.number): \(why)")
            let level: LogRecord.Level = phase == .starting || phase == .running ? .error : .info
            log(level, "job \(name): run \(run.number) failed after \(took): \(why)")
            let held = dependants.filter { pool(named: $0)?.released == false }
            if !held.isEmpty, jobs[j].runs.isEmpty {
                log(.error, "pool\(held.count == 1 ? "" : "s") \(held.joined(separator: ", ")) will not start: job \(name) failed (poolvisor run-job \(name) to try again)")
            }
        }
        for pool in dependants { unsettled.insert(pool) }
        if jobs[j].removed, jobs[j].runs.isEmpty {
            forgetJob(j)
        } else if jobs[j].rerun, jobs[j].runs.isEmpty, phase == .starting || phase == .running {
            jobs[j].rerun = false
            startRun(j, trigger: "reload: changed", now)
        }
    }

    /// Stops a run as `end`: its process drains (the job's stop signal, then SIGKILL), a run waiting
    /// ends at once.
    mutating func stopRun(_ j: Int, _ number: Int, as end: JobRunEnd, _ now: Instant) {
        let spec = jobs[j].spec
        let deadline: Instant? = spec.drain == .zero ? nil : now + spec.drain
        apply(.stop(end, signal: spec.stopSignal, deadline: deadline), job: j, run: number, now)
    }

    private mutating func forgetJob(_ j: Int) {
        jobs.remove(at: j)
        reindexJobs()
    }

    mutating func reindexJobs() {
        jobs.sort { $0.spec.name < $1.spec.name }
        jobIndex = [:]
        for (i, job) in jobs.enumerated() { jobIndex[job.spec.name] = i }
    }

    // MARK: - Events

    mutating func jobSpawned(_ name: String, run: Int, pid: Int32, _ now: Instant) {
        guard let j = jobIndex[name] else {
            actions.append(.signal(processGroup: pid, .kill))
            return
        }
        apply(.spawned(pid: pid), job: j, run: run, now)
        if jobs[j].runs.first(where: { $0.number == run })?.state.pid != pid { actions.append(.signal(processGroup: pid, .kill)) }
    }

    mutating func jobSpawnFailed(_ name: String, run: Int, reason: String, _ now: Instant) {
        guard let j = jobIndex[name], let r = jobs[j].runs.firstIndex(where: { $0.number == run }) else { return }
        guard case .pending(let attempt) = jobs[j].runs[r].state else { return }
        apply(.spawnFailed(reason, retryAt: retryAt(j, attempt: attempt, now)), job: j, run: run, now)
    }

    /// A reaped job process. Returns false when `pid` is no job's.
    mutating func jobExited(_ pid: Int32, _ status: WaitStatus, _ now: Instant) -> Bool {
        guard let name = jobPids[pid], let j = jobIndex[name],
            let r = jobs[j].runs.firstIndex(where: { $0.state.pid == pid })
        else { return false }
        // What it left in its process group goes with it.
        if phase == .running || phase == .starting { actions.append(.signal(processGroup: pid, .kill)) }
        var retry: Instant?
        if case .active(_, let attempt) = jobs[j].runs[r].state, status != .exited(0) { retry = retryAt(j, attempt: attempt, now) }
        apply(.exited(status, retryAt: retry), job: j, run: jobs[j].runs[r].number, now)
        return true
    }

    /// When attempt `attempt + 1` may start, or nil when `backoff_limit` is used up (or poolvisor stops).
    private func retryAt(_ j: Int, attempt: Int, _ now: Instant) -> Instant? {
        let spec = jobs[j].spec
        guard attempt <= spec.backoffLimit, phase == .starting || phase == .running else { return nil }
        return now + spec.backoff.delay(afterConsecutiveExits: attempt, unit: 0.5)
    }

    // MARK: - Timers

    mutating func fireJobTimer(_ timer: Timer, _ now: Instant) {
        switch timer {
        case .jobBackoffOver(let name, let run):
            if let j = jobIndex[name] { apply(.backoffOver, job: j, run: run, now) }
        case .jobDrainDeadline(let name, let run):
            if let j = jobIndex[name] { apply(.drainDeadline, job: j, run: run, now) }
        case .jobDeadline(let name, let run):
            guard let j = jobIndex[name], let deadline = jobs[j].spec.activeDeadline else { return }
            stopRun(j, run, as: .failed("active_deadline_seconds (\(deadline.humanReadable)) exceeded"), now)
        case .jobClock(let name, _):
            if let j = jobIndex[name] {
                jobs[j].nextClockRead = nil
                readClock(j)
            }
        default:
            return
        }
    }

    func jobTimerApplies(_ timer: Timer, _ now: Instant?) -> Bool {
        func run(_ name: String, _ number: Int) -> JobRun? { job(named: name)?.runs.first { $0.number == number } }
        switch timer {
        case .jobBackoffOver(let name, let number):
            guard case .backOff(let until, _)? = run(name, number)?.state else { return false }
            return now.map { until <= $0 } ?? true
        case .jobDrainDeadline(let name, let number):
            guard case .stopping(_, let deadline, _)? = run(name, number)?.state else { return false }
            return now.map { deadline <= $0 } ?? true
        case .jobDeadline(let name, let number):
            return run(name, number) != nil
        case .jobClock(let name, let at):
            return job(named: name)?.nextClockRead == at
        default:
            return false
        }
    }

    // MARK: - Schedules

    private mutating func readClock(_ j: Int) {
        guard let schedule = jobs[j].spec.schedule, !jobs[j].removed else { return }
        actions.append(.readClock(job: jobs[j].spec.name, timeZone: schedule.timeZone))
    }

    /// The civil time in a scheduled job's zone, as the edge read it: start a run if this minute is
    /// one of the schedule's (once per minute), and wake up for the next one (at least hourly, so a
    /// clock step or a change of summer time is seen).
    mutating func clockRead(_ name: String, _ time: CivilTime?, secondsIntoMinute: Double, _ now: Instant) {
        guard let j = jobIndex[name], let schedule = jobs[j].spec.schedule, !jobs[j].removed,
            phase == .starting || phase == .running
        else { return }
        guard let time else {
            log(.error, "job \(name): time zone '\(schedule.timeZone)' is not known on this host; its schedule is not followed")
            return
        }
        if schedule.cron.matches(time), jobs[j].lastScheduledMinute != time {
            jobs[j].lastScheduledMinute = time
            if case .failure(let refusal) = startRespectingConcurrency(j, trigger: "schedule \(time)", now) {
                log(.warning, "skipped the scheduled run at \(time): \(refusal.message)")
            }
        }
        let next = schedule.cron.next(after: time)
        jobs[j].nextScheduled = next
        let minutes = next.map { Double(($0.secondsSinceEpoch - time.secondsSinceEpoch) / 60) } ?? 60
        // Just past the minute's start, so that the clock then reads the minute itself.
        let wait = min(minutes * 60 - secondsIntoMinute + 0.05, 3600)
        let at = now + .seconds(max(wait, 0.05))
        jobs[j].nextClockRead = at
        timers.schedule(.jobClock(job: name, at: at), at: at)
    }

    // MARK: - Reload

    /// A reload's jobs: new ones start (or follow their schedule), changed ones run their new
    /// definition, removed ones are stopped. Pools are not touched.
    mutating func reloadJobs(_ new: [JobSpec], _ now: Instant) -> [String] {
        var lines: [String] = []
        let names = Set(jobs.filter { !$0.removed }.map(\.spec.name)).union(new.map(\.name)).sorted()
        for name in names {
            let spec = new.first { $0.name == name }
            switch (jobIndex[name], spec) {
            case (nil, let spec?):
                jobs.append(Job(spec: spec))
                reindexJobs()
                let j = jobIndex[name]!
                if spec.schedule == nil {
                    startRun(j, trigger: "reload: new", now)
                    lines.append("job \(name): new, running it")
                } else {
                    readClock(j)
                    lines.append("job \(name): new, on schedule \(spec.schedule!.cron)")
                }
            case (let j?, nil):
                guard !jobs[j].removed else { continue }
                jobs[j].removed = true
                jobs[j].rerun = false
                let running = jobs[j].runs.map(\.number)
                for number in running { stopRun(j, number, as: .failed("removed from the pools file"), now) }
                lines.append("job \(name): removed" + (running.isEmpty ? "" : ", stopping \(plural(running.count, "run"))"))
                if let j = jobIndex[name], jobs[j].runs.isEmpty { forgetJob(j) }
            case (let j?, let spec?):
                let old = jobs[j].spec
                jobs[j].spec = spec
                if jobs[j].removed {
                    jobs[j].removed = false
                    lines.append("job \(name): back in the file")
                }
                guard old != spec else { continue }
                if spec.schedule != old.schedule {
                    jobs[j].nextClockRead = nil
                    jobs[j].nextScheduled = nil
                    readClock(j)
                }
                if spec.template != old.template, spec.schedule == nil {
                    if jobs[j].runs.isEmpty {
                        startRun(j, trigger: "reload: changed", now)
                        lines.append("job \(name): changed, running it again")
                    } else {
                        jobs[j].rerun = true
                        lines.append("job \(name): changed, runs again when the run under way ends")
                    }
                } else {
                    lines.append("job \(name): changed (applies to its next run)")
                }
            case (nil, nil):
                break
            }
        }
        return lines
    }

    // MARK: - Dependencies

    /// Why pool `p` may not start its first worker yet, or nil when every `depends_on` holds: each job
    /// named has completed, each pool named has all its replicas ready.
    func waitingFor(_ p: Int) -> String? {
        for name in pools[p].spec.dependsOn {
            if let job = job(named: name) {
                if job.completed { continue }
                if let why = job.failed { return "job \(name) failed: \(why)" }
                return "waiting for job \(name)"
            }
            if let other = pool(named: name), other.desired > 0, other.readyWorkers < other.desired {
                return "waiting for pool \(name) to be ready"
            }
        }
        return nil
    }

    /// Pools held by a job that failed for good: READY=1 is not sent for them.
    var blockedByFailedJobs: [String] {
        pools.filter { pool in
            !pool.released && pool.desired > 0 && pool.spec.dependsOn.contains { name in job(named: name).map { !$0.completed && $0.failed != nil } ?? false }
        }.map(\.spec.name)
    }
}

/// Why a command is refused, in words for the operator.
struct CommandRefusal: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

extension JobRunEvent {
    /// The reason of a failed spawn.
    var failure: String? {
        if case .spawnFailed(let why, _) = self { return "spawn failed: \(why)" }
        return nil
    }
}
