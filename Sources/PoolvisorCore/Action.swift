/// Something that happened, as the edge reports it to the reconciler.
public enum Event: Sendable, Equatable {
    /// Bring up the pools of the file the reconciler was created with.
    case start
    /// This reconciler was handed to a new image of the supervisor (an in-place upgrade): what the old
    /// image had in flight (probe attempts, queue readings) is gone and is asked for again.
    case handedOver
    /// The worker for a Pending replica was spawned.
    case spawned(ReplicaID, pid: Int32)
    /// The worker for a Pending replica could not be spawned.
    case spawnFailed(ReplicaID, reason: String)
    /// A child process was reaped (a worker, or an orphan the supervisor adopted); `oomKilled` when the
    /// OOM killer struck in the worker's cgroup (the edge reads its counters before reporting).
    case exited(pid: Int32, WaitStatus, oomKilled: Bool = false)
    /// A worker sent an sd_notify message on its NOTIFY_SOCKET (the edge has matched the sender to
    /// the worker's process group).
    case notified(pid: Int32, NotifyMessage)
    /// `Reconciler.nextDeadline` has passed.
    case deadlineReached
    /// SIGTERM or SIGINT reached the supervisor.
    case stopRequested(Signal)
    /// The readings the edge took for `.readTriggers(pool:)`.
    case triggersRead(pool: String, [TriggerSample])
    /// The process of a job's run was spawned, or could not be.
    case jobSpawned(job: String, run: Int, pid: Int32)
    case jobSpawnFailed(job: String, run: Int, reason: String)
    /// The civil time in a scheduled job's zone, for `.readClock` (nil: the zone is unknown here), and
    /// how far into its minute the wall clock is.
    case clockRead(job: String, CivilTime?, secondsIntoMinute: Double)
    /// For `.heartbeat`: which workers' busy keys exist now (by pid), for pools with `busy_from`.
    case busyKeysRead([Int32: Bool])
    /// For `.fleetHeartbeat`: the fleet's live members (this host among them), or why the store failed.
    case fleetRead(Result<[String], ScalerError>)
    /// What the probe `.probe(run)` found (not for a cancelled one).
    case probed(pid: Int32, ProbeKind, attempt: UInt64, ProbeOutcome)
}

/// An operator's order, from the control socket or a signal.
public enum Command: Sendable, Equatable {
    /// Apply a freshly read pools file (or report why it was rejected), changing only what changed.
    case reload(PoolsFileReading)
    /// Run `replicas` workers in the pool until a reload of a file that changes its replicas.
    case scale(pool: String, replicas: Int)
    /// Replace every worker of the pool, rolling, within its disruption budget.
    case restart(pool: String)
    /// Start a run of the job now (`poolvisor run-job`), as its concurrency policy allows.
    case runJob(String)
}

/// What became of a `Command`: accepted or refused, and what it did, in lines for the operator.
public struct CommandOutcome: Sendable, Equatable, Codable {
    public var accepted: Bool
    public var lines: [String]
    /// For a rejected pools file: every error and warning, with file, line and key.
    public var diagnostics: [Diagnostic]

    public init(accepted: Bool, lines: [String], diagnostics: [Diagnostic] = []) {
        self.accepted = accepted
        self.lines = lines
        self.diagnostics = diagnostics
    }
}

/// Everything the edge needs to start one worker.
public struct WorkerLaunch: Sendable, Equatable, Codable {
    public var replica: ReplicaID
    /// Resolved path of the program.
    public var executable: String
    /// argv, including argv[0] as written in the pools file.
    public var arguments: [String]
    public var environment: Environment
    public var workingDirectory: String?
    /// Where the worker's NOTIFY_SOCKET must be bound before it starts, if it gets one.
    public var notifySocket: String?
    /// Who it runs as; nil for the supervisor's own user.
    public var identity: WorkerIdentity?
    public var cpus: [Int]?
    public var nice: Int?
    public var umask: UInt32?
    public var resources = Resources()
    /// Unique per launch: names the worker's own cgroup (`<pool>.<index>.<serial>`), since an old worker
    /// and its replacement may share a replica slot for a while.
    public var serial: UInt64 = 0
}

extension WorkerLaunch {
    /// The pool's template for replica `id`: its environment gains the replica's own variables.
    /// - Parameter notifyDirectory: where the edge binds each replica's NOTIFY_SOCKET.
    init(replica id: ReplicaID, template: WorkerTemplate, notifyDirectory: String?) {
        var env = template.environment
        var arguments = template.command
        for (i, t) in template.perReplicaArguments where arguments.indices.contains(i) {
            arguments[i] = t.expand(pool: id.pool, instance: "", hostname: "", replica: id.index)
        }
        for (key, t) in template.perReplicaEnvironment {
            env[key] = t.expand(pool: id.pool, instance: "", hostname: "", replica: id.index)
        }
        env[WorkerVariable.replica] = String(id.index)
        var socket: String?
        if template.notifySocket, let dir = notifyDirectory {
            socket = "\(dir)/\(id.pool).\(id.index)"
            env[WorkerVariable.notifySocket] = socket
        }
        if let watchdog = template.watchdog {
            env[WorkerVariable.watchdogUsec] = String(watchdog.nanosecondsClamped / 1000)
        }
        self.init(
            replica: id, executable: template.executable, arguments: arguments, environment: env,
            workingDirectory: template.workingDirectory, notifySocket: socket, identity: template.identity,
            cpus: template.cpus, nice: template.nice, umask: template.umask, resources: template.resources)
    }
}

/// A line for the supervisor's log.
public struct LogRecord: Sendable, Equatable, CustomStringConvertible, Codable {
    public enum Level: Int, Sendable, Comparable, Codable {
        case debug, info, notice, warning, error
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
    }

    public var level: Level
    public var message: String
    public var replica: ReplicaID?
    public var pid: Int32?

    public init(_ level: Level, _ message: String, replica: ReplicaID? = nil, pid: Int32? = nil) {
        self.level = level
        self.message = message
        self.replica = replica
        self.pid = pid
    }

    public var description: String { message }
}

/// What the supervisor tells its own service manager (sd_notify), when there is one. STATUS= is not
/// an action: the edge sends `Reconciler.statusLine` along with these and whenever it changes.
public enum SystemdNotification: Sendable, Equatable, Codable {
    /// EXTEND_TIMEOUT_USEC at the start: systemd's start timeout covers poolvisor's own ready timeout
    /// (workers waiting for READY=1 or a probe), after which poolvisor sends READY=1 anyway.
    case extendStartTimeout(Duration)
    case ready
    /// RELOADING=1 as a reload of this pools file is applied; the READY=1 that ends it follows.
    case reloading(file: String)
    /// STOPPING=1, with EXTEND_TIMEOUT_USEC covering the longest drain.
    case stopping(extendTimeout: Duration)
}

/// An order from the reconciler to the edge. The edge carries orders out and makes no decisions.
public enum Action: Sendable, Equatable, Codable {
    /// Spawn the replica's worker and report `.spawned` or `.spawnFailed`. What to run is
    /// `Reconciler.launch(for:)` when its turn comes: a start wave of 10,000 queues ids, not launches.
    case spawn(ReplicaID)
    /// Send a signal to a worker's whole process group (the worker's pid is its group id).
    case signal(processGroup: Int32, Signal)
    case log(LogRecord)
    case tellSystemd(SystemdNotification)
    /// Read the autoscaled pool's triggers (queue depth, CPU, cron window) without blocking, and report
    /// `.triggersRead`. With `queue` false, only CPU and cron: the pool's last queue reading is still
    /// under way (and overdue; the core counts it as failed).
    case readTriggers(pool: String, queue: Bool)
    /// Start the job's run (its next attempt): `Reconciler.jobLaunch(_:run:)`, then report
    /// `.jobSpawned` or `.jobSpawnFailed`.
    case startJob(job: String, run: Int)
    /// Read the wall clock as civil time in this zone and report `.clockRead`.
    case readClock(job: String, timeZone: String)
    /// Run a worker's probe without blocking and report `.probed`; the core times it out.
    case probe(ProbeRun)
    /// Stop this probe attempt if it still runs (kill an exec probe's process group, close a socket);
    /// no `.probed` is expected for it.
    case cancelProbe(attempt: UInt64)
    /// Write these workers' heartbeat hashes (with a TTL of three heartbeats) and read their busy keys;
    /// report `.busyKeysRead` if any was asked.
    case heartbeat([WorkerBeat])
    /// Register this host in its fleet's store (`[supervisor.fleet]`), drop members older than the TTL
    /// and read the live ones, without blocking; report `.fleetRead`.
    case fleetHeartbeat
    /// Leave the fleet now (poolvisor is stopping): the other hosts take this one's share at once.
    case fleetLeave
    /// A lifecycle event for `poolvisor events`, the journal and the Redis stream.
    case event(LifecycleEvent)
    /// The pool is gone for good: free what the edge holds for it (its replicas' notify sockets).
    case forget(pool: String)
    /// The pools in force (at the start, after a reload; not the removed ones still draining): the edge
    /// keeps what it holds per pool in step (the output relay's prefixes, the queue scalers' sources).
    case poolsInForce([PoolSpec])
    /// Everything is stopped: exit the process with this code.
    case exit(code: Int32)
}
