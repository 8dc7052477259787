import Glibc
import PoolvisorCore

/// CPU time and resident memory of each worker together with its descendants (a launcher script and
/// its interpreter, a forking server's children), from /proc.
///
/// A worker's `/proc/PID/stat` and `children` files are opened at the first `status` and kept open
/// until the worker is gone: re-reading an open proc file costs one `pread`, where open, read and close
/// by path cost three system calls and a path walk (at 1000 workers, 4.5 ms against 12 ms). Descendants,
/// which most workers do not have, are read by path. CPU % is measured between two `status` requests,
/// or since the worker started for the first one.
final class ProcessUsageReader {
    private struct Watched {
        var stat: Int32
        var children: Int32
    }

    private struct Stat {
        var ticks: UInt64
        var startTicks: UInt64
        var rssPages: Int64
    }

    /// A worker's tree is read this deep, and this many processes at most.
    private static let maximumDescendants = 4096

    private let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
    private let pageSize = Int64(sysconf(Int32(_SC_PAGESIZE)))
    private var watched: [Int32: Watched] = [:]
    private var cpuRate = CPURate()
    private var buffer = [UInt8](repeating: 0, count: 4096)

    deinit {
        for pid in Array(watched.keys) { forget(pid) }
    }

    /// Usage of each worker (by pid) and its descendants. Workers not asked for any more are forgotten.
    func usage(of workers: Set<Int32>) -> [Int32: ProcessUsage] {
        for pid in watched.keys where !workers.contains(pid) { forget(pid) }
        let now = MonotonicClock.now()
        let sinceBoot = Self.bootTimeTicks(ticksPerSecond)
        var out: [Int32: ProcessUsage] = [:]
        for pid in workers {
            if watched[pid] == nil, let w = watch(pid) { watched[pid] = w }
            guard let w = watched[pid], let own = read(w.stat).flatMap(Self.parseStat) else { continue }
            var ticks = own.ticks
            var pages = own.rssPages
            var budget = Self.maximumDescendants
            var pending = read(w.children).map(Self.parsePids) ?? []
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
            out[pid] = ProcessUsage(cpuSeconds: Double(ticks) / ticksPerSecond, cpuPercent: percent, rssBytes: pages * pageSize)
        }
        return out
    }

    /// Closes what is kept open for a worker that has exited.
    func forget(_ pid: Int32) {
        cpuRate.forget(pid)
        guard let w = watched.removeValue(forKey: pid) else { return }
        close(w.stat)
        if w.children >= 0 { close(w.children) }
    }

    private func watch(_ pid: Int32) -> Watched? {
        let stat = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard stat >= 0 else { return nil }
        // Without CONFIG_PROC_CHILDREN there is no children file: the worker alone is counted.
        let children = open("/proc/\(pid)/task/\(pid)/children", O_RDONLY | O_CLOEXEC)
        return Watched(stat: stat, children: children)
    }

    /// The whole file from offset 0 (a proc file is generated afresh on each read from the start).
    private func read(_ fd: Int32) -> ArraySlice<UInt8>? {
        guard fd >= 0 else { return nil }
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? buffer[0..<n] : nil
    }

    private func readPath(_ path: String) -> ArraySlice<UInt8>? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return read(fd)
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
