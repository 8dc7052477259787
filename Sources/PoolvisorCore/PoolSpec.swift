/// Which queue types a pool's workers take jobs from: Noxus's Helm chart's `workerSubscribe`. One
/// application's vocabulary: a pools file that never writes `worker_subscribe` (nor its tenants and
/// workspaces) has no subscription, and its workers get no `WORKER_SUBSCRIBE*` variable.
public enum QueueSubscription: String, Sendable, CaseIterable, Codable {
    case all
    case allButKb = "all_but_kb"
    case flow, chat, kb

    /// Noxus's queues: the implied `[supervisor] queues` of a file that uses `worker_subscribe`.
    public static let queueTypes: [QueueSubscription] = [.flow, .chat, .kb]

    public var servedQueueTypes: [QueueSubscription] {
        switch self {
        case .all: [.flow, .chat, .kb]
        case .allButKb: [.flow, .chat]
        case .flow, .chat, .kb: [self]
        }
    }
}

/// How poolvisor decides that a worker is ready.
public enum Readiness: Sendable, Equatable, Codable {
    /// Ready once it has been running for this long.
    case started(after: Duration)
    /// Ready when it sends READY=1 on its NOTIFY_SOCKET.
    case notify
}

/// Restart delays after consecutive crashes: Kubernetes' CrashLoopBackOff.
public struct BackoffPolicy: Sendable, Equatable, Codable {
    /// The delay before the second consecutive restart (the first is immediate).
    public var initial: Duration
    public var max: Duration
    /// A worker that ran this long before exiting starts a fresh streak.
    public var resetAfter: Duration
    /// Each delay is stretched by a random factor in [1 - jitter, 1 + jitter] (capped at `max`).
    public var jitter: Double

    public init(initial: Duration = .seconds(1), max: Duration = .seconds(300), resetAfter: Duration = .seconds(600), jitter: Double = 0.1) {
        self.initial = initial
        self.max = max
        self.resetAfter = resetAfter
        self.jitter = jitter
    }
}

/// A number of replicas, absolute or as a percentage of the pool's desired replicas, as Kubernetes'
/// `maxUnavailable: 1` or `"25%"`.
public enum ReplicaAmount: Sendable, Equatable, CustomStringConvertible, Codable {
    case count(Int)
    case percent(Int)

    /// The amount for a pool of `total` replicas; percentages round up or down as the caller says
    /// (Kubernetes rounds a Deployment's maxUnavailable down and a budget's minAvailable up).
    public func of(_ total: Int, roundingUp: Bool) -> Int {
        switch self {
        case .count(let n): return n
        case .percent(let p): return roundingUp ? (total * p + 99) / 100 : total * p / 100
        }
    }

    public var description: String {
        switch self {
        case .count(let n): "\(n)"
        case .percent(let p): "\(p)%"
        }
    }
}

/// `[pools.X.disruption_budget]`: like a PodDisruptionBudget, a floor under the ready workers that
/// voluntary disruptions (rolling replacements, scale-downs) respect. Crashes and the watchdog are
/// involuntary and ignore it; so does a stop of the whole supervisor.
public enum DisruptionBudget: Sendable, Equatable, CustomStringConvertible, Codable {
    case minAvailable(ReplicaAmount)
    case maxUnavailable(ReplicaAmount)

    /// How many workers must stay ready in a pool of `desired` replicas.
    public func minimumReady(of desired: Int) -> Int {
        switch self {
        case .minAvailable(let a): min(a.of(desired, roundingUp: true), desired)
        case .maxUnavailable(let a): max(desired - a.of(desired, roundingUp: true), 0)
        }
    }

    public var description: String {
        switch self {
        case .minAvailable(let a): "min_available = \(a)"
        case .maxUnavailable(let a): "max_unavailable = \(a)"
        }
    }
}

/// An env file named in the pools file, resolved against the pools file's directory.
public struct EnvFileReference: Sendable, Equatable, Codable {
    /// As written in the pools file.
    public var written: String
    /// Absolute (or relative to the working directory when the pools file path was relative).
    public var path: String

    public init(written: String, path: String) {
        self.written = written
        self.path = path
    }
}

/// Everything a worker is started with but its replica's own variables. A pool's workers are replaced
/// (the pool rolls) exactly when its template changes: `==` is the compiler's, and `WorkerLaunch` is
/// built from the template alone, so a field that reaches a worker cannot miss a rollout.
public struct WorkerTemplate: Sendable, Equatable, Codable {
    /// argv, including argv[0] as written in the pools file.
    public var command: [String]
    /// `command[0]` resolved against the worker's PATH when the file was loaded.
    public var executable: String
    public var workingDirectory: String?
    /// Everything the worker's environment holds but the per-replica variables, layered in the
    /// documented order and including poolvisor's subscription variables when the file uses them.
    public var environment: Environment
    /// The worker gets a NOTIFY_SOCKET (`readiness = "notify"`, or a watchdog).
    public var notifySocket = false
    /// With a watchdog, a worker that does not send WATCHDOG=1 within this interval is killed and restarted.
    public var watchdog: Duration?
    /// `user` / `group`: who the workers run as; nil for the supervisor's own user.
    public var identity: WorkerIdentity?
    /// `cpus`: the CPUs the workers may run on; nil for all.
    public var cpus: [Int]?
    /// `nice`: -20 (first) to 19 (last); nil to inherit.
    public var nice: Int?
    /// `umask`; nil to inherit.
    public var umask: UInt32?
    public var resources = Resources()
    /// Arguments of `command` (by index) and `[pools.X.env]` values that differ per replica
    /// (`{replica}`): `command` and `environment` hold their template text, and each launch expands them.
    public var perReplicaArguments: [Int: ReplicaTemplate] = [:]
    public var perReplicaEnvironment: [String: ReplicaTemplate] = [:]

    /// What differs from `old`, in the pools file's words: names only; an environment change lists
    /// keys, never values; `subscriptionVariables` changed are named "subscription". Not empty
    /// whenever the templates differ.
    public func changes(from old: WorkerTemplate, subscriptionVariables own: Set<String>) -> [String] {
        var changes: [String] = []
        if command != old.command || executable != old.executable || perReplicaArguments != old.perReplicaArguments { changes.append("command") }
        if workingDirectory != old.workingDirectory { changes.append("working_directory") }
        let keys = Set(environment.keys).union(old.environment.keys).filter {
            environment[$0] != old.environment[$0] || perReplicaEnvironment[$0] != old.perReplicaEnvironment[$0]
        }
        if !keys.isDisjoint(with: own) { changes.append("subscription") }
        let others = keys.subtracting(own).sorted()
        if !others.isEmpty { changes.append("environment (\(others.joined(separator: ", ")))") }
        if notifySocket != old.notifySocket { changes.append("readiness") }
        if watchdog != old.watchdog { changes.append("watchdog_seconds") }
        if identity != old.identity { changes.append("user") }
        if cpus != old.cpus { changes.append("cpus") }
        if nice != old.nice { changes.append("nice") }
        if umask != old.umask { changes.append("umask") }
        if resources != old.resources { changes.append("resources") }
        if changes.isEmpty && self != old { changes.append("the workers' start settings") }
        return changes
    }
}

/// One pool as the pools file describes it: the desired state. What runs is `Reconciler.Pool`.
public struct PoolSpec: Sendable, Equatable, Codable {
    /// The most replicas a pool may have, in the file or by `poolvisor scale`.
    public static let maximumReplicas = 10_000

    public var name: String
    public var enabled: Bool = true
    /// What each worker is started with; a change replaces the running workers.
    public var template: WorkerTemplate
    public var replicas: Int = 1
    /// nil unless the pools file uses Noxus's subscription keys; then `worker_subscribe`, "all_but_kb"
    /// when this pool does not write it.
    public var subscription: QueueSubscription?
    public var tenants: [String] = []
    public var workspaces: [String] = []
    /// `serves`: the queues this pool's workers take, as written; nil when not written.
    public var serves: [String]?
    public var envFile: EnvFileReference?
    /// Only the pool's own `[pools.X.env]`, for `check`; the worker sees `environment`.
    public var inlineEnvironmentKeys: [String] = []
    public var drain: Duration
    /// `stop_signal`: what starts a drain (SIGTERM by default); SIGKILL follows after `drain`.
    public var stopSignal: Signal = .terminate
    public var readiness: Readiness {
        didSet { template.notifySocket = needsNotifySocket }
    }
    /// A worker that has not become ready after this long is shown as Running, not ready.
    public var readyTimeout: Duration
    public var backoff: BackoffPolicy
    /// `[pools.X.rollout] max_unavailable`: how many replicas a rolling replacement may have down at
    /// once (at least 1; a percentage rounds down).
    public var maxUnavailable: ReplicaAmount = .count(1)
    public var disruptionBudget: DisruptionBudget?
    /// `[pools.X.autoscaling]` when enabled: the autoscaler sets the replicas, not `replicas`.
    public var autoscaling: PoolAutoscaling?
    /// `[pools.X.startup_probe]`, `readiness_probe`, `liveness_probe`.
    public var probes = Probes()
    /// `busy_from = "redis-key"`: the key (`busy_key`, `{pid}` left for each worker) whose existence
    /// means the worker is in the middle of a job, read at each heartbeat.
    public var busyKey: String?
    /// `depends_on`: jobs that must have completed, and pools that must have been Ready, before this
    /// pool's first worker starts.
    public var dependsOn: [String] = []

    // The template's fields, for the decoder, `check` and tests.
    public var command: [String] {
        get { template.command }
        set { template.command = newValue }
    }
    public var executable: String {
        get { template.executable }
        set { template.executable = newValue }
    }
    public var workingDirectory: String? {
        get { template.workingDirectory }
        set { template.workingDirectory = newValue }
    }
    public var environment: Environment {
        get { template.environment }
        set { template.environment = newValue }
    }
    public var watchdog: Duration? {
        get { template.watchdog }
        set {
            template.watchdog = newValue
            template.notifySocket = needsNotifySocket
        }
    }
    public var identity: WorkerIdentity? {
        get { template.identity }
        set { template.identity = newValue }
    }
    public var cpus: [Int]? {
        get { template.cpus }
        set { template.cpus = newValue }
    }
    public var nice: Int? {
        get { template.nice }
        set { template.nice = newValue }
    }
    public var umask: UInt32? {
        get { template.umask }
        set { template.umask = newValue }
    }
    public var resources: Resources {
        get { template.resources }
        set { template.resources = newValue }
    }

    /// The queues this pool's workers take: `serves`, or else what its subscription implies; nil when
    /// the file says neither.
    public var servedQueues: [String]? { serves ?? subscription?.servedQueueTypes.map(\.rawValue) }

    /// What differs from `old` in what a worker runs, in the pools file's words: a non-empty answer
    /// means the running workers are replaced.
    public func workerChanges(from old: PoolSpec) -> [String] {
        // Without a subscription the WORKER_SUBSCRIBE* variables are the pool's own environment.
        let own = subscription == nil && old.subscription == nil ? [] : Set(WorkerVariable.subscription)
        return template.changes(from: old.template, subscriptionVariables: own)
    }

    /// What a new worker of this pool waits for before it is Ready: a readiness probe takes the place
    /// of `ready_after_seconds`; with `readiness = "notify"` both READY=1 and the probe must hold.
    public var awaiting: Awaiting {
        var awaiting: Awaiting = []
        if probes.startup != nil { awaiting.insert(.startup) }
        if probes.readiness != nil { awaiting.insert(.probe) }
        switch readiness {
        case .notify: awaiting.insert(.notify)
        case .started: if probes.readiness == nil { awaiting.insert(.delay) }
        }
        return awaiting
    }

    /// Workers of this pool get a NOTIFY_SOCKET.
    public var needsNotifySocket: Bool { readiness == .notify || template.watchdog != nil }

    /// How many replicas a rolling replacement of `desired` may take down at once.
    public func rolloutAllowance(desired: Int) -> Int { max(maxUnavailable.of(desired, roundingUp: false), 1) }

    /// Settings that changed and apply without replacing a worker.
    public func settingChanges(from old: PoolSpec) -> [String] {
        var changes: [String] = []
        if drain != old.drain { changes.append("drain_seconds") }
        if stopSignal != old.stopSignal { changes.append("stop_signal") }
        if readiness != old.readiness && needsNotifySocket == old.needsNotifySocket { changes.append("readiness") }
        if readyTimeout != old.readyTimeout { changes.append("ready_timeout_seconds") }
        if backoff != old.backoff { changes.append("backoff") }
        if maxUnavailable != old.maxUnavailable { changes.append("rollout") }
        if disruptionBudget != old.disruptionBudget { changes.append("disruption_budget") }
        if autoscaling != old.autoscaling { changes.append("autoscaling") }
        if serves != old.serves { changes.append("serves") }
        for kind in ProbeKind.allCases where probes[kind] != old.probes[kind] { changes.append(kind.key) }
        if dependsOn != old.dependsOn { changes.append("depends_on") }
        if busyKey != old.busyKey { changes.append("busy_from") }
        return changes
    }

    public init(
        name: String, command: [String], executable: String? = nil, drain: Duration = .seconds(30),
        readiness: Readiness = .started(after: .seconds(1)), readyTimeout: Duration = .seconds(60),
        backoff: BackoffPolicy = BackoffPolicy(), environment: Environment = Environment()
    ) {
        self.name = name
        self.template = WorkerTemplate(
            command: command, executable: executable ?? command.first ?? "", environment: environment,
            notifySocket: readiness == .notify)
        self.drain = drain
        self.readiness = readiness
        self.readyTimeout = readyTimeout
        self.backoff = backoff
    }
}

/// The `[supervisor]` table.
public struct SupervisorSpec: Sendable, Equatable, Codable {
    /// Instance name, like a Helm release; exported to workers as POOLVISOR_INSTANCE.
    public var name: String = "poolvisor"
    public var envFile: EnvFileReference?
    /// Keys of the shared `[env]` table, for `check`.
    public var inlineEnvironmentKeys: [String] = []
    public var drain: Duration = .seconds(30)
    /// READY=1 goes to systemd when every worker is ready, or after this long with the truth in STATUS.
    public var readyTimeout: Duration = .seconds(60)
    /// `control_socket`: where the control socket is served instead of the default.
    public var controlSocket: String?
    /// `control_group`: members may read status over the control socket.
    public var controlGroup: GroupName?
    /// `metrics_listen`: where `GET /metrics` is served (off when nil).
    public var metricsListen: ListenAddress?
    /// `[supervisor.redis_events]`.
    public var redisEvents: RedisEventsSpec?
    /// `[supervisor.fleet]`.
    public var fleet: FleetSpec?
    /// `queues`: the queues the application has, each of which some pool should serve; nil when not
    /// written.
    public var queues: [String]?

    public init() {}
}

/// A Unix group, by name and as resolved when the file was loaded.
public struct GroupName: Sendable, Equatable, Codable {
    public var name: String
    public var id: UInt32
    public init(name: String, id: UInt32) {
        self.name = name
        self.id = id
    }
}

/// A pools file as read: the valid file, or nil when there is at least one error, and every finding.
public struct PoolsFileReading: Sendable, Equatable {
    /// `nil` when there is at least one error.
    public var file: PoolsFile?
    public var diagnostics: [Diagnostic]

    public init(file: PoolsFile?, diagnostics: [Diagnostic]) {
        self.file = file
        self.diagnostics = diagnostics
    }
}

/// A whole, valid pools file.
public struct PoolsFile: Sendable, Equatable, Codable {
    public var path: String
    public var supervisor: SupervisorSpec
    /// Sorted by name.
    public var pools: [PoolSpec]
    /// `[jobs.NAME]`, sorted by name.
    public var jobs: [JobSpec]

    public init(path: String, supervisor: SupervisorSpec, pools: [PoolSpec], jobs: [JobSpec] = []) {
        self.path = path
        self.supervisor = supervisor
        self.pools = pools.sorted { $0.name < $1.name }
        self.jobs = jobs.sorted { $0.name < $1.name }
    }

    public func pool(named name: String) -> PoolSpec? { pools.first { $0.name == name } }
    public func job(named name: String) -> JobSpec? { jobs.first { $0.name == name } }
}
