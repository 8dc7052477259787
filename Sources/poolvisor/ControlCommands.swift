import ArgumentParser
import Glibc
import PoolvisorControl
import PoolvisorCore
import PoolvisorDaemon
import PoolvisorLinux

/// `--socket` / `--instance`: which running supervisor a control command talks to.
struct SocketOption: ParsableArguments {
    @Option(help: ArgumentHelp("The supervisor's control socket (default: see below).", valueName: "path"))
    var socket: String?

    @Option(name: [.short, .long], help: ArgumentHelp("The instance of the template unit poolvisor@NAME.service.", valueName: "name"))
    var instance: String?

    static let discussion = """
        The control socket is found at --socket; else, with --instance NAME, at /run/poolvisor-NAME/control.sock \
        (as root) or $XDG_RUNTIME_DIR/poolvisor-NAME/control.sock; else at $RUNTIME_DIRECTORY/control.sock (inside \
        the unit), /run/poolvisor/control.sock, or $XDG_RUNTIME_DIR/poolvisor/control.sock, whichever exists first.
        """

    /// The socket to use, and every place looked at (for the error message).
    func resolve() -> (path: String, candidates: [String]) {
        if let socket { return (socket, [socket]) }
        let candidates = ControlSocketPath.candidates(instance: instance)
        return (candidates.first { ControlSocketPath.exists($0) } ?? candidates[0], candidates)
    }

    /// One request, one answer; exits 1 with a message naming where it looked when nobody answers.
    func request(_ request: ControlProtocol.Request, timeout: Duration = .seconds(10)) throws -> JSON {
        let (path, candidates) = resolve()
        let bytes: [UInt8]
        do {
            bytes = try ControlClient.request(socket: path, line: Array(request.json.serialized.utf8), timeout: timeout)
        } catch {
            var message = "poolvisor: \(error)"
            if case .notRunning = error, candidates.count > 1 {
                message += "\nlooked at: " + candidates.joined(separator: ", ")
            }
            printError(message)
            throw ExitCode(1)
        }
        do {
            return try JSON.parse(bytes)
        } catch {
            printError("poolvisor: the answer from \(path) is not JSON: \(error)")
            throw ExitCode(1)
        }
    }
}

/// Prints a command's answer: its lines on stdout, diagnostics and errors on stderr; exit 1 if refused.
private func report(_ answer: JSON) throws {
    let ok = answer["ok"]?.bool ?? false
    let lines = answer["lines"]?.array?.compactMap(\.string) ?? []
    if ok {
        for line in lines { print(line) }
    } else {
        let error = answer["error"]?.string ?? "refused"
        printError("poolvisor: \(error)")
        for line in lines where line != error { printError(line) }
    }
    for d in answer["diagnostics"]?.array?.compactMap(\.string) ?? [] { printError(d) }
    if !ok { throw ExitCode(1) }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the pools of the running supervisor and their replicas.",
        discussion: """
            Per pool: its state, ready/desired and running workers; per replica: pid, state, readiness, restarts, \
            age, CPU (% of one core since the previous status) and memory of the worker and its descendants, and its \
            last exit. Exit code 0 when every pool has its desired number of ready workers, 3 when one has not, \
            1 when the supervisor cannot be reached.

            \(SocketOption.discussion)
            """
    )

    @Flag(help: "Print the status as JSON (the format is documented in the README and stable).")
    var json = false

    @OptionGroup var target: SocketOption

    @Argument(help: "Only this pool.")
    var pool: String?

    func run() throws {
        let answer = try target.request(.status(pool: pool))
        guard answer["ok"]?.bool == true, let body = answer["status"] else {
            printError("poolvisor: \(answer["error"]?.string ?? "no status in the answer")")
            throw ExitCode(1)
        }
        let report: StatusReport
        do {
            report = try StatusReport(json: body)
        } catch {
            printError("poolvisor: unexpected status from the supervisor: \(error)")
            throw ExitCode(1)
        }
        if let pool, report.pools.isEmpty {
            printError("poolvisor: no pool '\(pool)'")
            throw ExitCode(1)
        }
        print(json ? body.pretty() : report.table(), terminator: json ? "\n" : "")
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the supervisor's last lifecycle events (workers started, ready, exited; scales, reloads, rollouts).",
        discussion: """
            From a ring of the last 10,000 events, oldest first. --since takes a duration: 90s, 10m, 2h, 1d. \
            With --json, one JSON object per line (the schema is in the README). With --follow, new events \
            are printed as they happen until poolvisor stops or the command is interrupted; a client that \
            does not read is dropped by poolvisor, never waited for.

            \(SocketOption.discussion)
            """
    )

    @Flag(help: "One JSON object per line.")
    var json = false

    @Flag(name: [.short, .long], help: "Keep printing new events as they happen.")
    var follow = false

    @Option(help: ArgumentHelp("Only events of the last DURATION (90s, 10m, 2h, 1d).", valueName: "duration"))
    var since: String?

    @OptionGroup var target: SocketOption

    @Argument(help: "Only this pool's (or job's) events.")
    var pool: String?

    func run() throws {
        var seconds: Double?
        if let since {
            guard let s = EventsDuration.seconds(since) else {
                printError("poolvisor: --since \(since): expected a duration such as 90s, 10m, 2h or 1d")
                throw ExitCode(1)
            }
            seconds = s
        }
        let request = ControlProtocol.Request.events(pool: pool, sinceSeconds: seconds, follow: follow)
        guard follow else {
            try show(try target.request(request))
            return
        }
        let (path, _) = target.resolve()
        var failure: ExitCode?
        do {
            try ControlClient.stream(socket: path, line: Array(request.json.serialized.utf8), timeout: .seconds(10)) { bytes in
                guard let answer = try? JSON.parse(bytes) else { return false }
                if let event = answer["event"] {
                    print(Self.line(event, json: json))
                } else {
                    do { try show(answer) } catch { failure = ExitCode(1) }
                }
                fflush(nil)  // every stream: a pipe must get each event as it comes
                return failure == nil
            }
        } catch {
            printError("poolvisor: \(error)")
            throw ExitCode(1)
        }
        if let failure { throw failure }
    }

    private func show(_ answer: JSON) throws {
        guard answer["ok"]?.bool == true, let events = answer["events"]?.array else {
            printError("poolvisor: \(answer["error"]?.string ?? "no events in the answer")")
            throw ExitCode(1)
        }
        for e in events { print(Self.line(e, json: json)) }
    }

    /// An event as a line: its JSON, or time, type, pool/replica, pid and detail.
    static func line(_ e: JSON, json: Bool) -> String {
        if json { return e.serialized }
        var line = "\(e["time"]?.string ?? "?") \(e["type"]?.string ?? "?")"
        if let pool = e["pool"]?.string { line += " \(pool)" + (e["replica"]?.int.map { "/\($0)" } ?? "") }
        if let pid = e["pid"]?.int { line += " pid \(pid)" }
        if let detail = e["detail"]?.string { line += ": \(detail)" }
        return line
    }
}

enum EventsDuration {
    /// "90s", "10m", "2h", "1d", or a bare number of seconds.
    static func seconds(_ text: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        if let unit = text.last.flatMap({ units[$0] }), let n = Double(text.dropLast()), n >= 0, n.isFinite { return n * unit }
        if let n = Double(text), n >= 0, n.isFinite { return n }
        return nil
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reload the pools file and change only what changed; wait and print what that was.",
        discussion: """
            Unchanged pools keep their workers; changed replicas start or drain only the difference; a change \
            in what a worker runs replaces that pool's workers rolling. An invalid file is rejected with its \
            errors and the previous configuration keeps running; then the exit code is 1. SIGHUP does the \
            same without waiting.

            \(SocketOption.discussion)
            """
    )

    @OptionGroup var target: SocketOption

    func run() throws {
        try report(target.request(.reload, timeout: .seconds(60)))
    }
}

struct Scale: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set a pool's number of replicas at runtime.",
        discussion: """
            Lasts until a reload of a pools file that changes that pool's replicas, or a restart of poolvisor. \
            Scaling down drains the highest replicas first, within the pool's disruption budget.

            \(SocketOption.discussion)
            """
    )

    @OptionGroup var target: SocketOption

    @Argument(help: "The pool.")
    var pool: String

    @Argument(help: "Replicas to run.")
    var replicas: Int

    func run() throws {
        try report(target.request(.scale(pool: pool, replicas: replicas)))
    }
}

struct RunJob: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run-job",
        abstract: "Start a run of a job now, like kubectl create job --from=cronjob/NAME.",
        discussion: """
            A run already under way is left alone, replaced or joined as the job's concurrency_policy says \
            (Forbid, the default for a job without a schedule, refuses). The command returns once the run \
            has started; poolvisor status shows how it ends.

            \(SocketOption.discussion)
            """
    )

    @OptionGroup var target: SocketOption

    @Argument(help: "The job.")
    var job: String

    func run() throws {
        try report(target.request(.runJob(job: job)))
    }
}

struct Restart: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace every worker of a pool, rolling, like kubectl rollout restart.",
        discussion: """
            At most the pool's rollout max_unavailable workers are down at a time, each replacement ready before \
            the next old worker drains, and never below the pool's disruption budget.

            \(SocketOption.discussion)
            """
    )

    @OptionGroup var target: SocketOption

    @Argument(help: "The pool.")
    var pool: String

    func run() throws {
        try report(target.request(.restart(pool: pool)))
    }
}

/// `poolvisor upgrade [--binary PATH]`: an in-place upgrade; waits until the new image answers.
struct Upgrade: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace the running poolvisor with a new binary without restarting a worker.",
        discussion: """
            poolvisor checks the new binary (it runs `handover-formats` and must read this version's state), then \
            hands its whole state over and execs it in the same process: the pid, the systemd unit, the control \
            socket and every worker stay. Without --binary, the binary installed where the running one was \
            started from (after a package upgrade replaced it). SIGUSR2 does the same without waiting. Waits until \
            the new image answers status and prints its version.

            \(SocketOption.discussion)
            """
    )

    @OptionGroup var target: SocketOption

    @Option(help: ArgumentHelp("The new binary (an absolute path).", valueName: "path"))
    var binary: String?

    func validate() throws {
        if let binary, !binary.hasPrefix("/") { throw ValidationError("--binary must be an absolute path") }
    }

    func run() throws {
        let before = try target.request(.status(pool: nil))["status"]?["supervisor"]
        // Following the events first, so that a refusal after the check (which runs beside the loop)
        // comes as `supervisor.upgrade_refused`. The follow connection ends with the exec: then a status
        // request waits in the listening socket's backlog until the new image answers.
        let (path, _) = target.resolve()
        var refused: String?
        var accepted = false
        var answer: JSON?
        let follow = ControlProtocol.Request.events(pool: nil, sinceSeconds: 0, follow: true)
        do {
            try ControlClient.stream(socket: path, line: Array(follow.json.serialized.utf8), timeout: .seconds(10)) { bytes in
                guard let line = try? JSON.parse(bytes) else { return false }
                if let event = line["event"] {
                    guard event["type"]?.string == LifecycleEvent.Kind.supervisorUpgradeRefused.rawValue else { return true }
                    refused = event["detail"]?.string ?? "see the log"
                    return false
                }
                // The stream's first answer: now ask for the upgrade.
                answer = try? target.request(.upgrade(binary: binary), timeout: .seconds(30))
                guard let answer, answer["ok"]?.bool == true else { return false }
                accepted = true
                for text in answer["lines"]?.array?.compactMap(\.string) ?? [] { print(text) }
                fflush(nil)
                return true
            }
        } catch {
            if !accepted {
                printError("poolvisor: \(error)")
                throw ExitCode(1)
            }
        }
        if !accepted {
            // Refused at once (the answer says why), or no answer (`request` said why).
            guard let answer else { throw ExitCode(1) }
            return try report(answer)
        }
        if let refused {
            printError("poolvisor: upgrade refused: \(refused)")
            throw ExitCode(1)
        }
        let after = try target.request(.status(pool: nil), timeout: .seconds(60))["status"]?["supervisor"]
        guard let n = after?["upgrades"]?.int, n > (before?["upgrades"]?.int ?? 0) else {
            printError("poolvisor: the upgrade did not happen (see the log); the running image goes on")
            throw ExitCode(1)
        }
        print("poolvisor \(after?["version"]?.string ?? "?") took over, pid \(after?["pid"]?.int.map(String.init) ?? "?")")
    }
}

/// `poolvisor handover-formats`: the state formats this binary can take over, for an image about to
/// hand over to it.
struct HandoverFormats: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handover-formats",
        abstract: "Print the in-place upgrade state formats this binary reads.",
        shouldDisplay: false
    )

    func run() {
        print(UpgradeState.readable.map(String.init).joined(separator: " "))
    }
}
