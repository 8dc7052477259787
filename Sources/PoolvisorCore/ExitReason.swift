/// Why a worker ended. Where its slot *is* is `SlotState`; this is why the slot's last worker is gone.
public enum ExitReason: Sendable, Equatable, CustomStringConvertible, Codable {
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
    /// Its liveness probe failed `failure_threshold` times in a row and it was killed.
    case livenessProbeFailed(String)
    /// Its startup probe never succeeded: a failed start.
    case startupProbeFailed(String)
    /// A new poolvisor binary could not take over the running workers, and stopped them.
    case upgradeFailed

    public var description: String {
        switch self {
        case .exited(let code): "exit code \(code)"
        case .killed(let signal, let core): "killed by \(signal)\(core ? " (core dumped)" : "")"
        case .killedAfterDrainDeadline: "killed after drain deadline"
        case .watchdog: "watchdog timeout"
        case .spawnFailed(let why): "spawn failed: \(why)"
        case .oomKilled: "OOMKilled"
        case .livenessProbeFailed(let why): "liveness probe failed: \(why)"
        case .startupProbeFailed(let why): "startup probe failed: \(why)"
        case .upgradeFailed: "stopped: the upgraded poolvisor could not take over"
        }
    }

    /// Only exit code 0 is clean: the worker finished by itself. It decides the level of the restart's
    /// log line (notice instead of warning); every other reason, a signal included, is not clean.
    public var isClean: Bool {
        if case .exited(0) = self { return true }
        return false
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
