import Glibc
import PoolvisorCore
import PoolvisorSystem

/// Exec probes: a command started as its worker is (environment, user, working directory, the
/// worker's cgroup when it has one), in its own process group, its output into a pipe of which only
/// the last lines are kept. The core times each one out and cancels it: its process group is killed.
/// The supervisor's reaper hands every reaped pid to `reaped` first.
public final class ExecProbes {
    private struct Running {
        var attempt: UInt64
        var output: Int32
        var registration: EventLoop.Registration?
        /// The end of its output, at most `keptBytes`.
        var tail: [UInt8] = []
        var done: ((UInt64, ProbeOutcome) -> Void)?
    }

    /// Output kept per probe, and lines shown.
    static let keptBytes = 2048
    static let longestLine = 200

    private let loop: EventLoop
    private let spawner: Spawner
    private var byPid: [Int32: Running] = [:]
    private var pidOf: [UInt64: Int32] = [:]

    public init(loop: EventLoop, spawner: Spawner) {
        self.loop = loop
        self.spawner = spawner
    }

    /// Probe processes not yet reaped (cancelled ones included).
    public var running: Int { byPid.count }

    /// Starts the probe. `cgroups` are open `cgroup.procs` files it joins (the caller closes them).
    /// `done` comes once, when it has been reaped, unless it was cancelled.
    public func start(
        _ attempt: UInt64, _ launch: WorkerLaunch, cgroups: [Int32], throughServer: Bool, done: @escaping (UInt64, ProbeOutcome) -> Void
    ) {
        switch spawner.spawn(launch, cgroups: cgroups, throughServer: throughServer) {
        case .failure(let error):
            done(attempt, .failure("cannot start it: \(error)"))
        case .success(let spawned):
            guard let output = spawned.output else { return }
            var probe = Running(attempt: attempt, output: output, done: done)
            let pid = spawned.pid
            probe.registration = try? loop.add(output) { [unowned self] _ in self.read(pid) }
            byPid[pid] = probe
            pidOf[attempt] = pid
        }
    }

    /// Kills the probe's process group; it is reaped as usual, and no `done` comes.
    public func cancel(_ attempt: UInt64) {
        guard let pid = pidOf.removeValue(forKey: attempt) else { return }
        byPid[pid]?.done = nil
        kill(-pid, SIGKILL)
    }

    /// Whether `pid` was a probe: then its result goes to its `done` (unless cancelled).
    public func reaped(_ pid: Int32, _ status: WaitStatus) -> Bool {
        guard byPid[pid] != nil else { return false }
        read(pid)
        guard let probe = byPid.removeValue(forKey: pid) else { return true }
        if let registration = probe.registration { loop.forgetBeforeClose(registration) }
        close(probe.output)
        // Whatever it left in its process group goes with it.
        kill(-pid, SIGKILL)
        guard let done = probe.done else { return true }
        pidOf[probe.attempt] = nil
        switch status {
        case .exited(0): done(probe.attempt, .success)
        case .exited(let code): done(probe.attempt, .failure("exit code \(code)", output: Self.lastLines(probe.tail)))
        case .signaled(let signal, _): done(probe.attempt, .failure("killed by \(signal)", output: Self.lastLines(probe.tail)))
        }
        return true
    }

    /// Reads what the probe wrote, keeping the end.
    private func read(_ pid: Int32) {
        guard let fd = byPid[pid]?.output else { return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else {
                if n == 0, let registration = byPid[pid]?.registration {
                    loop.remove(registration)  // EOF: the pipe stays open until the reap
                    byPid[pid]?.registration = nil
                }
                return
            }
            byPid[pid]?.tail.append(contentsOf: buffer[0..<n])
            if let count = byPid[pid]?.tail.count, count > Self.keptBytes {
                byPid[pid]?.tail.removeFirst(count - Self.keptBytes)
            }
        }
    }

    /// The last few non-empty lines, each cut to a readable length.
    static func lastLines(_ bytes: [UInt8]) -> [String] {
        // Control characters (a terminal's escapes) become spaces: these lines are shown in status.
        let text = String(decoding: bytes.map { $0 < 0x20 && $0 != 0x0a && $0 != 0x0d || $0 == 0x7f ? 0x20 : $0 }, as: UTF8.self)
        let lines = text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).map { $0.trimmingTrailingSpaces }.filter { !$0.isEmpty }
        return lines.suffix(ProbeOutcome.keptLines).map { $0.count > longestLine ? String($0.prefix(longestLine)) + "…" : String($0) }
    }
}

extension Substring {
    fileprivate var trimmingTrailingSpaces: Substring {
        var s = self
        while let last = s.last, last == " " || last == "\t" { s.removeLast() }
        return s
    }
}
