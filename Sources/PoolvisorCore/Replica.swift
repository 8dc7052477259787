/// A numbered slot in a pool: `kb/0`, `kb/1`. The slot is stable; the worker process in it changes.
public struct ReplicaID: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    public var pool: String
    public var index: Int

    public init(pool: String, index: Int) {
        self.pool = pool
        self.index = index
    }

    public var description: String { "\(pool)/\(index)" }

    public static func < (a: ReplicaID, b: ReplicaID) -> Bool { (a.pool, a.index) < (b.pool, b.index) }

    /// `["pool", index]`: an upgrade's handover holds one per worker and per replica slot.
    public init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        pool = try container.decode(String.self)
        index = try container.decode(Int.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        try container.encode(pool)
        try container.encode(index)
    }
}

/// Where a replica slot is. Every change goes through `Reconciler.apply(_:to:)`, which keeps the counts
/// and emits the log record.
public enum SlotState: Sendable, Equatable, Codable {
    /// Not wanted: scaled away, or the supervisor is stopping. A scale-up fills it again (lowest first).
    case vacant
    /// A worker is being spawned for it.
    case pending
    /// Its worker exited; the next one starts at `until` (CrashLoopBackOff).
    case backOff(until: Instant)
    /// The worker with this pid holds the slot.
    case occupied(pid: Int32)
    /// The supervisor is stopping: this pid drains in the slot, which is vacant once it has exited.
    case releasing(pid: Int32)

    /// The worker holding the slot, if any.
    public var occupant: Int32? {
        switch self {
        case .occupied(let pid), .releasing(let pid): pid
        case .vacant, .pending, .backOff: nil
        }
    }
}

/// A replica slot and its history.
public struct Replica: Sendable, Equatable, Codable {
    public let id: ReplicaID
    public internal(set) var state: SlotState = .vacant
    /// How many times a worker in this slot was restarted.
    public internal(set) var restarts = 0
    /// Consecutive exits without a run of `backoff.resetAfter`: drives the backoff delay.
    public internal(set) var crashStreak = 0
    public internal(set) var lastExit: ExitReason?
    public internal(set) var lastExitAt: Instant?
    /// The pool's generation when this slot last started a worker: lower than the pool's, and the
    /// worker runs an outdated command or environment and is due for replacement.
    public internal(set) var generation: Int

    init(id: ReplicaID, generation: Int) {
        self.id = id
        self.generation = generation
    }
}

/// What happens to a slot, as the slot machine sees it.
public enum SlotEvent: Sendable, Equatable {
    /// It is wanted: start a worker in it.
    case fill
    /// The edge spawned its worker.
    case spawned(pid: Int32)
    case spawnFailed(String)
    /// The worker holding it was reaped (the reconciler matched the pid).
    case occupantExited(ExitReason)
    /// The restart that followed waits for the backoff delay, until then.
    case holdOff(until: Instant)
    case backoffOver
    /// It is not wanted any more (scale-down, pool removed or disabled): its worker retires.
    case scaleIn(Drain.Cause)
    /// A rolling replacement: a new worker takes it, the old one retires.
    case replace
    /// The supervisor is stopping.
    case stop
}

/// What the reconciler must do for a slot's transition, beside the state change itself.
public enum SlotOrder: Sendable, Equatable {
    /// Ask the edge to spawn a worker of the pool's current generation.
    case spawn
    /// Count the exit and start the next worker: now, or `holdOff` until the backoff delay is over.
    case restart(ExitReason)
    /// The backoff's deadline armed.
    case armBackoff
    /// The worker leaves the slot and drains for this cause (a no-op drain if it drains already).
    case retire(pid: Int32, Drain.Cause)
    /// The worker drains in the slot: the supervisor is stopping.
    case drain(pid: Int32)
    /// Record how the worker ended; the slot stays empty.
    case record(ExitReason)
    /// The crash streak starts over (a rollout does not wait out an outdated worker's backoff).
    case resetCrashStreak
    /// A process was spawned for a slot that no longer wants one: kill it.
    case killStray(pid: Int32)
}

/// One decision of the slot machine: the state it goes to (nil: it stays) and the orders.
public struct SlotStep: Sendable, Equatable {
    public var next: SlotState?
    public var orders: [SlotOrder]

    public init(next: SlotState?, orders: [SlotOrder]) {
        self.next = next
        self.orders = orders
    }

    public static let ignore = SlotStep(next: nil, orders: [])
    static func to(_ state: SlotState, _ orders: SlotOrder...) -> SlotStep { SlotStep(next: state, orders: orders) }
    static func orders(_ orders: SlotOrder...) -> SlotStep { SlotStep(next: nil, orders: orders) }
}

extension SlotState {
    /// The slot machine: every (state, event) pair, decided here and nowhere else.
    public static func decide(_ state: SlotState, _ event: SlotEvent) -> SlotStep {
        switch (state, event) {
        case (.vacant, .fill):
            return .to(.pending, .spawn)
        case (.pending, .fill), (.backOff, .fill), (.occupied, .fill), (.releasing, .fill):
            return .ignore  // wanted already

        case (.pending, .spawned(let pid)):
            return .to(.occupied(pid: pid))
        case (.vacant, .spawned(let pid)), (.backOff, .spawned(let pid)), (.occupied, .spawned(let pid)), (.releasing, .spawned(let pid)):
            return .orders(.killStray(pid: pid))
        case (.pending, .spawnFailed(let why)):
            return .orders(.restart(.spawnFailed(why)))
        case (.vacant, .spawnFailed), (.backOff, .spawnFailed), (.occupied, .spawnFailed), (.releasing, .spawnFailed):
            return .ignore  // a spawn the slot no longer waited for

        case (.occupied, .occupantExited(let reason)):
            return .to(.pending, .restart(reason))
        case (.releasing, .occupantExited(let reason)):
            return .to(.vacant, .record(reason))
        case (.vacant, .occupantExited), (.pending, .occupantExited), (.backOff, .occupantExited):
            return .ignore

        case (.pending, .holdOff(let until)):
            return .to(.backOff(until: until), .armBackoff)
        case (.vacant, .holdOff), (.backOff, .holdOff), (.occupied, .holdOff), (.releasing, .holdOff):
            return .ignore

        case (.backOff, .backoffOver):
            return .to(.pending, .spawn)
        case (.vacant, .backoffOver), (.pending, .backoffOver), (.occupied, .backoffOver), (.releasing, .backoffOver):
            return .ignore

        case (.pending, .scaleIn), (.backOff, .scaleIn):
            return .to(.vacant)  // a spawn queued at the edge is dropped: the slot is no longer pending
        case (.occupied(let pid), .scaleIn(let cause)), (.releasing(let pid), .scaleIn(let cause)):
            return .to(.vacant, .retire(pid: pid, cause))
        case (.vacant, .scaleIn):
            return .ignore

        case (.occupied(let pid), .replace):
            return .to(.pending, .retire(pid: pid, .replaced), .spawn)
        case (.backOff, .replace):
            return .to(.pending, .resetCrashStreak, .spawn)
        case (.vacant, .replace), (.pending, .replace), (.releasing, .replace):
            return .ignore  // nothing to replace, or its spawn already starts the new generation

        case (.occupied(let pid), .stop):
            return .to(.releasing(pid: pid), .drain(pid: pid))
        case (.pending, .stop), (.backOff, .stop):
            return .to(.vacant)
        case (.vacant, .stop), (.releasing, .stop):
            return .ignore
        }
    }
}

/// A replica as `status` and the logs show it: its slot and the worker holding it, together.
public enum ReplicaView: Sendable, Equatable {
    case pending
    case starting(Worker)
    case running(Worker)
    case ready(Worker)
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

    init(_ slot: SlotState, _ worker: Worker?) {
        switch (slot, worker?.state) {
        case (.vacant, _): self = .exited
        case (.pending, _): self = .pending
        case (.backOff(let until), _): self = .backOff(until: until)
        case (.occupied, .starting?), (.releasing, .starting?): self = .starting(worker!)
        case (.occupied, .running?), (.releasing, .running?): self = .running(worker!)
        case (.occupied, .ready?), (.releasing, .ready?): self = .ready(worker!)
        case (.occupied, .draining(let d)?), (.occupied, .killing(let d)?), (.releasing, .draining(let d)?), (.releasing, .killing(let d)?):
            self = .draining(worker!, d)
        case (.occupied, .gone?), (.releasing, .gone?), (.occupied, nil), (.releasing, nil): self = .exited
        }
    }
}
