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

        let keda = decodeKedaDefaults(&top, host: host)
        // What a pool's `serves` may name. A `queues` that was written but is not valid checks nothing.
        var known: KnownQueues?
        if let queues = supervisor.queues {
            known = KnownQueues(names: queues, written: true)
        } else if subscribes && !queuesWritten {
            known = KnownQueues(names: QueueSubscription.queueTypes.map(\.rawValue), written: false)
        }
        let context = PoolContext(supervisor: supervisor, shared: shared, keda: keda, subscribes: subscribes, reserved: reserved, queues: known)
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
        top.finish()
        pools.sort { $0.name < $1.name }
        if !sink.diagnostics.hasErrors { warnAboutUnservedQueues(pools, queues: supervisor.queues, subscribes: subscribes, sink: sink) }

        // In reading order: the pools file by line, then env files.
        let diagnostics = sink.diagnostics.enumerated().sorted { a, b in
            let ka = (a.element.location.file == file ? 0 : 1, a.element.location.line, a.element.location.column, a.offset)
            let kb = (b.element.location.file == file ? 0 : 1, b.element.location.line, b.element.location.column, b.offset)
            return ka < kb
        }.map(\.element)
        let result = diagnostics.hasErrors ? nil : PoolsFile(path: file, supervisor: supervisor, pools: pools)
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
        let workingDirectory = r.string("working_directory")
        if let wd = workingDirectory {
            if !wd.hasPrefix("/") {
                sink.error(r.keyPath("working_directory"), "'\(r.name("working_directory"))' must be an absolute path, not '\(wd)'")
            } else if !host.isDirectory(wd) {
                sink.error(r.keyPath("working_directory"), "'\(r.name("working_directory"))': directory '\(wd)' does not exist")
            }
        }
        let drain = r.seconds("drain_seconds", in: 0...maximumSeconds) ?? supervisor.drain
        var stopSignal = Signal.terminate
        if let name = r.string("stop_signal") {
            let allowed: [Signal] = [.terminate, .interrupt, .quit, .hangup, .user1, .user2]
            if let signal = Signal(name: name), allowed.contains(signal) {
                stopSignal = signal
            } else {
                sink.error(
                    r.keyPath("stop_signal"),
                    "'\(r.name("stop_signal"))' must be one of \(allowed.map(\.description).joined(separator: ", ")), not '\(name)' (SIGKILL follows by itself after drain_seconds)"
                )
            }
        }
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
        var environment = shared
        if let identity = isolation.identity {
            // As systemd's User=: the account's home and name, under anything the pool sets itself.
            environment["HOME"] = identity.home
            environment["USER"] = identity.user
            environment["LOGNAME"] = identity.user
        }
        environment = environment.overlaid(with: poolEnvironmentFile).overlaid(with: Environment(inline))
        let autoscaling = decodeAutoscaling(
            &r, keda: keda, replicasWritten: r.table.keys.contains("replicas") ? replicas : nil,
            environment: environment, resources: isolation.resources, host: host)
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
        pool.template.perReplicaArguments = templated.arguments
        pool.template.perReplicaEnvironment = templated.variables
        return pool
    }

    /// `command` and `[pools.X.env]` values as `ReplicaTemplate`s: `{pool}`, `{instance}` and
    /// `{hostname}` written in now, `{replica}` left for each launch (the text stays in place of the value,
    /// and the template goes to `perReplicaArguments` / `perReplicaEnvironment`). Env files are not
    /// templates: their values are the application's, braces and all.
    private static func perReplica(
        command: [String], environment: [(key: String, value: String)], pool: String, instance: String, hostname: String,
        reader r: TableReader
    ) -> (command: [String], environment: [(key: String, value: String)], arguments: [Int: ReplicaTemplate], variables: [String: ReplicaTemplate]) {
        func expand(_ text: String, key: [String]) -> (String, ReplicaTemplate?) {
            switch ReplicaTemplate.read(text) {
            case .failure(let failure):
                r.sink.error(key, "'\(key.joined(separator: "."))': \(failure.message)")
                return (text, nil)
            case .foreign(_, let why):
                r.sink.warning(
                    key,
                    "'\(key.joined(separator: "."))': braces that are not a placeholder of poolvisor's (\(why)); passed to the worker as written (double them, {{ and }}, to say so and silence this)"
                )
                return (text, nil)
            case .template(let template):
                let resolved = template.resolving(pool: pool, instance: instance, hostname: hostname)
                guard resolved.variesByReplica else { return (resolved.expand(pool: pool, instance: instance, hostname: hostname, replica: 0), nil) }
                return (resolved.description, resolved)
            }
        }
        var arguments: [Int: ReplicaTemplate] = [:]
        var variables: [String: ReplicaTemplate] = [:]
        var expandedCommand: [String] = []
        for (i, argument) in command.enumerated() {
            let (text, template) = expand(argument, key: r.keyPath("command"))
            if let template {
                if i == 0 {
                    r.sink.error(r.keyPath("command"), "'\(r.name("command"))': the program itself cannot differ per replica ({replica} in its first element)")
                }
                arguments[i] = template
            }
            expandedCommand.append(text)
        }
        var expandedEnvironment: [(key: String, value: String)] = []
        for (key, value) in environment {
            let (text, template) = expand(value, key: r.path + ["env", key])
            if let template { variables[key] = template }
            expandedEnvironment.append((key, text))
        }
        return (expandedCommand, expandedEnvironment, arguments, variables)
    }

    private struct Isolation {
        var identity: WorkerIdentity?
        var cpus: [Int]?
        var nice: Int?
        var umask: UInt32?
        var resources = Resources()
    }

    /// `user`, `group`, `cpus`, `nice`, `umask` and `[pools.X.resources]`.
    private static func decodeIsolation(_ r: inout TableReader, host: some HostProbe) -> Isolation {
        let sink = r.sink
        var out = Isolation()
        let userName = r.string("user")
        let groupName = r.string("group")
        if let userName {
            if let user = host.user(named: userName) {
                var identity = WorkerIdentity(user: user.name, uid: user.uid, gid: user.gid, groups: user.groups, home: user.home)
                if let groupName {
                    if let gid = host.groupID(named: groupName) {
                        identity.gid = gid
                        identity.group = groupName
                    } else {
                        sink.error(r.keyPath("group"), "'\(r.name("group"))': there is no group '\(groupName)' on this host")
                    }
                }
                out.identity = identity
            } else {
                sink.error(r.keyPath("user"), "'\(r.name("user"))': there is no user '\(userName)' on this host")
            }
        } else if groupName != nil {
            sink.error(r.keyPath("group"), "'\(r.name("group"))' needs 'user' (the workers' user; its primary group is replaced by this one)")
        }
        if let text = r.string("cpus") {
            if let cpus = CPUList.parse(text) {
                let missing = cpus.filter { !host.onlineCPUs.contains($0) }
                if missing.isEmpty {
                    out.cpus = cpus
                } else {
                    sink.error(r.keyPath("cpus"), "'\(r.name("cpus"))': this host has no CPU \(CPUList.describe(missing)) (online: \(CPUList.describe(host.onlineCPUs.sorted())))")
                }
            } else {
                sink.error(r.keyPath("cpus"), "'\(r.name("cpus"))' must be a CPU list such as \"0-3,8\", not '\(text)'")
            }
        }
        out.nice = r.integer("nice", in: -20...19)
        if let v = r.value("umask") {
            switch v {
            case .string(let s) where !s.isEmpty && s.count <= 4 && s.allSatisfy({ ("0"..."7").contains($0) }):
                out.umask = UInt32(s, radix: 8)
            case .integer(let n) where (0...0o777).contains(n) && r.sink.writtenValue(r.keyPath("umask"))?.hasPrefix("0o") == true:
                // Only a TOML octal number: `umask = 18` is decimal 18, which is 0o22, not what was meant.
                out.umask = UInt32(n)
            default:
                let decimal = if case .integer(let n) = v, n >= 0 { " (a decimal integer, 0o\(String(n, radix: 8)) in octal)" } else { "" }
                sink.error(
                    r.keyPath("umask"),
                    "'\(r.name("umask"))' must be octal digits in a string such as \"0027\" or a TOML octal number such as 0o027, not \(v.shortDescription)\(decimal)")
            }
        }
        if var res = r.table("resources") {
            func cores(_ key: String) -> Double? {
                guard let v = res.value(key) else { return nil }
                switch v {
                case .integer(let n) where Quantity.coresRange.contains(Double(n)): return Double(n)
                case .float(let f) where Quantity.coresRange.contains(f): return f
                case .string(let s): if let c = Quantity.cores(s) { return c }
                default: break
                }
                sink.error(res.keyPath(key), "'\(res.name(key))' must be a number of cores such as 2, 0.5 or \"500m\", from 0.001 (\"1m\") to 4096, not \(v.shortDescription)")
                return nil
            }
            func bytes(_ key: String) -> Int64? {
                guard let v = res.value(key) else { return nil }
                switch v {
                case .integer(let n) where n > 0: return Int64(n)
                case .string(let s): if let b = Quantity.bytes(s), b > 0 { return b }
                default: break
                }
                sink.error(res.keyPath(key), "'\(res.name(key))' must be a quantity such as \"512Mi\", \"16Gi\" or \"1G\" (Ki, Mi, Gi: powers of 1024; K, M, G: of 1000)")
                return nil
            }
            out.resources.cpuRequest = cores("cpu_request")
            out.resources.cpuLimit = cores("cpu_limit")
            out.resources.memoryRequest = bytes("memory_request")
            out.resources.memoryLimit = bytes("memory_limit")
            out.resources.pidsLimit = res.integer("pids_limit", in: 1...4_194_304)
            if let request = out.resources.cpuRequest, let limit = out.resources.cpuLimit, request > limit {
                sink.error(res.keyPath("cpu_request"), "'\(res.name("cpu_request"))' (\(request)) is more than 'cpu_limit' (\(limit))")
            }
            if let request = out.resources.memoryRequest, let limit = out.resources.memoryLimit, request > limit {
                sink.error(
                    res.keyPath("memory_request"),
                    "'\(res.name("memory_request"))' (\(Quantity.describe(bytes: request))) is more than 'memory_limit' (\(Quantity.describe(bytes: limit)))")
            }
            if let limit = out.resources.memoryLimit, limit < 4 << 20 {
                sink.error(res.keyPath("memory_limit"), "'\(res.name("memory_limit"))' (\(Quantity.describe(bytes: limit))) is too small for any worker to start (at least 4Mi)")
            }
            res.finish()
        }
        return out
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

    /// A queue of `[supervisor] queues` (or, without it, of Noxus's when the file uses worker_subscribe)
    /// that no pool able to run a worker serves: its jobs would wait forever.
    private static func warnAboutUnservedQueues(_ pools: [PoolSpec], queues: [String]?, subscribes: Bool, sink: DiagnosticSink) {
        // An autoscaled pool serves even at min_replicas = 0: the autoscaler starts workers for the queue.
        func serves(_ pool: PoolSpec) -> Bool { pool.enabled && (pool.autoscaling.map { $0.rules.maxReplicas > 0 } ?? (pool.replicas > 0)) }
        var served: Set<String> = []
        var idlePools: [String: [String]] = [:]  // queue → the pools that list it but run no worker
        for pool in pools {
            for queue in pool.servedQueues ?? [] {
                if serves(pool) { served.insert(queue) } else { idlePools[queue, default: []].append(pool.name) }
            }
        }
        if let queues {
            for queue in queues where !served.contains(queue) {
                let idle = idlePools[queue] ?? []
                let more = idle.count > 5 ? " and \(idle.count - 5) more" : ""
                let hint =
                    idle.isEmpty
                    ? "a pool's 'serves' lists the queues its workers take"
                    : "only disabled pools or pools with replicas = 0 serve it: \(idle.prefix(5).joined(separator: ", "))\(more)"
                sink.warning(["supervisor", "queues"], "no enabled pool with replicas serves queue '\(queue)': its jobs would never run (\(hint))")
            }
        } else if subscribes {
            for queue in QueueSubscription.queueTypes where !served.contains(queue.rawValue) {
                sink.warning(["pools"], "no enabled pool with replicas subscribes to '\(queue.rawValue)' tasks: \(queue.rawValue) tasks would never run")
            }
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

/// Names of an application's queues, in `[supervisor] queues` and a pool's `serves`: as the queue
/// library names them, so wider than `Naming` ("default", "emails", "arq:queue", "high.priority").
enum QueueName {
    static let rule = "1 to 63 letters, digits, '-', '_', '.' or ':', starting with a letter or digit"
    /// The most queues one list may name.
    static let maximumCount = 64

    static func isValid(_ name: String) -> Bool {
        guard (1...63).contains(name.unicodeScalars.count), let first = name.unicodeScalars.first else { return false }
        func ok(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) }
        return ok(first) && name.unicodeScalars.allSatisfy { ok($0) || $0 == "-" || $0 == "_" || $0 == "." || $0 == ":" }
    }
}

extension TableReader {
    /// An array of queue names: at most `QueueName.maximumCount`, each valid (an invalid one is an
    /// error, a repeated one a warning). The valid names, each once, in order.
    mutating func queueNames(_ key: String) -> [String]? {
        guard let items = strings(key) else { return nil }
        guard items.count <= QueueName.maximumCount else {
            sink.error(keyPath(key), "'\(name(key))' lists \(items.count) queues; at most \(QueueName.maximumCount)")
            return nil
        }
        var out: [String] = []
        for item in items {
            if !QueueName.isValid(item) {
                sink.error(keyPath(key), "'\(name(key))': queue name \(ConfigValue.string(item).shortDescription) must be \(QueueName.rule)")
            } else if out.contains(item) {
                sink.warning(keyPath(key), "'\(name(key))' lists queue '\(item)' twice")
            } else {
                out.append(item)
            }
        }
        return out
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
