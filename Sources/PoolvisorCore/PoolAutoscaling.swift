/// `[pools.X.autoscaling]` as the pools file describes it (with `[keda]`'s defaults filled in): which
/// triggers, what arithmetic, how often. The arithmetic is `Autoscaler`'s; reading the triggers is the
/// edge's (a scaler thread per queue source, the workers' cgroups for CPU, the wall clock for cron).
public struct PoolAutoscaling: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable {
        /// Queue triggers (PostgreSQL, Redis) and a cron window, as a KEDA ScaledObject.
        case keda
        /// CPU utilisation of `resources.cpu_request`, as a HorizontalPodAutoscaler.
        case hpa
    }

    public var kind: Kind
    /// Bounds, cooldown to zero, scale-up and scale-down behaviour.
    public var rules: AutoscalingSpec
    /// How often the triggers are read (KEDA's pollingInterval, the HPA's sync period).
    public var pollingInterval: Duration
    /// KEDA: the queue trigger, if any.
    public var queue: QueueTrigger?
    /// HPA: the target CPU utilisation, in percent of `resources.cpu_request`.
    public var cpuTarget: Double?
    /// KEDA: a window that holds a floor of replicas.
    public var cron: CronTrigger?
    /// KEDA's fallback: after `failureThreshold` failed readings in a row, run `replicas`.
    public var fallback: Fallback?
    /// Replicas before the first reading: the pool's `replicas` when written, else `min_replicas`.
    public var initialReplicas: Int

    public struct Fallback: Sendable, Equatable, Codable {
        public var failureThreshold: Int
        public var replicas: Int
        public init(failureThreshold: Int, replicas: Int) {
            self.failureThreshold = failureThreshold
            self.replicas = replicas
        }
    }

    public init(kind: Kind, rules: AutoscalingSpec, pollingInterval: Duration, initialReplicas: Int) {
        self.kind = kind
        self.rules = rules
        self.pollingInterval = pollingInterval
        self.initialReplicas = initialReplicas
    }

    /// "keda: postgres query, cron office hours", "hpa: cpu 75%".
    public var summary: String {
        var triggers: [String] = []
        if let queue { triggers.append(queue.name) }
        if let cpuTarget { triggers.append("cpu \(Autoscaler.number(cpuTarget))% of request") }
        if let cron { triggers.append(cron.name) }
        return "\(kind.rawValue): \(triggers.joined(separator: ", "))"
    }
}

/// A KEDA queue trigger: a metric read from PostgreSQL or Redis, and the target per replica.
public struct QueueTrigger: Sendable, Equatable, Codable {
    public enum Source: Sendable, Equatable, Codable {
        /// A query that returns one number (KEDA's postgresql scaler).
        case postgres(connection: Secret, query: String)
        /// A queue's depth in Redis, laid out as its library lays it out.
        case redis(endpoint: Secret, queue: RedisQueue)
    }

    public var source: Source
    /// targetQueryValue / listLength: jobs one replica takes on.
    public var target: Double
    /// activationTargetQueryValue / activationListLength: above this, at least one replica.
    public var activation: Double
    /// The environment variable the connection string came from, for messages (never its value).
    public var connectionVariable: String

    public init(source: Source, target: Double, activation: Double, connectionVariable: String) {
        self.source = source
        self.target = target
        self.activation = activation
        self.connectionVariable = connectionVariable
    }

    /// "postgres query", "redis arq arq:queue:chat".
    public var name: String {
        switch source {
        case .postgres: "postgres query"
        case .redis(_, let queue): "redis \(queue.description)"
        }
    }
}

/// A value that must never be printed: a connection string with its password. Every textual form is
/// `<secret>`; only the edge's client reads `value`.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable, Codable {
    public let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { "<secret>" }
    public var debugDescription: String { "<secret>" }
    public var customMirror: Mirror { Mirror(self, children: []) }
}

/// KEDA's cron scaler: `replicas` at least while the window between `start` and `end` is open, in
/// `timeZone`'s local time.
public struct CronTrigger: Sendable, Equatable, Codable {
    public var timeZone: String
    public var window: CronWindow
    public var replicas: Int

    public init(timeZone: String, window: CronWindow, replicas: Int) {
        self.timeZone = timeZone
        self.window = window
        self.replicas = replicas
    }

    /// "cron 0 9 * * 1-5 → 0 20 * * 1-5 UTC".
    public var name: String { "cron \(window.start) → \(window.end) \(timeZone)" }
}
