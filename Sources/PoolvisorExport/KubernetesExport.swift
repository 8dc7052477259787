import PoolvisorCore
import Yams

/// `poolvisor export kubernetes`: per enabled pool a Deployment, a ConfigMap of its inline `[env]`, a
/// PodDisruptionBudget, and a HorizontalPodAutoscaler (`type = "hpa"`) or a KEDA ScaledObject with its
/// TriggerAuthentication (`type = "keda"`); one ConfigMap of the shared `[env]`. Secrets are referenced
/// by name (one per env file), never written.
struct KubernetesExport {
    let file: PoolsFile
    let options: Export.Options

    var instance: String { file.supervisor.name }
    var image: String { options.image ?? "registry.example.com/\(resourceName(instance)):latest" }
    var sharedConfigMap: String { resourceName(instance, "env") }

    func render() -> Export.Rendering {
        let notes = ExportNotes(target: .kubernetes, file: file)
        var files: [ExportedFile] = []
        var warnings = notes.fileNotes()
        if options.image == nil { warnings.append("no --image given: the Deployments run \(image); replace it") }
        var header = [
            "Rendered by poolvisor export kubernetes from \(file.path) (instance \(instance)).", "Secrets are referenced, never written; create each as its comment says.",
        ]
        header += warnings
        let shared = sharedEnvironment()
        var first = yamlComment(header)
        if !shared.isEmpty {
            first += yamlText(configMap(sharedConfigMap, labels: labels(pool: nil), data: shared))
        }
        files.append(ExportedFile(name: "\(resourceName(instance)).yaml", text: first))
        for pool in file.pools where pool.enabled {
            let poolNotes = notes.notes(for: pool)
            warnings += poolNotes.map { "pool \(pool.name): \($0)" }
            files.append(ExportedFile(name: "\(resourceName(pool.name)).yaml", text: documents(for: pool, notes: poolNotes)))
        }
        return Export.Rendering(files: files, warnings: warnings)
    }

    // MARK: - One pool

    func documents(for pool: PoolSpec, notes: [String]) -> String {
        let name = deploymentName(pool)
        var comments = ["pool \(pool.name)"]
        if !notes.isEmpty { comments += ["Not carried over:"] + notes.map { "- \($0)" } }
        for ref in envFiles(pool) {
            comments.append(
                "Secret \(secretName(for: ref)) from \(ref.written): kubectl create secret generic \(secretName(for: ref)) --from-env-file=\(ref.path)\(options.namespace.map { " -n \($0)" } ?? "")"
            )
        }
        var docs = [yamlComment(comments) + yamlText(deployment(pool, name: name))]
        let inline = poolEnvironment(pool)
        if !inline.isEmpty { docs.append(yamlText(configMap(resourceName(name, "env"), labels: labels(pool: pool), data: inline))) }
        if let budget = pool.disruptionBudget { docs.append(yamlText(podDisruptionBudget(pool, name: name, budget: budget))) }
        if let autoscaling = pool.autoscaling {
            switch autoscaling.kind {
            case .hpa: docs.append(yamlText(horizontalPodAutoscaler(pool, name: name, autoscaling: autoscaling)))
            case .keda: docs += KedaExport(file: file, options: options, pool: pool, target: name, autoscaling: autoscaling).documents().map(yamlText)
            }
        }
        return docs.joined(separator: "---\n")
    }

    func deploymentName(_ pool: PoolSpec) -> String { resourceName(instance, pool.name) }

    func labels(pool: PoolSpec?) -> [(String, String)] {
        var labels = [("app.kubernetes.io/name", resourceName(instance)), ("app.kubernetes.io/instance", resourceName(instance))]
        if let pool { labels.append(("poolvisor.dev/pool", resourceName(pool.name))) }
        labels.append(("app.kubernetes.io/managed-by", "poolvisor-export"))
        return labels
    }

    func selector(_ pool: PoolSpec) -> Node {
        Y.map([("matchLabels", Y.map([("app.kubernetes.io/instance", Y.str(resourceName(instance))), ("poolvisor.dev/pool", Y.str(resourceName(pool.name)))]))])
    }

    func metadata(_ name: String, labels: [(String, String)]) -> Node {
        Y.map([
            ("name", Y.str(name)),
            ("namespace", options.namespace.map(Y.str)),
            ("labels", Y.map(labels.map { ($0.0, Y.str($0.1)) })),
        ])
    }

    func deployment(_ pool: PoolSpec, name: String) -> Node {
        let rollout = pool.maxUnavailable.kubernetesValue
        return Y.map([
            ("apiVersion", Y.str("apps/v1")),
            ("kind", Y.str("Deployment")),
            ("metadata", metadata(name, labels: labels(pool: pool))),
            (
                "spec",
                Y.map([
                    ("replicas", pool.autoscaling == nil ? Y.int(pool.replicas) : nil),
                    ("selector", selector(pool)),
                    ("strategy", Y.map([("type", Y.str("RollingUpdate")), ("rollingUpdate", Y.map([("maxUnavailable", rollout), ("maxSurge", Y.int(0))]))])),
                    (
                        "template",
                        Y.map([
                            ("metadata", Y.map([("labels", Y.map(labels(pool: pool).map { ($0.0, Y.str($0.1)) }))])),
                            ("spec", podSpec(pool, deployment: name)),
                        ])
                    ),
                ])
            ),
        ])
    }

    func podSpec(_ pool: PoolSpec, deployment: String) -> Node {
        let identity = pool.identity.map { id in
            Y.map([("runAsUser", Y.int(Int(id.uid))), ("runAsGroup", Y.int(Int(id.gid)))])
        }
        let container = Y.map([
            ("name", Y.str("worker")),
            ("image", Y.str(image)),
            ("command", Y.strings(replicaZeroCommand(pool))),
            ("workingDir", pool.workingDirectory.map(Y.str)),
            ("envFrom", Y.nonEmpty(Y.seq(envFrom(pool, deployment: deployment)))),
            ("env", Y.nonEmpty(Y.seq(ownVariables(pool).map { Y.map([("name", Y.str($0.0)), ("value", Y.str($0.1))]) }))),
            ("resources", resources(pool.resources)),
            ("startupProbe", pool.probes.startup.map { probe($0, pool: pool, kind: .startup) }),
            ("readinessProbe", pool.probes.readiness.map { probe($0, pool: pool, kind: .readiness) }),
            ("livenessProbe", pool.probes.liveness.map { probe($0, pool: pool, kind: .liveness) }),
        ])
        return Y.map([
            ("terminationGracePeriodSeconds", Y.int(wholeSeconds(pool.drain))),
            ("securityContext", identity),
            ("containers", Y.seq([container])),
        ])
    }

    /// `command` with replica 0's values where it has `{replica}`.
    func replicaZeroCommand(_ pool: PoolSpec) -> [String] {
        pool.command.indices.map { i in
            pool.template.perReplicaArguments[i]?.expand(pool: pool.name, instance: instance, hostname: "", replica: 0) ?? pool.command[i]
        }
    }

    func resources(_ r: Resources) -> Node? {
        let requests = Y.map([("cpu", r.cpuRequest.map { Y.str(cpuQuantity($0)) }), ("memory", r.memoryRequest.map { Y.str(memoryQuantity($0)) })])
        let limits = Y.map([("cpu", r.cpuLimit.map { Y.str(cpuQuantity($0)) }), ("memory", r.memoryLimit.map { Y.str(memoryQuantity($0)) })])
        return Y.nonEmpty(Y.map([("requests", Y.nonEmpty(requests)), ("limits", Y.nonEmpty(limits))]))
    }

    func probe(_ spec: ProbeSpec, pool: PoolSpec, kind: ProbeKind) -> Node {
        var pairs: [(String, Node?)] = []
        switch spec.handler {
        case .exec(_, let arguments):
            pairs.append(("exec", Y.map([("command", Y.strings(arguments.map { $0.value(for: 0, pool: pool.name) }))])))
        case .httpGet(let host, let port, let path, let headers):
            pairs.append(
                (
                    "httpGet",
                    Y.map([
                        ("host", isLoopback(host) ? nil : Y.str(host)),
                        ("path", Y.str(path.value(for: 0, pool: pool.name))),
                        ("port", Y.int(Int(port.value(for: 0, pool: pool.name)) ?? 0)),
                        ("httpHeaders", Y.nonEmpty(Y.seq(headers.map { Y.map([("name", Y.str($0.name)), ("value", Y.str("REPLACE-ME"))]) }))),
                    ])
                ))
        case .tcpSocket(let host, let port):
            pairs.append(("tcpSocket", Y.map([("host", isLoopback(host) ? nil : Y.str(host)), ("port", Y.int(Int(port.value(for: 0, pool: pool.name)) ?? 0))])))
        }
        pairs += [
            ("initialDelaySeconds", spec.initialDelay == .zero ? nil : Y.int(wholeSeconds(spec.initialDelay))),
            ("periodSeconds", Y.int(max(wholeSeconds(spec.period), 1))),
            ("timeoutSeconds", Y.int(max(wholeSeconds(spec.timeout), 1))),
            ("successThreshold", Y.int(kind == .readiness ? spec.successThreshold : 1)),
            ("failureThreshold", Y.int(spec.failureThreshold)),
            ("terminationGracePeriodSeconds", kind == .readiness ? nil : spec.terminationGracePeriod.map { Y.int(wholeSeconds($0)) }),
        ]
        return Y.map(pairs)
    }

    /// A probe of the worker on this host's loopback is, in a pod, a probe of the pod's IP.
    func isLoopback(_ host: String) -> Bool { host.hasPrefix("127.") || host == "::1" || host == "localhost" }

    func podDisruptionBudget(_ pool: PoolSpec, name: String, budget: DisruptionBudget) -> Node {
        let rule: (String, Node) =
            switch budget {
            case .minAvailable(let a): ("minAvailable", a.kubernetesValue)
            case .maxUnavailable(let a): ("maxUnavailable", a.kubernetesValue)
            }
        return Y.map([
            ("apiVersion", Y.str("policy/v1")),
            ("kind", Y.str("PodDisruptionBudget")),
            ("metadata", metadata(name, labels: labels(pool: pool))),
            ("spec", Y.map([rule, ("selector", selector(pool))])),
        ])
    }

    func horizontalPodAutoscaler(_ pool: PoolSpec, name: String, autoscaling: PoolAutoscaling) -> Node {
        Y.map([
            ("apiVersion", Y.str("autoscaling/v2")),
            ("kind", Y.str("HorizontalPodAutoscaler")),
            ("metadata", metadata(name, labels: labels(pool: pool))),
            (
                "spec",
                Y.map([
                    ("scaleTargetRef", Y.map([("apiVersion", Y.str("apps/v1")), ("kind", Y.str("Deployment")), ("name", Y.str(name))])),
                    ("minReplicas", Y.int(max(autoscaling.rules.minReplicas, 1))),
                    ("maxReplicas", Y.int(autoscaling.rules.maxReplicas)),
                    (
                        "metrics",
                        Y.seq([
                            Y.map([
                                ("type", Y.str("Resource")),
                                (
                                    "resource",
                                    Y.map([
                                        ("name", Y.str("cpu")),
                                        ("target", Y.map([("type", Y.str("Utilization")), ("averageUtilization", Y.int(Int((autoscaling.cpuTarget ?? 80).rounded(.up))))])),
                                    ])
                                ),
                            ])
                        ])
                    ),
                    ("behavior", behavior(autoscaling.rules)),
                ])
            ),
        ])
    }

    // MARK: - Environment

    /// The env files of a pool, in poolvisor's order: the shared one, then the pool's.
    func envFiles(_ pool: PoolSpec) -> [EnvFileReference] {
        [file.supervisor.envFile, pool.envFile].compactMap { $0 }
    }

    /// `envFrom` in poolvisor's precedence (a later source wins): the shared env file, the shared
    /// `[env]`, the pool's env file, the pool's `[env]`.
    func envFrom(_ pool: PoolSpec, deployment: String) -> [Node] {
        var sources: [Node] = []
        if let shared = file.supervisor.envFile { sources.append(Y.map([("secretRef", Y.map([("name", Y.str(secretName(for: shared)))]))])) }
        if !sharedEnvironment().isEmpty { sources.append(Y.map([("configMapRef", Y.map([("name", Y.str(sharedConfigMap))]))])) }
        if let own = pool.envFile { sources.append(Y.map([("secretRef", Y.map([("name", Y.str(secretName(for: own)))]))])) }
        if !poolEnvironment(pool).isEmpty { sources.append(Y.map([("configMapRef", Y.map([("name", Y.str(resourceName(deployment, "env")))]))])) }
        return sources
    }

    /// Variables poolvisor sets itself, and `{replica}` variables with replica 0's values.
    func ownVariables(_ pool: PoolSpec) -> [(String, String)] {
        var out = [(WorkerVariable.instance, instance), (WorkerVariable.pool, pool.name)]
        if pool.subscription != nil {
            for key in WorkerVariable.subscription { out.append((key, pool.environment[key] ?? "")) }
        }
        for (key, template) in pool.template.perReplicaEnvironment.sorted(by: { $0.key < $1.key }) {
            out.append((key, template.expand(pool: pool.name, instance: instance, hostname: "", replica: 0)))
        }
        return out
    }

    var connectionVariables: Set<String> { file.connectionVariables }

    /// The shared `[env]`: its values as every pool that does not set the key itself sees them.
    func sharedEnvironment() -> [(String, String)] {
        file.supervisor.inlineEnvironmentKeys.filter { !connectionVariables.contains($0) }.compactMap { key in
            let pool = file.pools.first { !$0.inlineEnvironmentKeys.contains(key) && $0.template.perReplicaEnvironment[key] == nil }
            return pool.flatMap { $0.environment[key] }.map { (key, $0) }
        }
    }

    /// The pool's own `[env]` but `{replica}` variables (in `env`) and connection variables.
    func poolEnvironment(_ pool: PoolSpec) -> [(String, String)] {
        pool.inlineEnvironmentKeys.filter { pool.template.perReplicaEnvironment[$0] == nil && !connectionVariables.contains($0) }.compactMap { key in
            pool.environment[key].map { (key, $0) }
        }
    }

    func configMap(_ name: String, labels: [(String, String)], data: [(String, String)]) -> Node {
        Y.map([
            ("apiVersion", Y.str("v1")),
            ("kind", Y.str("ConfigMap")),
            ("metadata", metadata(name, labels: labels)),
            ("data", Y.map(data.map { ($0.0, Y.str($0.1)) })),
        ])
    }
}

/// An HPA v2 `behavior` block (also KEDA's `advanced.horizontalPodAutoscalerConfig.behavior`).
func behavior(_ rules: AutoscalingSpec) -> Node {
    func direction(_ r: ScalingRules) -> Node {
        Y.map([
            ("stabilizationWindowSeconds", Y.int(wholeSeconds(r.stabilizationWindow))),
            ("selectPolicy", Y.str(r.select.rawValue)),
            (
                "policies",
                Y.nonEmpty(
                    Y.seq(r.policies.map { p in Y.map([("type", Y.str(p.type.rawValue)), ("value", Y.int(p.value)), ("periodSeconds", Y.int(wholeSeconds(p.period)))]) }))
            ),
        ])
    }
    return Y.map([("scaleUp", direction(rules.scaleUp)), ("scaleDown", direction(rules.scaleDown))])
}

extension ReplicaAmount {
    /// `1` or `"25%"`, as Kubernetes' IntOrString.
    var kubernetesValue: Node {
        switch self {
        case .count(let n): Y.int(n)
        case .percent(let p): Y.str("\(p)%")
        }
    }
}
