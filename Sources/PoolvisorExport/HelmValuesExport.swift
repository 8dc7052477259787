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
            ("envSecretRef", file.supervisor.envFile.map { Y.str(secretName(for: $0)) }),
            ("env", Y.nonEmpty(env(file.supervisor.inlineEnvironmentKeys, from: sharedEnvironment()))),
            ("terminationGracePeriodSeconds", Y.int(wholeSeconds(file.supervisor.drain))),
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
            ("env", Y.nonEmpty(env(pool.inlineEnvironmentKeys.filter { pool.template.perReplicaEnvironment[$0] == nil }, from: pool.environment))),
            ("terminationGracePeriodSeconds", pool.drain == file.supervisor.drain ? nil : Y.int(wholeSeconds(pool.drain))),
            ("resources", resources(pool.resources)),
            ("autoscaling", autoscaling.map(self.autoscaling)),
            ("podDisruptionBudget", pool.disruptionBudget.map(budget)),
        ])
    }

    /// `env: [{name, value}]` as a chart writes it, without connection variables.
    func env(_ keys: [String], from environment: Environment) -> Node {
        Y.seq(
            keys.filter { !file.connectionVariables.contains($0) }.compactMap { key in
                environment[key].map { Y.map([("name", Y.str(key)), ("value", Y.str($0))]) }
            })
    }

    func resources(_ r: Resources) -> Node? {
        let requests = Y.map([("cpu", r.cpuRequest.map { Y.str(cpuQuantity($0)) }), ("memory", r.memoryRequest.map { Y.str(memoryQuantity($0)) })])
        let limits = Y.map([("cpu", r.cpuLimit.map { Y.str(cpuQuantity($0)) }), ("memory", r.memoryLimit.map { Y.str(memoryQuantity($0)) })])
        return Y.nonEmpty(Y.map([("requests", Y.nonEmpty(requests)), ("limits", Y.nonEmpty(limits))]))
    }

    func autoscaling(_ a: PoolAutoscaling) -> Node {
        var keda: Node?
        if a.kind == .keda {
            var pairs: [(String, Node?)] = []
            if case .postgres(_, let query)? = a.queue?.source, let queue = a.queue {
                pairs += [
                    ("query", Y.str(query)),
                    ("targetQueryValue", Y.str(Autoscaler.number(queue.target))),
                    ("activationTargetQueryValue", Y.str(Autoscaler.number(queue.activation))),
                ]
            }
            pairs += [
                ("pollingInterval", Y.int(max(wholeSeconds(a.pollingInterval), 1))),
                ("cooldownPeriod", Y.int(wholeSeconds(a.rules.cooldown))),
                ("cronTrigger", a.cron.map(cronTrigger)),
                ("fallback", a.fallback.map { Y.map([("failureThreshold", Y.int($0.failureThreshold)), ("replicas", Y.int($0.replicas))]) }),
            ]
            keda = Y.map(pairs)
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

    func cronTrigger(_ c: CronTrigger) -> Node {
        Y.map([
            ("enabled", Y.bool(true)),
            ("timezone", Y.str(c.timeZone)),
            ("start", Y.str(c.window.start.description)),
            ("end", Y.str(c.window.end.description)),
            ("desiredReplicas", Y.int(c.replicas)),
        ])
    }

    func budget(_ b: DisruptionBudget) -> Node {
        switch b {
        case .minAvailable(let a): Y.map([("enabled", Y.bool(true)), ("minAvailable", a.kubernetesValue)])
        case .maxUnavailable(let a): Y.map([("enabled", Y.bool(true)), ("maxUnavailable", a.kubernetesValue)])
        }
    }

    /// `worker.keda`: the connection, by the variable that holds it and the Secret it comes from; each
    /// pool writes its own polling, cooldown, cron and query.
    func kedaDefaults() -> Node? {
        let queues = file.pools.compactMap(\.autoscaling).filter { $0.kind == .keda }.compactMap(\.queue)
        guard let variable = queues.first(where: { if case .postgres = $0.source { true } else { false } })?.connectionVariable else { return nil }
        let secret = (file.pools.first { $0.autoscaling?.queue?.connectionVariable == variable }?.envFile ?? file.supervisor.envFile).map(secretName(for:))
        return Y.map([
            ("connectionFromEnv", Y.str(variable)),
            ("connectionSecretRef", secret.map { Y.map([("name", Y.str($0)), ("key", Y.str(variable))]) }),
        ])
    }

    /// What the chart's values cannot say for this pool.
    func chartNotes(_ pool: PoolSpec) -> [String] {
        var notes: [String] = []
        if case .redis? = pool.autoscaling?.queue?.source { notes.append("the chart has no Redis trigger: the pool's Redis queue is not written") }
        if pool.probes != Probes() { notes.append("probes are not chart values: not written") }
        return notes
    }

    /// The shared `[env]` as a pool that does not override a key sees it.
    func sharedEnvironment() -> Environment {
        Environment(
            file.supervisor.inlineEnvironmentKeys.compactMap { key in
                file.pools.first { !$0.inlineEnvironmentKeys.contains(key) }.flatMap { $0.environment[key] }.map { (key: key, value: $0) }
            })
    }

    func imageParts(_ image: String) -> [(String, String)] {
        guard let colon = image.lastIndex(of: ":"), !image[colon...].contains("/") else { return [("repository", image)] }
        return [("repository", String(image[..<colon])), ("tag", String(image[image.index(after: colon)...]))]
    }
}
