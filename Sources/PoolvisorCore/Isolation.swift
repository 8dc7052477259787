/// What a pool's workers are confined to: who they run as, where, and with which limits.

/// `user = "worker"` (and `group`), resolved when the file is loaded: workers run with this uid, gid and
/// supplementary groups, with HOME, USER and LOGNAME set to match.
public struct WorkerIdentity: Sendable, Equatable, Codable {
    public var user: String
    public var uid: UInt32
    public var gid: UInt32
    /// The primary group's name when `group` was given, else nil (the user's own).
    public var group: String?
    public var groups: [UInt32]
    public var home: String

    public init(user: String, uid: UInt32, gid: UInt32, group: String? = nil, groups: [UInt32], home: String) {
        self.user = user
        self.uid = uid
        self.gid = gid
        self.group = group
        self.groups = groups
        self.home = home
    }
}

/// `[pools.X.resources]`: per worker, as in a pod.
public struct Resources: Sendable, Equatable, Codable {
    /// Cores; the denominator of CPU utilisation.
    public var cpuRequest: Double?
    /// Cores; the CFS quota.
    public var cpuLimit: Double?
    /// Bytes.
    public var memoryRequest: Int64?
    /// Bytes; the worker is OOM-killed above it.
    public var memoryLimit: Int64?
    public var pidsLimit: Int?

    public init() {}

    public var isEmpty: Bool { self == Resources() }
    /// Whether any limit needs a cgroup to be enforced.
    public var hasLimits: Bool { cpuLimit != nil || memoryLimit != nil || pidsLimit != nil || memoryRequest != nil }

    /// "memory_limit 16Gi", "cpu_limit 4", … for messages.
    public var limitNames: [String] {
        var out: [String] = []
        if let m = memoryLimit { out.append("memory_limit \(Quantity.describe(bytes: m))") }
        if let m = memoryRequest { out.append("memory_request \(Quantity.describe(bytes: m))") }
        if let c = cpuLimit { out.append("cpu_limit \(c)") }
        if let p = pidsLimit { out.append("pids_limit \(p)") }
        return out
    }
}

/// Kubernetes quantities: memory "16Gi", "512Mi", "1G", "1500000" (bytes); CPU 2, 0.5, "500m".
public enum Quantity {
    /// Bytes, from an integer or a string with an optional suffix Ki Mi Gi Ti (powers of 1024) or
    /// K M G T (powers of 1000), as Kubernetes writes memory.
    public static func bytes(_ text: String) -> Int64? {
        let units: [(String, Int64)] = [
            ("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40),
            ("K", 1000), ("M", 1_000_000), ("G", 1_000_000_000), ("T", 1_000_000_000_000),
        ]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let n = Double(text.dropLast(suffix.count)), n >= 0, n * Double(factor) < 9e18 else { return nil }
            return Int64(n * Double(factor))
        }
        guard let n = Int64(text), n >= 0 else { return nil }
        return n
    }

    /// The CPU amounts a pool may ask for: a millicore (the cgroup's finest useful share) up to the
    /// most CPUs `cpus` can name. Anything else (0, `inf`, `1e308`) is an error in the pools file.
    public static let coresRange = 0.001...4096.0

    /// Cores from "500m" (millicores) or "2" / "0.5", within `coresRange`.
    public static func cores(_ text: String) -> Double? {
        let n: Double?
        if text.hasSuffix("m") {
            n = Double(text.dropLast()).map { $0 / 1000 }
        } else {
            n = Double(text)
        }
        guard let n, coresRange.contains(n) else { return nil }
        return n
    }

    /// 17179869184 → "16Gi"; used in messages and `check`.
    public static func describe(bytes: Int64) -> String {
        for (suffix, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] where bytes >= Int64(1) << shift && bytes % (Int64(1) << shift) == 0 {
            return "\(bytes >> shift)\(suffix)"
        }
        return "\(bytes)"
    }
}

/// A CPU list as the kernel writes it: "0-3,8".
public enum CPUList {
    public static func parse(_ text: String) -> [Int]? {
        var out: [Int] = []
        let body = text.filter { !$0.isWhitespace }
        guard !body.isEmpty else { return nil }
        for part in body.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), let low = Int(bounds[0]), low >= 0, low < 4096 else { return nil }
            let high = bounds.count == 2 ? Int(bounds[1]) : low
            guard let high, high >= low, high < 4096 else { return nil }
            out += Array(low...high)
        }
        return Array(Set(out)).sorted()
    }

    /// [0, 1, 2, 3, 8] → "0-3,8".
    public static func describe(_ cpus: [Int]) -> String {
        var parts: [String] = []
        var i = 0
        while i < cpus.count {
            var j = i
            while j + 1 < cpus.count && cpus[j + 1] == cpus[j] + 1 { j += 1 }
            parts.append(i == j ? "\(cpus[i])" : "\(cpus[i])-\(cpus[j])")
            i = j + 1
        }
        return parts.joined(separator: ",")
    }
}
