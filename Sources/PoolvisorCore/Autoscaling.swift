/// The autoscaler's arithmetic, as Kubernetes and KEDA do it, with no I/O: metric values in, a desired
/// replica count out, with the HPA v2 behaviour (stabilization windows, rate policies) applied over
/// time. The scaler sources (PostgreSQL, Redis, CPU, cron) that produce the values live at the edge.

/// One trigger's reading.
public enum TriggerReading: Sendable, Equatable, Codable {
    /// KEDA: a queue metric (rows, list length, stream lag) and the target per replica; the trigger is
    /// active (wants at least one replica) above `activation`.
    case queue(name: String, value: Double, target: Double, activation: Double)
    /// HPA: the pool's CPU utilisation in percent of its requests, and the target percentage.
    case cpu(utilisation: Double, target: Double)
    /// A cron window: while it is open, at least `replicas`.
    case cron(name: String, replicas: Int, open: Bool)
}

extension TriggerReading {
    /// A queue's depth and a cron window are the fleet's, split between its hosts; CPU is this host's.
    var isFleetWide: Bool {
        switch self {
        case .queue, .cron: true
        case .cpu: false
        }
    }
}

/// HPA v2 `behavior.scaleUp` / `scaleDown`.
public struct ScalingRules: Sendable, Equatable, Codable {
    public enum PolicyType: String, Sendable, Codable { case pods = "Pods", percent = "Percent" }
    public struct Policy: Sendable, Equatable, Codable {
        public var type: PolicyType
        public var value: Int
        public var period: Duration
        public init(_ type: PolicyType, _ value: Int, per period: Duration) {
            self.type = type
            self.value = value
            self.period = period
        }
    }
    public enum Select: String, Sendable, Codable { case max = "Max", min = "Min", disabled = "Disabled" }

    public var stabilizationWindow: Duration
    public var policies: [Policy]
    public var select: Select

    public init(stabilizationWindow: Duration, policies: [Policy], select: Select = .max) {
        self.stabilizationWindow = stabilizationWindow
        self.policies = policies
        self.select = select
    }

    /// Kubernetes' defaults: up at once, by 100 % or 4 pods per 15 s, whichever is more.
    public static let defaultScaleUp = ScalingRules(
        stabilizationWindow: .zero, policies: [Policy(.percent, 100, per: .seconds(15)), Policy(.pods, 4, per: .seconds(15))])
    /// Kubernetes' defaults: down after a 300 s window, by up to 100 % per 15 s.
    public static let defaultScaleDown = ScalingRules(
        stabilizationWindow: .seconds(300), policies: [Policy(.percent, 100, per: .seconds(15))])
}

/// An autoscaled pool's settings.
public struct AutoscalingSpec: Sendable, Equatable, Codable {
    public var minReplicas: Int
    public var maxReplicas: Int
    /// KEDA's cooldownPeriod: how long every queue trigger must be inactive before scaling to zero.
    public var cooldown: Duration = .seconds(300)
    public var scaleUp = ScalingRules.defaultScaleUp
    public var scaleDown = ScalingRules.defaultScaleDown
    /// The HPA's tolerance: a CPU ratio within 1 ± this changes nothing.
    public var tolerance = 0.1

    public init(minReplicas: Int, maxReplicas: Int) {
        self.minReplicas = minReplicas
        self.maxReplicas = maxReplicas
    }

    /// `replicas` within min_replicas…max_replicas.
    public func bounded(_ replicas: Int) -> Int {
        min(max(replicas, minReplicas), maxReplicas)
    }
}

/// One pool's autoscaler: keeps the recommendations and scale events the behaviour rules look back on.
public struct Autoscaler: Sendable, Codable {
    public struct Decision: Sendable, Equatable {
        public var replicas: Int
        /// Why, for status and the log: "queue chat: 23 / 5 per replica → 5", "stabilizing: …".
        public var reason: String
        /// In a fleet: what the queue and cron triggers ask of the whole fleet, and this host's share of
        /// it (before min/max and the behaviour). Nil alone.
        public var fleet: FleetPart?

        public static func == (a: Decision, b: Decision) -> Bool {
            a.replicas == b.replicas && a.reason == b.reason && a.fleet?.desired == b.fleet?.desired && a.fleet?.share == b.fleet?.share
        }
    }

    public var spec: AutoscalingSpec
    private var recommendations: [Recommendation] = []
    private var events: [Change] = []

    /// A recommendation of the stabilization windows.
    private struct Recommendation: Sendable, Codable {
        var at: Instant
        var replicas: Int
    }

    /// A scale event the policies' periods look back on.
    private struct Change: Sendable, Codable {
        var at: Instant
        var change: Int
    }
    private var lastActive: Instant?

    public init(spec: AutoscalingSpec) {
        self.spec = spec
    }

    /// The replicas the pool should have now, given its current count and the triggers' readings.
    /// - Parameter share: in a fleet, this host's part: the queue and cron triggers ask for the whole
    ///   fleet, and this host takes its share of that before min/max and the behaviour, which work on
    ///   its own replicas. CPU is this host's own and is not split.
    public mutating func decide(current: Int, readings: [TriggerReading], share: FleetShare = .alone, at now: Instant) -> Decision {
        // 1. What each trigger asks for; the largest wins (KEDA and the HPA alike).
        var wanted = 0
        var why = "no trigger asks for replicas"
        var active = false
        var fleetWanted = 0
        for reading in readings {
            var (replicas, text, isActive) = recommendation(reading, current: current)
            active = active || isActive
            if share != .alone, reading.isFleetWide {
                // Above activation the fleet needs one replica, not one per host.
                let fleetWide = isActive ? max(replicas, 1) : replicas
                fleetWanted = max(fleetWanted, fleetWide)
                replicas = share.of(fleetWide)
                text += " for the fleet; this host's share \(replicas) (member \(share.index + 1) of \(share.count))"
            }
            if replicas > wanted || (replicas == wanted && why.hasPrefix("no trigger")) {
                wanted = replicas
                why = text
            }
        }
        if active { lastActive = now }

        // 2. Scale to zero only after the cooldown, and only when min_replicas allows it.
        var floor = spec.minReplicas
        if floor == 0 {
            let cooling = lastActive.map { now.since($0) < spec.cooldown } ?? false
            // The fleet keeps one replica through the cooldown, on the host whose share it is.
            if wanted == 0 && current > 0 && cooling && share.of(1) > 0 {
                floor = 1
                why = "idle, scaling to zero after the \(spec.cooldown.humanReadable) cooldown"
            }
        }
        var desired = min(max(wanted, floor), spec.maxReplicas)
        if desired != wanted && wanted > spec.maxReplicas { why += " (capped at max_replicas \(spec.maxReplicas))" }
        if desired != wanted && wanted < floor && floor == spec.minReplicas { why += " (min_replicas \(spec.minReplicas))" }

        // 3. Stabilization: the most conservative recommendation within each direction's window.
        // The window holds the earlier recommendations younger than it, and this one.
        recommendations.append(Recommendation(at: now, replicas: desired))
        let longest = max(spec.scaleUp.stabilizationWindow, spec.scaleDown.stabilizationWindow)
        recommendations.removeAll { now.since($0.at) > longest }
        func within(_ window: Duration) -> [Recommendation] {
            recommendations.dropLast().filter { now.since($0.at) < window } + [recommendations.last!]
        }
        if desired < current {
            let window = within(spec.scaleDown.stabilizationWindow)
            let held = min(window.map(\.replicas).max() ?? desired, current)
            if held > desired {
                why = "scale-down stabilizing (\(spec.scaleDown.stabilizationWindow.humanReadable) window): \(held), wanted \(desired)"
                desired = held
            }
        } else if desired > current {
            let window = within(spec.scaleUp.stabilizationWindow)
            let held = max(window.map(\.replicas).min() ?? desired, current)
            if held < desired {
                why = "scale-up stabilizing (\(spec.scaleUp.stabilizationWindow.humanReadable) window): \(held), wanted \(desired)"
                desired = held
            }
        }

        // 4. Rate policies over each period.
        if desired > current {
            let limit = limit(spec.scaleUp, current: current, up: true, now)
            if desired > limit {
                why = "scale-up limited by policy to \(limit) (wanted \(desired))"
                desired = limit
            }
        } else if desired < current {
            let limit = limit(spec.scaleDown, current: current, up: false, now)
            if desired < limit {
                why = "scale-down limited by policy to \(limit) (wanted \(desired))"
                desired = limit
            }
        }
        if desired != current { events.append(Change(at: now, change: desired - current)) }
        let longestPeriod = (spec.scaleUp.policies + spec.scaleDown.policies).map(\.period).max() ?? .zero
        events.removeAll { now.since($0.at) > longestPeriod }
        return Decision(replicas: desired, reason: why, fleet: share == .alone ? nil : FleetPart(desired: fleetWanted, share: share.of(fleetWanted)))
    }

    /// What one trigger asks for: KEDA's ceil(metric / target), the HPA's ceil(current × ratio) with
    /// its tolerance, or a cron window's floor.
    private func recommendation(_ reading: TriggerReading, current: Int) -> (Int, String, Bool) {
        switch reading {
        case .queue(let name, let value, let target, let activation):
            let active = value > activation
            guard active, target > 0 else { return (0, "\(name): \(Self.number(value)) (not above activation \(Self.number(activation)))", false) }
            let replicas = Int(saturating: (value / target).rounded(.up))
            return (replicas, "\(name): \(Self.number(value)) / \(Self.number(target)) per replica → \(replicas)", true)
        case .cpu(let utilisation, let target):
            guard target > 0, current > 0 else { return (current, "cpu: no workers to measure", false) }
            let ratio = utilisation / target
            if abs(ratio - 1) <= spec.tolerance {
                return (current, "cpu: \(Self.number(utilisation))% of request, target \(Self.number(target))% (within tolerance)", true)
            }
            let replicas = Int(saturating: (Double(current) * ratio).rounded(.up))
            return (replicas, "cpu: \(Self.number(utilisation))% of request, target \(Self.number(target))% → \(replicas)", true)
        case .cron(let name, let replicas, let open):
            return open ? (replicas, "\(name): window open → \(replicas)", true) : (0, "\(name): window closed", false)
        }
    }

    /// The furthest the policies let the pool move from `current` now, as the HPA computes it from the
    /// replica count at the start of each policy's period.
    private func limit(_ rules: ScalingRules, current: Int, up: Bool, _ now: Instant) -> Int {
        guard rules.select != .disabled, !rules.policies.isEmpty else { return current }
        let limits = rules.policies.map { policy -> Int in
            let changed = events.filter { now.since($0.at) < policy.period }.map(\.change).filter { up ? $0 > 0 : $0 < 0 }.reduce(0, +)
            let start = current - changed
            switch (policy.type, up) {
            case (.pods, true): return start + policy.value
            case (.percent, true): return Int(saturating: (Double(start) * (1 + Double(policy.value) / 100)).rounded(.up))
            case (.pods, false): return start - policy.value
            case (.percent, false): return Int(saturating: (Double(start) * (1 - Double(policy.value) / 100)).rounded(.down))
            }
        }
        // Max: the policy that allows the most change; Min: the least.
        let pick: Int
        switch (rules.select, up) {
        case (.max, true), (.min, false): pick = limits.max()!
        default: pick = limits.min()!
        }
        return up ? max(pick, current) : min(pick, current)
    }

    public static func number(_ x: Double) -> String {
        if x == x.rounded() && abs(x) < 1e15 { return String(Int(x)) }
        return abs(x) < 1e15 ? String(Double(Int(x * 10)) / 10) : String(x)
    }
}
