import CShim
import Glibc
import Logging
import PoolvisorCore

/// The shell between the pure core and the Linux edge: feeds what happens (signals, exits, notify
/// datagrams, deadlines) to the `Reconciler` and carries out the actions it returns. It decides nothing.
public final class Daemon {
    public struct Options: Sendable {
        public var colour: Bool
        public init(colour: Bool) { self.colour = colour }
    }

    private var reconciler: Reconciler
    private let loop: EventLoop
    private let signals: SignalSource
    private let deadline: DeadlineTimer
    private let spawner: Spawner
    private let relay: OutputRelay
    private let systemd: SystemdNotifier
    private let logger: Logger
    private var notify: NotifySockets?
    private var watchdogTimer: DeadlineTimer?
    private var exitCode: Int32?
    /// The STATUS= line systemd last got.
    private var sentStatus = ""

    public init(file: PoolsFile, logger: Logger, options: Options) throws {
        self.logger = logger
        // Thousands of workers mean thousands of pipes: take the hard limit; workers get the soft one back.
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let originalSoft = Int64(limit.rlim_cur)
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        }
        // Writing to a worker's closed socket or a closed stdout must be an error, not death.
        signal(SIGPIPE, SIG_IGN)
        // Orphans of workers are re-parented to us, so we reap (and at the end kill) them.
        if cshim_set_child_subreaper() != 0 {
            logger.warning("cannot become child subreaper: \(SystemError("prctl(PR_SET_CHILD_SUBREAPER)"))")
        }
        loop = try EventLoop()
        signals = try SignalSource()
        deadline = try DeadlineTimer()
        spawner = try Spawner(nofileSoft: originalSoft)
        systemd = SystemdNotifier()
        relay = OutputRelay(loop: loop, colour: options.colour, pools: file.pools)
        let notifyDirectory = RuntimeDirectory.notifyDirectory(runtime: RuntimeDirectory.resolve(), instance: file.supervisor.name)
        let seed = UInt64(UInt32(bitPattern: getpid())) << 32 ^ MonotonicClock.now().nanoseconds
        reconciler = Reconciler(file: file, notifyDirectory: notifyDirectory, seed: seed)
        reconciler.logLevel = switch logger.logLevel {
        case .trace, .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error, .critical: .error
        }
    }

    /// Runs until every worker has stopped after SIGTERM or SIGINT; returns the exit code.
    public func run() throws -> Int32 {
        if cshim_signals_blocked_at_start() == 0 {
            logger.warning("signals were not blocked before main; a signal that arrived early may have been lost")
        }
        notify = NotifySockets(loop: loop) { [unowned self] id, message, sender in self.notified(id, message, from: sender) }
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

        feed(.start)
        // Parsing the pools file and starting up leave freed memory behind; give it back to the kernel.
        _ = cshim_malloc_trim()
        while exitCode == nil {
            loop.runOnce()
            sendStatusIfChanged()
        }

        relay.closeAll()
        notify?.releaseAll()
        killLeftoverChildren()
        return exitCode ?? 0
    }

    // MARK: - Events in

    private func feed(_ event: Event) {
        execute(reconciler.handle(event, at: MonotonicClock.now()))
        deadline.arm(at: reconciler.nextDeadline)
    }

    private func handleSignals() {
        for (signo, sender) in signals.readPending() {
            switch signo {
            case SIGCHLD:
                reap()
            case SIGTERM, SIGINT:
                logger.debug("received \(Signal(signo)) from pid \(sender)")
                feed(.stopRequested(Signal(signo)))
            case SIGHUP:
                logger.notice("SIGHUP: reloading the pools file is not supported yet; nothing changed")
            default:
                break
            }
        }
    }

    private func reap() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            guard pid > 0 else { return }
            relay.drain(worker: pid)
            let result: WaitStatus = cshim_wifsignaled(status) != 0
                ? .signaled(Signal(cshim_wtermsig(status)), coreDumped: cshim_wcoredump(status) != 0)
                : .exited(cshim_wexitstatus(status))
            feed(.exited(pid: pid, result))
        }
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

    // MARK: - Actions out

    private func execute(_ actions: [Action]) {
        for action in actions {
            switch action {
            case .spawn(let launch): spawn(launch)
            case .signal(let group, let signal): kill(-group, signal.number)
            case .log(let record): log(record)
            case .tellSystemd(let notification):
                sentStatus = reconciler.statusLine
                systemd.send(notification, status: sentStatus)
            case .forget(let pool): notify?.forget(pool: pool)
            case .exit(let code): exitCode = code
            }
        }
    }

    private func sendStatusIfChanged() {
        let line = reconciler.statusLine
        guard line != sentStatus else { return }
        sentStatus = line
        systemd.status(line)
    }

    private func spawn(_ launch: WorkerLaunch) {
        let id = launch.replica
        if let path = launch.notifySocket {
            do {
                try notify?.ensure(id, path: path)
            } catch {
                execute(reconciler.handle(.spawnFailed(id, reason: "\(error)"), at: MonotonicClock.now()))
                return
            }
        }
        switch spawner.spawn(launch) {
        case .success(let worker):
            relay.attach(worker.output, worker: worker.pid, replica: id)
            execute(reconciler.handle(.spawned(id, pid: worker.pid), at: MonotonicClock.now()))
        case .failure(let error):
            execute(reconciler.handle(.spawnFailed(id, reason: error.description), at: MonotonicClock.now()))
        }
    }

    private func log(_ record: LogRecord) {
        let level: Logger.Level = switch record.level {
        case .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        }
        logger.log(level: level, "\(record.message)")
    }

    /// After the drain: anything still our child (an orphan a worker left, adopted because we are its
    /// subreaper) is killed and reaped, so that nothing outlives the supervisor.
    private func killLeftoverChildren() {
        var killed = 0
        for _ in 0..<10 {
            let children = ProcessTable.ownChildren()
            if children.isEmpty { break }
            for pid in children where kill(pid, SIGKILL) == 0 { killed += 1 }
            var status: Int32 = 0
            while waitpid(-1, &status, 0) > 0 {}
        }
        if killed > 0 { logger.notice("killed \(killed) leftover process\(killed == 1 ? "" : "es") that workers had started") }
    }
}
