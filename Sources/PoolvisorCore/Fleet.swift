/// `[supervisor.fleet]`: several hosts run the same autoscaled pools against one queue. Each host
/// registers itself in a coordination store every heartbeat and reads the live members; the queue
/// and cron triggers' recommendations are fleet-wide, and each host runs its share of them.
public struct FleetSpec: Sendable, Equatable, Codable {
    public enum Store: Sendable, Equatable, Codable {
        /// A sorted set `poolvisor:fleet:<name>` in this Redis (from `redis_url_env`): never printed.
        case redis(Secret)
        /// Rows of `poolvisor_fleet_members` in this PostgreSQL database (from
        /// `postgres_connection_env`): never printed.
        case postgres(Secret)
    }

    /// The fleet's name: hosts with the same name share their queues' work.
    public var name: String
    public var store: Store
    /// The variable the connection string came from, for messages (never its value).
    public var variable: String
    /// This host's member id (`{hostname}-{instance}` by default).
    public var member: String
    /// How often this host registers itself and reads the members.
    public var heartbeat: Duration = .seconds(5)
    /// A member not heard from for this long is gone; so is this host's own view of the fleet.
    public var ttl: Duration = .seconds(15)

    public init(name: String, store: Store, variable: String, member: String) {
        self.name = name
        self.store = store
        self.variable = variable
        self.member = member
    }

    /// The sorted set the members are kept in (Redis).
    public var key: String { "poolvisor:fleet:\(name)" }

    /// The table the members are kept in (PostgreSQL): a row per member and fleet, stamped with the
    /// server's clock at each heartbeat.
    public static let table = "poolvisor_fleet_members"
}

/// Which part of a fleet-wide count this host runs: it is member `index` (in sorted order) of `count`.
public struct FleetShare: Sendable, Equatable {
    public var index: Int
    public var count: Int

    public init(index: Int, count: Int) {
        self.index = index
        self.count = max(count, 1)
    }

    /// No fleet: the host runs everything.
    public static let alone = FleetShare(index: 0, count: 1)

    /// This host's part of `desired`: an even split, the first `desired % count` members one more.
    /// 6 over 3: 2, 2, 2; 7 over 3: 3, 2, 2; 1 over 3: 1, 0, 0.
    public func of(_ desired: Int) -> Int {
        let d = max(desired, 0)
        return d / count + (index < d % count ? 1 : 0)
    }
}

/// What the reconciler knows of its fleet: the members the store listed last, when this host was last
/// seen in that list, and the store's error if the last heartbeat failed.
public struct FleetState: Sendable, Codable {
    public let spec: FleetSpec
    /// The live members, sorted, as last read.
    public private(set) var members: [String] = []
    /// When the last heartbeat that listed this host came back.
    public private(set) var confirmedAt: Instant?
    /// Why the last heartbeat failed, if it did (never the connection string).
    public private(set) var error: String?
    /// Heartbeats that failed, for metrics.
    public private(set) var failures = 0

    public init(spec: FleetSpec) {
        self.spec = spec
    }

    /// A heartbeat's answer. Returns the members that joined and left when the list changed.
    mutating func read(_ result: Result<[String], ScalerError>, at now: Instant) -> (joined: [String], left: [String])? {
        switch result {
        case .failure(let e):
            error = e.cause
            failures += 1
            return nil
        case .success(let listed):
            let sorted = Array(Set(listed)).sorted()
            guard sorted.contains(spec.member) else {
                error = "this host (\(spec.member)) is not among the fleet's live members"
                failures += 1
                return nil
            }
            error = nil
            confirmedAt = now
            guard sorted != members else { return nil }
            let before = Set(members)
            let after = Set(sorted)
            members = sorted
            return (after.subtracting(before).sorted(), before.subtracting(after).sorted())
        }
    }

    /// This host's share now, or why it cannot know it: the store failed, or this host's membership
    /// is not known yet or older than the TTL.
    public func share(at now: Instant) -> Result<FleetShare, ScalerError> {
        if let error { return .failure(ScalerError("the fleet's store failed: \(error)")) }
        guard let confirmedAt else { return .failure(ScalerError("the fleet's members are not known yet")) }
        let age = now.since(confirmedAt)
        if age > spec.ttl {
            return .failure(ScalerError("the fleet's members were last read \(age.humanReadable) ago (ttl \(spec.ttl.humanReadable))"))
        }
        guard let index = members.firstIndex(of: spec.member) else { return .failure(ScalerError("this host is not a member")) }
        return .success(FleetShare(index: index, count: members.count))
    }

    /// The trigger name a failed share is reported under, like a scaler's.
    public var triggerName: String { "fleet \(spec.name)" }
}
