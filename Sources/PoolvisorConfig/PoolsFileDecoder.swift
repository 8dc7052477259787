import PoolvisorCore

/// Turns a parsed pools file into a validated `PoolsFile`, reporting every problem at once, each with
/// the file, line, column and key. Nothing starts from a file with errors; warnings are reported and
/// the file is still used.
public enum PoolsFileDecoder {
    /// A decoded pools file, or why not (`PoolsFileReading`, the core's word for it).
    public typealias Result = PoolsFileReading

    public static let maximumReplicas = PoolSpec.maximumReplicas
    static let maximumSeconds = 86_400.0 * 7
    /// sockaddr_un's sun_path is 108 bytes on Linux, with room for the terminating NUL.
    public static let maximumSocketPathBytes = 107

    /// - Parameter locator: `SourceLocator(text: text)`, when the caller has already made it.
    public static func decode(_ root: ConfigTable, text: String, file: String, host: some HostProbe, locator: SourceLocator? = nil) -> Result {
        let sink = DiagnosticSink(file: file, text: text, locator: locator)
        var envFiles = EnvFileCache(host: host, sink: sink)
        var top = TableReader(path: [], table: root, sink: sink)
        let subscribes = usesSubscription(root)
        let reserved = subscribes ? WorkerVariable.all : WorkerVariable.all.filter { !WorkerVariable.subscription.contains($0) }

        var supervisor = SupervisorSpec()
        var redisEvents: (variable: String, key: [String], spec: RedisEventsSpec)?
        var fleet: FleetDraft?
        var queuesWritten = false
        var sharedEnvironmentFile = Environment()
        if var s = top.table("supervisor") {
            if let name = s.string("name") {
                if Naming.isValid(name) { supervisor.name = name } else { sink.error(s.keyPath("name"), "'supervisor.name' must be \(Naming.rule), not '\(name)'") }
            }
            if let path = s.string("env_file") {
                let ref = EnvFileReference(written: path, path: resolve(path, relativeTo: file))
                supervisor.envFile = ref
                sharedEnvironmentFile = envFiles.load(ref, from: s.keyPath("env_file")) ?? Environment()
            }
            supervisor.drain = s.seconds("drain_seconds", in: 0...maximumSeconds) ?? supervisor.drain
            supervisor.readyTimeout = s.seconds("ready_timeout_seconds", in: 0...maximumSeconds) ?? supervisor.readyTimeout
            if let path = s.string("control_socket") {
                if !path.hasPrefix("/") {
                    sink.error(s.keyPath("control_socket"), "'supervisor.control_socket' must be an absolute path, not '\(path)'")
                } else if path.utf8.count > maximumSocketPathBytes || path.contains("\0") {
                    sink.error(
                        s.keyPath("control_socket"),
                        "'supervisor.control_socket' is \(path.utf8.count) bytes long; a UNIX socket address holds at most \(maximumSocketPathBytes) (choose a shorter path)")
                } else {
                    supervisor.controlSocket = path
                }
            }
            if let group = s.string("control_group") {
                if let id = host.groupID(named: group) {
                    supervisor.controlGroup = GroupName(name: group, id: id)
                } else {
                    sink.error(s.keyPath("control_group"), "'supervisor.control_group': there is no group '\(group)' on this host")
                }
            }
            if let text = s.string("metrics_listen") {
                switch ListenAddress.parse(text) {
                case .success(let address):
                    supervisor.metricsListen = address
                    if !address.isLoopback {
                        sink.warning(
                            s.keyPath("metrics_listen"),
                            "'supervisor.metrics_listen' (\(address)) is reachable from other hosts: anyone who can connect reads pool names and worker counts (firewall it, or listen on 127.0.0.1)"
                        )
                    }
                case .failure(let error):
                    sink.error(s.keyPath("metrics_listen"), "'supervisor.metrics_listen': \(error.message)")
                }
            }
            if var e = s.table("redis_events") {
                redisEvents = decodeRedisEvents(&e)
                e.finish()
            }
            if var f = s.table("fleet") {
                fleet = decodeFleet(&f, instance: supervisor.name, hostname: host.hostname)
                f.finish()
            }
            queuesWritten = s.table.keys.contains("queues")
            if let queues = s.queueNames("queues") {
                if case .array(let items)? = s.table["queues"], items.isEmpty {
                    sink.error(s.keyPath("queues"), "'supervisor.queues' is empty: list the queues the application has, or leave the key out")
                } else if !queues.isEmpty {
                    supervisor.queues = queues
                }
            }
            s.finish()
        }
        let sharedInline = top.environment("env") ?? []
        supervisor.inlineEnvironmentKeys = sharedInline.map(\.key)
        warnAboutReservedKeys(sharedInline.map(\.key), under: ["env"], reserved: reserved, sink: sink)

        // Lowest precedence first: the inherited base, the shared env file, [env].
        var base = Environment()
        for key in WorkerVariable.inherited {
            if let value = host.supervisorEnvironment[key] { base[key] = value }
        }
        if base["PATH"] == nil { base["PATH"] = WorkerVariable.defaultPath }
        let shared = base.overlaid(with: sharedEnvironmentFile).overlaid(with: Environment(sharedInline))
        if let r = redisEvents {
            if let url = shared[r.variable], !url.isEmpty {
                if case .failure(let why) = RedisEndpoint.parse(url) {
                    sink.error(r.key, "the Redis URL in $\(r.variable) is not valid: \(why.message)")
                } else {
                    var spec = r.spec
                    spec.endpoint = Secret(url)
                    supervisor.redisEvents = spec
                }
            } else if host.withholdsSecrets {
                supervisor.redisEvents = r.spec
            } else {
                sink.error(r.key, "'\(r.key.joined(separator: "."))' names $\(r.variable), which the shared environment does not set (set it in [supervisor] env_file or [env])")
            }
        }

        if let fleet { supervisor.fleet = resolveFleet(fleet, shared: shared, sink: sink, withheld: host.withholdsSecrets) }

        let keda = decodeKedaDefaults(&top, host: host)
        // What a pool's `serves` may name. A `queues` that was written but is not valid checks nothing.
        var known: KnownQueues?
        if let queues = supervisor.queues {
            known = KnownQueues(names: queues, written: true)
        } else if subscribes && !queuesWritten {
            known = KnownQueues(names: QueueSubscription.queueTypes.map(\.rawValue), written: false)
        }
        let context = PoolContext(
            supervisor: supervisor, shared: shared, keda: keda, subscribes: subscribes, reserved: reserved, queues: known,
            redisEventsWritten: redisEvents != nil)
        var pools: [PoolSpec] = []
        if var poolsTable = top.table("pools") {
            for (name, value) in poolsTable.table.entries {
                _ = poolsTable.value(name)
                guard case .table(let t) = value else {
                    sink.error(["pools", name], "'pools.\(name)' must be a table ([pools.\(name)]), not \(value.typeDescription)")
                    continue
                }
                let reader = TableReader(path: ["pools", name], table: t, sink: sink)
                if let pool = decodePool(name, reader, context, file: file, host: host, envFiles: &envFiles) {
                    pools.append(pool)
                }
            }
            poolsTable.finish()
        }
        let jobs = decodeJobs(&top, supervisor: supervisor, shared: shared, reserved: reserved, file: file, host: host, envFiles: &envFiles)
        top.finish()
        checkDependencies(pools, jobs, written: names(of: "pools", in: root).union(names(of: "jobs", in: root)), sink: sink)
        pools.sort { $0.name < $1.name }
        if !sink.diagnostics.hasErrors { warnAboutUnservedQueues(pools, queues: supervisor.queues, subscribes: subscribes, sink: sink) }

        // In reading order: the pools file by line, then env files.
        let diagnostics = sink.diagnostics.enumerated().sorted { a, b in
            let ka = (a.element.location.file == file ? 0 : 1, a.element.location.line, a.element.location.column, a.offset)
            let kb = (b.element.location.file == file ? 0 : 1, b.element.location.line, b.element.location.column, b.offset)
            return ka < kb
        }.map(\.element)
        let result = diagnostics.hasErrors ? nil : PoolsFile(path: file, supervisor: supervisor, pools: pools, jobs: jobs)
        return Result(file: result, diagnostics: diagnostics)
    }

    /// The queues a pool's `serves` may name: `[supervisor] queues`, or Noxus's when the file uses
    /// `worker_subscribe` without it.
    /// A class: the suggestions left are counted across the file's pools.
    private final class KnownQueues {
        let names: [String]
        let set: Set<String>
        let written: Bool
        /// "did you mean" compares a name with every listed queue; a hostile file could name thousands.
        var suggestionsLeft = 16

        init(names: [String], written: Bool) {
            self.names = names
            set = Set(names)
            self.written = written
        }

        func suggestion(for queue: String) -> String {
            guard suggestionsLeft > 0 else { return "" }
            suggestionsLeft -= 1
            return Suggestion.didYouMean(queue, names)
        }
    }

    /// What every pool is decoded with.
    private struct PoolContext {
        var supervisor: SupervisorSpec
        /// The environment below the pool's own layers.
        var shared: Environment
        var keda: KedaDefaults
        /// The file uses Noxus's subscription keys: every pool gets the WORKER_SUBSCRIBE* variables.
        var subscribes: Bool
        /// The variables a pool's env tables may not set.
        var reserved: [String]
        var queues: KnownQueues?
        /// `[supervisor.redis_events]` is written (a pool's `busy_from` needs it).
        var redisEventsWritten: Bool
    }

    /// The names of the tables under `[key]`, decoded or not.
    private static func names(of key: String, in root: ConfigTable) -> Set<String> {
        guard case .table(let t)? = root[key] else { return [] }
        return Set(t.keys)
    }

    /// Noxus's subscription keys: a file that writes none of them has no subscription.
    static let subscriptionKeys = ["worker_subscribe", "worker_subscribe_tenants", "worker_subscribe_workspaces"]

    /// Whether some pool of the file writes a subscription key (enabled or not).
    private static func usesSubscription(_ root: ConfigTable) -> Bool {
        guard case .table(let pools)? = root["pools"] else { return false }
        return pools.entries.contains { entry in
            guard case .table(let pool) = entry.value else { return false }
            return subscriptionKeys.contains { pool.keys.contains($0) }
        }
    }

    private static func decodePool(
        _ name: String, _ r: TableReader, _ context: PoolContext, file: String,
        host: some HostProbe, envFiles: inout EnvFileCache
    ) -> PoolSpec? {
        let (supervisor, shared, keda) = (context.supervisor, context.shared, context.keda)
        var r = r
        let sink = r.sink
        let before = sink.diagnostics.errors.count
        if !Naming.isValid(name) {
            sink.error(r.path, "pool name '\(name)' must be \(Naming.rule)")
        }
        let enabled = r.bool("enabled") ?? true
        let command = r.strings("command")
        if r.table.keys.contains("command") == false {
            sink.error(r.path, "\(r.sectionName) has no 'command' (the worker's argv, e.g. command = [\"/usr/bin/python3\", \"-m\", \"app.worker\"])")
        } else if let command, command.isEmpty || command[0].isEmpty {
            sink.error(r.keyPath("command"), "'\(r.name("command"))' must name a program to run")
        }
        let replicas = r.integer("replicas", in: 0...maximumReplicas) ?? 1
        let subscription = r.choice("worker_subscribe", QueueSubscription.allCases.map(\.rawValue)).flatMap(QueueSubscription.init(rawValue:)) ?? .allButKb
        let tenants = r.strings("worker_subscribe_tenants", commaSeparated: true) ?? []
        let workspaces = r.strings("worker_subscribe_workspaces", commaSeparated: true) ?? []
        let serves = r.queueNames("serves")
        if let serves, let known = context.queues {
            for queue in serves where !known.set.contains(queue) {
                let list =
                    known.written
                    ? "not in [supervisor] queues"
                    : "not one of the queues worker_subscribe implies (\(known.names.joined(separator: ", ")); to add others, list every queue of the application in [supervisor] queues)"
                sink.error(r.keyPath("serves"), "'\(r.name("serves"))' names queue '\(queue)', which is \(list)\(known.suggestion(for: queue))")
            }
        }
        var envFile: EnvFileReference?
        var poolEnvironmentFile = Environment()
        if let path = r.string("env_file") {
            let ref = EnvFileReference(written: path, path: resolve(path, relativeTo: file))
            envFile = ref
            poolEnvironmentFile = envFiles.load(ref, from: r.keyPath("env_file")) ?? Environment()
        }
        let workingDirectory = decodeWorkingDirectory(&r, host: host)
        let drain = r.seconds("drain_seconds", in: 0...maximumSeconds) ?? supervisor.drain
        let stopSignal = decodeStopSignal(&r)
        let busyKey = decodeBusyFrom(&r, pool: name, instance: supervisor.name, hostname: host.hostname, redisEvents: context.redisEventsWritten)
        var dependsOn: [String] = []
        for name in r.strings("depends_on") ?? [] where !dependsOn.contains(name) { dependsOn.append(name) }
        let readinessWord = r.choice("readiness", ["started", "notify"]) ?? "started"
        let readyAfter = r.seconds("ready_after_seconds", in: 0...maximumSeconds)
        if readyAfter != nil && readinessWord == "notify" {
            sink.warning(r.keyPath("ready_after_seconds"), "'\(r.name("ready_after_seconds"))' has no effect with readiness = \"notify\" (the worker says when it is ready)")
        }
        let readyTimeout = r.seconds("ready_timeout_seconds", in: 0...maximumSeconds) ?? supervisor.readyTimeout
        let watchdog = r.seconds("watchdog_seconds", in: 0.01...maximumSeconds)
        var backoff = BackoffPolicy()
        if var b = r.table("backoff") {
            backoff.initial = b.seconds("initial_seconds", in: 0.01...maximumSeconds) ?? backoff.initial
            backoff.max = b.seconds("max_seconds", in: 0.01...maximumSeconds) ?? backoff.max
            backoff.resetAfter = b.seconds("reset_after_seconds", in: 0...maximumSeconds) ?? backoff.resetAfter
            if backoff.max < backoff.initial {
                sink.error(
                    b.keyPath("max_seconds"), "'\(b.name("max_seconds"))' (\(backoff.max.humanReadable)) is shorter than 'initial_seconds' (\(backoff.initial.humanReadable))")
            }
            b.finish()
        }
        var maxUnavailable = ReplicaAmount.count(1)
        if var rollout = r.table("rollout") {
            maxUnavailable = rollout.replicaAmount("max_unavailable", minimum: 1) ?? maxUnavailable
            rollout.finish()
        }
        var budget: DisruptionBudget?
        if var b = r.table("disruption_budget") {
            let minAvailable = b.replicaAmount("min_available", minimum: 0)
            let maxUnavailable = b.replicaAmount("max_unavailable", minimum: 0)
            switch (minAvailable, maxUnavailable) {
            case (let m?, nil): budget = .minAvailable(m)
            case (nil, let m?): budget = .maxUnavailable(m)
            case (.some, .some):
                sink.error(b.keyPath("max_unavailable"), "\(b.sectionName) takes min_available or max_unavailable, not both")
            case (nil, nil):
                if b.table.keys.isEmpty { sink.error(b.path, "\(b.sectionName) needs min_available or max_unavailable") }
            }
            b.finish()
            if case .minAvailable(let m)? = budget, m.of(replicas, roundingUp: true) >= replicas, replicas > 0 {
                sink.warning(
                    b.keyPath("min_available"), "'\(b.name("min_available"))' keeps all \(replicas) replicas up: a rolling replacement or scale-down of this pool can never start")
            }
        }
        let isolation = decodeIsolation(&r, host: host)
        let written = r.environment("env") ?? []
        let templated = perReplica(
            command: command ?? [], environment: written, pool: name, instance: supervisor.name, hostname: host.hostname, reader: r)
        let inline = templated.environment
        warnAboutReservedKeys(inline.map(\.key), under: r.path + ["env"], reserved: context.reserved, sink: sink)
        var environment = layered(shared, identity: isolation.identity, envFile: poolEnvironmentFile, inline: inline)
        let autoscaling = decodeAutoscaling(
            &r, keda: keda, replicasWritten: r.table.keys.contains("replicas") ? replicas : nil,
            environment: environment, resources: isolation.resources, host: host)
        let probes = decodeProbes(
            &r, pool: name, instance: supervisor.name, mostReplicas: max(replicas, autoscaling?.rules.maxReplicas ?? 0, 1),
            environment: environment, workingDirectory: workingDirectory, host: host)
        if probes.readiness != nil, readyAfter != nil {
            sink.warning(r.keyPath("ready_after_seconds"), "'\(r.name("ready_after_seconds"))' has no effect with a readiness probe (the probe says when the worker is ready)")
        }
        r.finish()

        guard command != nil, case let command = templated.command, !command.isEmpty, !command[0].isEmpty else { return nil }
        if context.subscribes {
            environment[WorkerVariable.subscribe] = subscription.rawValue
            environment[WorkerVariable.tenants] = tenants.joined(separator: ",")
            environment[WorkerVariable.workspaces] = workspaces.joined(separator: ",")
        }
        environment[WorkerVariable.pool] = name
        environment[WorkerVariable.instance] = supervisor.name

        let executable = resolveExecutable(command[0], path: environment["PATH"] ?? "", workingDirectory: workingDirectory, host: host)
        if executable == nil {
            let where_ = command[0].contains("/") ? "" : " in the worker's PATH"
            sink.error(r.keyPath("command"), "'\(r.name("command"))': program '\(command[0])' was not found\(where_) or is not executable")
        }
        guard sink.diagnostics.errors.count == before, let executable else { return nil }

        var pool = PoolSpec(
            name: name, command: command, executable: executable, drain: drain,
            readiness: readinessWord == "notify" ? .notify : .started(after: readyAfter ?? .seconds(1)),
            readyTimeout: readyTimeout, backoff: backoff, environment: environment)
        pool.enabled = enabled
        pool.stopSignal = stopSignal
        pool.replicas = replicas
        pool.subscription = context.subscribes ? subscription : nil
        pool.tenants = tenants
        pool.workspaces = workspaces
        pool.serves = serves
        pool.envFile = envFile
        pool.inlineEnvironmentKeys = inline.map(\.key)
        pool.workingDirectory = workingDirectory
        pool.watchdog = watchdog
        pool.maxUnavailable = maxUnavailable
        pool.disruptionBudget = budget
        pool.identity = isolation.identity
        pool.cpus = isolation.cpus
        pool.nice = isolation.nice
        pool.umask = isolation.umask
        pool.resources = isolation.resources
        pool.autoscaling = autoscaling
        pool.probes = probes
        pool.dependsOn = dependsOn
        pool.busyKey = busyKey
        pool.template.perReplicaArguments = templated.arguments
        pool.template.perReplicaEnvironment = templated.variables
        return pool
    }

    /// `working_directory`: an absolute path that exists.
    static func decodeWorkingDirectory(_ r: inout TableReader, host: some HostProbe) -> String? {
        guard let wd = r.string("working_directory") else { return nil }
        if !wd.hasPrefix("/") {
            r.sink.error(r.keyPath("working_directory"), "'\(r.name("working_directory"))' must be an absolute path, not '\(wd)'")
        } else if !host.isDirectory(wd) {
            r.sink.error(r.keyPath("working_directory"), "'\(r.name("working_directory"))': directory '\(wd)' does not exist")
        }
        return wd
    }

    /// A pool's or a job's environment over the shared one: as systemd's User=, the account's home and
    /// name; then its env file; then its inline table.
    static func layered(_ shared: Environment, identity: WorkerIdentity?, envFile: Environment, inline: [(key: String, value: String)]) -> Environment {
        var environment = shared
        if let identity {
            environment["HOME"] = identity.home
            environment["USER"] = identity.user
            environment["LOGNAME"] = identity.user
        }
        return environment.overlaid(with: envFile).overlaid(with: Environment(inline))
    }

    static func resolveExecutable(_ program: String, path: String, workingDirectory: String?, host: some HostProbe) -> String? {
        if program.contains("/") {
            let full = program.hasPrefix("/") ? program : (workingDirectory.map { $0 + "/" + program } ?? program)
            return host.isExecutableFile(full) ? program : nil
        }
        for dir in path.split(separator: ":") where !dir.isEmpty {
            let candidate = dir + "/" + program
            if host.isExecutableFile(candidate) { return candidate }
        }
        return nil
    }

    /// `path` as written in `file`: absolute stays, relative is taken from the pools file's directory.
    static func resolve(_ path: String, relativeTo file: String) -> String {
        if path.hasPrefix("/") { return path }
        guard let slash = file.lastIndex(of: "/") else { return path }
        return String(file[...slash]) + path
    }

    private static func warnAboutReservedKeys(_ keys: [String], under path: [String], reserved: [String], sink: DiagnosticSink) {
        for key in keys where reserved.contains(key) {
            sink.warning(path + [key], "'\(key)' is set by poolvisor for every worker; the value in [\(path.joined(separator: "."))] is ignored")
        }
    }

}

/// Names of pools and instances: used in paths, journal identifiers and status.
enum Naming {
    static let rule = "1 to 63 lowercase letters, digits, '-' or '_', starting with a letter or digit"

    static func isValid(_ name: String) -> Bool {
        guard (1...63).contains(name.count), let first = name.unicodeScalars.first else { return false }
        func ok(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("0"..."9").contains(c) }
        return ok(first) && name.unicodeScalars.allSatisfy { ok($0) || $0 == "-" || $0 == "_" }
    }
}

/// Reads each env file once, however many pools name it.
struct EnvFileCache {
    let host: any HostProbe
    let sink: DiagnosticSink
    private var loaded: [String: Environment?] = [:]

    init(host: some HostProbe, sink: DiagnosticSink) {
        self.host = host
        self.sink = sink
    }

    mutating func load(_ ref: EnvFileReference, from keyPath: [String]) -> Environment? {
        if let cached = loaded[ref.path] { return cached }
        if host.withholdsSecrets { return Environment() }
        var result: Environment?
        switch host.readTextFile(ref.path) {
        case .failure(let error):
            sink.error(keyPath, "'\(keyPath.joined(separator: "."))': cannot read env file '\(ref.path)': \(error.message)")
        case .success(let text):
            if let status = host.fileStatus(ref.path) {
                let mode = "mode " + String(status.mode & 0o777, radix: 8)
                if status.mode & 0o002 != 0 {
                    sink.error(keyPath, "env file '\(ref.path)' is writable by every user (\(mode)); it holds secrets: chmod 600 (or 640) it")
                    loaded[ref.path] = .some(nil)
                    return nil
                }
                if status.mode & 0o020 != 0 && status.group != 0 {
                    sink.error(keyPath, "env file '\(ref.path)' is writable by its group (\(mode)); only its owner and root may write it: chmod 600 (or 640) it")
                    loaded[ref.path] = .some(nil)
                    return nil
                }
                if status.mode & 0o004 != 0 {
                    sink.warning(keyPath, "env file '\(ref.path)' is readable by every user (\(mode)); it holds secrets: chmod 600 (or 640) it")
                }
            }
            let parsed = EnvFile.parse(text, file: ref.path)
            sink.append(parsed.diagnostics)
            result = parsed.environment
        }
        loaded[ref.path] = result
        return result
    }
}
