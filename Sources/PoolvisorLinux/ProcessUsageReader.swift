import Glibc
import PoolvisorCore

/// CPU time and resident memory of workers' process groups, from /proc/PID/stat: one pass over /proc
/// sums every process by its process group, so a worker's children count with it (a launcher script
/// and its interpreter, a forking server). CPU % is measured between two `status` requests, or since
/// the process started for the first one.
final class ProcessUsageReader {
    private struct Sample {
        var ticks: UInt64
        var at: Instant
    }

    private let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
    private let pageSize = Int64(sysconf(Int32(_SC_PAGESIZE)))
    private var previous: [Int32: Sample] = [:]
    private var buffer = [UInt8](repeating: 0, count: 1024)

    /// Usage per process group id, for the groups asked for.
    func usage(ofGroups groups: Set<Int32>) -> [Int32: ProcessUsage] {
        guard !groups.isEmpty, let dir = opendir("/proc") else { return [:] }
        defer { closedir(dir) }
        var ticks: [Int32: UInt64] = [:]
        var pages: [Int32: Int64] = [:]
        var leaderStart: [Int32: UInt64] = [:]
        while let entry = readdir(dir) {
            let pid = withUnsafeBytes(of: entry.pointee.d_name) { raw -> Int32 in
                var n: Int32 = 0
                for b in raw {
                    if b == 0 { break }
                    guard b >= 48 && b <= 57 else { return 0 }
                    n = n * 10 + Int32(b - 48)
                }
                return n
            }
            guard pid > 0, let stat = readStat(pid), groups.contains(stat.group) else { continue }
            ticks[stat.group, default: 0] += stat.ticks
            pages[stat.group, default: 0] += stat.rssPages
            if pid == stat.group { leaderStart[pid] = stat.startTicks }
        }
        let now = MonotonicClock.now()
        let sinceBoot = Self.bootTimeTicks(ticksPerSecond)
        var out: [Int32: ProcessUsage] = [:]
        var next: [Int32: Sample] = [:]
        for (group, t) in ticks {
            var percent = 0.0
            if let before = previous[group], t >= before.ticks, now > before.at {
                percent = Double(t - before.ticks) / ticksPerSecond / now.since(before.at).seconds * 100
            } else if let start = leaderStart[group], sinceBoot > start {
                percent = Double(t) / Double(sinceBoot - start) * 100
            }
            out[group] = ProcessUsage(cpuSeconds: Double(t) / ticksPerSecond, cpuPercent: percent, rssBytes: pages[group, default: 0] * pageSize)
            next[group] = Sample(ticks: t, at: now)
        }
        previous = next
        return out
    }

    private struct Stat {
        var group: Int32
        var ticks: UInt64
        var startTicks: UInt64
        var rssPages: Int64
    }

    /// Fields after the command name (which may contain spaces and parentheses, so it ends at the last
    /// ')'): state(3) ppid(4) pgrp(5) … utime(14) stime(15) … starttime(22) vsize(23) rss(24).
    private func readStat(_ pid: Int32) -> Stat? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return buffer.withUnsafeBufferPointer { b -> Stat? in
            var i = n - 1
            while i > 0 && b[i] != UInt8(ascii: ")") { i -= 1 }
            guard i > 0 else { return nil }
            i += 2  // ") "
            var field = 3
            var fields: [Int: UInt64] = [:]
            var value: UInt64 = 0
            var inNumber = false
            while i < n && field <= 24 {
                let c = b[i]
                if c == UInt8(ascii: " ") || c == UInt8(ascii: "\n") {
                    if [5, 14, 15, 22, 24].contains(field) { fields[field] = value }
                    field += 1
                    value = 0
                    inNumber = false
                } else if c >= 48 && c <= 57 {
                    value = value &* 10 &+ UInt64(c - 48)
                    inNumber = true
                }
                i += 1
            }
            if inNumber, field == 24 { fields[24] = value }
            guard let group = fields[5], let user = fields[14], let system = fields[15] else { return nil }
            return Stat(group: Int32(truncatingIfNeeded: group), ticks: user + system, startTicks: fields[22] ?? 0,
                        rssPages: Int64(fields[24] ?? 0))
        }
    }

    private static func bootTimeTicks(_ ticksPerSecond: Double) -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return UInt64((Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9) * ticksPerSecond)
    }
}
