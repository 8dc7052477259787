import ArgumentParser
import Glibc
import Logging
import PoolvisorCore
import PoolvisorDaemon
import PoolvisorLinux
import PoolvisorSystem

/// `poolvisor run`: the supervisor itself, in a terminal or under systemd.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the pools of a pools file in the foreground until SIGTERM or SIGINT.",
        discussion:
            "Worker output is relayed line by line as 'pool.replica | line'. SIGTERM or Ctrl-C drains every worker (SIGTERM, then SIGKILL after the pool's drain_seconds); a second Ctrl-C kills at once."
    )

    @OptionGroup var options: ConfigOption

    @Option(help: "Lowest level of the supervisor's own log lines: debug, info, notice, warning, error.")
    var logLevel: String = "info"

    @Flag(help: "Never colour output, even on a terminal.")
    var noColor = false

    @Option(help: ArgumentHelp("Serve the control socket here (default: [supervisor] control_socket, else control.sock in the runtime directory).", valueName: "path"))
    var socket: String?

    @Option(help: .hidden)
    var handover: Int32?

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of debug, info, notice, warning, error")
        }
    }

    func run() throws {
        let colour = !noColor && isatty(1) == 1 && getenv("NO_COLOR") == nil && String(cString: getenv("TERM") ?? strdup("dumb")) != "dumb"
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let style: ConsoleLogHandler.Style = JournalStreams.stderrIsJournal() ? .journal : .terminal(colour: colour && isatty(2) == 1)
        LoggingSystem.bootstrap { _ in ConsoleLogHandler(level: level, style: style) }
        let logger = Logger(label: "poolvisor")

        // The spawn server first, while this is the only thread: the pools file is parsed in a fork of it.
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let spawner: Spawner
        do {
            spawner = try Spawner(nofileSoft: Int64(clamping: limit.rlim_cur), forkEntry: ParserProcess.forkEntry)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        if let handover { return try takeOver(handover, logger: logger, spawner: spawner, colour: colour) }
        let result = PoolsFileLoader.load(options.config, parser: .ownBinary(forkingFrom: spawner))
        for d in result.diagnostics {
            logger.log(level: d.severity == .error ? .error : .warning, "\(d.description)")
        }
        guard let file = result.file else {
            logger.error("\(options.config) is invalid (\(plural(result.diagnostics.errors.count, "error"))); nothing started")
            throw ExitCode(1)
        }
        logger.info("poolvisor \(Poolvisor.version) (pid \(getpid())) running \(file.path) as instance '\(file.supervisor.name)'")
        let daemon: Daemon
        do {
            daemon = try Daemon(
                file: file, logger: logger, options: .init(colour: colour, controlSocket: socket, version: Poolvisor.version, logLevel: logLevel), spawner: spawner)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        let code = try daemon.run()
        if code != 0 { throw ExitCode(code) }
    }

    /// The new image of an in-place upgrade: goes on with the state the old one handed over. If it
    /// cannot, it stops every worker it inherited and exits non-zero (the guardian, whose pipe closes
    /// then, kills whatever they started; under systemd the unit is restarted cleanly).
    private func takeOver(_ fd: Int32, logger: Logger, spawner: Spawner, colour: Bool) throws {
        let entered = MonotonicClock.now()
        let state: UpgradeState
        switch UpgradeState.read(from: fd) {
        case .success(let s):
            state = s
            logger.debug(
                "upgrade: the new image ran \(entered.since(s.began).humanReadable) after the handover began; read its state in \(MonotonicClock.now().since(entered).humanReadable)"
            )
        case .failure(let error):
            // Without the state, the workers are known as this process's children: each one's process
            // group is killed; the guardian (left alone) kills what they left when this process exits.
            let server = spawner.serverPID
            let children = ProcessTable.ownChildren().filter { $0 != server && ProcessTable.name(of: $0) != Guardian.processName }
            logger.critical("upgrade: cannot take over: \(error); stopping the \(children.count) inherited workers and exiting")
            for pid in children { kill(-pid, SIGKILL) }
            for pid in children { kill(pid, SIGKILL) }
            throw ExitCode(1)
        }
        let daemon: Daemon
        do {
            daemon = try Daemon(
                file: state.reconciler.file, logger: logger,
                options: .init(colour: colour, controlSocket: socket, version: Poolvisor.version, logLevel: logLevel), spawner: spawner, handover: state)
        } catch {
            let pids: [Int32] = state.reconciler.pools.flatMap { Array($0.workers.keys) }
            logger.critical("upgrade: cannot take over: \(error); stopping the \(pids.count) inherited workers and exiting")
            for pid in pids { kill(-pid, SIGKILL) }
            for pid in pids { kill(pid, SIGKILL) }
            throw ExitCode(1)
        }
        let code = try daemon.run()
        if code != 0 { throw ExitCode(code) }
    }
}
