import Foundation
import PoolvisorCore
import PoolvisorDaemon
import Testing
import Yams

@testable import PoolvisorExport

/// `poolvisor export` on pools files loaded as the CLI loads them for an export (env files unread).
@Suite struct ExportTests {
    static let root: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()
    static let example = root + "/pools.toml.example"
    static let everyKey = root + "/Tests/PoolvisorExportTests/Fixtures/every-key.toml"

    static func load(_ path: String) throws -> PoolsFile {
        let result = PoolsFileLoader.load(path, parser: .inProcess, host: ExportHost())
        let errors = result.diagnostics.filter { $0.severity == .error }
        #expect(errors.isEmpty, "\(errors)")
        return try #require(result.file)
    }

    /// Every YAML document of a rendering, parsed back.
    static func documents(_ rendering: Export.Rendering) throws -> [[String: Any]] {
        try Yams.load_all(yaml: Export.text(of: rendering)).compactMap { $0 as? [String: Any] }
    }

    static func find(_ docs: [[String: Any]], kind: String, name: String) -> [String: Any]? {
        docs.first { $0["kind"] as? String == kind && ($0["metadata"] as? [String: Any])?["name"] as? String == name }
    }

    @Test(arguments: [example, everyKey])
    func kubernetesManifestsValidateAgainstTheKubernetesSchemasAndKedasCRD(path: String) throws {
        let rendering = Export.render(try Self.load(path), as: .kubernetes, options: .init(namespace: "workers", image: "registry.example.com/app:1.2.3"))
        let result = SchemaValidator.validate(Export.text(of: rendering))
        #expect(result.passed, "\(result.output)")
    }

    @Test func theDeploymentCarriesTheCommandEnvironmentResourcesRolloutProbesAndUser() throws {
        let docs = try Self.documents(Export.render(try Self.load(Self.everyKey), as: .kubernetes, options: .init(image: "app:1")))
        let deployment = try #require(Self.find(docs, kind: "Deployment", name: "acme-app-default"))
        let spec = try #require(deployment["spec"] as? [String: Any])
        #expect(spec["replicas"] as? Int == 3)
        let strategy = try #require(spec["strategy"] as? [String: Any])
        #expect((strategy["rollingUpdate"] as? [String: Any])?["maxUnavailable"] as? String == "25%")
        let pod = try #require((spec["template"] as? [String: Any])?["spec"] as? [String: Any])
        #expect(pod["terminationGracePeriodSeconds"] as? Int == 60)
        #expect((pod["securityContext"] as? [String: Any])?["runAsUser"] as? Int == 0)
        let container = try #require((pod["containers"] as? [[String: Any]])?.first)
        #expect(container["command"] as? [String] == ["/srv/app/bin/worker", "--queues", "default,emails"])
        #expect(container["workingDir"] as? String == "/srv/app")
        // The env files as Secrets and the inline tables as ConfigMaps, in poolvisor's order.
        let envFrom = try #require(container["envFrom"] as? [[String: Any]])
        let sources = envFrom.map { source in
            source.map { "\($0.key):\((($0.value as? [String: Any])?["name"] as? String) ?? "")" }.joined()
        }
        #expect(sources == ["secretRef:app", "configMapRef:acme-app-env", "secretRef:default", "configMapRef:acme-app-default-env"])
        let env = try #require(container["env"] as? [[String: Any]])
        let variables = Dictionary(uniqueKeysWithValues: env.map { ($0["name"] as! String, $0["value"] as! String) })
        #expect(variables["POOLVISOR_POOL"] == "default")
        #expect(variables["WORKER_SUBSCRIBE_TENANTS"] == "t1,t2")
        #expect(variables["PORT"] == "8000")
        let resources = try #require(container["resources"] as? [String: [String: String]])
        #expect(resources["requests"] == ["cpu": "500m", "memory": "512Mi"])
        #expect(resources["limits"] == ["cpu": "2", "memory": "1Gi"])
        let readiness = try #require(container["readinessProbe"] as? [String: Any])
        #expect((readiness["httpGet"] as? [String: Any])?["port"] as? Int == 8000)
        #expect(readiness["periodSeconds"] as? Int == 1)
        #expect(readiness["successThreshold"] as? Int == 2)
        let liveness = try #require(container["livenessProbe"] as? [String: Any])
        #expect((liveness["tcpSocket"] as? [String: Any])?["port"] as? Int == 9000)
        #expect(liveness["terminationGracePeriodSeconds"] as? Int == 5)
        #expect((container["startupProbe"] as? [String: Any])?["failureThreshold"] as? Int == 30)
        let budget = try #require(Self.find(docs, kind: "PodDisruptionBudget", name: "acme-app-default"))
        #expect((budget["spec"] as? [String: Any])?["maxUnavailable"] as? Int == 1)
        let configMap = try #require(Self.find(docs, kind: "ConfigMap", name: "acme-app-default-env"))
        #expect(configMap["data"] as? [String: String] == ["WORKER_CONCURRENCY": "4"])
    }

    @Test func autoscaledPoolsBecomeAScaledObjectOrAnHPAWithoutReplicas() throws {
        let docs = try Self.documents(Export.render(try Self.load(Self.everyKey), as: .kubernetes))
        let chat = try #require(Self.find(docs, kind: "ScaledObject", name: "acme-app-chat"))
        let spec = try #require(chat["spec"] as? [String: Any])
        #expect(spec["minReplicaCount"] as? Int == 0)
        #expect(spec["maxReplicaCount"] as? Int == 8)
        #expect(spec["pollingInterval"] as? Int == 15)
        #expect(spec["cooldownPeriod"] as? Int == 120)
        #expect(spec["fallback"] as? [String: Int] == ["failureThreshold": 3, "replicas": 2])
        let triggers = try #require(spec["triggers"] as? [[String: Any]])
        #expect(triggers.map { $0["type"] as? String } == ["postgresql", "cron"])
        let postgres = try #require(triggers.first?["metadata"] as? [String: String])
        #expect(postgres["targetQueryValue"] == "5")
        #expect(postgres["activationTargetQueryValue"] == "1")
        #expect(postgres["query"]?.contains("queue_type = 'chat'") == true)
        #expect(triggers[1]["metadata"] as? [String: String] == ["timezone": "Europe/Berlin", "start": "0 9 * * 1-5", "end": "0 20 * * 1-5", "desiredReplicas": "1"])
        let behavior = try #require(((spec["advanced"] as? [String: Any])?["horizontalPodAutoscalerConfig"] as? [String: Any])?["behavior"] as? [String: Any])
        #expect((behavior["scaleDown"] as? [String: Any])?["stabilizationWindowSeconds"] as? Int == 300)
        let auth = try #require(Self.find(docs, kind: "TriggerAuthentication", name: "acme-app-chat-trigger-auth"))
        let reference = try #require(((auth["spec"] as? [String: Any])?["secretTargetRef"] as? [[String: String]])?.first)
        #expect(reference == ["parameter": "connection", "name": "app", "key": "DATABASE_URL"])
        let chatDeployment = try #require(Self.find(docs, kind: "Deployment", name: "acme-app-chat"))
        #expect((chatDeployment["spec"] as? [String: Any])?["replicas"] == nil)
        // A library queue goes through poolvisor's own gauge; a plain list through KEDA's redis trigger.
        let arq = try #require((Self.find(docs, kind: "ScaledObject", name: "acme-app-arq")?["spec"] as? [String: Any])?["triggers"] as? [[String: Any]])
        #expect(arq.first?["type"] as? String == "prometheus")
        #expect((arq.first?["metadata"] as? [String: String])?["query"] == "max(poolvisor_scaler_metric_value{pool=\"arq\",trigger=\"redis arq arq:queue\"})")
        let reports = try #require((Self.find(docs, kind: "ScaledObject", name: "acme-app-reports")?["spec"] as? [String: Any])?["triggers"] as? [[String: Any]])
        #expect(reports.first?["metadata"] as? [String: String] == ["listName": "jobs:reports", "listLength": "5", "activationListLength": "0"])
        let hpa = try #require(Self.find(docs, kind: "HorizontalPodAutoscaler", name: "acme-app-kb")?["spec"] as? [String: Any])
        #expect(hpa["minReplicas"] as? Int == 1)
        #expect(hpa["maxReplicas"] as? Int == 5)
        #expect(Self.find(docs, kind: "Deployment", name: "acme-app-old") == nil)
    }

    @Test func whatHasNoEquivalentIsAWarningAndACommentBesideThePool() throws {
        let rendering = Export.render(try Self.load(Self.everyKey), as: .kubernetes)
        let text = Export.text(of: rendering)
        let expected = [
            ("default", "backoff"), ("default", "{replica}"), ("default", "SIGINT"), ("default", "cpus, nice and umask"),
            ("chat", "READY=1"), ("chat", "WATCHDOG=1"), ("chat", "idle workers first"), ("arq", "prometheus trigger"),
            ("default", "header values are not written"),
        ]
        for (pool, words) in expected {
            #expect(rendering.warnings.contains { $0.hasPrefix("pool \(pool): ") && $0.contains(words) }, "pool \(pool): \(words)")
            #expect(text.split(separator: "\n").contains { $0.hasPrefix("# - ") && $0.contains(words) }, "comment: \(words)")
        }
        #expect(!rendering.warnings.contains { $0.contains("jobs (migrate)") })
        #expect(rendering.warnings.contains { $0.contains("[supervisor.fleet] acme-workers") })
        #expect(Export.render(try Self.load(Self.everyKey), as: .nomad).warnings.contains { $0.contains("jobs (migrate) are not exported") })
    }

    @Test func jobsBecomeJobsAndScheduledJobsCronJobs() throws {
        let docs = try Self.documents(Export.render(try Self.load(Self.example), as: .kubernetes))
        let migrate = try #require(Self.find(docs, kind: "Job", name: "poolvisor-migrate")?["spec"] as? [String: Any])
        #expect(migrate["backoffLimit"] as? Int == 6)
        #expect(migrate["activeDeadlineSeconds"] as? Int == 300)
        let pod = try #require((migrate["template"] as? [String: Any])?["spec"] as? [String: Any])
        #expect(pod["restartPolicy"] as? String == "Never")
        let heartbeat = try #require(Self.find(docs, kind: "CronJob", name: "poolvisor-heartbeat")?["spec"] as? [String: Any])
        #expect(heartbeat["schedule"] as? String == "*/5 * * * *")
        #expect(heartbeat["timeZone"] as? String == "UTC")
        #expect(heartbeat["concurrencyPolicy"] as? String == "Forbid")
    }

    @Test(arguments: Export.Target.allCases)
    func noSecretValueIsEverWritten(target: Export.Target) throws {
        // Real env files with secrets beside a pools file: export never opens them.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("export-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/secrets", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: Self.everyKey, toPath: dir + "/pools.toml")
        for name in ["app", "default"] {
            try "REDIS_URL=redis://:redis-secret-never-printed@cache:6379/0\nAPI_TOKEN=token-secret-never-printed\n".write(
                toFile: dir + "/secrets/\(name).env", atomically: true, encoding: .utf8)
            chmod(dir + "/secrets/\(name).env", 0o600)
        }
        let rendering = Export.render(try Self.load(dir + "/pools.toml"), as: target)
        let everything = Export.text(of: rendering) + rendering.warnings.joined()
        for secret in ["redis-secret", "token-secret", "inline-password", "header-secret"] {
            #expect(!everything.contains(secret), "\(target.rawValue) wrote \(secret)")
        }
        #expect(everything.contains("DATABASE_URL"))
    }

    @Test func theNomadJobHasEveryGroupCountAndKillTimeout() throws {
        let file = try Self.load(Self.everyKey)
        let rendering = Export.render(file, as: .nomad, options: .init(namespace: "workers"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(Export.text(of: rendering).utf8)) as? [String: Any])
        let job = try #require(json["Job"] as? [String: Any])
        #expect(job["ID"] as? String == "acme-app")
        #expect(job["Namespace"] as? String == "workers")
        let groups = try #require(job["TaskGroups"] as? [[String: Any]])
        let enabled = file.pools.filter(\.enabled)
        #expect(groups.map { $0["Name"] as? String } == enabled.map(\.name))
        for (group, pool) in zip(groups, enabled) {
            #expect(group["Count"] as? Int == pool.autoscaling?.initialReplicas ?? pool.replicas, "\(pool.name)")
            let task = try #require((group["Tasks"] as? [[String: Any]])?.first)
            #expect(task["KillTimeout"] as? Int64 == Int64(wholeSeconds(pool.drain)) * 1_000_000_000, "\(pool.name)")
            #expect(task["KillSignal"] as? String == pool.stopSignal.description)
            let config = try #require(task["Config"] as? [String: Any])
            #expect(config["command"] as? String == pool.command[0])
            if let autoscaling = pool.autoscaling {
                let scaling = try #require(group["Scaling"] as? [String: Any])
                #expect(scaling["Min"] as? Int == autoscaling.rules.minReplicas)
                #expect(scaling["Max"] as? Int == autoscaling.rules.maxReplicas)
            }
        }
        let chat = try #require(groups.first { $0["Name"] as? String == "chat" })
        #expect((chat["Meta"] as? [String: String])?["poolvisor.scaling"]?.contains("poolvisor_scaler_metric_value") == true)
        let defaultTask = try #require(((groups.first { $0["Name"] as? String == "default" })?["Tasks"] as? [[String: Any]])?.first)
        #expect(defaultTask["KillSignal"] as? String == "SIGINT")
        let templates = try #require(defaultTask["Templates"] as? [[String: Any]])
        #expect(templates.map { $0["DestPath"] as? String } == ["secrets/app.env", "secrets/default.env"])
        #expect((defaultTask["Env"] as? [String: String])?["POOLVISOR_REPLICA"] == "${NOMAD_ALLOC_INDEX}")
    }

    @Test func namesBecomeKubernetesNames() {
        #expect(resourceName("acme_app", "chat") == "acme-app-chat")
        #expect(resourceName("--a__b--") == "a-b")
        #expect(cpuQuantity(0.25) == "250m")
        #expect(cpuQuantity(3) == "3")
        #expect(memoryQuantity(512 << 20) == "512Mi")
        #expect(memoryQuantity(1000) == "1000")
        #expect(secretName(for: EnvFileReference(written: "pools/chat_acme.env", path: "/x")) == "chat-acme")
    }
}
