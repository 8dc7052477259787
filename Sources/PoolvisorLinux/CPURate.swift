import PoolvisorCore

/// CPU use as a percentage of one core between two readings of a worker's cumulative CPU time (from
/// /proc or from its cgroup): what `status` shows since the previous `status`.
public struct CPURate {
    private var previous: [Int32: (nanoseconds: UInt64, at: Instant)] = [:]

    /// Percent of one core since the worker's previous reading; nil for its first.
    mutating func percent(_ pid: Int32, nanoseconds: UInt64, at now: Instant) -> Double? {
        defer { previous[pid] = (nanoseconds, now) }
        guard let before = previous[pid], nanoseconds >= before.nanoseconds, now > before.at else { return nil }
        return Double(nanoseconds - before.nanoseconds) / Double(now.since(before.at).nanosecondsClamped) * 100
    }

    mutating func forget(_ pid: Int32) { previous[pid] = nil }
}
