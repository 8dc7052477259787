/// A worker process: one per spawn, keyed by its pid. It is started for a replica slot and holds it
/// until it exits, or until it is retired (a replacement took the slot, or the slot went) and drains
/// outside it. Either way its lifecycle is the one `WorkerState` machine.
public struct Worker: Sendable, Equatable {
    public let pid: Int32
    /// The slot it was started for (`kb/3`): where it runs, or where it ran before it was retired.
    public let replica: ReplicaID
    public let startedAt: Instant
    public internal(set) var state: WorkerState = .starting
    public internal(set) var readyAt: Instant?
    /// When the worker last sent WATCHDOG=1 (or READY=1, which arms the watchdog).
    public internal(set) var lastWatchdogPing: Instant?
    /// The worker's own last STATUS= line.
    public internal(set) var status: String?
    /// BUSY=1 / BUSY=0 from the worker; nil when it never said. What it says, not where it is.
    public internal(set) var busy: Bool?

    init(pid: Int32, replica: ReplicaID, startedAt: Instant) {
        self.pid = pid
        self.replica = replica
        self.startedAt = startedAt
    }
}

/// A worker being stopped: its stop signal has been sent, SIGKILL follows at `deadline`.
public struct Drain: Sendable, Equatable {
    public enum Cause: String, Sendable {
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

        /// The reason a worker drained for this cause is said to have ended with, whatever its exit
        /// status; nil when its own exit status says it.
        var exitReason: ExitReason? {
            switch self {
            case .watchdog: .watchdog
            case .shutdown, .scaleDown, .replaced, .poolRemoved: nil
            }
        }
    }

    public var cause: Cause
    /// What starts it: the pool's stop_signal, or SIGABRT for the watchdog.
    public var signal: Signal
    /// How long the worker has after `signal`; zero means SIGKILL at once.
    public var period: Duration
    /// SIGKILL goes to the process group at this instant if the worker is still there.
    public var deadline: Instant

    public init(cause: Cause, signal: Signal, period: Duration, from now: Instant) {
        self.cause = cause
        self.signal = signal
        self.period = period
        self.deadline = now + period
    }
}

/// Where a worker process is in its life. Every change goes through `Reconciler.apply(_:to:)`, which
/// keeps the counts and emits the log record.
public enum WorkerState: Sendable, Equatable {
    /// Spawned, not ready yet.
    case starting
    /// Alive, but it did not become ready within its ready timeout (it is not killed for that).
    case running
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
    /// `readiness = "notify"`: `ready_timeout_seconds` passed without READY=1.
    case readyTimeout
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
        case (.starting, .readyAfterStart), (.starting, .readyReported), (.running, .readyReported):
            return .to(.ready, .armWatchdog)
        case (.starting, .readyTimeout):
            return .to(.running)
        case (.running, .readyAfterStart), (.running, .readyTimeout),
            (.ready, .readyAfterStart), (.ready, .readyReported), (.ready, .readyTimeout):
            return .ignore  // a timer that no longer applies, or READY=1 again
        case (.draining, .readyAfterStart), (.draining, .readyReported), (.draining, .readyTimeout),
            (.killing, .readyAfterStart), (.killing, .readyReported), (.killing, .readyTimeout):
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
            return .to(.gone(oom ? .oomKilled : d.cause.exitReason ?? status.exitReason))
        case (.killing(let d), .exited(_, let oom)):
            return .to(.gone(oom ? .oomKilled : d.cause.exitReason ?? .killedAfterDrainDeadline))

        case (.gone, .readyAfterStart), (.gone, .readyReported), (.gone, .readyTimeout), (.gone, .drain),
            (.gone, .drainDeadline), (.gone, .killNow), (.gone, .exited):
            return .ignore
        }
    }
}
