import PoolvisorCore
import Yams

/// `poolvisor export kubernetes`: per enabled pool a Deployment, a ConfigMap of its inline `[env]`, a
/// PodDisruptionBudget, and a HorizontalPodAutoscaler (`type = "hpa"`) or a KEDA ScaledObject with its
/// TriggerAuthentication (`type = "keda"`); per job a Job, or a CronJob for a schedule; one ConfigMap of
/// the shared `[env]`. Secrets are referenced by name (one per env file), never written.
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
            first += yamlText(configMap(sharedConfigMap, labels: labels(nil), data: shared))
        }
        files.append(ExportedFile(name: "\(resourceName(instance)).yaml", text: first))
        for pool in file.pools where pool.enabled {
            let poolNotes = notes.notes(for: pool)
            warnings += poolNotes.map { "pool \(pool.name): \($0)" }
            files.append(ExportedFile(name: "\(resourceName(pool.name)).yaml", text: documents(for: pool, notes: poolNotes)))
        }
        for job in file.jobs {
            let jobNotes = notes.notes(for: job)
            warnings += jobNotes.map { "job \(job.name): \($0)" }
            files.append(ExportedFile(name: "job-\(resourceName(job.name)).yaml", text: documents(for: job, notes: jobNotes)))
        }
        return Export.Rendering(files: files, warnings: warnings)
    }

    // MARK: - One pool, one job

    func documents(for pool: PoolSpec, notes: [String]) -> String {
        let w = workload(pool)
        var docs = [yamlComment(comments(w, notes: notes)) + yamlText(deployment(pool, w))]
        docs += configMaps(w)
        if let budget = pool.disruptionBudget { docs.append(yamlText(podDisruptionBudget(w, budget: budget))) }
        if let autoscaling = pool.autoscaling {
            switch autoscaling.kind {
            case .hpa: docs.append(yamlText(horizontalPodAutoscaler(w, autoscaling: autoscaling)))
            case .keda: docs += KedaExport(file: file, options: options, pool: pool, target: w.resource, autoscaling: autoscaling).documents().map(yamlText)
            }
        }
        return docs.joined(separator: "---\n")
    }

    func documents(for job: JobSpec, notes: [String]) -> String {
        let w = workload(job)
        let object = job.schedule == nil ? kubernetesJob(job, w) : cronJob(job, w)
        return ([yamlComment(comments(w, notes: notes)) + yamlText(object)] + configMaps(w)).joined(separator: "---\n")
    }

    /// What a pod runs: a pool's worker or a job's process.
    struct Workload {
        /// "pool default", "job migrate".
        var title: String
        /// The Deployment's, Job's or CronJob's name.
        var resource: String
        /// `poolvisor.dev/pool` or `poolvisor.dev/job`, and the name.
        var label: (key: String, value: String)
        var template: WorkerTemplate
        var envFile: EnvFileReference?
        var inlineEnvironmentKeys: [String]
        /// Set by poolvisor: `POOLVISOR_*`, the subscription, `{replica}` variables at replica 0.
        var variables: [(String, String)]
        var command: [String]
        var drain: Duration
        var probes = Probes()
        var poolName: String
    }

    func workload(_ pool: PoolSpec) -> Workload {
        var variables = [(WorkerVariable.instance, instance), (WorkerVariable.pool, pool.name)]
        if pool.subscription != nil {
            for key in WorkerVariable.subscription { variables.append((key, pool.environment[key] ?? "")) }
        }
        for (key, template) in pool.template.perReplicaEnvironment.sorted(by: { $0.key < $1.key }) {
            variables.append((key, template.expand(pool: pool.name, instance: instance, hostname: "", replica: 0)))
        }
        let command = pool.command.indices.map { i in
            pool.template.perReplicaArguments[i]?.expand(pool: pool.name, instance: instance, hostname: "", replica: 0) ?? pool.command[i]
        }
        return Workload(
            title: "pool \(pool.name)", resource: resourceName(instance, pool.name), label: ("poolvisor.dev/pool", resourceName(pool.name)), template: pool.template,
            envFile: pool.envFile, inlineEnvironmentKeys: pool.inlineEnvironmentKeys, variables: variables, command: command, drain: pool.drain,
            probes: pool.probes, poolName: pool.name)
    }

    func workload(_ job: JobSpec) -> Workload {
        Workload(
            title: "job \(job.name)", resource: resourceName(instance, job.name), label: ("poolvisor.dev/job", resourceName(job.name)), template: job.template,
            envFile: job.envFile, inlineEnvironmentKeys: job.inlineEnvironmentKeys, variables: [(WorkerVariable.instance, instance), (WorkerVariable.job, job.name)],
            command: job.template.command, drain: job.drain, poolName: job.name)
    }

    func comments(_ w: Workload, notes: [String]) -> [String] {
        var comments = [w.title]
        if !notes.isEmpty { comments += ["Not carried over:"] + notes.map { "- \($0)" } }
        for ref in [file.supervisor.envFile, w.envFile].compactMap({ $0 }) {
            comments.append(
                "Secret \(secretName(for: ref)) from \(ref.written): kubectl create secret generic \(secretName(for: ref)) --from-env-file=\(ref.path)\(options.namespace.map { " -n \($0)" } ?? "")"
            )
        }
        return comments
    }

    func configMaps(_ w: Workload) -> [String] {
        let inline = ownEnvironment(w)
        return inline.isEmpty ? [] : [yamlText(configMap(resourceName(w.resource, "env"), labels: labels(w), data: inline))]
    }

    func labels(_ w: Workload?) -> [(String, String)] {
        var labels = [("app.kubernetes.io/name", resourceName(instance)), ("app.kubernetes.io/instance", resourceName(instance))]
        if let w { labels.append((w.label.key, w.label.value)) }
        labels.append(("app.kubernetes.io/managed-by", "poolvisor-export"))
        return labels
    }

    func selector(_ w: Workload) -> Node {
        Y.map([("matchLabels", Y.map([("app.kubernetes.io/instance", Y.str(resourceName(instance))), (w.label.key, Y.str(w.label.value))]))])
    }

    func metadata(_ name: String, labels: [(String, String)]) -> Node {
        Y.map([
            ("name", Y.str(name)),
            ("namespace", options.namespace.map(Y.str)),
            ("labels", Y.map(labels.map { ($0.0, Y.str($0.1)) })),
        ])
    }

    func podTemplate(_ w: Workload, restartPolicy: String? = nil) -> Node {
        Y.map([
            ("metadata", Y.map([("labels", Y.map(labels(w).map { ($0.0, Y.str($0.1)) }))])),
            ("spec", podSpec(w, restartPolicy: restartPolicy)),
        ])
    }

    func deployment(_ pool: PoolSpec, _ w: Workload) -> Node {
        Y.map([
            ("apiVersion", Y.str("apps/v1")),
            ("kind", Y.str("Deployment")),
            ("metadata", metadata(w.resource, labels: labels(w))),
            (
                "spec",
                Y.map([
                    ("replicas", pool.autoscaling == nil ? Y.int(pool.replicas) : nil),
                    ("selector", selector(w)),
                    (
                        "strategy",
                        Y.map([("type", Y.str("RollingUpdate")), ("rollingUpdate", Y.map([("maxUnavailable", pool.maxUnavailable.kubernetesValue), ("maxSurge", Y.int(0))]))])
                    ),
                    ("template", podTemplate(w)),
                ])
            ),
        ])
    }

    /// A Job's spec: one pod at a time, retried `backoff_limit` times, within the deadline.
    func jobSpec(_ job: JobSpec, _ w: Workload) -> Node {
        Y.map([
            ("backoffLimit", Y.int(job.backoffLimit)),
            ("activeDeadlineSeconds", job.activeDeadline.map { Y.int(wholeSeconds($0)) }),
            ("template", podTemplate(w, restartPolicy: "Never")),
        ])
    }

    func kubernetesJob(_ job: JobSpec, _ w: Workload) -> Node {
        Y.map([
            ("apiVersion", Y.str("batch/v1")),
            ("kind", Y.str("Job")),
            ("metadata", metadata(w.resource, labels: labels(w))),
            ("spec", jobSpec(job, w)),
        ])
    }

    func cronJob(_ job: JobSpec, _ w: Workload) -> Node {
        let schedule = job.schedule!
        return Y.map([
            ("apiVersion", Y.str("batch/v1")),
            ("kind", Y.str("CronJob")),
            ("metadata", metadata(w.resource, labels: labels(w))),
            (
                "spec",
                Y.map([
                    ("schedule", Y.str(schedule.cron.description)),
                    ("timeZone", Y.str(schedule.timeZone)),
                    ("concurrencyPolicy", Y.str(schedule.concurrency.rawValue)),
                    ("jobTemplate", Y.map([("spec", jobSpec(job, w))])),
                ])
            ),
        ])
    }

    func podSpec(_ w: Workload, restartPolicy: String?) -> Node {
        let identity = w.template.identity.map { id in
            Y.map([("runAsUser", Y.int(Int(id.uid))), ("runAsGroup", Y.int(Int(id.gid)))])
        }
        let container = Y.map([
            ("name", Y.str(restartPolicy == nil ? "worker" : "job")),
            ("image", Y.str(image)),
            ("command", Y.strings(w.command)),
            ("workingDir", w.template.workingDirectory.map(Y.str)),
            ("envFrom", Y.nonEmpty(Y.seq(envFrom(w)))),
            ("env", Y.nonEmpty(Y.seq(w.variables.map { Y.map([("name", Y.str($0.0)), ("value", Y.str($0.1))]) }))),
            ("resources", resources(w.template.resources)),
            ("startupProbe", w.probes.startup.map { probe($0, pool: w.poolName, kind: .startup) }),
            ("readinessProbe", w.probes.readiness.map { probe($0, pool: w.poolName, kind: .readiness) }),
            ("livenessProbe", w.probes.liveness.map { probe($0, pool: w.poolName, kind: .liveness) }),
        ])
        return Y.map([
            ("restartPolicy", restartPolicy.map(Y.str)),
            ("terminationGracePeriodSeconds", Y.int(wholeSeconds(w.drain))),
            ("securityContext", identity),
            ("containers", Y.seq([container])),
        ])
    }

    func resources(_ r: Resources) -> Node? {
        let requests = Y.map([("cpu", r.cpuRequest.map { Y.str(cpuQuantity($0)) }), ("memory", r.memoryRequest.map { Y.str(memoryQuantity($0)) })])
        let limits = Y.map([("cpu", r.cpuLimit.map { Y.str(cpuQuantity($0)) }), ("memory", r.memoryLimit.map { Y.str(memoryQuantity($0)) })])
        return Y.nonEmpty(Y.map([("requests", Y.nonEmpty(requests)), ("limits", Y.nonEmpty(limits))]))
    }

    func probe(_ spec: ProbeSpec, pool: String, kind: ProbeKind) -> Node {
        var pairs: [(String, Node?)] = []
        switch spec.handler {
        case .exec(_, let arguments):
            pairs.append(("exec", Y.map([("command", Y.strings(arguments.map { $0.value(for: 0, pool: pool) }))])))
        case .httpGet(let host, let port, let path, let headers):
            pairs.append(
                (
                    "httpGet",
                    Y.map([
                        ("host", isLoopback(host) ? nil : Y.str(host)),
                        ("path", Y.str(path.value(for: 0, pool: pool))),
                        ("port", Y.int(Int(port.value(for: 0, pool: pool)) ?? 0)),
                        ("httpHeaders", Y.nonEmpty(Y.seq(headers.map { Y.map([("name", Y.str($0.name)), ("value", Y.str("REPLACE-ME"))]) }))),
                    ])
                ))
        case .tcpSocket(let host, let port):
            pairs.append(("tcpSocket", Y.map([("host", isLoopback(host) ? nil : Y.str(host)), ("port", Y.int(Int(port.value(for: 0, pool: pool)) ?? 0))])))
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

    func podDisruptionBudget(_ w: Workload, budget: DisruptionBudget) -> Node {
        let rule: (String, Node) =
            switch budget {
            case .minAvailable(let a): ("minAvailable", a.kubernetesValue)
            case .maxUnavailable(let a): ("maxUnavailable", a.kubernetesValue)
            }
        return Y.map([
            ("apiVersion", Y.str("policy/v1")),
            ("kind", Y.str("PodDisruptionBudget")),
            ("metadata", metadata(w.resource, labels: labels(w))),
            ("spec", Y.map([rule, ("selector", selector(w))])),
        ])
    }

    func horizontalPodAutoscaler(_ w: Workload, autoscaling: PoolAutoscaling) -> Node {
        let target = Y.map([("type", Y.str("Utilization")), ("averageUtilization", Y.int(Int((autoscaling.cpuTarget ?? 80).rounded(.up))))])
        let metric = Y.map([("type", Y.str("Resource")), ("resource", Y.map([("name", Y.str("cpu")), ("target", target)]))])
        return Y.map([
            ("apiVersion", Y.str("autoscaling/v2")),
            ("kind", Y.str("HorizontalPodAutoscaler")),
            ("metadata", metadata(w.resource, labels: labels(w))),
            (
                "spec",
                Y.map([
                    ("scaleTargetRef", Y.map([("apiVersion", Y.str("apps/v1")), ("kind", Y.str("Deployment")), ("name", Y.str(w.resource))])),
                    ("minReplicas", Y.int(max(autoscaling.rules.minReplicas, 1))),
                    ("maxReplicas", Y.int(autoscaling.rules.maxReplicas)),
                    ("metrics", Y.seq([metric])),
                    ("behavior", behavior(autoscaling.rules)),
                ])
            ),
        ])
    }

    // MARK: - Environment

    /// `envFrom` in poolvisor's precedence (a later source wins): the shared env file, the shared
    /// `[env]`, the pool's (job's) env file, its `[env]`.
    func envFrom(_ w: Workload) -> [Node] {
        var sources: [Node] = []
        if let shared = file.supervisor.envFile { sources.append(Y.map([("secretRef", Y.map([("name", Y.str(secretName(for: shared)))]))])) }
        if !sharedEnvironment().isEmpty { sources.append(Y.map([("configMapRef", Y.map([("name", Y.str(sharedConfigMap))]))])) }
        if let own = w.envFile { sources.append(Y.map([("secretRef", Y.map([("name", Y.str(secretName(for: own)))]))])) }
        if !ownEnvironment(w).isEmpty { sources.append(Y.map([("configMapRef", Y.map([("name", Y.str(resourceName(w.resource, "env")))]))])) }
        return sources
    }

    var connectionVariables: Set<String> { file.connectionVariables }

    /// The shared `[env]`: its values as every pool that does not set the key itself sees them.
    func sharedEnvironment() -> [(String, String)] {
        file.supervisor.inlineEnvironmentKeys.filter { !connectionVariables.contains($0) }.compactMap { key in
            let pool = file.pools.first { !$0.inlineEnvironmentKeys.contains(key) && $0.template.perReplicaEnvironment[key] == nil }
            return pool.flatMap { $0.environment[key] }.map { (key, $0) }
        }
    }

    /// The pool's (job's) own `[env]` but `{replica}` variables (in `env`) and connection variables.
    func ownEnvironment(_ w: Workload) -> [(String, String)] {
        w.inlineEnvironmentKeys.filter { w.template.perReplicaEnvironment[$0] == nil && !connectionVariables.contains($0) }.compactMap { key in
            w.template.environment[key].map { (key, $0) }
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
