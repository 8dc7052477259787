import CShim
import Glibc
import Logging
import PoolvisorControl
import PoolvisorCore
import PoolvisorLinux
import PoolvisorScalers
import PoolvisorSystem

/// The shell between the pure core and the Linux edge: feeds what happens (signals, exits, notify
/// datagrams, deadlines) to the `Reconciler` and carries out the actions it returns. It decides nothing.
public final class Daemon {
    public struct Options: Sendable {
        public var colour: Bool
        /// `run --socket`: serve the control socket here instead of the default.
        public var controlSocket: String?
        public var version: String
        /// `run --log-level`, for the image an in-place upgrade starts.
        public var logLevel: String
        public init(colour: Bool, controlSocket: String? = nil, version: String, logLevel: String = "info") {
            self.colour = colour
            self.controlSocket = controlSocket
            self.version = version
            self.logLevel = logLevel
        }
    }

    /// `poolvisor upgrade` was accepted: hand over to this binary at the end of the loop turn.
    var pendingUpgrade: String?
    /// The new binary's `handover-formats`, running beside the loop.
    var upgradeCheck: UpgradeCheck?
    /// Upgrades refused since the start, and why the last one was.
    var upgradeRefusals = 0
    var upgradeRefused: String?
    /// The state an earlier image handed over (`run --handover`), taken over in `run()`.
    private var handover: UpgradeState?

    /// The core and its action interpreter; this daemon is its edge.
    var shell: Shell!
    var reconciler: Reconciler {
        get { shell.reconciler }
        set { shell.reconciler = newValue }
    }
    let loop: EventLoop
    let signals: SignalSource
    let deadline: DeadlineTimer
    let spawner: Spawner
    /// Kills what the workers leave if poolvisor dies without a word; nil if it could not be started.
    var guardian: Guardian?
    let relay: OutputRelay
    let systemd: SystemdNotifier
    let logger: Logger
    var notify: NotifySockets?
    /// The autoscaled pools' PostgreSQL and Redis readers, on their own threads.
    var scalers: Scalers?
    /// `[supervisor.fleet]`: this host's membership, on its own thread.
    var fleet: FleetMembership?
    var control: ControlServer?
    /// `metrics_listen`: GET /metrics.
    var metricsServer: MetricsServer?
    let metrics = Metrics()
    /// The events' ring, followers, journal records and Redis stream.
    let outlets = EventOutlets()
    let usage = ProcessUsageReader()
    var probes: ProbeRunner!
    /// Under systemd: workers write straight into the journal instead of through the relay.
    private let journal = JournalStreams.detect()
    private var journalFailureLogged = false
    /// Per-worker cgroups for pools with `[resources]`, when the host allows.
    var cgroups: Cgroups?
    let options: Options
    private var watchdogTimer: DeadlineTimer?
    private var spawnedSinceTrim = 0
    /// The size of the last full status answer (and an eighth), so the next one's buffer grows once.
    var lastStatusSize = 0
    /// Relayed workers (a pipe each) from which spawns go through the spawn server: measured, the
    /// server's round trip and an exec closing this many files cost about the same.
    static let spawnServerFromFiles = 512
    /// Blocks this big or bigger are mapped on their own and unmapped when freed (glibc's initial value).
    static let mmapThreshold: Int32 = 128 << 10
    /// How long one loop turn spends spawning before it serves everything else again: see `sliceLength`.
    static let spawnSlice = Duration.milliseconds(10)
    static let longestSpawnSlice = Duration.milliseconds(20)
    static let shortSpawnSlice = Duration.milliseconds(1)
    /// RLIMIT_NOFILE as raised at start, and whether the log has said that open files come close to it.
    let fileLimit: Int
    private var warnedAboutFileLimit = false

    /// - Parameter spawner: the one that parsed `file`, if any (see `Spawner`); else one is made here.
    /// - Parameter handover: what the image before an in-place upgrade handed over (`run --handover`).
    public init(file: PoolsFile, logger: Logger, options: Options, spawner: Spawner? = nil, handover: UpgradeState? = nil) throws {
        self.handover = handover
        self.logger = logger
        self.options = options
        // Thousands of workers mean thousands of pipes: take the hard limit; workers get the soft one back.
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let originalSoft = Int64(limit.rlim_cur)
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        }
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        fileLimit = Int(clamping: limit.rlim_cur)
        // A status answer of megabytes is built and freed each time: keep such blocks out of the heap.
        _ = cshim_malloc_fix_mmap_threshold(Self.mmapThreshold)
        // Writing to a worker's closed socket or a closed stdout must be an error, not death.
        Glibc.signal(SIGPIPE, SIG_IGN)
        // Workers spawned here get it back to the default (the spawn server never ignored it).
        cshim_spawn_prepare()
        // Orphans of workers are re-parented to us, so we reap (and at the end kill) them.
        if cshim_set_child_subreaper() != 0 {
            logger.warning("cannot become child subreaper: \(SystemError("prctl(PR_SET_CHILD_SUBREAPER)"))")
        }
        loop = try EventLoop()
        signals = try SignalSource()
        deadline = try DeadlineTimer()
        self.spawner = try spawner ?? Spawner(nofileSoft: handover?.nofileSoft ?? originalSoft, forkEntry: ParserProcess.forkEntry)
        if let handed = handover?.guardian {
            let guardian = Guardian(adopting: .init(descriptor: handed.descriptor, pid: handed.pid, marker: handed.marker), spawner: self.spawner)
            guardian.knows(handed.groups)
            self.guardian = guardian
            self.spawner.guardian = guardian
        } else if handover == nil {
            do {
                let guardian = try Guardian(spawner: self.spawner)
                self.guardian = guardian
                self.spawner.guardian = guardian
                logger.debug("guardian: pid \(guardian.pid), \(Guardian.variable)=\(guardian.marker)")
            } catch {
                logger.warning("cannot start the guardian (\(error)); if poolvisor is killed, what its workers started outlives it")
            }
        }
        systemd = SystemdNotifier()
        relay = OutputRelay(loop: loop, colour: options.colour, pools: file.pools)
        let notifyDirectory = RuntimeDirectory.notifyDirectory(runtime: RuntimeDirectory.resolve(), instance: file.supervisor.name)
        let seed = UInt64(UInt32(bitPattern: getpid())) << 32 ^ MonotonicClock.now().nanoseconds
        var reconciler = handover?.reconciler ?? Reconciler(file: file, notifyDirectory: notifyDirectory, seed: seed)
        let socketPath = ControlSocketPath.forDaemon(option: options.controlSocket, file: file)
        control = try ControlServer(path: socketPath, group: file.supervisor.controlGroup?.id, loop: loop, adopting: handover?.controlListener) {
            [unowned self] request, access, peer in
            self.control(request, access, peer)
        }
        outlets.control = control
        logger.info("control socket: \(socketPath)")
        if let address = file.supervisor.metricsListen {
            metricsServer = try MetricsServer(address: address, loop: loop, adopting: handover?.metricsListener) { [unowned self] in self.scrape() }
            logger.info("metrics: http://\(address)/metrics")
        }
        switch Cgroups.detect() {
        case .usable(let c):
            cgroups = c
            reconciler.limitsUnenforced = c.missingControllers
        case .unusable(let why):
            reconciler.limitsUnenforced = why
        }
        reconciler.logLevel =
            switch logger.logLevel {
            case .trace, .debug: .debug
            case .info: .info
            case .notice: .notice
            case .warning: .warning
            case .error, .critical: .error
            }
        shell = Shell(reconciler: reconciler, edge: self)
        probes = ProbeRunner(loop: loop, spawner: self.spawner, cgroups: cgroups) { [unowned self] event in self.feed(event) }
    }

    /// Runs until every worker has stopped after SIGTERM or SIGINT; returns the exit code.
    public func run() throws -> Int32 {
        if cshim_signals_blocked_at_start() == 0 {
            logger.warning("signals were not blocked before main; a signal that arrived early may have been lost")
        }
        notify = NotifySockets(loop: loop) { [unowned self] id, message, sender in self.notified(id, message, from: sender) }
        if let config = reconciler.file.supervisor.redisEvents {
            let publisher = try RedisEvents(config) { [unowned self] busy in self.feed(.busyKeysRead(busy)) }
            try loop.add(publisher.wakeup) { _ in publisher.collect() }
            outlets.redis = publisher
            logger.info("events and heartbeats go to Redis ($\(config.variable)), stream \(config.stream)")
        }
        if let config = reconciler.file.supervisor.fleet {
            let membership = try FleetMembership(config) { [unowned self] members in self.feed(.fleetRead(members)) }
            try loop.add(membership.wakeup) { _ in membership.collect() }
            fleet = membership
            logger.info("fleet \(config.name): member \(config.member), in Redis ($\(config.variable)) every \(config.heartbeat.humanReadable)")
        }
        let readers = try Scalers { [unowned self] pool, sample in self.queueRead(pool, sample) }
        try loop.add(readers.wakeup) { _ in readers.collect() }
        scalers = readers
        try loop.add(signals.fd) { [unowned self] _ in self.handleSignals() }
        try loop.add(deadline.fd) { [unowned self] _ in
            self.deadline.acknowledge()
            self.feed(.deadlineReached)
        }
        if let interval = systemd.watchdogInterval {
            let timer = try DeadlineTimer()
            timer.repeatEvery(interval)
            try loop.add(timer.fd) { [unowned self] _ in
                timer.acknowledge()
                self.systemd.watchdogPing()
            }
            watchdogTimer = timer
            logger.debug("pinging the systemd watchdog every \(interval.humanReadable)")
        }

        if let journal {
            logger.info("worker output goes straight to the journal, tagged with the pool's name: journalctl\(journal.unit.isEmpty ? "" : " -u \(journal.unit)") -t POOL")
        }
        if let handover {
            self.handover = nil
            tookOver(handover)
            reap()  // workers that exited while the exec ran
        } else {
            feed(.start)
        }
        // Parsing the pools file and starting up leave freed memory behind; give it back to the kernel.
        _ = cshim_malloc_trim()
        while shell.exitCode == nil {
            // While spawns wait, the loop only looks for what else is ready before the next slice.
            let waiting = shell.spawnsWaiting
            let turn = MonotonicClock.now()
            loop.runOnce(timeoutMilliseconds: waiting ? 0 : -1)
            spawnSlice(for: sliceLength(served: waiting ? MonotonicClock.now().nanoseconds - turn.nanoseconds : 0))
            guardian?.flush()
            sendStatusIfChanged()
            if let target = pendingUpgrade, (control?.pendingOutputBytes ?? 0) == 0 {
                pendingUpgrade = nil
                performUpgrade(target)
            }
        }
        // The final STATUS= may not have fitted in systemd's queue, and there is no next iteration.
        if reconciler.statusLine != shell.sentStatus { systemd.status(reconciler.statusLine, wait: true) }

        scalers?.stopAll()
        fleet?.stop(waitingUpTo: .seconds(1))
        outlets.redis?.stop()
        relay.closeAll()
        notify?.releaseAll()
        control?.close()
        metricsServer?.close()
        spawner.stopServer(wait: true)
        killLeftoverChildren()
        stopGuardian()
        cgroups?.removeAll()
        return shell.exitCode ?? 0
    }

    // MARK: - Events in

    func feed(_ event: Event) { shell.feed(event) }

    private func handleSignals() {
        for (signo, sender) in signals.readPending() {
            switch signo {
            case SIGCHLD:
                reap()
            case SIGTERM, SIGINT:
                logger.debug("received \(Signal(signo)) from pid \(sender)")
                feed(.stopRequested(Signal(signo)))
            case SIGHUP:
                logger.notice("SIGHUP from pid \(sender): reloading \(reconciler.file.path)")
                _ = reload()
            case SIGUSR2:
                logger.notice("SIGUSR2 from pid \(sender): upgrading in place to the binary installed now")
                _ = requestUpgrade(binary: nil)
            default:
                break
            }
        }
    }

    /// Reads the pools file again and applies what changed (or keeps everything if it is invalid),
    /// telling systemd RELOADING=1 first and READY=1 when done.
    func reload() -> CommandOutcome {
        let result = PoolsFileLoader.load(reconciler.file.path, parser: .ownBinary(forkingFrom: spawner))
        logSpawnServerFailure()
        return perform(.reload(result))
    }

    func perform(_ command: Command) -> CommandOutcome { shell.perform(command) }

    func reap() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            guard pid > 0 else { return }
            if let guardian {
                if pid == guardian.pid {
                    guardianDied(Self.waitStatus(status))
                    continue
                }
                guardian.forget(pid)
            }
            if probes.reaped(pid, Self.waitStatus(status)) { continue }
            if reapedUpgradeCheck(pid, Self.waitStatus(status)) { continue }
            relay.drain(worker: pid)
            usage.forget(pid)
            let result = Self.waitStatus(status)
            if let cgroups {
                if cgroups.cgroup(of: pid) != nil {
                    feed(.exited(pid: pid, result, oomKilled: cgroups.oomKilled(pid)))
                    cgroups.release(pid)
                } else {
                    feed(.exited(pid: pid, result))
                    cgroups.retryLeftovers()
                }
                continue
            }
            feed(.exited(pid: pid, result))
        }
    }

    static func waitStatus(_ status: Int32) -> WaitStatus {
        cshim_wifsignaled(status) != 0
            ? .signaled(Signal(cshim_wtermsig(status)), coreDumped: cshim_wcoredump(status) != 0)
            : .exited(cshim_wexitstatus(status))
    }

    /// A datagram on a replica's NOTIFY_SOCKET: from its worker, from a worker that had the slot and
    /// is draining, or from a process in one of their process groups (a launcher script's child).
    /// Anyone else is refused.
    private func notified(_ id: ReplicaID, _ message: NotifyMessage, from sender: Int32) {
        let workers = reconciler.workers(inSlot: id)
        guard !workers.isEmpty else { return }
        var from = workers.first { $0.pid == sender }
        if from == nil, sender > 0 {
            let group = getpgid(sender)
            if group >= 0 {
                from = workers.first { $0.pid == group }
            } else if workers.count == 1 {
                from = workers[0]  // the sender is already gone; only one worker could have sent it
            }
        } else if from == nil {
            from = workers.last  // no credentials: the slot's current worker
        }
        guard let worker = from else {
            logger.warning("ignored a message on \(id)'s NOTIFY_SOCKET from pid \(sender), which is not in the worker's process group")
            return
        }
        feed(.notified(pid: worker.pid, message))
    }

    private func sendStatusIfChanged() {
        let line = reconciler.statusLine
        guard line != shell.sentStatus else { return }
        if systemd.status(line) { shell.statusSent(line) }
    }

    /// A slice spawns at least as long as the rest of the turn took (`served`: a status of thousands of
    /// workers, a burst of exits), from 10 to 20 ms, so that clients asking again and again cannot slow
    /// a start wave to a crawl nor the wave keep them waiting long. While a control answer is still
    /// being written (a client reading slowly), 1 ms, so it goes on as soon as the client has read.
    private func sliceLength(served nanoseconds: UInt64) -> Duration {
        if (control?.pendingOutputBytes ?? 0) > 0 { return Self.shortSpawnSlice }
        return min(max(.nanoseconds(Int64(clamping: nanoseconds)), Self.spawnSlice), Self.longestSpawnSlice)
    }

    /// Spawns what waits for one slice of time. A launch whose replica is no longer pending (its pool
    /// was scaled down, removed or stopped meanwhile) is dropped.
    private func spawnSlice(for length: Duration) {
        guard shell.spawnsWaiting else { return }
        let spawned = shell.spawnWaiting(until: MonotonicClock.now() + length)
        spawnedSinceTrim += spawned
        if spawned >= 256 || !shell.spawnsWaiting { checkFileLimit() }
        // A wave's transient memory (launches, action lists) lies between what its workers keep:
        // give the freed pages back once it is over.
        if !shell.spawnsWaiting && spawnedSinceTrim >= 256 {
            spawnedSinceTrim = 0
            _ = cshim_malloc_trim()
        }
    }

    /// Open files this close to RLIMIT_NOFILE are worth a warning in status and the log: the next
    /// reload, env file or control connection needs a few.
    private static let fileHeadroom = 256

    /// The warning, when open files are within `fileHeadroom` of the limit (or 90 % of it). Counting
    /// /proc/self/fd costs milliseconds at 10,000 files, so it is done only when the files poolvisor
    /// knows it holds (a pipe per relayed worker, control connections, its own few) come near.
    func fileLimitWarning() -> String? {
        let threshold = max(fileLimit - Self.fileHeadroom, fileLimit * 9 / 10)
        let known = relay.streamCount + (control?.connectionCount ?? 0) + 64
        guard known * 5 / 4 >= threshold, let open = ProcessTable.openFileCount(), open >= threshold else { return nil }
        return "\(open) files open of RLIMIT_NOFILE \(fileLimit): reloads, env files and control clients may fail (raise LimitNOFILE= in the unit, or ulimit -n, and restart)"
    }

    private func checkFileLimit(force: Bool = false) {
        guard !warnedAboutFileLimit || force, let warning = fileLimitWarning() else { return }
        if !warnedAboutFileLimit { logger.warning("\(warning)") }
        warnedAboutFileLimit = true
    }

    private var spawnServerFailureLogged = false

    func logSpawnServerFailure() {
        guard !spawnServerFailureLogged, let failure = spawner.serverFailure else { return }
        spawnServerFailureLogged = true
        logger.warning("\(failure)")
    }

    /// A worker's notify socket, its journal stream or pipe, its cgroup, then the process.
    public func spawn(_ launch: WorkerLaunch) -> Result<Int32, EdgeFailure> {
        let id = launch.replica
        if let path = launch.notifySocket {
            do {
                try notify?.ensure(id, path: path, owner: launch.identity.map { ($0.uid, $0.gid) })
            } catch {
                return .failure(EdgeFailure("\(error)"))
            }
        }
        var stream: Int32?
        if let journal {
            switch journal.open(pool: id.pool) {
            case .success(let fd): stream = fd
            case .failure(let error):
                // The worker's output goes through the relay to poolvisor's own stderr stream instead.
                if !journalFailureLogged { logger.warning("\(error); relaying worker output instead") }
                journalFailureLogged = true
            }
        }
        var cgroup: Cgroups.WorkerCgroup?
        if let cgroups, !launch.resources.isEmpty {
            do {
                cgroup = try cgroups.prepare(launch)
            } catch {
                if let stream { close(stream) }
                return .failure(EdgeFailure("creating its cgroup: \(error)"))
            }
        }
        // Through the spawn server once poolvisor holds many files (a worker's exec closes every one
        // of them), here while it holds few (the server's round trip costs more than closing them).
        let result = spawner.spawn(
            launch, output: stream, cgroups: cgroup?.joinFiles ?? [],
            throughServer: relay.streamCount >= Self.spawnServerFromFiles)
        logSpawnServerFailure()
        if let stream { close(stream) }
        if let cgroup {
            if case .success(let worker) = result { cgroups?.adopt(cgroup, pid: worker.pid) } else { cgroups?.discard(cgroup) }
        }
        switch result {
        case .success(let worker):
            if let output = worker.output { relay.attach(output, worker: worker.pid, replica: id) }
            return .success(worker.pid)
        case .failure(let error):
            if error.errno == EMFILE || error.errno == ENFILE { checkFileLimit(force: true) }
            return .failure(EdgeFailure(error.description))
        }
    }

    /// Someone killed the guardian (it only ever exits once its pipe has ended): a new one.
    private func guardianDied(_ status: WaitStatus) {
        guard let guardian else { return }
        let old = guardian.pid
        let how =
            switch status {
            case .exited(let code): "gone (exit code \(code))"
            case .signaled(let signal, _): "killed by \(signal)"
            }
        do {
            try guardian.restart()
            logger.warning("the guardian (pid \(old)) was \(how); started a new one (pid \(guardian.pid))")
        } catch {
            logger.error("the guardian (pid \(old)) was \(how), and a new one cannot be started (\(error)); if poolvisor is killed, what its workers started outlives it")
            spawner.guardian = nil
            self.guardian = nil
        }
    }

    /// The guardian's last pass, once the workers are gone: it kills anything still carrying this
    /// run's marker (nothing, unless a worker's child escaped every other way) and exits.
    private func stopGuardian() {
        guard let guardian else { return }
        if guardian.dropped > 0 {
            logger.warning("the guardian's pipe was full \(guardian.dropped) time\(guardian.dropped == 1 ? "" : "s"); it may not have known every worker's process group")
        }
        switch guardian.stop() {
        case nil: logger.warning("the guardian (pid \(guardian.pid)) did not finish within 2 s; leaving it to finish")
        case 0?: break
        case let killed?: logger.notice("the guardian killed \(killed == 255 ? "255 or more" : "\(killed)") process\(killed == 1 ? "" : "es") carrying \(Guardian.variable)")
        }
        spawner.guardian = nil
        self.guardian = nil
    }

    /// After the drain: anything still our child (an orphan a worker left, adopted because we are its
    /// subreaper) is killed and reaped, so that nothing outlives the supervisor.
    private func killLeftoverChildren() {
        var killed = 0
        for _ in 0..<10 {
            // The guardian is stopped after this, and makes the last pass.
            let children = ProcessTable.ownChildren().filter { $0 != guardian?.pid }
            if children.isEmpty { break }
            for pid in children where kill(pid, SIGKILL) == 0 { killed += 1 }
            for pid in children {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            }
        }
        if killed > 0 { logger.notice("killed \(killed) leftover process\(killed == 1 ? "" : "es") that workers had started") }
    }
}

// MARK: - The shell's edge

extension Daemon: Edge {
    public func monotonicNow() -> Instant { MonotonicClock.now() }

    public func signal(processGroup group: Int32, _ signal: Signal) {
        // SIGKILL reaches the worker's whole cgroup too, and every descendant that left its process
        // group (RQ's work horse calls setpgrp), found before the worker dies and they become orphans.
        var escaped: [Int32] = []
        if signal == .kill {
            cgroups?.killAll(group)
            escaped = ProcessTable.descendants(of: group).filter { getpgid($0) != group }
        }
        if kill(-group, signal.number) != 0 && errno != ESRCH {
            logger.error("cannot send \(signal) to process group \(group): \(SystemError.message(errno))")
        }
        let killed = escaped.filter { kill($0, SIGKILL) == 0 }
        if !killed.isEmpty {
            logger.notice(
                "also killed \(killed.count == 1 ? "1 process" : "\(killed.count) processes") that worker pid \(group) had moved out of its process group: pid \(killed.map(String.init).joined(separator: ", "))"
            )
        }
    }

    public func tell(_ notification: SystemdNotification, status: String) { systemd.send(notification, status: status) }

    public func log(_ record: LogRecord) {
        let level: Logger.Level =
            switch record.level {
            case .debug: .debug
            case .info: .info
            case .notice: .notice
            case .warning: .warning
            case .error: .error
            }
        logger.log(level: level, "\(record.message)")
    }

    public func poolsInForce(_ pools: [PoolSpec]) {
        relay.update(pools: pools)
        scalers?.update(pools: pools)
    }

    public func forget(pool: String) { notify?.forget(pool: pool) }

    public func record(_ event: LifecycleEvent) {
        let queues = event.pool.flatMap { reconciler.pool(named: $0)?.spec.servedQueues } ?? []
        outlets.record(event, queues: queues, instance: reconciler.file.supervisor.name)
    }

    public func heartbeat(_ beats: [WorkerBeat]) { outlets.heartbeat(beats) }

    public func fleetHeartbeat() { fleet?.heartbeat() }

    public func fleetLeave() { fleet?.leave() }

    public func probe(_ run: ProbeRun) { probes.run(run, throughServer: relay.streamCount >= Self.spawnServerFromFiles) }

    public func cancelProbe(attempt: UInt64) { probes.cancel(attempt) }

    public func civilTime(in timeZone: String) -> (time: CivilTime?, secondsIntoMinute: Double) {
        let now = WallClock.now()
        let whole = Int64(now.rounded(.down))
        return (WallClock.civilTime(in: timeZone, at: whole), Double(whole % 60) + now - Double(whole))
    }

    public func arm(deadline at: Instant?) { deadline.arm(at: at) }
}
