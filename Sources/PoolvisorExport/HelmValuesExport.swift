import PoolvisorCore
import Yams

/// `poolvisor export helm-values`: the pools as the seed chart's `worker` values, the keys
/// `poolvisor import helm-values` reads back. The connection string is a placeholder.
struct HelmValuesExport {
    let file: PoolsFile
    let options: Export.Options

    func render() -> Export.Rendering {
        let notes = ExportNotes(target: .helmValues, file: file)
        var warnings = notes.fileNotes()
        var pools: [(String, Node?)] = []
        for pool in file.pools {
            let poolNotes = notes.notes(for: pool) + chartNotes(pool)
            warnings += poolNotes.map { "pool \(pool.name): \($0)" }
            pools.append((pool.name, values(pool)))
        }
        let worker = Y.map([
            ("image", options.image.map { image in Y.map(imageParts(image).map { ($0.0, Y.str($0.1)) }) }),
            ("keda", kedaDefaults()),
            ("pools", Y.map(pools)),
        ])
        var header = ["Rendered by poolvisor export helm-values from \(file.path) (instance \(file.supervisor.name)): the seed chart's worker values."]
        header += warnings
        let text = yamlComment(header) + yamlText(Y.map([("worker", worker)]))
        return Export.Rendering(files: [ExportedFile(name: "values.yaml", text: text)], warnings: warnings)
    }

    func values(_ pool: PoolSpec) -> Node {
        let autoscaling = pool.autoscaling
        return Y.map([
            ("enabled", Y.bool(pool.enabled)),
            ("replicaCount", Y.int(autoscaling?.initialReplicas ?? pool.replicas)),
            ("command", Y.strings(pool.command)),
            ("workerSubscribe", pool.subscription.map { Y.str($0.rawValue) }),
            ("workerSubscribeTenants", pool.subscription == nil ? nil : Y.strings(pool.tenants)),
            ("workerSubscribeWorkspaces", pool.subscription == nil ? nil : Y.strings(pool.workspaces)),
            ("envSecretRef", pool.envFile.map { Y.str(secretName(for: $0)) }),
            ("resources", resources(pool.resources)),
            ("autoscaling", autoscaling.map(self.autoscaling)),
            ("podDisruptionBudget", pool.disruptionBudget.map(budget)),
        ])
    }

    func resources(_ r: Resources) -> Node? {
        let requests = Y.map([("cpu", r.cpuRequest.map { Y.str(cpuQuantity($0)) }), ("memory", r.memoryRequest.map { Y.str(memoryQuantity($0)) })])
        let limits = Y.map([("cpu", r.cpuLimit.map { Y.str(cpuQuantity($0)) }), ("memory", r.memoryLimit.map { Y.str(memoryQuantity($0)) })])
        return Y.nonEmpty(Y.map([("requests", Y.nonEmpty(requests)), ("limits", Y.nonEmpty(limits))]))
    }

    func autoscaling(_ a: PoolAutoscaling) -> Node {
        var keda: Node?
        if case .postgres(_, let query)? = a.queue?.source {
            keda = Y.map([
                ("query", Y.str(query)),
                ("targetQueryValue", Y.str(Autoscaler.number(a.queue!.target))),
                ("pollingInterval", Y.int(max(wholeSeconds(a.pollingInterval), 1))),
            ])
        } else if a.kind == .keda {
            keda = Y.map([("pollingInterval", Y.int(max(wholeSeconds(a.pollingInterval), 1)))])
        }
        return Y.map([
            ("enabled", Y.bool(true)),
            ("type", Y.str(a.kind.rawValue)),
            ("minReplicas", Y.int(a.rules.minReplicas)),
            ("maxReplicas", Y.int(a.rules.maxReplicas)),
            ("targetCPUUtilizationPercentage", a.cpuTarget.map { Y.int(Int($0.rounded(.up))) }),
            ("keda", keda),
            ("behavior", behavior(a.rules)),
        ])
    }

    func budget(_ b: DisruptionBudget) -> Node {
        switch b {
        case .minAvailable(let a): Y.map([("enabled", Y.bool(true)), ("minAvailable", a.kubernetesValue)])
        case .maxUnavailable(let a): Y.map([("enabled", Y.bool(true)), ("maxUnavailable", a.kubernetesValue)])
        }
    }

    /// `worker.keda`: what the keda pools share. The connection string is a placeholder naming the
    /// variable poolvisor reads it from.
    func kedaDefaults() -> Node? {
        let keda = file.pools.compactMap(\.autoscaling).filter { $0.kind == .keda }
        guard let first = keda.first else { return nil }
        let variable = keda.compactMap(\.queue).first { if case .postgres = $0.source { true } else { false } }?.connectionVariable
        var cron: Node?
        if let c = keda.compactMap(\.cron).first {
            cron = Y.map([
                ("enabled", Y.bool(true)),
                ("timezone", Y.str(c.timeZone)),
                ("start", Y.str(c.window.start.description)),
                ("end", Y.str(c.window.end.description)),
                ("desiredReplicas", Y.int(c.replicas)),
            ])
        }
        return Y.map([
            ("enabled", Y.bool(true)),
            ("pollingInterval", Y.int(max(wholeSeconds(first.pollingInterval), 1))),
            ("cooldownPeriod", Y.int(wholeSeconds(first.rules.cooldown))),
            ("connectionFromEnv", variable.map(Y.str)),
            ("connectionString", variable.map { Y.str("REPLACE-ME: the value of $\($0), from its secret") }),
            ("cronTrigger", cron),
        ])
    }

    /// What the chart's values cannot say for this pool.
    func chartNotes(_ pool: PoolSpec) -> [String] {
        var notes: [String] = []
        if case .redis? = pool.autoscaling?.queue?.source { notes.append("the chart has no Redis trigger: the pool's Redis queue is not written") }
        if pool.probes != Probes() { notes.append("probes are not chart values: not written") }
        if !pool.inlineEnvironmentKeys.isEmpty { notes.append("[pools.\(pool.name).env] is not a chart value: not written") }
        return notes
    }

    func imageParts(_ image: String) -> [(String, String)] {
        guard let colon = image.lastIndex(of: ":"), !image[colon...].contains("/") else { return [("repository", image)] }
        return [("repository", String(image[..<colon])), ("tag", String(image[image.index(after: colon)...]))]
    }
}
