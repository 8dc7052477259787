import PoolvisorCore

/// `worker.keda` as `[keda]`, and a pool's `autoscaling` as `[pools.NAME.autoscaling]` with its `keda`,
/// `cron_trigger` and `behavior` tables (docs/autoscaling.md has the TOML keys and their ranges).
extension HelmValuesImporter {
    /// Keys of `worker.keda` that would hold a connection string or a password: never copied.
    static let credentialKeys: Set<String> = [
        "connection", "connectionString", "connectionStr", "url", "host", "port", "userName", "username", "user", "password", "passwordFromEnv", "dbName",
        "sslmode",
    ]

    /// Whether `worker.keda` gives every KEDA pool a trigger (a query with a target, or an enabled cron window).
    static func globalTrigger(_ keda: HelmValue?) -> (query: Bool, target: Bool, cron: Bool) {
        guard let keda else { return (false, false, false) }
        let cron = keda["cronTrigger"].map { c in
            if case .bool(false)? = c["enabled"]?.kind { return false }
            return true
        }
        return (keda["query"] != nil, keda["targetQueryValue"] != nil, cron ?? false)
    }

    /// `[keda]`, when the values have `worker.keda` or some pool scales with KEDA.
    mutating func keda(_ v: HelmValue?, into out: inout TOMLWriter) {
        guard v != nil || kedaPools else { return }
        let path = "worker.keda"
        out.table(["keda"])
        var lines: [(String, String)] = []
        var notes: [String] = []
        var connectionVariable = "DATABASE_URL"
        var cron: HelmValue?
        if let v {
            guard case .map = v.kind else {
                error(v, path, "must be a map (pollingInterval: …, query: …), not \(v.typeDescription)")
                return
            }
            for entry in v.entries {
                let keyPath = "\(path).\(entry.key)"
                let value = entry.value
                if case .null = value.kind { continue }
                switch entry.key {
                case "enabled":
                    if let b = bool(value, keyPath), !b { notes.append("\(keyPath) is false in the values: the pools' autoscaling tables below still apply") }
                case "connectionFromEnv":
                    if let name = environmentName(value, keyPath) { connectionVariable = name }
                case "connectionSecretRef":
                    let name = value["name"].flatMap { string($0, "\(keyPath).name") } ?? (value.kind.isString ? string(value, keyPath) : nil)
                    let key = value["key"].flatMap { string($0, "\(keyPath).key") }
                    notes.append(
                        "\(keyPath): the connection string is \(key.map { "key '\($0)' of " } ?? "in ")the Kubernetes secret '\(name ?? "?")': write it into the pools' env files as $CONNECTION"
                    )
                case "pollingInterval":
                    if let s = number(value, keyPath, 0.1...3600) { lines.append(("polling_interval", TOMLWriter.number(s))) }
                case "cooldownPeriod":
                    if let s = number(value, keyPath, 0...604_800) { lines.append(("cooldown_period", TOMLWriter.number(s))) }
                case "query":
                    if let q = string(value, keyPath) { lines.append(("query", TOMLWriter.string(q))) }
                case "targetQueryValue":
                    if let n = number(value, keyPath, 0...1e15, positive: true) { lines.append(("target_query_value", TOMLWriter.number(n))) }
                case "activationTargetQueryValue":
                    if let n = number(value, keyPath, 0...1e15) { lines.append(("activation_target_query_value", TOMLWriter.number(n))) }
                case "fallback":
                    lines += fallback(value, keyPath)
                case "cronTrigger":
                    cron = value
                default:
                    if Self.credentialKeys.contains(entry.key) {
                        notes.append("\(keyPath): not copied: a connection string or password never goes in a pools file; put it in the env files as $CONNECTION")
                        warning(value, keyPath, "not copied (a connection string or password never goes in a pools file): put it in the pools' env files as $\(connectionVariable)")
                    } else {
                        note(entry, keyPath, into: &notes)
                    }
                }
            }
        }
        out.comment("The NAME of the variable holding the PostgreSQL connection string, in each KEDA pool's environment (its env_file, mode 0600); never the value.")
        out.line("postgres_connection_env", TOMLWriter.string(connectionVariable))
        for (k, text) in lines { out.line(k, text) }
        if !notes.isEmpty {
            out.comment(notes.map { $0.replacingCONNECTION(with: connectionVariable) }.joined(separator: "\n"))
        }
        if let cron { cronTrigger(cron, "\(path).cronTrigger", table: ["keda", "cron_trigger"], into: &out) }
    }

    /// `fallback: {failureThreshold, replicas}` (KEDA's) as `fallback_replicas` and `failure_threshold`.
    mutating func fallback(_ v: HelmValue, _ path: String) -> [(String, String)] {
        guard case .map = v.kind else {
            error(v, path, "must be a map (failureThreshold: 3, replicas: 2), not \(v.typeDescription)")
            return []
        }
        var lines: [(String, String)] = []
        if let r = v["replicas"], let n = integer(r, "\(path).replicas", 0...PoolSpec.maximumReplicas) { lines.append(("fallback_replicas", TOMLWriter.number(n))) }
        if v["replicas"] == nil { error(v, path, "needs 'replicas' (the replicas to run once the scaler has failed failureThreshold times in a row)") }
        if let t = v["failureThreshold"], let n = integer(t, "\(path).failureThreshold", 1...1000) { lines.append(("failure_threshold", TOMLWriter.number(n))) }
        for entry in v.entries where entry.key != "replicas" && entry.key != "failureThreshold" {
            warning(entry.value, "\(path).\(entry.key)", "unknown key, not imported")
        }
        return lines
    }

    /// `cronTrigger: {enabled, timezone, start, end, desiredReplicas}` as a `cron_trigger` table.
    mutating func cronTrigger(_ v: HelmValue, _ path: String, table: [String], into out: inout TOMLWriter) {
        guard case .map = v.kind else {
            error(v, path, "must be a map (timezone, start, end, desiredReplicas), not \(v.typeDescription)")
            return
        }
        let enabled = v["enabled"].flatMap { bool($0, "\(path).enabled") } ?? true
        var lines: [(String, String)] = []
        if v["enabled"] != nil { lines.append(("enabled", String(enabled))) }
        if let t = v["timezone"], let zone = string(t, "\(path).timezone") { lines.append(("timezone", TOMLWriter.string(zone))) }
        for (chartKey, key) in [("start", "start"), ("end", "end")] {
            guard let c = v[chartKey], let text = string(c, "\(path).\(chartKey)") else {
                if enabled && v[chartKey] == nil { error(v, path, "needs '\(chartKey)' (a cron expression such as \"0 9 * * 1-5\")") }
                continue
            }
            if case .failure(let why) = CronSchedule.parse(text) { error(c, "\(path).\(chartKey)", "not a cron expression: \(why.message)") }
            lines.append((key, TOMLWriter.string(text)))
        }
        if let d = v["desiredReplicas"], let n = integer(d, "\(path).desiredReplicas", 1...PoolSpec.maximumReplicas) {
            lines.append(("desired_replicas", TOMLWriter.number(n)))
        } else if enabled && v["desiredReplicas"] == nil {
            error(v, path, "needs 'desiredReplicas' (the replicas to keep while the window is open)")
        }
        for entry in v.entries where !["enabled", "timezone", "start", "end", "desiredReplicas"].contains(entry.key) {
            warning(entry.value, "\(path).\(entry.key)", "unknown key, not imported")
        }
        out.table(table)
        for (k, text) in lines { out.line(k, text) }
    }

    /// A pool's `autoscaling`. As in the chart, only `enabled: true` makes an autoscaler.
    mutating func autoscaling(_ v: HelmValue, _ path: String, pool: String, cpuRequest: Bool, into out: inout TOMLWriter) {
        guard case .map = v.kind else {
            error(v, path, "must be a map (enabled: true, type: keda, …), not \(v.typeDescription)")
            return
        }
        let enabled = v["enabled"].flatMap { bool($0, "\(path).enabled") } ?? false
        guard enabled else {
            out.comment("\(path) is not enabled in the values: the pool runs `replicas`, set by hand")
            return
        }
        var notes: [String] = []
        for entry in v.entries where !["enabled", "type", "minReplicas", "maxReplicas", "targetCPUUtilizationPercentage", "keda", "behavior"].contains(entry.key) {
            note(entry, "\(path).\(entry.key)", into: &notes)
        }
        let kedaValue = v["keda"]
        let type =
            v["type"].flatMap { choice($0, "\(path).type", ["keda", "hpa"]) }
            ?? (kedaValue == nil && v["targetCPUUtilizationPercentage"] != nil ? "hpa" : "keda")
        var lines: [(String, String)] = [("type", TOMLWriter.string(type))]
        let minReplicas = v["minReplicas"].flatMap { integer($0, "\(path).minReplicas", 0...PoolSpec.maximumReplicas) }
        let maxReplicas = v["maxReplicas"].flatMap { integer($0, "\(path).maxReplicas", 1...PoolSpec.maximumReplicas) }
        if let minReplicas { lines.append(("min_replicas", TOMLWriter.number(minReplicas))) }
        if let maxReplicas { lines.append(("max_replicas", TOMLWriter.number(maxReplicas))) }
        if v["maxReplicas"] == nil { error(v, path, "needs maxReplicas (the most workers the autoscaler may run)") }
        if let minReplicas, let maxReplicas, minReplicas > maxReplicas {
            error(v["minReplicas"]!, "\(path).minReplicas", "(\(minReplicas)) is more than maxReplicas (\(maxReplicas))")
        }

        var kedaLines: [(String, String)] = []
        var cron: HelmValue?
        if type == "hpa" {
            if minReplicas == 0 { error(v["minReplicas"]!, "\(path).minReplicas", "must be at least 1 with type hpa: CPU cannot be measured with no workers") }
            if let t = v["targetCPUUtilizationPercentage"] {
                if let n = number(t, "\(path).targetCPUUtilizationPercentage", 0...100_000, positive: true) {
                    lines.append(("target_cpu_utilization_percentage", TOMLWriter.number(n)))
                }
            } else {
                error(v, path, "type hpa needs targetCPUUtilizationPercentage (of resources.requests.cpu, e.g. 75)")
            }
            if !cpuRequest { error(v, path, "type hpa scales on CPU as a percentage of the request: set resources.requests.cpu for this pool") }
            if kedaValue != nil { notes.append("\(path).keda: for type keda; this pool has type hpa") }
        } else {
            kedaPools = true
            if v["targetCPUUtilizationPercentage"] != nil { notes.append("\(path).targetCPUUtilizationPercentage: for type hpa; this pool has type keda") }
            if let k = kedaValue {
                guard case .map = k.kind else {
                    error(k, "\(path).keda", "must be a map (query: …, targetQueryValue: …), not \(k.typeDescription)")
                    return
                }
                for entry in k.entries {
                    let keyPath = "\(path).keda.\(entry.key)"
                    let value = entry.value
                    if case .null = value.kind { continue }
                    switch entry.key {
                    case "query":
                        if let q = string(value, keyPath) { kedaLines.append(("query", TOMLWriter.string(q))) }
                    case "targetQueryValue":
                        if let n = number(value, keyPath, 0...1e15, positive: true) { kedaLines.append(("target_query_value", TOMLWriter.number(n))) }
                    case "activationTargetQueryValue":
                        if let n = number(value, keyPath, 0...1e15) { kedaLines.append(("activation_target_query_value", TOMLWriter.number(n))) }
                    case "connectionFromEnv":
                        if let name = environmentName(value, keyPath) { kedaLines.append(("postgres_connection_env", TOMLWriter.string(name))) }
                    case "pollingInterval":
                        if let s = number(value, keyPath, 0.1...3600) { lines.append(("polling_interval", TOMLWriter.number(s))) }
                    case "cooldownPeriod":
                        if let s = number(value, keyPath, 0...604_800) { lines.append(("cooldown_period", TOMLWriter.number(s))) }
                    case "fallback":
                        lines += fallback(value, keyPath)
                    case "cronTrigger":
                        cron = value
                    default:
                        note(entry, keyPath, into: &notes)
                    }
                }
            }
            let global = Self.globalTrigger(globalKeda)
            let ownQuery = kedaValue?["query"] != nil
            let ownCron = cron.map { c in
                if case .bool(false)? = c["enabled"]?.kind { return false }
                return true
            }
            if (ownQuery || global.query) && kedaValue?["targetQueryValue"] == nil && !global.target {
                error(v, path, "a KEDA query needs keda.targetQueryValue (here or in worker.keda): the rows one worker takes on")
            }
            if !ownQuery && !global.query && !(ownCron ?? global.cron) {
                error(v, path, "type keda has no trigger: give keda.query (here or in worker.keda) or a cronTrigger")
            }
        }
        out.table(["pools", pool, "autoscaling"])
        if !notes.isEmpty { out.comment("Not imported:\n" + notes.map { "  \($0)" }.joined(separator: "\n")) }
        for (k, text) in lines { out.line(k, text) }
        if !kedaLines.isEmpty {
            out.table(["pools", pool, "autoscaling", "keda"])
            for (k, text) in kedaLines { out.line(k, text) }
        }
        if let cron { cronTrigger(cron, "\(path).keda.cronTrigger", table: ["pools", pool, "autoscaling", "cron_trigger"], into: &out) }
        if let b = v["behavior"] { behavior(b, "\(path).behavior", table: ["pools", pool, "autoscaling", "behavior"], into: &out) }
    }

    /// `behavior: {scaleUp, scaleDown}` (the HPA's) as `behavior.scale_up` and `behavior.scale_down`.
    mutating func behavior(_ v: HelmValue, _ path: String, table: [String], into out: inout TOMLWriter) {
        guard case .map = v.kind else {
            error(v, path, "must be a map (scaleUp: …, scaleDown: …), not \(v.typeDescription)")
            return
        }
        for entry in v.entries {
            let keyPath = "\(path).\(entry.key)"
            guard let key = ["scaleUp": "scale_up", "scaleDown": "scale_down"][entry.key] else {
                warning(entry.value, keyPath, "unknown key, not imported (behavior takes scaleUp and scaleDown)")
                continue
            }
            guard case .map = entry.value.kind else {
                if case .null = entry.value.kind { continue }
                error(entry.value, keyPath, "must be a map (stabilizationWindowSeconds, policies, selectPolicy), not \(entry.value.typeDescription)")
                continue
            }
            var lines: [(String, String)] = []
            let rules = entry.value
            if let w = rules["stabilizationWindowSeconds"], let s = number(w, "\(keyPath).stabilizationWindowSeconds", 0...3600) {
                lines.append(("stabilization_window_seconds", TOMLWriter.number(s)))
            }
            if let s = rules["selectPolicy"], let word = choice(s, "\(keyPath).selectPolicy", ["Max", "Min", "Disabled"]) {
                lines.append(("select_policy", TOMLWriter.string(word)))
            }
            if let p = rules["policies"], let policies = policies(p, "\(keyPath).policies") { lines.append(("policies", policies)) }
            for e in rules.entries where !["stabilizationWindowSeconds", "selectPolicy", "policies"].contains(e.key) {
                warning(e.value, "\(keyPath).\(e.key)", "unknown key, not imported")
            }
            out.table(table + [key])
            for (k, text) in lines { out.line(k, text) }
        }
    }

    /// `policies: [{type, value, periodSeconds}]` as a TOML array of inline tables.
    private mutating func policies(_ v: HelmValue, _ path: String) -> String? {
        guard case .list(let items) = v.kind else {
            error(v, path, "must be a list such as [{type: Percent, value: 10, periodSeconds: 60}], not \(v.typeDescription)")
            return nil
        }
        if items.isEmpty {
            error(v, path, "is empty: give at least one policy, or selectPolicy: Disabled to forbid scaling in this direction")
            return nil
        }
        var tables: [String] = []
        for (n, item) in items.enumerated() {
            let itemPath = "\(path)[\(n)]"
            guard case .map = item.kind else {
                error(item, itemPath, "must be a map {type, value, periodSeconds}, not \(item.typeDescription)")
                continue
            }
            for key in ["type", "value", "periodSeconds"] where item[key] == nil { error(item, itemPath, "needs '\(key)'") }
            let type = item["type"].flatMap { choice($0, "\(itemPath).type", ["Pods", "Percent"]) }
            let value = item["value"].flatMap { integer($0, "\(itemPath).value", 1...100_000) }
            let period = item["periodSeconds"].flatMap { number($0, "\(itemPath).periodSeconds", 1...1800) }
            for e in item.entries where !["type", "value", "periodSeconds"].contains(e.key) {
                warning(e.value, "\(itemPath).\(e.key)", "unknown key, not imported")
            }
            if let type, let value, let period {
                tables.append(
                    TOMLWriter.inlineTable([("type", TOMLWriter.string(type)), ("value", TOMLWriter.number(value)), ("period_seconds", TOMLWriter.number(period))]))
            }
        }
        return "[" + tables.joined(separator: ", ") + "]"
    }
}

extension HelmValue.Kind {
    var isString: Bool {
        if case .string = self { return true }
        return false
    }
}

extension String {
    /// A note's `$CONNECTION`, once the connection variable's name is known.
    fileprivate func replacingCONNECTION(with name: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: "$CONNECTION") {
            out += rest[..<r.lowerBound] + "$" + name
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
