/// Kubernetes' three probes: a startup probe holds the other two off until it first passes, a
/// readiness probe decides Ready, a liveness probe kills a worker that stopped answering.
public enum ProbeKind: String, Sendable, CaseIterable, Comparable, Codable {
    case startup, readiness, liveness

    public static func < (a: ProbeKind, b: ProbeKind) -> Bool { a.order < b.order }
    private var order: Int {
        switch self {
        case .startup: 0
        case .readiness: 1
        case .liveness: 2
        }
    }

    /// Its table in the pools file: `startup_probe`.
    public var key: String { "\(rawValue)_probe" }
}

/// A value of a probe that may differ per replica (`port = "{replica + 8000}"`): written in at load,
/// or a template expanded for each worker.
public enum ProbeValue: Sendable, Equatable, CustomStringConvertible, Codable {
    case fixed(String)
    case perReplica(ReplicaTemplate)

    public func value(for replica: Int, pool: String) -> String {
        switch self {
        case .fixed(let text): text
        case .perReplica(let template): template.expand(pool: pool, instance: "", hostname: "", replica: replica)
        }
    }

    public var description: String {
        switch self {
        case .fixed(let text): text
        case .perReplica(let template): template.description
        }
    }
}

/// An HTTP request header a probe sends.
public struct HTTPHeader: Sendable, Equatable, Codable {
    public var name: String
    public var value: String
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// What a probe does, as the pools file says it: exactly one of `exec`, `http_get`, `tcp_socket`.
public enum ProbeHandler: Sendable, Equatable, Codable {
    /// A command in the worker's environment, user, working directory and cgroup: exit 0 is success.
    /// `executable` is `arguments[0]` resolved against the worker's PATH at load.
    case exec(executable: String, arguments: [ProbeValue])
    /// GET `path` from `host`:`port` (an IP address); 2xx and 3xx are success.
    case httpGet(host: String, port: ProbeValue, path: ProbeValue, headers: [HTTPHeader])
    /// A connect to `host`:`port` is success.
    case tcpSocket(host: String, port: ProbeValue)

    /// "exec", "http_get", "tcp_socket": the pools file's word.
    public var kind: String {
        switch self {
        case .exec: "exec"
        case .httpGet: "http_get"
        case .tcpSocket: "tcp_socket"
        }
    }
}

/// One probe of a pool: what it does and Kubernetes' timing fields, with Kubernetes' defaults.
public struct ProbeSpec: Sendable, Equatable, Codable {
    public var handler: ProbeHandler
    /// From the worker's start to its first probe of this kind.
    public var initialDelay: Duration = .zero
    public var period: Duration = .seconds(10)
    /// A probe not answered by then has failed (an exec probe is killed).
    public var timeout: Duration = .seconds(1)
    /// Consecutive successes after a failure before it counts as passing (1 for liveness and startup).
    public var successThreshold = 1
    /// Consecutive failures before it counts as failing.
    public var failureThreshold = 3
    /// A liveness or startup probe's own drain period for the worker it kills (the pool's otherwise).
    public var terminationGracePeriod: Duration?

    public init(handler: ProbeHandler) { self.handler = handler }
}

/// One value per probe kind: a pool's probes (`Probes`), a worker's tallies (`WorkerProbes`).
public struct ProbeKinds<Value: Sendable & Equatable>: Sendable, Equatable {
    public var startup: Value?
    public var readiness: Value?
    public var liveness: Value?

    public init(startup: Value? = nil, readiness: Value? = nil, liveness: Value? = nil) {
        self.startup = startup
        self.readiness = readiness
        self.liveness = liveness
    }

    public var isEmpty: Bool { startup == nil && readiness == nil && liveness == nil }

    public subscript(kind: ProbeKind) -> Value? {
        get {
            switch kind {
            case .startup: startup
            case .readiness: readiness
            case .liveness: liveness
            }
        }
        set {
            switch kind {
            case .startup: startup = newValue
            case .readiness: readiness = newValue
            case .liveness: liveness = newValue
            }
        }
    }
}

/// A pool's probes. Changing them applies to the running workers at their next probe: nothing restarts.
public typealias Probes = ProbeKinds<ProbeSpec>

extension ProbeKinds: Codable where Value: Codable {}

/// What one probe found.
public enum ProbeOutcome: Sendable, Equatable {
    case success
    /// Why, in a few words ("HTTP 500", "connection refused", "exit code 1"); for an exec probe, the
    /// last lines of its output.
    case failure(String, output: [String] = [])

    /// Lines of an exec probe's output kept for status.
    public static let keptLines = 5
}

/// One probe for the edge to run now: the handler expanded for the worker.
public struct ProbeRun: Sendable, Equatable, Codable {
    /// Names this attempt: its answer (`Event.probed`) and a cancel (`Action.cancelProbe`) carry it.
    public var attempt: UInt64
    public var pid: Int32
    public var kind: ProbeKind
    public var check: ProbeCheck
}

/// A probe's handler for one worker, every template expanded.
public enum ProbeCheck: Sendable, Equatable, Codable {
    /// Started as the worker is (its environment, user, working directory, cgroup), with this argv.
    case exec(WorkerLaunch)
    case httpGet(host: String, port: Int, path: String, headers: [HTTPHeader])
    case tcpSocket(host: String, port: Int)
}

/// How a worker's probe of one kind is doing: the counts Kubernetes keeps, for decisions and status.
public struct ProbeTally: Sendable, Equatable, Codable {
    /// nil until the thresholds first decide; then whether it passes.
    public internal(set) var passing: Bool?
    public internal(set) var successes = 0
    public internal(set) var failures = 0
    /// Why the last failure failed, and an exec probe's last lines of output.
    public internal(set) var lastFailure: String?
    public internal(set) var lastOutput: [String] = []
    public internal(set) var lastProbeAt: Instant?
    /// The attempt under way, and when it started.
    var inFlight: UInt64?
    var startedAt: Instant?
    /// When the next probe is due (the `.probe` timer for it carries the same instant).
    var due: Instant?

    public init() {}

    /// Where the thresholds went with this result.
    public enum Turn: Sendable, Equatable {
        case none
        /// `success_threshold` successes in a row after not passing.
        case nowPassing
        /// `failure_threshold` failures in a row.
        case nowFailing(String)
    }

    /// Counts one result against the probe's thresholds.
    public mutating func record(_ outcome: ProbeOutcome, _ spec: ProbeSpec, at now: Instant) -> Turn {
        lastProbeAt = now
        switch outcome {
        case .success:
            successes += 1
            failures = 0
            guard passing != true, successes >= spec.successThreshold else { return .none }
            passing = true
            return .nowPassing
        case .failure(let why, let output):
            failures += 1
            successes = 0
            lastFailure = why
            lastOutput = output
            guard failures >= spec.failureThreshold, passing != false else { return .none }
            passing = false
            return .nowFailing(why)
        }
    }
}

/// A worker's probes as they stand. Kept beside the worker, only for pools with probes.
public typealias WorkerProbes = ProbeKinds<ProbeTally>
