/// An ordered set of environment variables. Later assignments of a key replace earlier ones.
///
/// Values may be secrets (database passwords from an env file), so nothing that describes an
/// `Environment` — `description`, `debugDescription`, `dump()` — ever shows a value: keys only.
public struct Environment: Equatable, Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable, Codable {
    public private(set) var keys: [String] = []
    private var values: [String: String] = [:]

    public init() {}

    public init(_ pairs: [(key: String, value: String)]) {
        for (k, v) in pairs { self[k] = v }
    }

    public subscript(key: String) -> String? {
        get { values[key] }
        set {
            if let newValue {
                if values.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if values.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    /// This environment with `other` layered on top.
    public func overlaid(with other: Environment) -> Environment {
        var out = self
        for k in other.keys { out[k] = other.values[k] }
        return out
    }

    /// `KEY=value` strings in order, for execve.
    public var assignments: [String] { keys.map { "\($0)=\(values[$0]!)" } }

    public var count: Int { keys.count }

    public var description: String { "Environment(\(keys.joined(separator: ", ")))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["keys": keys]) }
}

/// The variables poolvisor itself sets for every worker; they override anything from the pools file.
public enum WorkerVariable {
    public static let subscribe = "WORKER_SUBSCRIBE"
    public static let tenants = "WORKER_SUBSCRIBE_TENANTS"
    public static let workspaces = "WORKER_SUBSCRIBE_WORKSPACES"
    public static let pool = "POOLVISOR_POOL"
    public static let replica = "POOLVISOR_REPLICA"
    public static let instance = "POOLVISOR_INSTANCE"
    /// A job's process: its job's name and its run's number.
    public static let job = "POOLVISOR_JOB"
    public static let jobRun = "POOLVISOR_JOB_RUN"
    public static let notifySocket = "NOTIFY_SOCKET"
    public static let watchdogUsec = "WATCHDOG_USEC"

    /// Noxus's subscription: set only when the pools file uses it (some pool writes `worker_subscribe`,
    /// `worker_subscribe_tenants` or `worker_subscribe_workspaces`); otherwise a pool's own to set.
    public static let subscription = [subscribe, tenants, workspaces]
    public static let all = subscription + [pool, replica, instance, notifySocket, watchdogUsec]

    /// From the supervisor's own environment, the only variables a worker inherits.
    public static let inherited = ["PATH", "LANG", "TZ", "HOME"]
    public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}
