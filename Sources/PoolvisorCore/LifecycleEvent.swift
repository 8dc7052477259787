/// Something that happened to a worker, a pool, a job or the supervisor, for `poolvisor events`, the
/// journal and the Redis stream: one per lifecycle change, with the names a dashboard filters on.
public struct LifecycleEvent: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, CaseIterable, Codable {
        case supervisorStarting = "supervisor.starting"
        case supervisorReady = "supervisor.ready"
        case supervisorStopping = "supervisor.stopping"
        case workerStarted = "worker.started"
        case workerReady = "worker.ready"
        case workerNotReady = "worker.not_ready"
        case workerBusy = "worker.busy"
        case workerIdle = "worker.idle"
        case workerStopped = "worker.stopped"
        case workerRestarting = "worker.restarting"
        case workerDraining = "worker.draining"
        case workerKilled = "worker.killed"
        case workerOOMKilled = "worker.oom_killed"
        case probeFailed = "worker.probe_failed"
        case poolScaled = "pool.scaled"
        case rolloutStarted = "rollout.started"
        case rolloutProgressed = "rollout.progressed"
        case rolloutDone = "rollout.done"
        case reloadApplied = "reload.applied"
        case reloadRefused = "reload.refused"
        case jobStarted = "job.started"
        case jobSucceeded = "job.succeeded"
        case jobFailed = "job.failed"
        /// Hosts joined or left this host's fleet (`[supervisor.fleet]`).
        case fleetChanged = "fleet.changed"
        /// A new image took over in place (`poolvisor upgrade`), or a binary was refused.
        case supervisorUpgraded = "supervisor.upgraded"
        case supervisorUpgradeRefused = "supervisor.upgrade_refused"
    }

    public var kind: Kind
    public var at: Instant
    /// The pool, or for job events the job.
    public var pool: String?
    public var replica: Int?
    public var pid: Int32?
    /// Why, or what: "exit code 1", "in 2 s", "2 → 5: queue depth 30", a reload's first line. Never a
    /// secret (it is built from what the log says).
    public var detail: String?

    public init(_ kind: Kind, at: Instant, pool: String? = nil, replica: Int? = nil, pid: Int32? = nil, detail: String? = nil) {
        self.kind = kind
        self.at = at
        self.pool = pool
        self.replica = replica
        self.pid = pid
        self.detail = detail
    }
}
