/// One trigger's reading as the edge took it, or why it could not.
public struct TriggerSample: Sendable, Equatable, Codable {
    /// The trigger's name ("postgres query", "redis arq arq:queue:chat", "cpu", "cron …").
    public var trigger: String
    public var reading: Result<TriggerReading, ScalerError>

    public init(trigger: String, reading: Result<TriggerReading, ScalerError>) {
        self.trigger = trigger
        self.reading = reading
    }

    private enum CodingKeys: String, CodingKey { case trigger, reading, error }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        trigger = try c.decode(String.self, forKey: .trigger)
        if let error = try c.decodeIfPresent(ScalerError.self, forKey: .error) {
            reading = .failure(error)
        } else {
            reading = .success(try c.decode(TriggerReading.self, forKey: .reading))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(trigger, forKey: .trigger)
        switch reading {
        case .success(let value): try c.encode(value, forKey: .reading)
        case .failure(let error): try c.encode(error, forKey: .error)
        }
    }
}

/// A fleet's part of a pool's count: the fleet-wide `desired` and this host's `share` of it.
public struct FleetPart: Sendable, Equatable, Codable {
    public var desired: Int
    public var share: Int
    public init(desired: Int, share: Int) {
        self.desired = desired
        self.share = share
    }
}

/// A change of an autoscaled pool's replicas, for status and the log.
public struct ScaleEvent: Sendable, Equatable, Codable {
    public var at: Instant
    public var from: Int
    public var to: Int
    public var reason: String
}

/// An autoscaled pool's running state: the replicas the autoscaler set, its last readings and
/// decision, and the failures that lead to the fallback. The reconciler feeds it samples and runs the
/// pool at `replicas`.
public struct AutoscaleState: Sendable, Codable {
    public private(set) var config: PoolAutoscaling
    /// What the pool runs now.
    public private(set) var replicas: Int
    public private(set) var samples: [TriggerSample] = []
    public private(set) var sampledAt: Instant?
    /// Why the pool has `replicas`: the last decision's reason.
    public private(set) var reason: String
    public private(set) var lastScale: ScaleEvent?
    /// Failed readings in a row.
    public private(set) var failures = 0
    /// In a fleet: what the queue and cron triggers asked of the whole fleet at the last decision, and
    /// this host's share of it (nil alone, or while the fleet's store fails).
    public private(set) var fleet: FleetPart?
    /// Failed readings so far, by trigger (for the scaler errors counter).
    public private(set) var errorsByTrigger: [String: Int] = [:]
    private var autoscaler: Autoscaler
    /// The last failure logged, so that a source that stays down is not logged at every poll.
    private var loggedFailure: String?

    public init(config: PoolAutoscaling, replicas: Int) {
        self.config = config
        self.replicas = replicas
        self.autoscaler = Autoscaler(spec: config.rules)
        self.reason = "starting at \(replicas), before the first reading"
    }

    /// A new configuration from a reload: the arithmetic starts over (its windows were for the old
    /// rules), the replicas stay where they are within the new bounds.
    mutating func reconfigure(_ new: PoolAutoscaling, pool: String, at now: Instant) -> [LogRecord] {
        let old = config
        config = new
        if new.rules != old.rules { autoscaler = Autoscaler(spec: new.rules) }
        let bounded = new.rules.bounded(replicas)
        guard bounded != replicas else { return [] }
        return scale(to: bounded, why: "within the new bounds \(new.rules.minReplicas)–\(new.rules.maxReplicas)", pool: pool, now)
    }

    /// Applies one round of readings. Any failed reading holds the pool where it is, or after
    /// `failure_threshold` failures in a row runs `fallback_replicas`, as KEDA does. In a fleet, the
    /// queue and cron triggers' recommendations are split by `share`; a fleet whose share is not known
    /// comes as a failed sample, so it holds or falls back the same way.
    mutating func apply(_ new: [TriggerSample], share: FleetShare = .alone, pool: String, at now: Instant) -> [LogRecord] {
        samples = new
        sampledAt = now
        var records: [LogRecord] = []
        let failed = new.compactMap { s -> String? in
            if case .failure(let e) = s.reading { return "\(s.trigger): \(e.cause)" }
            return nil
        }
        for s in new { if case .failure = s.reading { errorsByTrigger[s.trigger, default: 0] += 1 } }
        if !failed.isEmpty {
            fleet = nil
            failures += 1
            let what = failed.joined(separator: "; ")
            var target = replicas
            if let fallback = config.fallback, failures >= fallback.failureThreshold {
                target = fallback.replicas
                reason = "fallback to \(fallback.replicas): \(plural(failures, "failed reading")) in a row (failure_threshold \(fallback.failureThreshold))"
            } else {
                reason = "holding at \(replicas): the scaler failed"
            }
            if loggedFailure != what {
                loggedFailure = what
                records.append(LogRecord(.warning, "pool \(pool): scaler failed: \(what); \(target == replicas ? "holding at \(plural(replicas, "replica"))" : reason)"))
            }
            if target != replicas { records += scale(to: target, why: reason, pool: pool, now) }
            return records
        }
        if failures > 0 {
            records.append(LogRecord(.notice, "pool \(pool): scaler recovered after \(plural(failures, "failed reading"))"))
            failures = 0
            loggedFailure = nil
        }
        let readings = new.compactMap { try? $0.reading.get() }
        let decision = autoscaler.decide(current: replicas, readings: readings, share: share, at: now)
        reason = decision.reason
        fleet = decision.fleet
        if decision.replicas != replicas { records += scale(to: decision.replicas, why: decision.reason, pool: pool, now) }
        return records
    }

    private mutating func scale(to target: Int, why: String, pool: String, _ now: Instant) -> [LogRecord] {
        let from = replicas
        replicas = target
        lastScale = ScaleEvent(at: now, from: from, to: target, reason: why)
        return [LogRecord(.notice, "pool \(pool): autoscaling \(from) → \(plural(target, "replica")) (\(why))")]
    }
}
