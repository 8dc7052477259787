import Glibc
import PoolvisorCore
import PoolvisorSystem

/// CPU time and resident memory of each worker together with its descendants (a launcher script and
/// its interpreter, a forking server's children), from /proc.
///
/// Nothing stays open between readings: the files poolvisor holds do not grow with the number of
/// workers (keeping two proc files open per worker took 20,000 fds at 10,000 workers). One reading
/// reads for at most `budget` (a `status` must answer within ~100 ms at any N): the workers read longest
/// ago first, and the rest keep their previous reading, so a few `status` requests in a row refresh a
/// pool of 10,000. Up to about 1,000 workers everything is read in one reading. A reading younger than
/// `reuseFor` is given again rather than read anew: a burst of `status` requests (a dashboard, several
/// operators, a watch loop) costs one pass over /proc per second, and CPU % is always measured over at
/// least that long (at 100 ticks a second, a few milliseconds between two readings would give 0 % or
/// some hundreds). CPU % is measured between two readings of a worker, or since the worker started for
/// its first.
public final class ProcessUsageReader {
    private struct Stat {
        var ticks: UInt64
        var startTicks: UInt64
        var rssPages: Int64
    }

    /// A worker's tree is read this deep, and this many processes at most.
    private static let maximumDescendants = 4096

    private let budget: Duration
    private let reuseFor: Duration
    private let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
    private let pageSize = Int64(sysconf(Int32(_SC_PAGESIZE)))
    /// Each worker's last reading, and when it was taken.
    private var last: [Int32: (usage: ProcessUsage, at: Instant)] = [:]
    private var cpuRate = CPURate()
    private var buffer = [UInt8](repeating: 0, count: 4096)

    public init(budget: Duration = .milliseconds(25), reuseFor: Duration = .seconds(1)) {
        self.budget = budget
        self.reuseFor = reuseFor
    }

    /// Usage of each worker (by pid) and its descendants. Workers not asked for any more are forgotten.
    /// - Parameter budget: this reading's own limit instead of the reader's (a metrics scrape reads
    ///   less at a time than a status: the workers read longest ago are refreshed first, the rest keep
    ///   their last reading until a later scrape).
    public func usage(of workers: Set<Int32>, budget: Duration? = nil) -> [Int32: ProcessUsage] {
        for pid in last.keys where !workers.contains(pid) { forget(pid) }
        let now = MonotonicClock.now()
        let until = now + (budget ?? self.budget)
        let sinceBoot = Self.bootTimeTicks(ticksPerSecond)
        // Never read first, then the oldest readings.
        var out: [Int32: ProcessUsage] = [:]
        var stale: [(at: UInt64, pid: Int32)] = []
        for pid in workers {
            if let kept = last[pid], kept.at + reuseFor > now {
                out[pid] = kept.usage
            } else {
                stale.append((last[pid]?.at.nanoseconds ?? 0, pid))
            }
        }
        let order = stale.sorted { ($0.at, $0.pid) < ($1.at, $1.pid) }.map(\.pid)
        for (n, pid) in order.enumerated() {
            if n % 16 == 15 && MonotonicClock.now() >= until {
                for rest in order[n...] { if let kept = last[rest] { out[rest] = kept.usage } }
                break
            }
            guard let usage = read(pid, now: now, sinceBoot: sinceBoot) else { continue }
            last[pid] = (usage, now)
            out[pid] = usage
        }
        return out
    }

    private func read(_ pid: Int32, now: Instant, sinceBoot: UInt64) -> ProcessUsage? {
        guard let own = readPath("/proc/\(pid)/stat").flatMap(Self.parseStat) else { return nil }
        var ticks = own.ticks
        var pages = own.rssPages
        var budget = Self.maximumDescendants
        // Without CONFIG_PROC_CHILDREN there is no children file: the worker alone is counted.
        var pending = readPath("/proc/\(pid)/task/\(pid)/children").map(Self.parsePids) ?? []
        while let child = pending.popLast(), budget > 0 {
            budget -= 1
            if let s = readPath("/proc/\(child)/stat").flatMap(Self.parseStat) {
                ticks += s.ticks
                pages += s.rssPages
                pending += readPath("/proc/\(child)/task/\(child)/children").map(Self.parsePids) ?? []
            }
        }
        let nanoseconds = UInt64(Double(ticks) / ticksPerSecond * 1e9)
        // The first reading of a worker: its average since it started.
        let sinceStart = sinceBoot > own.startTicks ? Double(ticks) / Double(sinceBoot - own.startTicks) * 100 : 0
        let percent = cpuRate.percent(pid, nanoseconds: nanoseconds, at: now) ?? sinceStart
        return ProcessUsage(cpuSeconds: Double(ticks) / ticksPerSecond, cpuPercent: percent, rssBytes: pages * pageSize)
    }

    /// Forgets a worker that has exited.
    public func forget(_ pid: Int32) {
        cpuRate.forget(pid)
        last[pid] = nil
    }

    /// The whole of a proc file (generated afresh on each read), up to the buffer's size.
    private func readPath(_ path: String) -> ArraySlice<UInt8>? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        return n > 0 ? buffer[0..<n] : nil
    }

    /// Fields after the command name (which may contain spaces and parentheses, so it ends at the last
    /// ')'): state(3) … utime(14) stime(15) … starttime(22) vsize(23) rss(24).
    private static func parseStat(_ b: ArraySlice<UInt8>) -> Stat? {
        guard let end = b.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        var field = 3
        var value: UInt64 = 0
        var fields = (utime: UInt64(0), stime: UInt64(0), start: UInt64(0), rss: UInt64(0))
        var i = end + 2
        while i < b.endIndex && field <= 24 {
            let c = b[i]
            if c == UInt8(ascii: " ") || c == UInt8(ascii: "\n") {
                switch field {
                case 14: fields.utime = value
                case 15: fields.stime = value
                case 22: fields.start = value
                case 24: fields.rss = value
                default: break
                }
                field += 1
                value = 0
            } else if c >= 48 && c <= 57 {
                value = value &* 10 &+ UInt64(c - 48)
            }
            i += 1
        }
        if field == 24 { fields.rss = value }
        guard field >= 16 else { return nil }
        return Stat(ticks: fields.utime + fields.stime, startTicks: fields.start, rssPages: Int64(fields.rss))
    }

    /// "123 456 " → [123, 456]
    private static func parsePids(_ b: ArraySlice<UInt8>) -> [Int32] {
        var out: [Int32] = []
        var value: Int32 = 0
        var inNumber = false
        for c in b {
            if c >= 48 && c <= 57 {
                value = value &* 10 &+ Int32(c - 48)
                inNumber = true
            } else if inNumber {
                out.append(value)
                value = 0
                inNumber = false
            }
        }
        if inNumber { out.append(value) }
        return out
    }

    private static func bootTimeTicks(_ ticksPerSecond: Double) -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return UInt64((Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9) * ticksPerSecond)
    }
}
