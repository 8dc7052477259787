import PoolvisorCore
import Yams

/// A `type = "keda"` pool as a KEDA ScaledObject, and the TriggerAuthentication its queue trigger
/// reads its connection through (from a Secret, by key; the value is never written).
struct KedaExport {
    let file: PoolsFile
    let options: Export.Options
    let pool: PoolSpec
    /// The Deployment's name.
    let target: String
    let autoscaling: PoolAutoscaling

    var authentication: String { resourceName(target, "trigger-auth") }

    /// The Secret holding the connection variable: the pool's env file's, else the shared one's, else
    /// one named after the pool.
    var connectionSecret: String {
        (pool.envFile ?? file.supervisor.envFile).map(secretName(for:)) ?? resourceName(target, "keda")
    }

    /// A placeholder Prometheus address for the prometheus trigger; the notes say to set it.
    static let prometheus = "http://prometheus.monitoring.svc:9090"

    func documents() -> [Node] {
        var docs = [scaledObject()]
        if needsAuthentication { docs.append(triggerAuthentication()) }
        return docs
    }

    /// A postgresql or redis (list) trigger reads its connection through a TriggerAuthentication.
    var needsAuthentication: Bool {
        switch autoscaling.queue?.source {
        case .postgres?: true
        case .redis(_, let queue)?: queue.library == .list
        case nil: false
        }
    }

    /// poolvisor's own reading of the queue, as its metrics endpoint serves it.
    func depthQuery(_ queue: QueueTrigger) -> String {
        "max(poolvisor_scaler_metric_value{pool=\"\(pool.name)\",trigger=\"\(queue.name)\"})"
    }

    func metadata(_ name: String) -> Node {
        Y.map([
            ("name", Y.str(name)),
            ("namespace", options.namespace.map(Y.str)),
            (
                "labels",
                Y.map([
                    ("app.kubernetes.io/name", Y.str(resourceName(file.supervisor.name))),
                    ("app.kubernetes.io/instance", Y.str(resourceName(file.supervisor.name))),
                    ("poolvisor.dev/pool", Y.str(resourceName(pool.name))),
                    ("app.kubernetes.io/managed-by", Y.str("poolvisor-export")),
                ])
            ),
        ])
    }

    func scaledObject() -> Node {
        let rules = autoscaling.rules
        return Y.map([
            ("apiVersion", Y.str("keda.sh/v1alpha1")),
            ("kind", Y.str("ScaledObject")),
            ("metadata", metadata(target)),
            (
                "spec",
                Y.map([
                    ("scaleTargetRef", Y.map([("apiVersion", Y.str("apps/v1")), ("kind", Y.str("Deployment")), ("name", Y.str(target))])),
                    ("pollingInterval", Y.int(max(wholeSeconds(autoscaling.pollingInterval), 1))),
                    ("cooldownPeriod", Y.int(wholeSeconds(rules.cooldown))),
                    ("minReplicaCount", Y.int(rules.minReplicas)),
                    ("maxReplicaCount", Y.int(rules.maxReplicas)),
                    (
                        "fallback",
                        autoscaling.fallback.map { f in Y.map([("failureThreshold", Y.int(f.failureThreshold)), ("replicas", Y.int(f.replicas))]) }
                    ),
                    ("advanced", Y.map([("horizontalPodAutoscalerConfig", Y.map([("behavior", behavior(rules))]))])),
                    ("triggers", Y.seq(triggers())),
                ])
            ),
        ])
    }

    func triggers() -> [Node] {
        var out: [Node] = []
        if let queue = autoscaling.queue {
            let auth = Y.map([("name", Y.str(authentication))])
            switch queue.source {
            case .postgres(_, let query):
                out.append(
                    Y.map([
                        ("type", Y.str("postgresql")),
                        (
                            "metadata",
                            Y.map([
                                ("query", Y.str(query)),
                                ("targetQueryValue", Y.str(Autoscaler.number(queue.target))),
                                ("activationTargetQueryValue", Y.str(Autoscaler.number(queue.activation))),
                            ])
                        ),
                        ("authenticationRef", auth),
                    ]))
            case .redis(_, let redisQueue) where redisQueue.library != .list:
                out.append(
                    Y.map([
                        ("type", Y.str("prometheus")),
                        (
                            "metadata",
                            Y.map([
                                ("serverAddress", Y.str(KedaExport.prometheus)),
                                ("query", Y.str(depthQuery(queue))),
                                ("threshold", Y.str(Autoscaler.number(queue.target))),
                                ("activationThreshold", Y.str(Autoscaler.number(queue.activation))),
                            ])
                        ),
                    ]))
            case .redis(_, let redisQueue):
                out.append(
                    Y.map([
                        ("type", Y.str("redis")),
                        (
                            "metadata",
                            Y.map([
                                ("listName", Y.str(redisQueue.name)),
                                ("listLength", Y.str(Autoscaler.number(queue.target))),
                                ("activationListLength", Y.str(Autoscaler.number(queue.activation))),
                            ])
                        ),
                        ("authenticationRef", auth),
                    ]))
            }
        }
        if let cron = autoscaling.cron {
            out.append(
                Y.map([
                    ("type", Y.str("cron")),
                    (
                        "metadata",
                        Y.map([
                            ("timezone", Y.str(cron.timeZone)),
                            ("start", Y.str(cron.window.start.description)),
                            ("end", Y.str(cron.window.end.description)),
                            ("desiredReplicas", Y.str(String(cron.replicas))),
                        ])
                    ),
                ]))
        }
        return out
    }

    /// KEDA's postgresql scaler takes a `connection` string; its redis scaler an `address` and a
    /// `password`, not a URL.
    func triggerAuthentication() -> Node {
        let variable = autoscaling.queue?.connectionVariable ?? "DATABASE_URL"
        let references: [(String, String)] =
            switch autoscaling.queue?.source {
            case .redis?: [("address", "\(variable)_ADDRESS"), ("password", "\(variable)_PASSWORD")]
            default: [("connection", variable)]
            }
        return Y.map([
            ("apiVersion", Y.str("keda.sh/v1alpha1")),
            ("kind", Y.str("TriggerAuthentication")),
            ("metadata", metadata(authentication)),
            (
                "spec",
                Y.map([
                    (
                        "secretTargetRef",
                        Y.seq(references.map { Y.map([("parameter", Y.str($0.0)), ("name", Y.str(connectionSecret)), ("key", Y.str($0.1))]) })
                    )
                ])
            ),
        ])
    }
}
