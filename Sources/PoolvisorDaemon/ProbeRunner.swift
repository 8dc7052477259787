import Glibc
import PoolvisorCore
import PoolvisorLinux

/// Runs the probes the core asks for: exec probes as child processes beside their worker, HTTP and
/// TCP probes as non-blocking sockets on the loop. Answers go back through `answer`; the core times
/// every attempt out and cancels it, so a probe that hangs costs its own timeout and nothing else.
final class ProbeRunner {
    private let exec: ExecProbes
    private let network: NetworkProbes
    private let cgroups: Cgroups?
    private let answer: (Event) -> Void
    /// The kind and worker of each attempt under way, for its answer.
    private var underWay: [UInt64: (pid: Int32, kind: ProbeKind)] = [:]

    init(loop: EventLoop, spawner: Spawner, cgroups: Cgroups?, answer: @escaping (Event) -> Void) {
        exec = ExecProbes(loop: loop, spawner: spawner)
        network = NetworkProbes(loop: loop)
        self.cgroups = cgroups
        self.answer = answer
    }

    /// Probe attempts under way, and exec probe processes not yet reaped.
    var inFlight: Int { underWay.count }
    var processes: Int { exec.running }

    /// - Parameter throughServer: spawn an exec probe through the spawn server (poolvisor holds many files).
    func run(_ run: ProbeRun, throughServer: Bool) {
        underWay[run.attempt] = (run.pid, run.kind)
        let done: (UInt64, ProbeOutcome) -> Void = { [unowned self] attempt, outcome in
            guard let probe = self.underWay.removeValue(forKey: attempt) else { return }
            self.answer(.probed(pid: probe.pid, probe.kind, attempt: attempt, outcome))
        }
        switch run.check {
        case .exec(let launch):
            let files = cgroups?.joinFiles(of: run.pid) ?? []
            exec.start(run.attempt, launch, cgroups: files, throughServer: throughServer, done: done)
            for fd in files { close(fd) }
        case .httpGet, .tcpSocket:
            network.start(run.attempt, run.check, done: done)
        }
    }

    /// Every attempt under way (an in-place upgrade is about to replace this image).
    func cancelAll() {
        for attempt in Array(underWay.keys) { cancel(attempt) }
    }

    func cancel(_ attempt: UInt64) {
        guard underWay.removeValue(forKey: attempt) != nil else { return }
        exec.cancel(attempt)
        network.cancel(attempt)
    }

    /// Whether a reaped child was an exec probe (its answer, if still wanted, is sent).
    func reaped(_ pid: Int32, _ status: WaitStatus) -> Bool { exec.reaped(pid, status) }
}
