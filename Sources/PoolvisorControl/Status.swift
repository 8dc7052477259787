import PoolvisorCore

/// What `poolvisor status` shows: the supervisor, and per pool its replicas, like `kubectl get pods`.
/// Built by the reconciler from its state plus the workers' CPU and memory (which the edge reads from
/// the kernel); sent as JSON over the control socket; rendered as a table by the client.
public struct StatusReport: Sendable, Equatable {
    public struct Supervisor: Sendable, Equatable {
        public var version: String
        public var pid: Int32
        public var instance: String
        public var file: String
        /// starting | running | stopping | stopped
        public var phase: String
        public var uptimeSeconds: Double
        /// The same line systemd shows as the unit's status.
        public var summary: String
        public var lastReload: Reload?
        /// What the operator must know about the supervisor itself (open files close to the limit).
        public var warnings: [String] = []
        /// In-place upgrades since the start (`poolvisor upgrade`).
        public var upgrades = 0
        /// Upgrades refused since the start, and why the last one was (the binary cannot take over).
        public var upgradeRefusals = 0
        public var upgradeRefused: String?
    }

    public struct Reload: Sendable, Equatable {
        public var agoSeconds: Double
        public var accepted: Bool
        public var lines: [String]
        /// Errors and warnings, each "file:line:col: severity: message" (never an env value).
        public var diagnostics: [String]
    }

    public struct Pool: Sendable, Equatable {
        public var name: String
        /// Available | Progressing | Scaling | Degraded | Disabled | Removed
        public var state: String
        public var desired: Int
        public var replicasInFile: Int
        /// Set by `poolvisor scale` until a reload changes the file's replicas.
        public var scaledTo: Int?
        /// Workers alive, including draining ones.
        public var running: Int
        /// Ready workers in the pool's current slots.
        public var ready: Int
        /// What a rolling replacement in progress is for.
        public var rollout: String?
        /// Why the pool is not moving on right now (the disruption budget, max_unavailable).
        public var waiting: String?
        public var disruptionBudget: String?
        /// What the operator must know: limits that are not enforced, …
        public var warnings: [String] = []
        /// `resources.cpu_request` per worker, in cores.
        public var cpuRequest: Double?
        public var autoscaling: Autoscaling?
        public var replicas: [Replica]

        /// Cores the pool's workers use now (from their measured CPU %).
        public var cpuCores: Double? {
            let measured = replicas.compactMap(\.usage)
            return measured.isEmpty ? nil : measured.reduce(0) { $0 + $1.cpuPercent } / 100
        }

        /// As an HPA computes it: the workers' CPU over what they requested, in percent.
        public var cpuUtilisation: Double? {
            guard let request = cpuRequest, request > 0 else { return nil }
            let measured = replicas.filter { !$0.retiring }.compactMap(\.usage)
            guard !measured.isEmpty else { return nil }
            return measured.reduce(0) { $0 + $1.cpuPercent } / (request * 100 * Double(measured.count)) * 100
        }

        /// At its desired ready count: what `status`'s exit code is about.
        public var isHealthy: Bool { ready >= desired }
    }

    /// An autoscaled pool's autoscaler: like `kubectl get hpa` / `kubectl describe scaledobject`.
    public struct Autoscaling: Sendable, Equatable {
        /// keda | hpa
        public var type: String
        public var minReplicas: Int
        public var maxReplicas: Int
        public var pollingIntervalSeconds: Double
        public var triggers: [Trigger]
        /// Why the pool has its replicas now.
        public var reason: String
        public var lastScale: LastScale?
        /// Failed readings in a row.
        public var failures: Int
        public var lastReadingAgoSeconds: Double?
        /// In a fleet: what the queue and cron triggers ask of the whole fleet, and this host's share.
        public var fleetDesired: Int? = nil
        public var fleetShare: Int? = nil

        public struct Trigger: Sendable, Equatable {
            public var name: String
            /// The metric: queue depth, CPU % of request; nil for cron or when the reading failed.
            public var value: Double?
            /// Per replica for a queue, % for CPU.
            public var target: Double?
            public var activation: Double?
            /// Cron: whether the window is open now.
            public var open: Bool?
            /// Cron: the floor while open.
            public var replicas: Int?
            /// Why the last reading failed (never a connection string or password).
            public var error: String?
        }

        public struct LastScale: Sendable, Equatable {
            public var agoSeconds: Double
            public var from: Int
            public var to: Int
            public var reason: String
        }
    }

    public struct Replica: Sendable, Equatable {
        public var index: Int
        public var pid: Int32?
        /// Pending | Starting | Running | Ready | BackOff | Draining | Exited
        public var state: String
        public var ready: Bool
        public var restarts: Int
        public var ageSeconds: Double?
        public var lastExit: String?
        public var lastExitAgoSeconds: Double?
        /// A worker that left its slot and is draining (scale-down, replaced, pool removed): why.
        public var draining: String?
        /// True for a worker that left its slot; its replacement is listed with the same index.
        public var retiring: Bool
        /// The worker runs an older command or environment than the pool's: a rollout will replace it.
        public var outdated: Bool
        /// BUSY=1 / BUSY=0 from the worker, if it said.
        public var busy: Bool?
        /// The worker's own STATUS= line.
        public var message: String?
        public var usage: ProcessUsage?
        /// Its probes, for a pool that has any: startup, readiness, liveness.
        public var probes: [Probe] = []
        /// BackOff: when the next worker starts, from now.
        public var restartInSeconds: Double?
        /// A draining worker: when SIGKILL follows if it is still there, from now.
        public var sigkillInSeconds: Double?
    }

    /// A worker's probe of one kind, as `kubectl describe pod` tells it.
    public struct Probe: Sendable, Equatable {
        /// startup | readiness | liveness
        public var kind: String
        /// passing | failing | unknown (no verdict yet)
        public var state: String
        /// Failures in a row, of `failureThreshold`.
        public var failures: Int
        public var failureThreshold: Int
        /// Why the last failure failed.
        public var lastFailure: String?
        /// An exec probe's last lines of output, from its last failure.
        public var output: [String] = []
        public var lastProbeAgoSeconds: Double?

        public init(
            kind: String, state: String, failures: Int, failureThreshold: Int, lastFailure: String?, output: [String] = [], lastProbeAgoSeconds: Double? = nil
        ) {
            self.kind = kind
            self.state = state
            self.failures = failures
            self.failureThreshold = failureThreshold
            self.lastFailure = lastFailure
            self.output = output
            self.lastProbeAgoSeconds = lastProbeAgoSeconds
        }

        /// "readiness failing 2/3", "liveness ok", "startup ?".
        public var summary: String {
            switch state {
            case "passing": failures > 0 ? "\(kind) ok, failed \(failures)/\(failureThreshold)" : "\(kind) ok"
            case "failing": "\(kind) failing \(failures)/\(failureThreshold)"
            default: failures > 0 ? "\(kind) failed \(failures)/\(failureThreshold)" : "\(kind) ?"
            }
        }
    }

    /// A job, like `kubectl get cronjobs,jobs`: what it is doing and how its last run ended.
    public struct Job: Sendable, Equatable {
        public var name: String
        /// Running | BackOff | Stopping | Succeeded | Failed | Scheduled | Waiting
        public var state: String
        /// The cron expression and zone, for a scheduled job.
        public var schedule: String?
        /// The process of the run under way (the newest).
        public var pid: Int32?
        public var runsUnderWay: Int
        /// The run under way's attempt, or the last run's.
        public var attempt: Int?
        public var lastStartAgoSeconds: Double?
        /// How long the last run took, or the run under way has taken so far.
        public var durationSeconds: Double?
        /// "succeeded", "failed: exit code 1 (attempt 7, backoff_limit reached)".
        public var result: String?
        /// The next start of a scheduled job, on the wall clock of its zone.
        public var nextRun: String?

        public init(
            name: String, state: String, schedule: String? = nil, pid: Int32? = nil, runsUnderWay: Int = 0, attempt: Int? = nil,
            lastStartAgoSeconds: Double? = nil, durationSeconds: Double? = nil, result: String? = nil, nextRun: String? = nil
        ) {
            self.name = name
            self.state = state
            self.schedule = schedule
            self.pid = pid
            self.runsUnderWay = runsUnderWay
            self.attempt = attempt
            self.lastStartAgoSeconds = lastStartAgoSeconds
            self.durationSeconds = durationSeconds
            self.result = result
            self.nextRun = nextRun
        }
    }

    /// `[supervisor.fleet]`: this host's fleet as it last read it.
    public struct Fleet: Sendable, Equatable {
        public var name: String
        public var member: String
        /// The live members, sorted.
        public var members: [String]
        /// Why this host's share is not known now (the store failed, or its answer is older than the
        /// TTL): autoscaled pools hold or fall back. Never a connection string.
        public var error: String?
        public var lastReadAgoSeconds: Double?

        public init(name: String, member: String, members: [String], error: String? = nil, lastReadAgoSeconds: Double? = nil) {
            self.name = name
            self.member = member
            self.members = members
            self.error = error
            self.lastReadAgoSeconds = lastReadAgoSeconds
        }
    }

    public var supervisor: Supervisor
    public var pools: [Pool]
    public var jobs: [Job] = []
    public var fleet: Fleet?

    /// 0 when every pool is at its desired ready count, 3 when one is not (like `systemctl status`).
    public var exitCode: Int32 { pools.allSatisfy(\.isHealthy) ? 0 : 3 }
}

extension Reconciler {
    /// The status of every pool (or one), with each worker's usage as `usage(pid)` reports it.
    public func statusReport(
        at now: Instant, version: String, pid: Int32, pool only: String? = nil, warnings: [String] = [],
        usage: (Int32) -> ProcessUsage? = { _ in nil }
    ) -> StatusReport {
        let phaseName =
            switch phase {
            case .starting: "starting"
            case .running: "running"
            case .stopping: "stopping"
            case .stopped: "stopped"
            }
        let reload = lastReload.map {
            StatusReport.Reload(
                agoSeconds: now.since($0.at).seconds, accepted: $0.outcome.accepted, lines: $0.outcome.lines,
                diagnostics: $0.outcome.diagnostics.map(\.description))
        }
        let supervisor = StatusReport.Supervisor(
            version: version, pid: pid, instance: file.supervisor.name, file: file.path, phase: phaseName,
            uptimeSeconds: startedAt.map { now.since($0).seconds } ?? 0, summary: statusLine, lastReload: reload, warnings: warnings,
            upgrades: upgrades)
        var out: [StatusReport.Pool] = []
        for pool in pools where only == nil || pool.spec.name == only {
            out.append(status(of: pool, now, usage))
        }
        var report = StatusReport(supervisor: supervisor, pools: out)
        if let fleet {
            var error: String?
            if case .failure(let e) = fleet.share(at: now) { error = e.message }
            report.fleet = StatusReport.Fleet(
                name: fleet.spec.name, member: fleet.spec.member, members: fleet.members, error: error,
                lastReadAgoSeconds: fleet.confirmedAt.map { now.since($0).seconds })
        }
        if only == nil { report.jobs = jobs.filter { !$0.removed }.map { jobStatus($0, now) } }
        return report
    }

    private func jobStatus(_ job: Job, _ now: Instant) -> StatusReport.Job {
        let current = job.runs.last
        let run = current ?? job.last
        var state = current?.state.name ?? job.last?.state.name ?? (job.spec.schedule == nil ? "Waiting" : "Scheduled")
        if current == nil, job.spec.schedule != nil, job.last?.state == .ended(.succeeded) { state = "Scheduled" }
        var attempt: Int?
        switch run?.state {
        case .pending(let a)?, .active(_, let a)?, .backOff(_, let a)?: attempt = a
        default: attempt = nil
        }
        var result: String?
        if case .ended(let end)? = job.last?.state { result = end.description }
        return StatusReport.Job(
            name: job.spec.name, state: state, schedule: job.spec.schedule.map { "\($0.cron) (\($0.timeZone))" },
            pid: current?.state.pid, runsUnderWay: job.runs.count, attempt: attempt,
            lastStartAgoSeconds: run.map { now.since($0.startedAt).seconds },
            durationSeconds: run.map { (($0.endedAt ?? now).since($0.startedAt)).seconds }, result: result,
            nextRun: job.nextScheduled.map(\.description))
    }

    private func status(of pool: Pool, _ now: Instant, _ usage: (Int32) -> ProcessUsage?) -> StatusReport.Pool {
        var rows: [StatusReport.Replica] = []
        // While stopping, every slot a worker has left is shown, as Exited.
        let stopping = phase != .starting && phase != .running
        for (i, r) in pool.replicas.enumerated() where r.state != .vacant || (stopping && r.lastExitAt != nil) {
            let view = pool.view(i)
            let w = view.worker
            var row = StatusReport.Replica(
                index: r.id.index, pid: w?.pid, state: view.name, ready: view.isReady, restarts: r.restarts,
                ageSeconds: w.map { now.since($0.startedAt).seconds }, lastExit: r.lastExit?.description,
                lastExitAgoSeconds: r.lastExitAt.map { now.since($0).seconds }, draining: nil, retiring: false,
                outdated: w != nil && r.generation < pool.generation, busy: w?.busy, message: w?.status, usage: w.flatMap { usage($0.pid) })
            if case .draining(_, let drain) = view {
                row.draining = drain.cause.rawValue
                row.sigkillInSeconds = drain.deadline.since(now).seconds
            }
            if case .backOff(let until) = view { row.restartInSeconds = until.since(now).seconds }
            if let w, let probes = pool.probing[w.pid] { row.probes = probeStatus(probes, pool.spec.probes, now) }
            rows.append(row)
        }
        for old in pool.retiring {
            rows.append(
                StatusReport.Replica(
                    index: old.replica.index, pid: old.pid, state: "Draining", ready: false, restarts: 0,
                    ageSeconds: now.since(old.startedAt).seconds, lastExit: nil, lastExitAgoSeconds: nil,
                    draining: old.state.drain?.cause.rawValue, retiring: true, outdated: false, busy: old.busy,
                    message: old.status, usage: usage(old.pid), sigkillInSeconds: old.state.drain.map { $0.deadline.since(now).seconds }))
        }
        rows.sort { ($0.index, $0.retiring ? 0 : 1) < ($1.index, $1.retiring ? 0 : 1) }
        let desired = pool.desired
        let ready = pool.replicas.indices.count { pool.replicas[$0].state != .vacant && pool.view($0).isReady }
        let running = pool.workers.count
        let state: String
        if pool.removed {
            state = "Removed"
        } else if !pool.spec.enabled {
            state = running > 0 ? "Removed" : "Disabled"
        } else if pool.held != nil {
            state = "Waiting"
        } else if pool.rollout != nil {
            state = "Progressing"
        } else if pool.replicas.count(where: { $0.state != .vacant }) != desired || !pool.retired.isEmpty {
            state = "Scaling"
        } else if ready < desired {
            state = "Degraded"
        } else {
            state = "Available"
        }
        return StatusReport.Pool(
            name: pool.spec.name, state: state, desired: desired, replicasInFile: pool.spec.replicas, scaledTo: pool.scaledTo,
            running: running, ready: ready, rollout: pool.rollout?.reason, waiting: pool.held ?? pool.rollout?.waiting,
            disruptionBudget: pool.spec.disruptionBudget?.description, warnings: warnings(for: pool),
            cpuRequest: pool.spec.resources.cpuRequest, autoscaling: pool.autoscale.map { autoscalingStatus($0, now) }, replicas: rows)
    }

    private func probeStatus(_ probes: WorkerProbes, _ specs: Probes, _ now: Instant) -> [StatusReport.Probe] {
        ProbeKind.allCases.compactMap { kind in
            guard let tally = probes[kind], let spec = specs[kind] else { return nil }
            let state = tally.passing.map { $0 ? "passing" : "failing" } ?? "unknown"
            return StatusReport.Probe(
                kind: kind.rawValue, state: state, failures: tally.failures, failureThreshold: spec.failureThreshold,
                lastFailure: tally.lastFailure, output: tally.lastOutput, lastProbeAgoSeconds: tally.lastProbeAt.map { now.since($0).seconds })
        }
    }

    private func autoscalingStatus(_ state: AutoscaleState, _ now: Instant) -> StatusReport.Autoscaling {
        let config = state.config
        var triggers: [StatusReport.Autoscaling.Trigger] = []
        func trigger(_ name: String) -> StatusReport.Autoscaling.Trigger {
            var t = StatusReport.Autoscaling.Trigger(name: name)
            guard let sample = state.samples.first(where: { $0.trigger == name }) else { return t }
            switch sample.reading {
            case .failure(let e): t.error = e.message
            case .success(.queue(_, let value, _, _)): t.value = value
            case .success(.cpu(let utilisation, _)): t.value = utilisation
            case .success(.cron(_, _, let open)): t.open = open
            }
            return t
        }
        if let q = config.queue {
            var t = trigger(q.name)
            t.target = q.target
            t.activation = q.activation
            triggers.append(t)
        }
        if let cpu = config.cpuTarget {
            var t = trigger("cpu")
            t.target = cpu
            triggers.append(t)
        }
        if let cron = config.cron {
            var t = trigger(cron.name)
            t.replicas = cron.replicas
            triggers.append(t)
        }
        // A fleet whose share is not known fails the round like a trigger: shown as one.
        for sample in state.samples where !triggers.contains(where: { $0.name == sample.trigger }) {
            if case .failure = sample.reading { triggers.append(trigger(sample.trigger)) }
        }
        return StatusReport.Autoscaling(
            type: config.kind.rawValue, minReplicas: config.rules.minReplicas, maxReplicas: config.rules.maxReplicas,
            pollingIntervalSeconds: config.pollingInterval.seconds, triggers: triggers, reason: state.reason,
            lastScale: state.lastScale.map { .init(agoSeconds: now.since($0.at).seconds, from: $0.from, to: $0.to, reason: $0.reason) },
            failures: state.failures, lastReadingAgoSeconds: state.sampledAt.map { now.since($0).seconds },
            fleetDesired: state.fleet?.desired, fleetShare: state.fleet?.share)
    }
}

// MARK: - The table

extension StatusReport {
    /// The human-readable form: a supervisor line, then per pool a header and its replicas.
    public func table() -> String {
        let s = supervisor
        var out = "poolvisor \(s.version), instance '\(s.instance)', pid \(s.pid), \(s.phase), up \(Self.age(s.uptimeSeconds)), \(s.file)\n"
        for w in s.warnings { out += "WARNING: \(w)\n" }
        if let r = s.lastReload {
            if r.accepted {
                out += "last reload \(Self.age(r.agoSeconds)) ago: applied\n"
            } else {
                out += "last reload \(Self.age(r.agoSeconds)) ago: REJECTED, running the previous pools file\n"
                for d in r.diagnostics { out += "  \(d)\n" }
            }
        }
        if let f = fleet {
            out += "fleet \(f.name): \(plural(f.members.count, "member")), this host \(f.member)"
            if !f.members.isEmpty { out += " (\(f.members.joined(separator: ", ")))" }
            out += "\n"
            if let error = f.error { out += "  ERROR: \(error); autoscaled pools hold their replicas or fall back\n" }
            for pool in pools {
                guard let a = pool.autoscaling, let share = a.fleetShare, let desired = a.fleetDesired else { continue }
                out += "  \(pool.name): this host \(share) of \(desired)\n"
            }
        }
        if !jobs.isEmpty {
            out += "\nJOBS\n"
            var rows = [["JOB", "STATE", "SCHEDULE", "PID", "LAST START", "DURATION", "LAST RESULT", "NEXT RUN"]]
            for j in jobs {
                let state = j.attempt.map { $0 > 1 ? "\(j.state) (attempt \($0))" : j.state } ?? j.state
                rows.append([
                    j.name, state, j.schedule ?? "-", j.pid.map(String.init) ?? "-", j.lastStartAgoSeconds.map { Self.age($0) + " ago" } ?? "-",
                    j.durationSeconds.map(Self.age) ?? "-", j.result ?? "-", j.nextRun ?? "-",
                ])
            }
            out += Self.align(rows, indent: "  ")
        }
        if pools.isEmpty { return out + "\nno pools\n" }
        for pool in pools {
            var header = "\nPOOL \(pool.name)  \(pool.state)  ready \(pool.ready)/\(pool.desired)  running \(pool.running)"
            if let scaled = pool.scaledTo { header += "  scaled to \(scaled) (file: \(pool.replicasInFile))" }
            if let budget = pool.disruptionBudget { header += "  budget \(budget)" }
            if let utilisation = pool.cpuUtilisation { header += "  cpu \(Self.percent(utilisation)) of request" }
            out += header + "\n"
            if let a = pool.autoscaling { out += Self.autoscalingLines(a) }
            for w in pool.warnings { out += "  WARNING: \(w)\n" }
            if let rollout = pool.rollout {
                out += "  rolling replacement: \(rollout)\(pool.waiting.map { "; waiting: \($0)" } ?? "")\n"
            } else if let waiting = pool.waiting {
                out += "  waiting: \(waiting)\n"
            }
            let probed = pool.replicas.contains { !$0.probes.isEmpty }
            var rows = [["REPLICA", "PID", "STATE", "READY", "RESTARTS", "AGE", "CPU", "MEMORY"] + (probed ? ["PROBES"] : []) + ["LAST EXIT"]]
            var probeLines = ""
            for r in pool.replicas {
                var state = r.state
                if let why = r.draining { state += " (\(why))" }
                if r.outdated { state += " (outdated)" }
                if let busy = r.busy { state += busy ? " busy" : " idle" }
                let lastExit = r.lastExit.map { e in e + (r.lastExitAgoSeconds.map { " (\(Self.age($0)) ago)" } ?? "") } ?? "-"
                var row: [String] = ["\(pool.name)/\(r.index)", r.pid.map(String.init) ?? "-", state, r.ready ? "1/1" : "0/1", String(r.restarts)]
                row.append(r.ageSeconds.map(Self.age) ?? "-")
                row.append(r.usage.map { Self.percent($0.cpuPercent) } ?? "-")
                row.append(r.usage.map { Self.bytes($0.rssBytes) } ?? "-")
                if probed { row.append(r.probes.isEmpty ? "-" : r.probes.map(\.summary).joined(separator: ", ")) }
                row.append(lastExit)
                rows.append(row)
                for p in r.probes where p.failures > 0 {
                    probeLines += "  \(pool.name)/\(r.index) \(p.kind) probe: \(p.lastFailure ?? "failed")\n"
                    for line in p.output { probeLines += "      | \(line)\n" }
                }
            }
            out += Self.align(rows, indent: "  ") + probeLines
        }
        return out
    }

    /// Under an autoscaled pool's header: bounds, triggers with their readings, the last scale event.
    static func autoscalingLines(_ a: Autoscaling) -> String {
        var out = "  autoscaling: \(a.type), \(a.minReplicas)–\(a.maxReplicas) replicas, every \(Duration.seconds(a.pollingIntervalSeconds).humanReadable)"
        if let last = a.lastScale { out += "; last scale \(age(last.agoSeconds)) ago: \(last.from) → \(last.to)" }
        if let share = a.fleetShare, let desired = a.fleetDesired { out += "; fleet: this host \(share) of \(desired)" }
        out += "\n"
        var rows = [["TRIGGER", "METRIC", "TARGET", "ACTIVATION"]]
        for t in a.triggers {
            let metric: String
            if let error = t.error {
                metric = "ERROR: \(error)"
            } else if let open = t.open {
                metric = open ? "window open" : "window closed"
            } else if let v = t.value {
                metric = t.name == "cpu" ? percent(v) : Autoscaler.number(v)
            } else {
                metric = "-"
            }
            let target: String
            if let r = t.replicas {
                target = plural(r, "replica")
            } else if let v = t.target {
                target = t.name == "cpu" ? "\(Autoscaler.number(v))%" : "\(Autoscaler.number(v))/replica"
            } else {
                target = "-"
            }
            rows.append([t.name, metric, target, t.activation.map(Autoscaler.number) ?? "-"])
        }
        out += align(rows, indent: "    ")
        out += "    why: \(a.reason)\n"
        if a.failures > 0 { out += "    \(a.failures) failed reading\(a.failures == 1 ? "" : "s") in a row\n" }
        return out
    }

    /// Columns padded to their widest cell, two spaces apart; the last column is not padded.
    static func align(_ rows: [[String]], indent: String) -> String {
        guard let columns = rows.first?.count else { return "" }
        var widths = [Int](repeating: 0, count: columns)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        var out = ""
        for row in rows {
            var line = indent
            for (i, cell) in row.enumerated() {
                line += cell
                if i < columns - 1 { line += String(repeating: " ", count: widths[i] - cell.count + 2) }
            }
            while line.last == " " { line.removeLast() }
            out += line + "\n"
        }
        return out
    }

    /// kubectl's ages: 45s, 3m12s, 2h5m, 3d4h.
    public static func age(_ seconds: Double) -> String {
        let s = Int(max(seconds, 0))
        switch s {
        case ..<60: return "\(s)s"
        case ..<3600: return s % 60 == 0 ? "\(s / 60)m" : "\(s / 60)m\(s % 60)s"
        case ..<86400: return (s % 3600) / 60 == 0 ? "\(s / 3600)h" : "\(s / 3600)h\((s % 3600) / 60)m"
        default: return (s % 86400) / 3600 == 0 ? "\(s / 86400)d" : "\(s / 86400)d\((s % 86400) / 3600)h"
        }
    }

    static func percent(_ p: Double) -> String {
        p >= 10 ? "\(Int(saturating: p.rounded()))%" : "\(Double(Int(saturating: (p * 10).rounded())) / 10)%"
    }

    /// 512Ki, 12.3Mi, 1.2Gi.
    static func bytes(_ n: Int64) -> String {
        let units = ["", "Ki", "Mi", "Gi", "Ti"]
        var value = Double(n)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(n)" }
        return value >= 100 ? "\(Int(saturating: value.rounded()))\(units[unit])" : "\(Double(Int(saturating: (value * 10).rounded())) / 10)\(units[unit])"
    }
}
