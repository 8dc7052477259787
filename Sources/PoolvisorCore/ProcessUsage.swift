/// CPU and memory of a worker and its descendants, as the edge measured it.
public struct ProcessUsage: Sendable, Equatable {
    /// utime + stime of the worker and its descendants.
    public var cpuSeconds: Double
    /// Over the last second or more (since the previous reading, or since the worker started); 100 = one core.
    public var cpuPercent: Double
    /// Resident memory of the worker and its descendants.
    public var rssBytes: Int64

    public init(cpuSeconds: Double, cpuPercent: Double, rssBytes: Int64) {
        self.cpuSeconds = cpuSeconds
        self.cpuPercent = cpuPercent
        self.rssBytes = rssBytes
    }
}
