import Glibc

/// Read-only views of `/proc`, for observing real processes from integration tests.
///
/// Everything here reads files directly (no shelling out). Every function returns `nil` (or an empty
/// collection) when the process does not exist or vanishes mid-read: processes come and go while a
/// test looks at them, so callers should treat "nil" as "not there (any more)".
enum ProcFS {
    /// The fields of `/proc/PID/stat` that tests care about.
    struct Stat: Sendable, Equatable {
        var pid: Int32
        /// The command name (`comm`), without the parentheses. At most 15 bytes; may contain spaces and `)`.
        var comm: String
        /// R running, S sleeping, D disk sleep, T stopped, t tracing stop, Z zombie, X dead, I idle.
        var state: Character
        var ppid: Int32
        var pgrp: Int32
        var session: Int32
        /// User-mode CPU time in clock ticks (see `clockTicksPerSecond`).
        var utime: UInt64
        /// Kernel-mode CPU time in clock ticks.
        var stime: UInt64
        /// The nice value, -20 (first) to 19 (last).
        var nice: Int
        var numThreads: Int
        /// Start time after boot, in clock ticks. Together with `pid` identifies a process across pid reuse.
        var startTime: UInt64
    }

    // MARK: - Raw reading

    /// Reads a whole `/proc` file (they report size 0, so read until EOF). `nil` if it cannot be opened.
    static func readBytes(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                result.append(contentsOf: chunk[0..<n])
            } else if n == 0 {
                return result
            } else if errno == EINTR {
                continue
            } else {
                // ESRCH and friends: the process went away while we were reading.
                return nil
            }
        }
    }

    static func readText(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Target of a symlink such as `/proc/PID/exe` or `/proc/PID/fd/3`.
    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = buffer.withUnsafeMutableBufferPointer { readlink(path, $0.baseAddress!, $0.count - 1) }
        guard n >= 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Names in a directory, without "." and "..".
    static func directoryEntries(_ path: String) -> [String]? {
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
                let bytes = raw.prefix { $0 != 0 }
                return String(decoding: bytes, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    // MARK: - Processes

    /// Every pid currently listed in `/proc`.
    static func allPIDs() -> [Int32] {
        (directoryEntries("/proc") ?? []).compactMap { Int32($0) }
    }

    /// Parses `/proc/PID/stat`. The comm field is in parentheses and may itself contain spaces and
    /// parentheses, so the fixed fields are taken from the text after the *last* `)`.
    static func stat(of pid: Int32) -> Stat? {
        guard let text = readText("/proc/\(pid)/stat") else { return nil }
        return parseStat(text)
    }

    static func parseStat(_ text: String) -> Stat? {
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")"), open < close,
            let pid = Int32(text[..<open].trimmed(" "))
        else { return nil }
        let comm = String(text[text.index(after: open)..<close])
        // Fields after ")": state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9) minflt(10)
        // cminflt(11) majflt(12) cmajflt(13) utime(14) stime(15) cutime(16) cstime(17) priority(18)
        // nice(19) num_threads(20) itrealvalue(21) starttime(22) ...  (numbers as in proc(5))
        let rest = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        guard rest.count >= 20, let state = rest[0].first,
            let ppid = Int32(rest[1]), let pgrp = Int32(rest[2]), let session = Int32(rest[3]),
            let utime = UInt64(rest[11]), let stime = UInt64(rest[12]), let nice = Int(rest[16]),
            let threads = Int(rest[17]), let start = UInt64(rest[19])
        else { return nil }
        return Stat(
            pid: pid, comm: comm, state: state, ppid: ppid, pgrp: pgrp, session: session,
            utime: utime, stime: stime, nice: nice, numThreads: threads, startTime: start)
    }

    /// One consistent-enough snapshot of pid → ppid for every process.
    static func parentMap() -> [Int32: Int32] {
        var map: [Int32: Int32] = [:]
        for pid in allPIDs() {
            if let s = stat(of: pid) { map[pid] = s.ppid }
        }
        return map
    }

    /// Processes whose parent is `pid` (zombies included), in ascending pid order.
    static func children(of pid: Int32) -> [Int32] {
        parentMap().filter { $0.value == pid }.map(\.key).sorted()
    }

    /// Children, grandchildren, ... of `pid` (not `pid` itself), breadth first, from one snapshot.
    static func descendants(of pid: Int32) -> [Int32] {
        var childrenByParent: [Int32: [Int32]] = [:]
        for (child, parent) in parentMap() { childrenByParent[parent, default: []].append(child) }
        var result: [Int32] = []
        var seen: Set<Int32> = [pid]
        var queue = [pid]
        while !queue.isEmpty {
            let next = queue.removeFirst()
            for child in (childrenByParent[next] ?? []).sorted() where seen.insert(child).inserted {
                result.append(child)
                queue.append(child)
            }
        }
        return result
    }

    static func parent(of pid: Int32) -> Int32? { stat(of: pid)?.ppid }
    static func processGroup(of pid: Int32) -> Int32? { stat(of: pid)?.pgrp }
    static func session(of pid: Int32) -> Int32? { stat(of: pid)?.session }
    static func state(of pid: Int32) -> Character? { stat(of: pid)?.state }
    static func comm(of pid: Int32) -> String? { stat(of: pid)?.comm }

    /// True if the process exists and is neither a zombie nor dead.
    static func isAlive(_ pid: Int32) -> Bool {
        guard pid > 0, let state = state(of: pid) else { return false }
        return state != "Z" && state != "X" && state != "x"
    }

    /// utime + stime, in clock ticks.
    static func cpuTicks(of pid: Int32) -> UInt64? {
        stat(of: pid).map { $0.utime + $0.stime }
    }

    /// `sysconf(_SC_CLK_TCK)`, the unit of `cpuTicks` (almost always 100).
    static var clockTicksPerSecond: Int { Int(sysconf(Int32(_SC_CLK_TCK))) }

    /// The environment the process was exec'ed with (`/proc/PID/environ`, NUL-separated `KEY=value`).
    /// Later `setenv` calls inside the process are not reflected. Needs the same uid (or root).
    static func environment(of pid: Int32) -> [String: String]? {
        guard let bytes = readBytes("/proc/\(pid)/environ") else { return nil }
        var env: [String: String] = [:]
        for entry in bytes.split(separator: 0, omittingEmptySubsequences: true) {
            let text = String(decoding: entry, as: UTF8.self)
            if let eq = text.firstIndex(of: "=") {
                env[String(text[..<eq])] = String(text[text.index(after: eq)...])
            } else {
                env[text] = ""
            }
        }
        return env
    }

    /// argv (`/proc/PID/cmdline`). Empty for zombies and kernel threads.
    static func commandLine(of pid: Int32) -> [String]? {
        guard let bytes = readBytes("/proc/\(pid)/cmdline") else { return nil }
        var parts = bytes.split(separator: 0, omittingEmptySubsequences: false).map {
            String(decoding: $0, as: UTF8.self)
        }
        if parts.last == "" { parts.removeLast() }  // trailing NUL
        return parts
    }

    /// The executable (`/proc/PID/exe`).
    static func executable(of pid: Int32) -> String? { readLink("/proc/\(pid)/exe") }

    /// The working directory (`/proc/PID/cwd`).
    static func workingDirectory(of pid: Int32) -> String? { readLink("/proc/\(pid)/cwd") }

    /// Open file descriptors and what they point at ("/dev/null", "pipe:[1234]", "socket:[5678]", ...).
    static func openFileDescriptors(of pid: Int32) -> [Int32: String]? {
        guard let names = directoryEntries("/proc/\(pid)/fd") else { return nil }
        var result: [Int32: String] = [:]
        for name in names {
            guard let fd = Int32(name), let target = readLink("/proc/\(pid)/fd/\(name)") else { continue }
            result[fd] = target
        }
        return result
    }

    // MARK: - /proc/PID/status

    /// `/proc/PID/status` as key → value (value trimmed, e.g. "VmRSS" → "1234 kB").
    static func status(of pid: Int32) -> [String: String]? {
        guard let text = readText("/proc/\(pid)/status") else { return nil }
        return parseStatus(text)
    }

    /// VmRSS in KiB.
    static func residentKiB(of pid: Int32) -> Int? {
        status(of: pid)?["VmRSS"].flatMap { Int($0.split(separator: " ").first ?? "") }
    }

    private static func parseStatus(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmed(" \t")
        }
        return fields
    }

    private static func hexField(_ name: String, of pid: Int32) -> UInt64? {
        status(of: pid)?[name].flatMap { UInt64($0, radix: 16) }
    }

    /// Blocked signals of the main thread (`SigBlk`); bit `n-1` is signal `n`. See also
    /// `signalMask(of:thread:)`.
    static func signalMask(of pid: Int32) -> UInt64? { hexField("SigBlk", of: pid) }
    /// Ignored signals (`SigIgn`).
    static func ignoredSignals(of pid: Int32) -> UInt64? { hexField("SigIgn", of: pid) }
    /// Signals with a handler installed (`SigCgt`).
    static func caughtSignals(of pid: Int32) -> UInt64? { hexField("SigCgt", of: pid) }
    /// Signals pending for the whole process (`ShdPnd`).
    static func pendingSignals(of pid: Int32) -> UInt64? { hexField("ShdPnd", of: pid) }

    /// Whether signal `sig` is in a mask as reported by /proc (bit `sig-1`).
    static func mask(_ mask: UInt64, contains sig: Int32) -> Bool {
        sig >= 1 && sig <= 64 && mask & (UInt64(1) << UInt64(sig - 1)) != 0
    }

    /// The signal numbers in a /proc mask.
    static func signals(in mask: UInt64) -> [Int32] {
        (1...64).filter { ProcFS.mask(mask, contains: Int32($0)) }.map { Int32($0) }
    }

    // MARK: - Threads

    /// Thread ids of the process (`/proc/PID/task`), ascending; the first is the main thread (tid == pid).
    static func threads(of pid: Int32) -> [Int32] {
        (directoryEntries("/proc/\(pid)/task") ?? []).compactMap { Int32($0) }.sorted()
    }

    /// The calling thread's id (from the `/proc/thread-self` link, "PID/task/TID").
    static func currentThreadID() -> Int32? {
        readLink("/proc/thread-self").flatMap { $0.split(separator: "/").last.flatMap { Int32($0) } }
    }

    /// `/proc/PID/task/TID/status`: per-thread fields (SigBlk differs between threads).
    static func status(of pid: Int32, thread tid: Int32) -> [String: String]? {
        guard let text = readText("/proc/\(pid)/task/\(tid)/status") else { return nil }
        return parseStatus(text)
    }

    /// Blocked signals of one thread. /proc/PID/status only shows the main thread's mask, but a signal
    /// sent to the process can be delivered to any thread that does not block it.
    static func signalMask(of pid: Int32, thread tid: Int32) -> UInt64? {
        status(of: pid, thread: tid)?["SigBlk"].flatMap { UInt64($0, radix: 16) }
    }

    /// Resident set size in KiB (`VmRSS`); `nil` for zombies and kernel threads.
    static func rssKiB(of pid: Int32) -> Int? {
        guard let value = status(of: pid)?["VmRSS"] else { return nil }
        return Int(value.split(separator: " ").first ?? "")
    }

    /// Number of threads (`Threads`).
    static func threadCount(of pid: Int32) -> Int? {
        status(of: pid)?["Threads"].flatMap { Int($0) }
    }
}

private extension Substring {
    func trimmed(_ set: String) -> String {
        var slice = self[...]
        while let first = slice.first, set.contains(first) { slice.removeFirst() }
        while let last = slice.last, set.contains(last) { slice.removeLast() }
        return String(slice)
    }
}
