import PoolvisorCore

/// `[keda]` and `[pools.X.autoscaling]`: the Helm values operators already have, validated with the
/// file, line and key of every problem. Connection strings come from the pool's environment (env files),
/// never from the pools file, and never appear in a message.
extension PoolsFileDecoder {
    /// `[keda]`: defaults for every KEDA-autoscaled pool (`worker.keda` in the Helm chart).
    struct KedaDefaults {
        var postgresConnectionEnv: String?
        var redisURLEnv: String?
        var pollingInterval: Duration?
        var cooldown: Duration?
        var query: String?
        var targetQueryValue: Double?
        var activationTargetQueryValue: Double?
        var cron: CronSettings?
        var fallback: PoolAutoscaling.Fallback?
    }

    /// A `cron_trigger` table as written; `enabled = false` turns a default off for one pool.
    struct CronSettings {
        var enabled: Bool
        var trigger: CronTrigger?
    }

    static let maximumPollingSeconds = 3600.0

    static func decodeKedaDefaults(_ top: inout TableReader, host: some HostProbe) -> KedaDefaults {
        var out = KedaDefaults()
        guard var k = top.table("keda") else { return out }
        out.postgresConnectionEnv = k.environmentName("postgres_connection_env")
        out.redisURLEnv = k.environmentName("redis_url_env")
        out.pollingInterval = k.seconds("polling_interval", in: 0.1...maximumPollingSeconds)
        out.cooldown = k.seconds("cooldown_period", in: 0...maximumSeconds)
        out.query = k.nonEmptyString("query")
        out.targetQueryValue = k.positiveNumber("target_query_value")
        out.activationTargetQueryValue = k.number("activation_target_query_value", minimum: 0)
        out.cron = decodeCron(&k, host: host)
        out.fallback = decodeFallback(&k)
        k.finish()
        return out
    }

    /// `fallback_replicas` and `failure_threshold` (KEDA's `fallback`).
    private static func decodeFallback(_ r: inout TableReader) -> PoolAutoscaling.Fallback? {
        let replicas = r.integer("fallback_replicas", in: 0...maximumReplicas)
        let threshold = r.integer("failure_threshold", in: 1...1000)
        if threshold != nil && replicas == nil {
            r.sink.error(
                r.keyPath("failure_threshold"), "'\(r.name("failure_threshold"))' needs 'fallback_replicas' (the replicas to run once a scaler has failed this many times in a row)"
            )
        }
        return replicas.map { PoolAutoscaling.Fallback(failureThreshold: threshold ?? 3, replicas: $0) }
    }

    private static func decodeCron(_ r: inout TableReader, host: some HostProbe) -> CronSettings? {
        guard var c = r.table("cron_trigger") else { return nil }
        defer { c.finish() }
        let enabled = c.bool("enabled") ?? true
        let timeZone = c.string("timezone") ?? "UTC"
        let start = c.cron("start")
        let end = c.cron("end")
        let replicas = c.integer("desired_replicas", in: 1...maximumReplicas)
        guard enabled else { return CronSettings(enabled: false) }
        if !host.knowsTimeZone(timeZone) {
            c.sink.error(
                c.keyPath("timezone"), "'\(c.name("timezone"))': unknown time zone '\(timeZone)' (an IANA name such as \"UTC\" or \"Europe/Berlin\"; see /usr/share/zoneinfo)")
        }
        for key in ["start", "end", "desired_replicas"] where !c.table.keys.contains(key) {
            c.sink.error(c.path, "\(c.sectionName) needs '\(key)'")
        }
        guard let start, let end, let replicas, host.knowsTimeZone(timeZone) else { return CronSettings(enabled: true) }
        if !start.canEverMatch {
            c.sink.error(c.keyPath("start"), "'\(c.name("start"))' = \"\(start)\" never matches a real date: the window would never open")
        }
        if start == end {
            c.sink.error(c.keyPath("end"), "'\(c.name("end"))' is the same as 'start': the window would never open")
        }
        return CronSettings(enabled: true, trigger: CronTrigger(timeZone: timeZone, window: CronWindow(start: start, end: end), replicas: replicas))
    }

    /// `[pools.X.autoscaling]`, or nil when absent or disabled.
    static func decodeAutoscaling(
        _ r: inout TableReader, keda: KedaDefaults, replicasWritten: Int?, environment: Environment,
        resources: Resources, host: some HostProbe
    ) -> PoolAutoscaling? {
        guard var a = r.table("autoscaling") else { return nil }
        let sink = a.sink
        defer { a.finish() }
        let enabled = a.bool("enabled") ?? true
        let kind = a.choice("type", ["keda", "hpa"]).flatMap(PoolAutoscaling.Kind.init(rawValue:)) ?? .keda
        let minReplicas = a.integer("min_replicas", in: 0...maximumReplicas) ?? (kind == .keda ? 0 : 1)
        let maxReplicas = a.integer("max_replicas", in: 1...maximumReplicas)
        if !a.table.keys.contains("max_replicas") {
            sink.error(a.path, "\(a.sectionName) needs 'max_replicas' (the most workers the autoscaler may run)")
        }
        if let maxReplicas, minReplicas > maxReplicas {
            sink.error(a.keyPath("min_replicas"), "'\(a.name("min_replicas"))' (\(minReplicas)) is more than 'max_replicas' (\(maxReplicas))")
        }
        if kind == .hpa && minReplicas == 0 && a.table.keys.contains("min_replicas") {
            sink.error(
                a.keyPath("min_replicas"),
                "'\(a.name("min_replicas"))' must be at least 1 with type = \"hpa\": CPU cannot be measured with no workers (scale to zero needs type = \"keda\" and a queue trigger)"
            )
        }
        let polling = a.seconds("polling_interval", in: 0.1...maximumPollingSeconds) ?? keda.pollingInterval ?? .seconds(kind == .keda ? 30 : 15)
        let cooldown = a.seconds("cooldown_period", in: 0...maximumSeconds) ?? keda.cooldown ?? .seconds(300)
        let cpuTarget = a.positiveNumber("target_cpu_utilization_percentage")
        var fallback = decodeFallback(&a) ?? keda.fallback

        var rules = AutoscalingSpec(minReplicas: minReplicas, maxReplicas: maxReplicas ?? max(minReplicas, 1))
        rules.cooldown = cooldown
        if var b = a.table("behavior") {
            if var up = b.table("scale_up") {
                rules.scaleUp = decodeRules(&up, defaults: .defaultScaleUp)
                up.finish()
            }
            if var down = b.table("scale_down") {
                rules.scaleDown = decodeRules(&down, defaults: .defaultScaleDown)
                down.finish()
            }
            b.finish()
        }

        var queue: QueueTrigger?
        var cron = keda.cron
        if var k = a.table("keda") {
            if kind == .hpa { sink.error(k.path, "\(k.sectionName) is for type = \"keda\"; this pool has type = \"hpa\"") }
            queue = decodeQueueTrigger(&k, keda: keda, environment: environment, host: host)
            k.finish()
        } else if kind == .keda, keda.query != nil {
            // [keda]'s query alone makes a trigger, as worker.keda does for every pool.
            var empty = TableReader(path: a.path + ["keda"], table: ConfigTable(), sink: sink)
            queue = decodeQueueTrigger(&empty, keda: keda, environment: environment, host: host)
        }
        if let own = decodeCron(&a, host: host) { cron = own }
        if kind == .hpa {
            cron = nil
            if cpuTarget == nil && !a.table.keys.contains("target_cpu_utilization_percentage") {
                sink.error(a.path, "\(a.sectionName) with type = \"hpa\" needs 'target_cpu_utilization_percentage' (of resources.cpu_request, e.g. 75)")
            }
            if resources.cpuRequest == nil {
                sink.error(
                    a.keyPath("type"), "type = \"hpa\" scales on CPU as a percentage of the request: set cpu_request in [\((r.path + ["resources"]).joined(separator: "."))]")
            }
        } else {
            if let _ = cpuTarget {
                sink.error(a.keyPath("target_cpu_utilization_percentage"), "'\(a.name("target_cpu_utilization_percentage"))' is for type = \"hpa\"; this pool has type = \"keda\"")
            }
            if queue == nil && cron?.trigger == nil && a.table.keys.contains("keda") == false && keda.query == nil {
                sink.error(
                    a.path,
                    "\(a.sectionName) with type = \"keda\" has no trigger: add [\((a.path + ["keda"]).joined(separator: "."))] with a query or a Redis queue (or a query in [keda]), or a cron_trigger"
                )
            }
        }
        if let f = fallback, let maxReplicas, f.replicas > maxReplicas {
            sink.warning(a.keyPath("fallback_replicas"), "'fallback_replicas' (\(f.replicas)) is more than 'max_replicas' (\(maxReplicas)); the fallback runs \(maxReplicas)")
            fallback?.replicas = maxReplicas
        }
        guard enabled else { return nil }
        var out = PoolAutoscaling(
            kind: kind, rules: rules, pollingInterval: polling,
            initialReplicas: rules.bounded(replicasWritten ?? minReplicas))
        out.queue = queue
        out.cpuTarget = kind == .hpa ? cpuTarget : nil
        out.cron = cron?.enabled == true ? cron?.trigger : nil
        out.fallback = fallback
        return out
    }

    /// `[...behavior.scale_up]` / `scale_down`: the HPA v2 API's fields, snake_cased.
    private static func decodeRules(_ r: inout TableReader, defaults: ScalingRules) -> ScalingRules {
        var rules = defaults
        rules.stabilizationWindow = r.seconds("stabilization_window_seconds", in: 0...3600) ?? defaults.stabilizationWindow
        if let s = r.choice("select_policy", ["Max", "Min", "Disabled"]) { rules.select = ScalingRules.Select(rawValue: s)! }
        guard let v = r.value("policies") else { return rules }
        guard case .array(let items) = v else {
            r.sink.error(r.keyPath("policies"), "'\(r.name("policies"))' must be an array of tables such as [{ type = \"Percent\", value = 10, period_seconds = 60 }]")
            return rules
        }
        var policies: [ScalingRules.Policy] = []
        for (n, item) in items.enumerated() {
            guard case .table(let t) = item else {
                r.sink.error(r.keyPath("policies"), "'\(r.name("policies"))' element \(n + 1) must be a table such as { type = \"Pods\", value = 4, period_seconds = 15 }")
                continue
            }
            var p = TableReader(path: r.keyPath("policies") + [String(n + 1)], table: t, sink: r.sink)
            let type = p.choice("type", ["Pods", "Percent"]).flatMap(ScalingRules.PolicyType.init(rawValue:))
            let value = p.integer("value", in: 1...100_000)
            let period = p.seconds("period_seconds", in: 1...1800)
            for key in ["type", "value", "period_seconds"] where !t.keys.contains(key) {
                r.sink.error(r.keyPath("policies"), "'\(r.name("policies"))' element \(n + 1) needs '\(key)'")
            }
            p.finish()
            if let type, let value, let period { policies.append(ScalingRules.Policy(type, value, per: period)) }
        }
        if items.isEmpty && rules.select != .disabled {
            r.sink.error(r.keyPath("policies"), "'\(r.name("policies"))' is empty: give at least one policy, or select_policy = \"Disabled\" to forbid scaling in this direction")
        }
        rules.policies = policies
        return rules
    }

    /// `[pools.X.autoscaling.keda]`: a PostgreSQL query, or a Redis queue (`redis_list`, or
    /// `queue_library` + `queue_name`), with the pool's overrides of `[keda]`.
    private static func decodeQueueTrigger(_ k: inout TableReader, keda: KedaDefaults, environment: Environment, host: some HostProbe) -> QueueTrigger? {
        let sink = k.sink
        let query = k.nonEmptyString("query")
        let target = k.positiveNumber("target_query_value")
        let activation = k.number("activation_target_query_value", minimum: 0)
        let postgresEnv = k.environmentName("postgres_connection_env")
        let redisEnv = k.environmentName("redis_url_env")
        let list = k.nonEmptyString("redis_list")
        let library = k.choice("queue_library", RedisQueue.Library.allCases.map(\.rawValue)).flatMap(RedisQueue.Library.init(rawValue:))
        let queueName = k.nonEmptyString("queue_name")
        let keyPrefix = k.nonEmptyString("key_prefix")
        let group = k.nonEmptyString("consumer_group")
        let listLength = k.positiveNumber("list_length")
        let activationLength = k.number("activation_list_length", minimum: 0)
        let count = k.choice("count", RedisQueue.Count.allCases.map(\.rawValue)).flatMap(RedisQueue.Count.init(rawValue:))

        let redisKeys = ["redis_list", "queue_library", "queue_name", "key_prefix", "consumer_group", "list_length", "activation_list_length", "count", "redis_url_env"]
        let wantsRedis = redisKeys.contains { k.table.keys.contains($0) && $0 != "redis_url_env" }
        if wantsRedis {
            if query != nil {
                sink.error(k.keyPath("query"), "\(k.sectionName) has both a PostgreSQL 'query' and a Redis queue; a pool has one queue trigger")
            }
            var queue: RedisQueue?
            switch (list, library, queueName) {
            case (let list?, nil, nil), (let list?, .list?, nil):
                queue = RedisQueue(library: .list, name: list)
            case (nil, let library?, let name?):
                queue = RedisQueue(library: library == .list ? .list : library, name: name, keyPrefix: keyPrefix, consumerGroup: group, count: count ?? .ready)
            case (nil, _?, nil):
                sink.error(k.path, "\(k.sectionName) needs 'queue_name' (exactly what the application passes to the library)")
            case (nil, nil, _?):
                sink.error(
                    k.keyPath("queue_name"), "'\(k.name("queue_name"))' needs 'queue_library' (one of \(RedisQueue.Library.allCases.map(\.rawValue).joined(separator: ", ")))")
            case (_?, _, _?), (_?, _?, _):
                sink.error(k.keyPath("redis_list"), "'\(k.name("redis_list"))' is a plain list; with queue_library, name the queue with 'queue_name' instead")
            case (nil, nil, nil):
                sink.error(k.path, "\(k.sectionName) needs 'redis_list' or 'queue_library' and 'queue_name'")
            }
            if let q = queue {
                if keyPrefix != nil && ![.dramatiq, .bullmq].contains(q.library) {
                    sink.error(k.keyPath("key_prefix"), "'\(k.name("key_prefix"))' is for Dramatiq (its namespace) and BullMQ (its prefix), not \(q.library.rawValue)")
                }
                if group != nil && q.library != .taskiq {
                    sink.error(k.keyPath("consumer_group"), "'\(k.name("consumer_group"))' is for TaskIQ's stream broker only")
                }
                if let why = RedisQueue.unsupported(q.library, q.count) {
                    sink.error(k.keyPath("count"), "'\(k.name("count"))' = \"\(q.count.rawValue)\" cannot be counted for \(q.library.rawValue): \(why)")
                }
            }
            if !k.table.keys.contains("list_length") {
                sink.error(k.path, "\(k.sectionName) needs 'list_length' (the jobs one worker takes on; the pool runs ceil(depth / list_length))")
            }
            let variable = redisEnv ?? keda.redisURLEnv
            guard let variable else {
                sink.error(k.path, "\(k.sectionName) reads Redis but no 'redis_url_env' is set, here or in [keda] (the name of the environment variable holding the Redis URL)")
                return nil
            }
            guard
                let url = connection(
                    variable, key: redisEnv != nil ? k.keyPath("redis_url_env") : ["keda", "redis_url_env"], environment: environment, sink: sink,
                    withheld: host.withholdsSecrets ? "redis://withheld.invalid" : nil),
                let queue, let listLength
            else { return nil }
            if case .failure(let why) = RedisEndpoint.parse(url) {
                sink.error(redisEnv != nil ? k.keyPath("redis_url_env") : ["keda", "redis_url_env"], "the Redis URL in $\(variable) is not valid: \(why.message)")
                return nil
            }
            return QueueTrigger(
                source: .redis(endpoint: Secret(url), queue: queue), target: listLength,
                activation: activationLength ?? 0, connectionVariable: variable)
        }
        if redisEnv != nil && query == nil && keda.query == nil {
            sink.error(k.keyPath("redis_url_env"), "'\(k.name("redis_url_env"))' is set but no Redis queue is named: add 'redis_list' or 'queue_library' and 'queue_name'")
            return nil
        }
        guard let sql = query ?? keda.query else {
            if !k.table.keys.isEmpty {
                sink.error(k.path, "\(k.sectionName) needs a 'query' (here or in [keda]) or a Redis queue ('redis_list', or 'queue_library' and 'queue_name')")
            }
            return nil
        }
        guard let targetValue = target ?? keda.targetQueryValue else {
            sink.error(k.path, "\(k.sectionName) needs 'target_query_value' (here or in [keda]): the rows one worker takes on")
            return nil
        }
        let variable = postgresEnv ?? keda.postgresConnectionEnv
        guard let variable else {
            sink.error(
                k.path,
                "\(k.sectionName) runs a PostgreSQL query but no 'postgres_connection_env' is set, here or in [keda] (the name of the environment variable holding the connection string)"
            )
            return nil
        }
        guard
            let conninfo = connection(
                variable, key: postgresEnv != nil ? k.keyPath("postgres_connection_env") : ["keda", "postgres_connection_env"],
                environment: environment, sink: sink, withheld: host.withholdsSecrets ? "withheld" : nil)
        else { return nil }
        return QueueTrigger(
            source: .postgres(connection: Secret(conninfo), query: sql), target: targetValue,
            activation: activation ?? keda.activationTargetQueryValue ?? 0, connectionVariable: variable)
    }

    /// The connection string in the pool's environment; its value is never put in a message. With
    /// secrets withheld, a variable the (unread) env files may set stands as `withheld`.
    private static func connection(_ variable: String, key: [String], environment: Environment, sink: DiagnosticSink, withheld: String? = nil) -> String? {
        guard let value = environment[variable], !value.isEmpty else {
            if let withheld { return withheld }
            sink.error(
                key,
                "'\(key.joined(separator: "."))' names $\(variable), which this pool's environment does not set (set it in an env_file, [env] or [\(key.first == "pools" ? key.prefix(2).joined(separator: ".") + ".env" : "env")])"
            )
            return nil
        }
        return value
    }
}

extension TableReader {
    mutating func nonEmptyString(_ key: String) -> String? {
        guard let s = string(key) else { return nil }
        guard !trimmed(s).isEmpty else {
            sink.error(keyPath(key), "'\(name(key))' is empty")
            return nil
        }
        return s
    }

    /// An environment variable's name (not its value).
    mutating func environmentName(_ key: String) -> String? {
        guard let s = string(key) else { return nil }
        guard EnvironmentName.isValid(s) else {
            sink.error(keyPath(key), "'\(name(key))' must be the name of an environment variable (letters, digits and '_'), not '\(s)'")
            return nil
        }
        return s
    }

    mutating func number(_ key: String, minimum: Double) -> Double? {
        guard let v = value(key) else { return nil }
        let x: Double
        switch v {
        case .integer(let n): x = Double(n)
        case .float(let f): x = f
        default:
            sink.error(keyPath(key), "'\(name(key))' must be a number, not \(v.typeDescription)")
            return nil
        }
        guard x >= minimum, x.isFinite else {
            sink.error(keyPath(key), "'\(name(key))' must be at least \(Autoscaler.number(minimum)), not \(Autoscaler.number(x))")
            return nil
        }
        return x
    }

    mutating func positiveNumber(_ key: String) -> Double? {
        guard let x = number(key, minimum: 0) else { return nil }
        guard x > 0 else {
            sink.error(keyPath(key), "'\(name(key))' must be more than 0")
            return nil
        }
        return x
    }

    /// A cron expression.
    mutating func cron(_ key: String) -> CronSchedule? {
        guard let s = string(key) else { return nil }
        switch CronSchedule.parse(s) {
        case .success(let schedule): return schedule
        case .failure(let error):
            sink.error(keyPath(key), "'\(name(key))' is not a cron expression: \(error)")
            return nil
        }
    }
}
