import PoolvisorCore

extension PoolsFileDecoder {
    static let maximumBackoffLimit = 1000

    /// `[jobs.NAME]`: a command run to completion, with a pool's environment layers and isolation.
    /// - Parameter shared: the environment below the job's own layers (inherited base, shared env file, `[env]`).
    static func decodeJobs(
        _ top: inout TableReader, supervisor: SupervisorSpec, shared: Environment, reserved: [String], file: String,
        host: some HostProbe, envFiles: inout EnvFileCache
    ) -> [JobSpec] {
        guard var table = top.table("jobs") else { return [] }
        var jobs: [JobSpec] = []
        for (name, value) in table.table.entries {
            _ = table.value(name)
            guard case .table(let t) = value else {
                table.sink.error(["jobs", name], "'jobs.\(name)' must be a table ([jobs.\(name)]), not \(value.typeDescription)")
                continue
            }
            var r = TableReader(path: ["jobs", name], table: t, sink: table.sink)
            if let job = decodeJob(name, &r, supervisor: supervisor, shared: shared, reserved: reserved, file: file, host: host, envFiles: &envFiles) {
                jobs.append(job)
            }
            r.finish()
        }
        table.finish()
        return jobs.sorted { $0.name < $1.name }
    }

    private static func decodeJob(
        _ name: String, _ r: inout TableReader, supervisor: SupervisorSpec, shared: Environment, reserved: [String], file: String,
        host: some HostProbe, envFiles: inout EnvFileCache
    ) -> JobSpec? {
        let sink = r.sink
        let before = sink.diagnostics.errors.count
        if !Naming.isValid(name) { sink.error(r.path, "job name '\(name)' must be \(Naming.rule)") }
        let command = r.strings("command")
        if !r.table.keys.contains("command") {
            sink.error(r.path, "\(r.sectionName) has no 'command' (what to run, e.g. command = [\"alembic\", \"upgrade\", \"head\"])")
        } else if let command, command.isEmpty || command[0].isEmpty {
            sink.error(r.keyPath("command"), "'\(r.name("command"))' must name a program to run")
        }
        var envFile = Environment()
        var envFileReference: EnvFileReference?
        if let path = r.string("env_file") {
            let ref = EnvFileReference(written: path, path: resolve(path, relativeTo: file))
            envFileReference = ref
            envFile = envFiles.load(ref, from: r.keyPath("env_file")) ?? Environment()
        }
        let workingDirectory = decodeWorkingDirectory(&r, host: host)
        let backoffLimit = r.integer("backoff_limit", in: 0...maximumBackoffLimit)
        let deadline = r.seconds("active_deadline_seconds", in: 1...maximumSeconds)
        let drain = r.seconds("drain_seconds", in: 0...maximumSeconds) ?? supervisor.drain
        let stopSignal = decodeStopSignal(&r)
        var backoff: BackoffPolicy?
        if var b = r.table("backoff") {
            var policy = JobSpec(name: name, command: []).backoff
            policy.initial = b.seconds("initial_seconds", in: 0.01...maximumSeconds) ?? policy.initial
            policy.max = b.seconds("max_seconds", in: 0.01...maximumSeconds) ?? policy.max
            if policy.max < policy.initial {
                sink.error(b.keyPath("max_seconds"), "'\(b.name("max_seconds"))' (\(policy.max.humanReadable)) is shorter than 'initial_seconds' (\(policy.initial.humanReadable))")
            }
            b.finish()
            backoff = policy
        }
        var schedule: JobSchedule?
        let cron = r.cron("schedule")
        let timeZone = r.string("timezone")
        let policy = r.choice("concurrency_policy", ConcurrencyPolicy.allCases.map(\.rawValue)).flatMap(ConcurrencyPolicy.init(rawValue:))
        if let cron {
            if !cron.canEverMatch { sink.error(r.keyPath("schedule"), "'\(r.name("schedule"))' (\(cron)) names a day that never comes") }
            let zone = timeZone ?? "UTC"
            if !host.knowsTimeZone(zone) {
                sink.error(r.keyPath("timezone"), "'\(r.name("timezone"))': unknown time zone '\(zone)' (an IANA name such as \"UTC\" or \"Europe/Berlin\")")
            }
            schedule = JobSchedule(cron: cron, timeZone: zone, concurrency: policy ?? .forbid)
        } else if !r.table.keys.contains("schedule") {
            for key in ["timezone", "concurrency_policy"] where r.table.keys.contains(key) {
                sink.warning(r.keyPath(key), "'\(r.name(key))' has no effect without 'schedule'")
            }
        }
        let isolation = decodeIsolation(&r, host: host)
        let inline = r.environment("env") ?? []
        for key in inline.map(\.key) where reserved.contains(key) || key == WorkerVariable.job || key == WorkerVariable.jobRun {
            sink.warning(r.path + ["env", key], "'\(key)' is set by poolvisor; the value in [\(r.path.joined(separator: ".")).env] is ignored")
        }
        var environment = layered(shared, identity: isolation.identity, envFile: envFile, inline: inline)
        environment[WorkerVariable.instance] = supervisor.name
        guard let command, !command.isEmpty, !command[0].isEmpty else { return nil }
        let executable = resolveExecutable(command[0], path: environment["PATH"] ?? "", workingDirectory: workingDirectory, host: host)
        if executable == nil {
            let where_ = command[0].contains("/") ? "" : " in the job's PATH"
            sink.error(r.keyPath("command"), "'\(r.name("command"))': program '\(command[0])' was not found\(where_) or is not executable")
        }
        guard sink.diagnostics.errors.count == before, let executable else { return nil }
        var job = JobSpec(name: name, command: command, executable: executable, drain: drain, environment: environment)
        job.template.workingDirectory = workingDirectory
        job.envFile = envFileReference
        job.inlineEnvironmentKeys = inline.map(\.key)
        job.template.identity = isolation.identity
        job.template.cpus = isolation.cpus
        job.template.nice = isolation.nice
        job.template.umask = isolation.umask
        job.template.resources = isolation.resources
        job.backoffLimit = backoffLimit ?? job.backoffLimit
        job.activeDeadline = deadline
        job.backoff = backoff ?? job.backoff
        job.stopSignal = stopSignal
        job.schedule = schedule
        return job
    }

    /// `stop_signal`: SIGTERM unless one of the signals a worker library takes as "finish up".
    static func decodeStopSignal(_ r: inout TableReader) -> Signal {
        guard let name = r.string("stop_signal") else { return .terminate }
        let allowed: [Signal] = [.terminate, .interrupt, .quit, .hangup, .user1, .user2]
        if let signal = Signal(name: name), allowed.contains(signal) { return signal }
        r.sink.error(
            r.keyPath("stop_signal"),
            "'\(r.name("stop_signal"))' must be one of \(allowed.map(\.description).joined(separator: ", ")), not '\(name)' (SIGKILL follows by itself after drain_seconds)")
        return .terminate
    }

    /// Every pool's `depends_on` names a job or another pool of the file, never a scheduled job, and
    /// pools do not wait for each other in a circle.
    /// - Parameter written: every pool and job name of the file, decoded or not.
    static func checkDependencies(_ pools: [PoolSpec], _ jobs: [JobSpec], written: Set<String>, sink: DiagnosticSink) {
        let jobNames = Set(jobs.map(\.name))
        let poolNames = Set(pools.map(\.name))
        for name in jobNames.intersection(poolNames).sorted() {
            sink.error(["jobs", name], "'jobs.\(name)': a pool has that name too; depends_on could not tell them apart (rename one)")
        }
        for pool in pools {
            let key = ["pools", pool.name, "depends_on"]
            for name in pool.dependsOn {
                if name == pool.name {
                    sink.error(key, "'\(key.joined(separator: "."))': pool \(name) cannot depend on itself")
                } else if let job = jobs.first(where: { $0.name == name }) {
                    if job.schedule != nil {
                        sink.error(key, "'\(key.joined(separator: "."))': job \(name) runs on a schedule; a pool can only wait for a job that runs at the start")
                    }
                } else if !written.contains(name) {
                    sink.error(key, "'\(key.joined(separator: "."))' names '\(name)', which is no job or pool of this file\(Suggestion.didYouMean(name, written.sorted()))")
                }
            }
        }
        // Pools waiting for pools: a circle would hold them all for ever.
        let edges = Dictionary(pools.map { ($0.name, $0.dependsOn.filter { poolNames.contains($0) }) }, uniquingKeysWith: +)
        var state: [String: Int] = [:]  // 1: on the path, 2: done
        func visit(_ name: String, _ path: [String]) -> [String]? {
            if state[name] == 2 { return nil }
            if state[name] == 1 { return Array(path.drop { $0 != name }) + [name] }
            state[name] = 1
            for next in edges[name] ?? [] { if let circle = visit(next, path + [name]) { return circle } }
            state[name] = 2
            return nil
        }
        for pool in pools.map(\.name).sorted() {
            if let circle = visit(pool, []) {
                sink.error(["pools", circle[0], "depends_on"], "pools depend on each other in a circle: \(circle.joined(separator: " → ")); none of them would ever start")
                return
            }
        }
    }
}
