/// A worker process: one per spawn, keyed by its pid. It is started for a replica slot and holds it
/// until it exits, or until it is retired (a replacement took the slot, or the slot went) and drains
/// outside it. Either way its lifecycle is the one `WorkerState` machine.
public struct Worker: Sendable, Equatable, Codable {
    public let pid: Int32
    /// The slot it was started for (`kb/3`): where it runs, or where it ran before it was retired.
    public let replica: ReplicaID
    public let startedAt: Instant
    /// The pool's generation it was started with: which template it runs.
    public let generation: Int
    public internal(set) var state: WorkerState
    public internal(set) var readyAt: Instant?
    /// When the worker last sent WATCHDOG=1 (or READY=1, which arms the watchdog).
    public internal(set) var lastWatchdogPing: Instant?
    /// The worker's own last STATUS= line.
    public internal(set) var status: String?
    /// BUSY=1 / BUSY=0 from the worker; nil when it never said. What it says, not where it is.
    public internal(set) var busy: Bool?

    init(pid: Int32, replica: ReplicaID, startedAt: Instant, generation: Int, awaiting: Awaiting) {
        self.pid = pid
        self.replica = replica
        self.startedAt = startedAt
        self.generation = generation
        self.state = .starting(awaiting)
    }
}

/// A worker being stopped: its stop signal has been sent, SIGKILL follows at `deadline`.
public struct Drain: Sendable, Equatable, Codable {
    public enum Cause: String, Sendable, Codable {
        /// The supervisor is stopping.
        case shutdown
        /// The worker missed its watchdog.
        case watchdog
        /// Its replica was removed: `poolvisor scale`, or a pools file with fewer replicas.
        case scaleDown = "scale-down"
        /// A new worker took its place: a rolling replacement after a change, or `poolvisor restart`.
        case replaced = "rolling replacement"
        /// Its pool is gone from the pools file, or disabled.
        case poolRemoved = "pool removed or disabled"
        /// Its liveness probe failed `failure_threshold` times in a row.
        case livenessProbe = "liveness probe failed"
        /// Its startup probe failed `failure_threshold` times in a row: a failed start.
        case startupProbe = "startup probe failed"
    }

    public var cause: Cause
    /// What the probe that failed last said, for the probe causes.
    public var why: String?
    /// What starts it: the pool's stop_signal, or SIGABRT for the watchdog.
    public var signal: Signal
    /// How long the worker has after `signal`; zero means SIGKILL at once.
    public var period: Duration
    /// SIGKILL goes to the process group at this instant if the worker is still there.
    public var deadline: Instant

    public init(cause: Cause, signal: Signal, period: Duration, from now: Instant, why: String? = nil) {
        self.cause = cause
        self.signal = signal
        self.period = period
        self.deadline = now + period
        self.why = why
    }

    /// The reason a worker drained for this cause is said to have ended with, whatever its exit
    /// status; nil when its own exit status says it.
    var exitReason: ExitReason? {
        switch cause {
        case .watchdog: .watchdog
        case .livenessProbe: .livenessProbeFailed(why ?? "no reason given")
        case .startupProbe: .startupProbeFailed(why ?? "no reason given")
        case .shutdown, .scaleDown, .replaced, .poolRemoved: nil
        }
    }
}

/// What a worker that is not ready still waits for. Each condition is met once (the readiness probe
/// can be lost again); the worker is Ready when none is left.
public struct Awaiting: OptionSet, Sendable, Hashable, Codable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Its startup probe's first pass.
    public static let startup = Awaiting(rawValue: 1)
    /// READY=1 (`readiness = "notify"`).
    public static let notify = Awaiting(rawValue: 2)
    /// Its readiness probe passing.
    public static let probe = Awaiting(rawValue: 4)
    /// `ready_after_seconds` of running (`readiness = "started"` without a readiness probe).
    public static let delay = Awaiting(rawValue: 8)

    /// In words, for the log and status: "READY=1 and its readiness probe".
    public var words: String {
        var parts: [String] = []
        if contains(.startup) { parts.append("its startup probe") }
        if contains(.notify) { parts.append("READY=1") }
        if contains(.probe) { parts.append("its readiness probe") }
        if contains(.delay) { parts.append("ready_after_seconds") }
        return parts.joined(separator: " and ")
    }
}

/// Where a worker process is in its life. Every change goes through `Reconciler.apply(_:to:)`, which
/// keeps the counts and emits the log record.
public enum WorkerState: Sendable, Equatable, Codable {
    /// Spawned, not ready yet: waiting for these.
    case starting(Awaiting)
    /// Alive and not ready: it did not become ready within its ready timeout, or its readiness probe
    /// failed (it is not killed for either). Waiting for these.
    case running(Awaiting)
    case ready
    /// Its stop signal was sent; SIGKILL follows at the drain's deadline.
    case draining(Drain)
    /// SIGKILL was sent: at the drain's deadline, at once (a drain period of zero), or on a second SIGINT.
    case killing(Drain)
    /// Reaped. A gone worker leaves the table in the same step.
    case gone(ExitReason)

    public var name: String {
        switch self {
        case .starting: "Starting"
        case .running: "Running"
        case .ready: "Ready"
        case .draining, .killing: "Draining"
        case .gone: "Exited"
        }
    }

    public var drain: Drain? {
        switch self {
        case .draining(let d), .killing(let d): d
        case .starting, .running, .ready, .gone: nil
        }
    }

    /// What a worker that is not ready waits for; empty when it is ready or stopping.
    public var awaiting: Awaiting {
        switch self {
        case .starting(let m), .running(let m): m
        case .ready, .draining, .killing, .gone: []
        }
    }

    public var isStarting: Bool {
        if case .starting = self { return true }
        return false
    }

    /// Alive and not being stopped: the watchdog applies, a drain may start.
    public var isServing: Bool {
        switch self {
        case .starting, .running, .ready: true
        case .draining, .killing, .gone: false
        }
    }
}

/// What happens to a worker, as the worker machine sees it.
public enum WorkerEvent: Sendable, Equatable {
    /// `readiness = "started"`: it has run for `ready_after_seconds`.
    case readyAfterStart
    /// It sent READY=1.
    case readyReported
    /// `ready_timeout_seconds` passed and it is not ready.
    case readyTimeout
    /// Its startup probe passed for the first time: readiness and liveness probes begin.
    case startupProbePassed
    /// Its readiness probe passed `success_threshold` times in a row.
    case readinessProbePassed
    /// Its readiness probe failed `failure_threshold` times in a row: not ready, not killed.
    case readinessProbeFailed
    /// Stop it: the stop signal now, SIGKILL at the deadline.
    case drain(Drain)
    case drainDeadline
    /// A second SIGINT: SIGKILL now.
    case killNow
    /// Reaped; `oomKilled` when its cgroup counted an OOM kill.
    case exited(WaitStatus, oomKilled: Bool)
}

/// What the edge must do for a worker's transition, beside the state change itself.
public enum WorkerOrder: Sendable, Equatable {
    /// It became ready: the watchdog starts counting (if it has one and has not yet).
    case armWatchdog
    /// Its startup probe passed: its readiness and liveness probes start.
    case beginProbes
    /// The drain's signal to the worker's process group, and its deadline armed.
    case startDrain
    /// SIGKILL to the worker's process group (and its cgroup).
    case kill
}

/// One decision of the worker machine: the state it goes to (nil: it stays) and the orders.
public struct WorkerStep: Sendable, Equatable {
    public var next: WorkerState?
    public var orders: [WorkerOrder]

    public init(next: WorkerState?, orders: [WorkerOrder]) {
        self.next = next
        self.orders = orders
    }

    public static let ignore = WorkerStep(next: nil, orders: [])
    static func to(_ state: WorkerState, _ orders: WorkerOrder...) -> WorkerStep { WorkerStep(next: state, orders: orders) }
}

extension WorkerState {
    /// The worker machine: every (state, event) pair, decided here and nowhere else.
    public static func decide(_ state: WorkerState, _ event: WorkerEvent) -> WorkerStep {
        switch (state, event) {
        case (.starting(let m), .readyAfterStart): return met(.delay, m, running: false)
        case (.running(let m), .readyAfterStart): return met(.delay, m, running: true)
        case (.starting(let m), .readyReported): return met(.notify, m, running: false)
        case (.running(let m), .readyReported): return met(.notify, m, running: true)
        case (.starting(let m), .readinessProbePassed): return met(.probe, m, running: false)
        case (.running(let m), .readinessProbePassed): return met(.probe, m, running: true)
        case (.starting(let m), .startupProbePassed), (.running(let m), .startupProbePassed):
            var step = met(.startup, m, running: state != .starting(m))
            if step.next != nil { step.orders.append(.beginProbes) }
            return step
        case (.starting(let m), .readyTimeout):
            return .to(.running(m))
        case (.ready, .readinessProbeFailed):
            return .to(.running(.probe))
        case (.starting(let m), .readinessProbeFailed) where !m.contains(.probe):
            return .to(.starting(m.union(.probe)))
        case (.running(let m), .readinessProbeFailed) where !m.contains(.probe):
            return .to(.running(m.union(.probe)))
        case (.starting, .readinessProbeFailed), (.running, .readinessProbeFailed):
            return .ignore  // not ready already
        case (.running, .readyTimeout),
            (.ready, .readyAfterStart), (.ready, .readyReported), (.ready, .readyTimeout), (.ready, .readinessProbePassed),
            (.ready, .startupProbePassed):
            return .ignore  // a timer that no longer applies, or READY=1 again
        case (.draining, .readyAfterStart), (.draining, .readyReported), (.draining, .readyTimeout),
            (.draining, .startupProbePassed), (.draining, .readinessProbePassed), (.draining, .readinessProbeFailed),
            (.killing, .readyAfterStart), (.killing, .readyReported), (.killing, .readyTimeout),
            (.killing, .startupProbePassed), (.killing, .readinessProbePassed), (.killing, .readinessProbeFailed):
            return .ignore  // a stopping worker does not become ready

        case (.starting, .drain(let d)), (.running, .drain(let d)), (.ready, .drain(let d)):
            return d.period == .zero ? .to(.killing(d), .kill) : .to(.draining(d), .startDrain)
        case (.draining, .drain), (.killing, .drain):
            return .ignore  // the drain under way keeps its cause and deadline
        case (.draining(let d), .drainDeadline):
            return .to(.killing(d), .kill)
        case (.starting, .drainDeadline), (.running, .drainDeadline), (.ready, .drainDeadline), (.killing, .drainDeadline):
            return .ignore
        case (.draining(let d), .killNow):
            return .to(.killing(d), .kill)
        case (.starting, .killNow), (.running, .killNow), (.ready, .killNow), (.killing, .killNow):
            return .ignore  // only draining workers are hurried; SIGKILL was sent already

        case (.starting, .exited(let status, let oom)), (.running, .exited(let status, let oom)), (.ready, .exited(let status, let oom)):
            return .to(.gone(oom ? .oomKilled : status.exitReason))
        case (.draining(let d), .exited(let status, let oom)):
            return .to(.gone(oom ? .oomKilled : d.exitReason ?? status.exitReason))
        case (.killing(let d), .exited(_, let oom)):
            return .to(.gone(oom ? .oomKilled : d.exitReason ?? .killedAfterDrainDeadline))

        case (.gone, .readyAfterStart), (.gone, .readyReported), (.gone, .readyTimeout), (.gone, .startupProbePassed),
            (.gone, .readinessProbePassed), (.gone, .readinessProbeFailed), (.gone, .drain),
            (.gone, .drainDeadline), (.gone, .killNow), (.gone, .exited):
            return .ignore
        }
    }

    /// A worker that is not ready met `condition`: Ready when it was the last one it waited for.
    private static func met(_ condition: Awaiting, _ awaiting: Awaiting, running: Bool) -> WorkerStep {
        guard awaiting.contains(condition) else { return .ignore }
        let left = awaiting.subtracting(condition)
        if left.isEmpty { return .to(.ready, .armWatchdog) }
        return .to(running ? .running(left) : .starting(left))
    }
}
