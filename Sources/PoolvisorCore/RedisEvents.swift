/// `[supervisor.redis_events]`: every lifecycle event XADDed to a Redis stream and a heartbeat hash
/// per worker, the conventions a dashboard reading Aegis Stack's worker events expects.
public struct RedisEventsSpec: Sendable, Equatable, Codable {
    /// The Redis URL (from `redis_url_env`): never printed.
    public var endpoint: Secret
    /// The variable it came from, for messages.
    public var variable: String
    public var stream = "poolvisor:events"
    /// XADD's approximate trim (`MAXLEN ~`).
    public var maxlen = 10_000
    /// How often each worker's heartbeat hash is written; it expires after three of these.
    public var heartbeat: Duration = .seconds(10)
    /// Heartbeat keys are `<prefix>:<instance>:<pool>:<replica>`.
    public var keyPrefix = "poolvisor:worker"

    public init(endpoint: Secret, variable: String) {
        self.endpoint = endpoint
        self.variable = variable
    }

    /// A heartbeat hash lives this long unless written again: a dead host's workers expire.
    public var heartbeatTTL: Duration { heartbeat * 3 }
}

/// One worker's heartbeat, for its hash; and the key whose existence means it is busy (`busy_from`).
public struct WorkerBeat: Sendable, Equatable, Codable {
    public var key: String
    public var pid: Int32
    public var state: String
    /// When it started, as the edge's clock sees it.
    public var startedAt: Instant
    public var restarts: Int
    public var busy: Bool?
    /// `busy_key` with `{pid}` written in, for a pool with `busy_from = "redis-key"`.
    public var busyKey: String?
}
