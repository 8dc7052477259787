import PoolvisorCore

/// `worker.pools.NAME` as `[pools.NAME]` and its tables: the pool's own keys, resources and disruption
/// budget (autoscaling: `HelmValuesImport+Autoscaling.swift`).
extension HelmValuesImporter {
    static let poolKeys: Set<String> = [
        "enabled", "replicaCount", "workerSubscribe", "workerSubscribeTenants", "workerSubscribeWorkspaces", "envSecretRef", "resources", "autoscaling",
        "podDisruptionBudget", "command", "args", "env", "terminationGracePeriodSeconds",
    ]

    /// The pool's tables as TOML text.
    mutating func pool(_ name: String, _ v: HelmValue, command workerCommand: [String]?, args workerArgs: [String]?) -> String {
        let path = "worker.pools.\(name)"
        var out = TOMLWriter()
        var notes: [String] = []
        for entry in v.entries where !Self.poolKeys.contains(entry.key) {
            note(entry, "\(path).\(entry.key)", into: &notes)
        }
        out.table(["pools", name])
        if let e = v["enabled"], let enabled = bool(e, "\(path).enabled") { out.line("enabled", String(enabled)) }

        let command = v["command"].map { strings($0, "\(path).command") } ?? workerCommand ?? options.command
        let args = v["args"].map { strings($0, "\(path).args") } ?? workerArgs ?? []
        if let command, let args {
            if command.isEmpty || command[0].isEmpty {
                error(v["command"] ?? v, "\(path).command", "must name a program to run")
            } else {
                out.line("command", TOMLWriter.array(command + args))
            }
        } else if command == nil && v["command"] == nil {
            error(
                v, path,
                "no command to run: the chart runs the container image's entrypoint, which a pools file cannot; give the worker's argv with --command \"/usr/bin/python3 -m app.worker\", or as worker.command (and worker.args) in a values file"
            )
        }

        if let r = v["replicaCount"], let n = integer(r, "\(path).replicaCount", 0...PoolSpec.maximumReplicas) {
            out.line("replicas", TOMLWriter.number(n))
        }
        if let s = v["workerSubscribe"], let word = choice(s, "\(path).workerSubscribe", ["all", "all_but_kb", "flow", "chat", "kb"]) {
            out.line("worker_subscribe", TOMLWriter.string(word))
        }
        for (chartKey, key) in [("workerSubscribeTenants", "worker_subscribe_tenants"), ("workerSubscribeWorkspaces", "worker_subscribe_workspaces")] {
            guard let value = v[chartKey] else { continue }
            switch value.kind {
            case .string(let s): out.line(key, TOMLWriter.string(s))
            case .list: if let list = strings(value, "\(path).\(chartKey)") { out.line(key, TOMLWriter.array(list)) }
            default: error(value, "\(path).\(chartKey)", "must be a list of ids or one comma-separated string, not \(value.typeDescription)")
            }
        }
        if let grace = v["terminationGracePeriodSeconds"], let s = number(grace, "\(path).terminationGracePeriodSeconds", 0...604_800) {
            out.line("drain_seconds", TOMLWriter.number(s))
        }
        if let ref = v["envSecretRef"] { envFile(ref, "\(path).envSecretRef", into: &out) }
        if !notes.isEmpty {
            out.comment("Not imported:\n" + notes.map { "  \($0)" }.joined(separator: "\n"))
        }
        if let env = v["env"] { environment(env, "\(path).env", table: ["pools", name, "env"], into: &out) }
        var cpuRequest = false
        if let r = v["resources"] { cpuRequest = resources(r, "\(path).resources", table: ["pools", name, "resources"], into: &out) }
        if let b = v["podDisruptionBudget"] { disruptionBudget(b, "\(path).podDisruptionBudget", table: ["pools", name, "disruption_budget"], into: &out) }
        if let a = v["autoscaling"] { autoscaling(a, "\(path).autoscaling", pool: name, cpuRequest: cpuRequest, into: &out) }
        return out.text
    }

    /// `resources: {requests: {cpu, memory}, limits: {cpu, memory}}` as `[pools.NAME.resources]`;
    /// whether it has a CPU request (what an HPA scales against).
    mutating func resources(_ v: HelmValue, _ path: String, table: [String], into out: inout TOMLWriter) -> Bool {
        guard case .map = v.kind else {
            error(v, path, "must be a map (requests: …, limits: …), not \(v.typeDescription)")
            return false
        }
        var lines: [(String, String)] = []
        var notes: [String] = []
        var cores: [String: Double] = [:]
        var bytes: [String: Int64] = [:]
        for part in v.entries {
            let partPath = "\(path).\(part.key)"
            guard part.key == "requests" || part.key == "limits" else {
                note(part, partPath, into: &notes)
                continue
            }
            guard case .map = part.value.kind else {
                if case .null = part.value.kind { continue }
                error(part.value, partPath, "must be a map (cpu: …, memory: …), not \(part.value.typeDescription)")
                continue
            }
            let suffix = part.key == "requests" ? "request" : "limit"
            for e in part.value.entries {
                let keyPath = "\(partPath).\(e.key)"
                switch e.key {
                case "cpu":
                    if let (text, n) = cpu(e.value, keyPath) {
                        cores[suffix] = n
                        lines.append(("cpu_\(suffix)", text))
                    }
                case "memory":
                    if let (text, n) = memory(e.value, keyPath) {
                        bytes[suffix] = n
                        lines.append(("memory_\(suffix)", text))
                    }
                case "ephemeral-storage":
                    notes.append("\(keyPath): poolvisor limits CPU, memory and PIDs, not disk")
                default:
                    notes.append("\(keyPath): poolvisor limits CPU, memory and PIDs only")
                    warning(e.value, keyPath, "not imported: poolvisor limits CPU, memory and PIDs only")
                }
            }
        }
        if let request = cores["request"], let limit = cores["limit"], request > limit {
            error(v, "\(path).requests.cpu", "is more than limits.cpu")
        }
        if let request = bytes["request"], let limit = bytes["limit"], request > limit {
            error(v, "\(path).requests.memory", "is more than limits.memory")
        }
        if let limit = bytes["limit"], limit < 4 << 20 {
            error(v, "\(path).limits.memory", "is too small for any worker to start (at least 4Mi)")
        }
        guard !lines.isEmpty || !notes.isEmpty else { return false }
        out.table(table)
        if !notes.isEmpty { out.comment("Not imported:\n" + notes.map { "  \($0)" }.joined(separator: "\n")) }
        let order = ["cpu_request", "cpu_limit", "memory_request", "memory_limit"]
        for (key, text) in lines.sorted(by: { order.firstIndex(of: $0.0)! < order.firstIndex(of: $1.0)! }) { out.line(key, text) }
        return cores["request"] != nil
    }

    /// Cores as Kubernetes writes them (`2`, `0.5`, `"500m"`): the TOML text (as written) and the number.
    private mutating func cpu(_ v: HelmValue, _ path: String) -> (String, Double)? {
        switch v.kind {
        case .integer(let n) where Quantity.coresRange.contains(Double(n)): return (TOMLWriter.number(n), Double(n))
        case .float(let f) where Quantity.coresRange.contains(f): return (TOMLWriter.number(f), f)
        case .string(let s): if let n = Quantity.cores(s) { return (TOMLWriter.string(s), n) }
        default: break
        }
        error(v, path, "must be a number of cores such as 2, 0.5 or \"500m\", from 0.001 (\"1m\") to 4096, not \(v.typeDescription)")
        return nil
    }

    /// Bytes as Kubernetes writes them (`"512Mi"`, `"16Gi"`, `"1G"`, `1048576`).
    private mutating func memory(_ v: HelmValue, _ path: String) -> (String, Int64)? {
        switch v.kind {
        case .integer(let n) where n > 0: return (TOMLWriter.number(n), Int64(n))
        case .string(let s): if let n = Quantity.bytes(s), n > 0 { return (TOMLWriter.string(s), n) }
        default: break
        }
        error(v, path, "must be a quantity such as \"512Mi\", \"16Gi\" or \"1G\" (Ki, Mi, Gi: powers of 1024; K, M, G: of 1000), not \(v.typeDescription)")
        return nil
    }

    /// `podDisruptionBudget: {enabled, minAvailable | maxUnavailable}` as `[pools.NAME.disruption_budget]`.
    /// As in the chart, a budget without `enabled: true` is not made.
    mutating func disruptionBudget(_ v: HelmValue, _ path: String, table: [String], into out: inout TOMLWriter) {
        guard case .map = v.kind else {
            error(v, path, "must be a map (enabled: true, minAvailable: 1), not \(v.typeDescription)")
            return
        }
        var notes: [String] = []
        for entry in v.entries where !["enabled", "minAvailable", "maxUnavailable"].contains(entry.key) {
            note(entry, "\(path).\(entry.key)", into: &notes)
        }
        let enabled = v["enabled"].flatMap { bool($0, "\(path).enabled") } ?? false
        let minAvailable = v["minAvailable"].flatMap { replicaAmount($0, "\(path).minAvailable") }
        let maxUnavailable = v["maxUnavailable"].flatMap { replicaAmount($0, "\(path).maxUnavailable") }
        guard enabled else {
            out.comment("\(path) is not enabled in the values: no disruption budget")
            return
        }
        if v["minAvailable"] != nil && v["maxUnavailable"] != nil {
            error(v, path, "takes minAvailable or maxUnavailable, not both")
        } else if v["minAvailable"] == nil && v["maxUnavailable"] == nil {
            error(v, path, "is enabled but has neither minAvailable nor maxUnavailable")
        }
        out.table(table)
        if !notes.isEmpty { out.comment("Not imported:\n" + notes.map { "  \($0)" }.joined(separator: "\n")) }
        if let minAvailable { out.line("min_available", minAvailable) }
        if let maxUnavailable { out.line("max_unavailable", maxUnavailable) }
    }
}
