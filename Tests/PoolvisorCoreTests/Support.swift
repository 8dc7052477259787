import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import PoolvisorDaemon
import Testing

/// A host with a few files, directories and executables, for validation tests.
struct FakeHost: HostProbe {
    var files: [String: String] = [:]
    var directories: Set<String> = ["/srv/app", "/tmp"]
    var executables: Set<String> = ["/usr/bin/python3", "/bin/sh", "/bin/sleep", "/srv/app/bin/worker"]
    var supervisorEnvironment: [String: String] = ["PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "SECRET_OF_SUPERVISOR": "x"]

    func readTextFile(_ path: String) -> Result<String, HostProbeError> {
        files[path].map { .success($0) } ?? .failure(HostProbeError("No such file or directory"))
    }

    func isDirectory(_ path: String) -> Bool { directories.contains(path) }
    func isExecutableFile(_ path: String) -> Bool { executables.contains(path) }
    func groupID(named name: String) -> UInt32? { ["root": 0, "adm": 4, "poolvisor": 990, "nogroup": 65534][name] }
    var users: [String: HostUser] = [
        "nobody": HostUser(name: "nobody", uid: 65534, gid: 65534, home: "/nonexistent", groups: [65534]),
        "worker": HostUser(name: "worker", uid: 1001, gid: 1001, home: "/home/worker", groups: [1001, 4]),
    ]
    func user(named name: String) -> HostUser? { users[name] }
    /// Modes of files by path; files not listed are 0600, owned by root.
    var modes: [String: UInt32] = [:]
    func fileStatus(_ path: String) -> FileStatus? {
        files[path] == nil ? nil : FileStatus(owner: 0, group: 0, mode: modes[path] ?? 0o600)
    }
    var onlineCPUs: Set<Int> { Set(0..<8) }
    func knowsTimeZone(_ name: String) -> Bool { ["UTC", "Europe/Paris", "America/New_York"].contains(name) }
    var hostname: String { "testhost" }
}

/// A tiny TOML-to-ConfigValue builder so decoder tests do not need a parser: tests describe the
/// document both as text (for positions) and as values.
func decode(_ text: String, _ root: ConfigTable, host: FakeHost = FakeHost(), file: String = "/etc/poolvisor/pools.toml") -> PoolsFileDecoder.Result {
    PoolsFileDecoder.decode(root, text: text, file: file, host: host)
}

func table(_ entries: KeyValuePairs<String, ConfigValue>) -> ConfigValue {
    .table(ConfigTable(entries.map { ($0.key, $0.value) }))
}

func strings(_ items: String...) -> ConfigValue { .array(items.map { .string($0) }) }

extension ConfigValue {
    var asTable: ConfigTable {
        guard case .table(let t) = self else { fatalError("not a table") }
        return t
    }
}

func seconds(_ s: Double) -> Instant { Instant(nanoseconds: UInt64(s * 1e9)) }

/// Plays the kernel and the rest of the edge for the real `Shell` (the daemon's action interpreter)
/// and its `Reconciler`: hands out pids for spawns, records signals, log lines, systemd notifications
/// and trigger reads, and moves a fake clock from deadline to deadline.
final class SimulatedWorld: Edge {
    private(set) var shell: Shell!
    var reconciler: Reconciler {
        get { shell.reconciler }
        set { shell.reconciler = newValue }
    }
    var now = Instant(nanoseconds: 1_000_000_000)
    var nextPid: Int32 = 100
    /// pid → replica for processes alive in the simulated kernel.
    var alive: [Int32: ReplicaID] = [:]
    var signals: [(group: Int32, signal: Signal)] = []
    var logs: [LogRecord] = []
    /// What systemd was told, but the start timeout's extension (in `startTimeoutExtensions`).
    var systemd: [SystemdNotification] = []
    var startTimeoutExtensions: [Duration] = []
    var spawns: [WorkerLaunch] = []
    /// What each pid was started with.
    var launches: [Int32: WorkerLaunch] = [:]
    var exitCode: Int32? { shell.exitCode }
    /// Programs that fail to exec, by pool.
    var failingPools: Set<String> = []
    /// Pools whose triggers the reconciler asked to read, in order, and whether with the queue trigger.
    var reads: [String] = []
    var queueReads: [Bool] = []
    /// Probe attempts asked for and neither answered nor cancelled, by attempt; every one asked for.
    var probesUnderWay: [UInt64: ProbeRun] = [:]
    var probesRun: [ProbeRun] = []
    var cancelledProbes: [UInt64] = []

    init(_ pools: [PoolSpec], supervisor: SupervisorSpec = SupervisorSpec(), notifyDirectory: String? = "/run/test/notify") {
        let reconciler = Reconciler(file: PoolsFile(path: "pools.toml", supervisor: supervisor, pools: pools), notifyDirectory: notifyDirectory, seed: 42)
        shell = Shell(reconciler: reconciler, edge: self)
    }

    /// The edge reports `event`; the spawns it leads to all go out at once (the daemon's slices, unbounded).
    func send(_ event: Event) {
        shell.feed(event)
        shell.spawnWaiting(until: nil)
        checkCounts()
    }

    /// The counts the funnels keep agree with a scan of the slots and workers, after every step.
    func checkCounts() {
        for pool in reconciler.pools {
            let active = pool.replicas.count { $0.state != .vacant }
            let ready = pool.workers.values.count { $0.state == .ready }
            if pool.activeSlots != active || pool.readyWorkers != ready {
                Issue.record("pool \(pool.spec.name): activeSlots \(pool.activeSlots) (scan: \(active)), readyWorkers \(pool.readyWorkers) (scan: \(ready))")
            }
        }
    }

    // MARK: The edge

    func monotonicNow() -> Instant { now }

    /// The wall clock in every zone: `wallClockStart` at the fake clock's start, moving with it.
    var wallClockStart = CivilTime(year: 2026, month: 12, day: 3, hour: 9, minute: 0)!
    var clockReads: [String] = []
    func civilTime(in timeZone: String) -> (time: CivilTime?, secondsIntoMinute: Double) {
        clockReads.append(timeZone)
        guard timeZone != "Nowhere/Unknown" else { return (nil, 0) }
        let elapsed = now.since(Instant(nanoseconds: 1_000_000_000)).seconds
        let seconds = wallClockStart.secondsSinceEpoch + Int64(elapsed.rounded(.down))
        return (CivilTime(secondsSinceEpoch: seconds - seconds % 60), Double(seconds % 60) + elapsed - elapsed.rounded(.down))
    }

    func spawn(_ launch: WorkerLaunch) -> Result<Int32, EdgeFailure> {
        spawns.append(launch)
        if failingPools.contains(launch.replica.pool) {
            return .failure(EdgeFailure("exec \(launch.executable): No such file or directory"))
        }
        let pid = nextPid
        nextPid += 1
        alive[pid] = launch.replica
        launches[pid] = launch
        return .success(pid)
    }

    func signal(processGroup group: Int32, _ signal: Signal) { signals.append((group, signal)) }
    func tell(_ notification: SystemdNotification, status: String) {
        if case .extendStartTimeout(let by) = notification { startTimeoutExtensions.append(by) } else { systemd.append(notification) }
    }
    func readTriggers(pool: String, queue: Bool) {
        reads.append(pool)
        queueReads.append(queue)
    }
    func log(_ record: LogRecord) { logs.append(record) }
    var events: [LifecycleEvent] = []
    func record(_ event: LifecycleEvent) { events.append(event) }
    var heartbeats: [[WorkerBeat]] = []
    func heartbeat(_ beats: [WorkerBeat]) { heartbeats.append(beats) }
    /// Fleet heartbeats asked for, and whether the host left its fleet.
    var fleetHeartbeats = 0
    var leftFleet = false
    func fleetHeartbeat() { fleetHeartbeats += 1 }
    func fleetLeave() { leftFleet = true }
    func probe(_ run: ProbeRun) {
        probesUnderWay[run.attempt] = run
        probesRun.append(run)
    }
    func cancelProbe(attempt: UInt64) {
        probesUnderWay[attempt] = nil
        cancelledProbes.append(attempt)
    }
    func poolsInForce(_ pools: [PoolSpec]) {}
    func forget(pool: String) {}
    func arm(deadline: Instant?) {}

    // MARK: Driving it

    /// Moves the clock to `instant`, delivering every deadline on the way.
    func advance(to instant: Instant) {
        while let next = reconciler.nextDeadline, next <= instant {
            now = max(now, next)
            send(.deadlineReached)
        }
        now = max(now, instant)
    }

    func advance(by seconds: Double) { advance(to: now + .seconds(seconds)) }

    /// The worker process in `id` exits with `status`.
    func exit(_ id: ReplicaID, _ status: WaitStatus = .exited(1)) {
        guard let pid = reconciler.view(id)?.worker?.pid else { fatalError("\(id) has no worker") }
        alive[pid] = nil
        send(.exited(pid: pid, status))
    }

    /// The worker in `id` sends `message` on its NOTIFY_SOCKET.
    func notify(_ id: ReplicaID, _ message: NotifyMessage) {
        guard let pid = reconciler.view(id)?.worker?.pid else { fatalError("\(id) has no worker") }
        send(.notified(pid: pid, message))
    }

    @discardableResult
    func perform(_ command: Command) -> CommandOutcome {
        let outcome = shell.perform(command)
        shell.spawnWaiting(until: nil)
        checkCounts()
        return outcome
    }

    /// Reloads with these pools (and the same supervisor settings).
    @discardableResult
    func reload(_ pools: [PoolSpec]) -> CommandOutcome {
        let file = PoolsFile(path: "pools.toml", supervisor: reconciler.file.supervisor, pools: pools)
        return perform(.reload(PoolsFileDecoder.Result(file: file, diagnostics: [])))
    }

    /// Pids of the workers alive in the simulated kernel for a pool.
    func pids(_ pool: String) -> Set<Int32> { Set(alive.filter { $0.value.pool == pool }.keys) }

    /// Every signalled process that was sent `signal` exits from it (as a default handler would).
    func honour(_ signal: Signal, exitStatus: WaitStatus? = nil) {
        let targets = signals.filter { $0.signal == signal }.map(\.group)
        for pid in targets where alive[pid] != nil {
            alive[pid] = nil
            send(.exited(pid: pid, exitStatus ?? .signaled(signal, coreDumped: false)))
        }
    }

    /// Answers the probes of this kind under way (for one worker, or all) with `outcome`; returns how many.
    @discardableResult
    func answerProbes(_ kind: ProbeKind, _ outcome: ProbeOutcome, pid: Int32? = nil) -> Int {
        let runs = probesUnderWay.values.filter { $0.kind == kind && (pid == nil || $0.pid == pid) }.sorted { $0.attempt < $1.attempt }
        for run in runs {
            probesUnderWay[run.attempt] = nil
            send(.probed(pid: run.pid, run.kind, attempt: run.attempt, outcome))
        }
        return runs.count
    }

    func state(_ pool: String, _ index: Int) -> ReplicaView? { reconciler.view(ReplicaID(pool: pool, index: index)) }
    func replica(_ pool: String, _ index: Int) -> Replica { reconciler.replica(ReplicaID(pool: pool, index: index))! }
    var logText: String { logs.map(\.message).joined(separator: "\n") }
}

func pool(
    _ name: String, replicas: Int = 1, readiness: Readiness = .started(after: .seconds(1)), drain: Double = 30,
    watchdog: Double? = nil, backoff: BackoffPolicy = BackoffPolicy()
) -> PoolSpec {
    var p = PoolSpec(name: name, command: ["/bin/sleep", "1000"], drain: .seconds(drain), readiness: readiness, backoff: backoff)
    p.replicas = replicas
    p.watchdog = watchdog.map { .seconds($0) }
    return p
}

extension Reconciler.Pool {
    /// Each slot with the worker holding it, by index.
    var views: [ReplicaView] { replicas.indices.map(view) }
}

/// A state machine's decisions against a table keyed "state/event" that names every pair exactly once.
func checkEveryPair<State, Event, Step: Equatable>(
    _ states: [(String, State)], _ events: [(String, Event)], _ expected: [String: Step], _ decide: (State, Event) -> Step
) {
    #expect(expected.count == states.count * events.count)
    for (s, state) in states {
        for (e, event) in events {
            let key = "\(s)/\(e)"
            guard let want = expected[key] else {
                Issue.record("no expectation for \(key)")
                continue
            }
            #expect(decide(state, event) == want, "\(key)")
        }
    }
}
