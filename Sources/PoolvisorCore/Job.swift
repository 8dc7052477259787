/// Kubernetes' CronJob `concurrencyPolicy`: what a scheduled (or `run-job`) start does while a run of
/// the job is still under way.
public enum ConcurrencyPolicy: String, Sendable, CaseIterable, Codable {
    /// Start another run beside it.
    case allow = "Allow"
    /// Skip this start.
    case forbid = "Forbid"
    /// Stop the run under way and start a new one.
    case replace = "Replace"
}

/// When a scheduled job runs: a cron expression read in a time zone.
public struct JobSchedule: Sendable, Equatable, Codable {
    public var cron: CronSchedule
    public var timeZone: String
    public var concurrency: ConcurrencyPolicy

    public init(cron: CronSchedule, timeZone: String = "UTC", concurrency: ConcurrencyPolicy = .forbid) {
        self.cron = cron
        self.timeZone = timeZone
        self.concurrency = concurrency
    }
}

/// A job as the pools file describes it: a command that runs to completion, before the pools that
/// depend on it (`depends_on`), on a schedule, or by hand (`poolvisor run-job`).
public struct JobSpec: Sendable, Equatable, Codable {
    public var name: String
    /// What its process is started with, as a pool's worker (environment layers, user, directory,
    /// resources); no notify socket, no replica.
    public var template: WorkerTemplate
    /// `env_file`, as written and resolved (for `export`; the template holds its variables).
    public var envFile: EnvFileReference?
    /// Only the job's own `[jobs.X.env]` keys, for `export`.
    public var inlineEnvironmentKeys: [String] = []
    /// Failed attempts retried before the run fails for good (Kubernetes' `backoffLimit`, 6).
    public var backoffLimit = 6
    /// A run still going after this long (across its retries) is stopped and fails.
    public var activeDeadline: Duration?
    /// Delays between attempts: 10 s doubling to 6 min, as Kubernetes' Job controller.
    public var backoff = BackoffPolicy(initial: .seconds(10), max: .seconds(360), resetAfter: .seconds(360 * 1000), jitter: 0)
    public var drain: Duration
    public var stopSignal: Signal = .terminate
    public var schedule: JobSchedule?

    public init(name: String, command: [String], executable: String? = nil, drain: Duration = .seconds(30), environment: Environment = Environment()) {
        self.name = name
        self.template = WorkerTemplate(command: command, executable: executable ?? command.first ?? "", environment: environment)
        self.drain = drain
    }

    /// Concurrency for a start while a run is under way: the schedule's, Forbid for a job without one.
    public var concurrency: ConcurrencyPolicy { schedule?.concurrency ?? .forbid }
}

/// How a job's run ended.
public enum JobRunEnd: Sendable, Equatable, CustomStringConvertible, Codable {
    case succeeded
    case failed(String)

    public var description: String {
        switch self {
        case .succeeded: "succeeded"
        case .failed(let why): "failed: \(why)"
        }
    }
}

/// One run of a job (a Kubernetes Job): attempts until one exits 0, `backoff_limit` retries are
/// used up, or its deadline passes.
public enum JobRunState: Sendable, Equatable, Codable {
    /// Attempt `attempt` (from 1) is being started.
    case pending(attempt: Int)
    case active(pid: Int32, attempt: Int)
    /// Attempt `attempt` failed; the next starts at `until`.
    case backOff(until: Instant, attempt: Int)
    /// Its stop signal was sent; SIGKILL at `deadline`. It ends as `end` (or succeeded, if it exits 0).
    case stopping(pid: Int32, deadline: Instant, end: JobRunEnd)
    case killing(pid: Int32, end: JobRunEnd)
    case ended(JobRunEnd)

    public var pid: Int32? {
        switch self {
        case .active(let pid, _), .stopping(let pid, _, _), .killing(let pid, _): pid
        case .pending, .backOff, .ended: nil
        }
    }

    public var isOver: Bool {
        if case .ended = self { return true }
        return false
    }

    /// Pending, BackOff, Running, Stopping, Succeeded, Failed.
    public var name: String {
        switch self {
        case .pending: "Pending"
        case .active: "Running"
        case .backOff: "BackOff"
        case .stopping, .killing: "Stopping"
        case .ended(.succeeded): "Succeeded"
        case .ended(.failed): "Failed"
        }
    }
}

public enum JobRunEvent: Sendable, Equatable {
    case spawned(pid: Int32)
    /// Could not be started; the next attempt at `retryAt`, or none (nil) when the limit is reached.
    case spawnFailed(String, retryAt: Instant?)
    /// Its process was reaped; the next attempt at `retryAt` if it failed and may retry.
    case exited(WaitStatus, retryAt: Instant?)
    case backoffOver
    /// Stop the run as `end`: its stop signal now and SIGKILL at `deadline` (nil: SIGKILL now).
    case stop(JobRunEnd, signal: Signal, deadline: Instant?)
    case drainDeadline
}

public enum JobRunOrder: Sendable, Equatable {
    case spawn
    case armBackoff
    /// The stop signal to the run's process group, and the drain deadline armed.
    case startDrain(Signal)
    case kill
}

public struct JobRunStep: Sendable, Equatable {
    public var next: JobRunState?
    public var orders: [JobRunOrder]

    public init(next: JobRunState?, orders: [JobRunOrder]) {
        self.next = next
        self.orders = orders
    }

    public static let ignore = JobRunStep(next: nil, orders: [])
    static func to(_ state: JobRunState, _ orders: JobRunOrder...) -> JobRunStep { JobRunStep(next: state, orders: orders) }
}

extension JobRunState {
    /// The job run machine: every (state, event) pair, decided here and nowhere else.
    public static func decide(_ state: JobRunState, _ event: JobRunEvent) -> JobRunStep {
        switch (state, event) {
        case (.pending(let attempt), .spawned(let pid)):
            return .to(.active(pid: pid, attempt: attempt))
        case (.pending(let attempt), .spawnFailed(let why, let retryAt)):
            guard let retryAt else { return .to(.ended(.failed("spawn failed: \(why) (attempt \(attempt))"))) }
            return .to(.backOff(until: retryAt, attempt: attempt), .armBackoff)
        case (.pending, .stop(let end, _, _)), (.backOff, .stop(let end, _, _)):
            return .to(.ended(end))
        case (.pending, .exited), (.pending, .backoffOver), (.pending, .drainDeadline):
            return .ignore

        case (.active, .exited(.exited(0), _)):
            return .to(.ended(.succeeded))
        case (.active(_, let attempt), .exited(let status, let retryAt)):
            guard let retryAt else { return .to(.ended(.failed("\(status.exitReason) (attempt \(attempt), backoff_limit reached)"))) }
            return .to(.backOff(until: retryAt, attempt: attempt), .armBackoff)
        case (.active(let pid, _), .stop(let end, let signal, let deadline)):
            guard let deadline else { return .to(.killing(pid: pid, end: end), .kill) }
            return .to(.stopping(pid: pid, deadline: deadline, end: end), .startDrain(signal))
        case (.active, .spawned), (.active, .spawnFailed), (.active, .backoffOver), (.active, .drainDeadline):
            return .ignore

        case (.backOff(_, let attempt), .backoffOver):
            return .to(.pending(attempt: attempt + 1), .spawn)
        case (.backOff, .spawned), (.backOff, .spawnFailed), (.backOff, .exited), (.backOff, .drainDeadline):
            return .ignore

        case (.stopping(let pid, _, let end), .drainDeadline):
            return .to(.killing(pid: pid, end: end), .kill)
        case (.stopping(_, _, let end), .exited(let status, _)), (.killing(_, let end), .exited(let status, _)):
            return .to(.ended(status == .exited(0) ? .succeeded : end))  // it finished by itself after all
        case (.stopping, .spawned), (.stopping, .spawnFailed), (.stopping, .backoffOver), (.stopping, .stop),
            (.killing, .spawned), (.killing, .spawnFailed), (.killing, .backoffOver), (.killing, .stop), (.killing, .drainDeadline):
            return .ignore

        case (.ended, _):
            return .ignore
        }
    }
}

/// One run as it goes, and as status tells it afterwards.
public struct JobRun: Sendable, Equatable, Codable {
    /// 1 for the job's first run since poolvisor started, and so on.
    public let number: Int
    public let startedAt: Instant
    public internal(set) var state: JobRunState = .pending(attempt: 1)
    public internal(set) var endedAt: Instant?
    /// The last failed attempt's exit.
    public internal(set) var lastExit: ExitReason?
    /// "schedule", "start", "run-job", "reload".
    public let trigger: String
}

/// A job as it runs: its spec, its runs under way, and how the last one ended.
public struct Job: Sendable, Codable {
    public internal(set) var spec: JobSpec
    /// Runs under way (several only with `concurrency_policy = "Allow"`), oldest first.
    public internal(set) var runs: [JobRun] = []
    /// The last run that ended.
    public internal(set) var last: JobRun?
    /// A run has succeeded since poolvisor started (or since its definition last changed): what a
    /// pool's `depends_on` waits for.
    public internal(set) var completed = false
    /// The last run failed for good and no run is under way: dependants stay down.
    public var failed: String? {
        guard runs.isEmpty, case .ended(.failed(let why))? = last?.state else { return nil }
        return why
    }
    /// Runs started so far.
    var started = 0
    /// Gone from the pools file: stopped, and forgotten once no process is left.
    public internal(set) var removed = false
    /// Changed by a reload while a run was under way: run the new definition when it ends.
    var rerun = false
    /// A scheduled job: the minute it last started for, and when its clock is next read.
    var lastScheduledMinute: CivilTime?
    public internal(set) var nextClockRead: Instant?
    /// The next start its schedule has, as civil time in its zone (for status).
    public internal(set) var nextScheduled: CivilTime?

    init(spec: JobSpec) { self.spec = spec }
}
