/// A numbered slot in a pool: `kb/0`, `kb/1`. The slot is stable; the worker process in it changes.
public struct ReplicaID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var pool: String
    public var index: Int

    public init(pool: String, index: Int) {
        self.pool = pool
        self.index = index
    }

    public var description: String { "\(pool)/\(index)" }

    public static func < (a: ReplicaID, b: ReplicaID) -> Bool { (a.pool, a.index) < (b.pool, b.index) }
}

/// The process currently in a replica slot.
public struct Worker: Sendable, Equatable {
    public var pid: Int32
    public var startedAt: Instant
    public var readyAt: Instant?
    /// When the worker last sent WATCHDOG=1 (or READY=1, which arms the watchdog).
    public var lastWatchdogPing: Instant?
    /// The worker's own last STATUS= line.
    public var status: String?
    /// BUSY=1 / BUSY=0 from the worker; nil when it never said.
    public var busy: Bool?
    /// The kernel's OOM killer killed a process of this worker's cgroup.
    public var outOfMemory = false

    public init(pid: Int32, startedAt: Instant) {
        self.pid = pid
        self.startedAt = startedAt
    }
}

/// Why a worker ended. Where the replica *is* is `ReplicaState`; this is why its last worker is gone.
public enum ExitReason: Sendable, Equatable, CustomStringConvertible {
    case exited(code: Int32)
    case killed(Signal, coreDumped: Bool)
    /// It did not exit within its drain period and was sent SIGKILL.
    case killedAfterDrainDeadline
    /// It stopped sending WATCHDOG=1 and was killed.
    case watchdog
    /// The process could not be started at all.
    case spawnFailed(String)
    /// Killed by the kernel's OOM killer for going over its memory_limit (from the cgroup's counters).
    case oomKilled

    public var description: String {
        switch self {
        case .exited(let code): "exit code \(code)"
        case .killed(let signal, let core): "killed by \(signal)\(core ? " (core dumped)" : "")"
        case .killedAfterDrainDeadline: "killed after drain deadline"
        case .watchdog: "watchdog timeout"
        case .spawnFailed(let why): "spawn failed: \(why)"
        case .oomKilled: "OOMKilled"
        }
    }

    /// A clean exit: code 0, or the signal poolvisor itself asked the worker to stop with.
    public var isClean: Bool {
        switch self {
        case .exited(let code): code == 0
        default: false
        }
    }
}

/// What the kernel said about a reaped process.
public enum WaitStatus: Sendable, Equatable {
    case exited(Int32)
    case signaled(Signal, coreDumped: Bool)

    var exitReason: ExitReason {
        switch self {
        case .exited(let code): .exited(code: code)
        case .signaled(let signal, let core): .killed(signal, coreDumped: core)
        }
    }
}

/// A worker being stopped: the stop signal has been sent and the replica waits for it to exit.
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
    }

    /// What happens to the slot once the worker has exited.
    public enum Then: Sendable, Equatable {
        /// Start a new worker (with backoff, as after a crash).
        case restart
        /// Leave the slot Exited.
        case stay
    }

    public var cause: Cause
    public var then: Then
    /// SIGKILL goes to the process group at this instant if the worker is still there.
    public var deadline: Instant
    /// SIGKILL has been sent.
    public var killed = false
}

/// Where a replica is. Every change goes through `Reconciler.transition`, which also logs it.
public enum ReplicaState: Sendable, Equatable {
    /// A worker is being spawned.
    case pending
    /// The worker runs and has not become ready yet.
    case starting(Worker)
    /// The worker runs but did not become ready within its ready timeout.
    case running(Worker)
    case ready(Worker)
    /// The worker exited and the next one starts at `until` (CrashLoopBackOff).
    case backOff(until: Instant)
    case draining(Worker, Drain)
    /// No worker, and none will be started.
    case exited

    /// How the state is named in status and logs.
    public var name: String {
        switch self {
        case .pending: "Pending"
        case .starting: "Starting"
        case .running: "Running"
        case .ready: "Ready"
        case .backOff: "BackOff"
        case .draining: "Draining"
        case .exited: "Exited"
        }
    }

    public var worker: Worker? {
        switch self {
        case .starting(let w), .running(let w), .ready(let w), .draining(let w, _): w
        case .pending, .backOff, .exited: nil
        }
    }

    public var isReady: Bool {
        if case .ready = self { return true }
        return false
    }
}

/// A replica slot and its history.
public struct Replica: Sendable, Equatable {
    public let id: ReplicaID
    public internal(set) var state: ReplicaState
    /// How many times a worker in this slot was restarted.
    public internal(set) var restarts = 0
    /// Consecutive exits without a run of `backoff.resetAfter`: drives the backoff delay.
    public internal(set) var crashStreak = 0
    public internal(set) var lastExit: ExitReason?
    public internal(set) var lastExitAt: Instant?
    /// The pool's generation when this slot last started a worker: lower than the pool's, and the
    /// worker runs an outdated command or environment and is due for replacement.
    public internal(set) var generation: Int
    /// A scale-down took this slot's worker and the slot is not wanted now; a scale-up fills it again
    /// (lowest first). A scale-down picks idle workers, so the slots left need not be 0..<desired.
    public internal(set) var vacant = false

    init(id: ReplicaID, generation: Int) {
        self.id = id
        self.state = .pending
        self.generation = generation
    }
}

/// A worker that has left its replica slot and is draining: its slot was removed, or a new worker
/// took the slot over. It still counts until it exits; nothing restarts it.
public struct RetiringWorker: Sendable, Equatable {
    /// The slot it had, for status and logs (`kb/3`).
    public let id: ReplicaID
    public internal(set) var worker: Worker
    public internal(set) var drain: Drain
}
