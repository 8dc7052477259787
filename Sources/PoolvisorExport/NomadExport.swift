import Foundation
import PoolvisorCore

/// `poolvisor export nomad`: one service job (the JSON `nomad job run -json` takes), a task group per
/// enabled pool. Env files are templates read on the client from the same path (`Envvars`), never
/// written here.
struct NomadExport {
    let file: PoolsFile
    let options: Export.Options

    func render() -> Export.Rendering {
        let notes = ExportNotes(target: .nomad, file: file)
        var warnings = notes.fileNotes()
        var groups: [TaskGroup] = []
        for pool in file.pools where pool.enabled {
            let poolNotes = notes.notes(for: pool) + nomadNotes(pool)
            warnings += poolNotes.map { "pool \(pool.name): \($0)" }
            groups.append(group(pool, notes: poolNotes))
        }
        var meta = ["poolvisor.source": file.path]
        for (i, warning) in warnings.enumerated() { meta["poolvisor.note.\(i + 1)"] = warning }
        let job = Job(
            id: resourceName(file.supervisor.name), name: file.supervisor.name, namespace: options.namespace, type: "service",
            datacenters: ["*"], meta: meta, taskGroups: groups)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(Wrapper(job: job))) ?? Data()
        let text = (String(data: data, encoding: .utf8) ?? "{}") + "\n"
        return Export.Rendering(files: [ExportedFile(name: "\(resourceName(file.supervisor.name)).nomad.json", text: text)], warnings: warnings)
    }

    func group(_ pool: PoolSpec, notes: [String]) -> TaskGroup {
        let count = pool.autoscaling?.initialReplicas ?? pool.replicas
        var meta: [String: String] = [:]
        for (i, note) in notes.enumerated() { meta["poolvisor.note.\(i + 1)"] = note }
        var scaling: Scaling?
        if let a = pool.autoscaling {
            scaling = Scaling(min: a.rules.minReplicas, max: a.rules.maxReplicas, enabled: true, policy: [:])
            meta["poolvisor.scaling"] =
                a.kind == .hpa
                ? "scale on CPU: the Nomad Autoscaler's nomad-apm cpu check, target \(Autoscaler.number(a.cpuTarget ?? 80))%"
                : "scale on queue depth: the Nomad Autoscaler's prometheus APM on poolvisor's metrics, query max(poolvisor_scaler_metric_value{pool=\"\(pool.name)\"}) from poolvisor's metrics_listen, target \(Autoscaler.number(a.queue?.target ?? 1)) per allocation"
        }
        let allowance = max(pool.maxUnavailable.of(max(count, 1), roundingUp: false), 1)
        let hasChecks = pool.probes.readiness != nil
        let update = Update(
            maxParallel: allowance, healthCheck: hasChecks ? "checks" : "task_states",
            minHealthyTime: nanoseconds(pool.readiness == .notify ? .seconds(10) : readyAfter(pool)), healthyDeadline: nanoseconds(.seconds(300)))
        return TaskGroup(name: pool.name, count: count, meta: meta.isEmpty ? nil : meta, scaling: scaling, update: update, tasks: [task(pool)])
    }

    func readyAfter(_ pool: PoolSpec) -> Duration {
        if case .started(let after) = pool.readiness { return after }
        return .seconds(10)
    }

    func task(_ pool: PoolSpec) -> Task {
        let command = pool.command.indices.map { i in
            pool.template.perReplicaArguments[i]?.expand(pool: pool.name, instance: file.supervisor.name, hostname: "", replica: 0) ?? pool.command[i]
        }
        var env = [WorkerVariable.instance: file.supervisor.name, WorkerVariable.pool: pool.name, WorkerVariable.replica: "${NOMAD_ALLOC_INDEX}"]
        let connections = file.connectionVariables
        for key in file.supervisor.inlineEnvironmentKeys + pool.inlineEnvironmentKeys where !connections.contains(key) {
            env[key] = pool.environment[key]
        }
        for (key, template) in pool.template.perReplicaEnvironment {
            env[key] = template.expand(pool: pool.name, instance: file.supervisor.name, hostname: "", replica: 0)
        }
        if pool.subscription != nil {
            for key in WorkerVariable.subscription { env[key] = pool.environment[key] ?? "" }
        }
        let templates = [file.supervisor.envFile, pool.envFile].compactMap { $0 }.map { ref in
            Template(sourcePath: ref.path, destPath: "secrets/\(secretName(for: ref)).env", envvars: true)
        }
        let r = pool.resources
        let cores: Double = r.cpuRequest ?? r.cpuLimit ?? 0.1
        let memory: Int64 = r.memoryRequest ?? r.memoryLimit ?? 256 << 20
        let resources = Resources(cpu: Int((cores * 1000).rounded(.up)), memoryMB: megabytes(memory), memoryMaxMB: r.memoryLimit.map(megabytes))
        var config: [String: ConfigValue] = ["command": .string(command[0])]
        if command.count > 1 { config["args"] = .strings(Array(command.dropFirst())) }
        if let wd = pool.workingDirectory { config["work_dir"] = .string(wd) }
        return Task(
            name: "worker", driver: pool.identity == nil ? "raw_exec" : "exec", user: pool.identity?.user, config: config, env: env,
            killTimeout: nanoseconds(pool.drain), killSignal: pool.stopSignal.description, resources: resources,
            templates: templates.isEmpty ? nil : templates)
    }

    func nomadNotes(_ pool: PoolSpec) -> [String] {
        var notes: [String] = []
        if pool.probes != Probes() {
            notes.append("probes become service checks only with a service registration (Consul or Nomad services): not written")
        }
        if pool.disruptionBudget != nil { notes.append("[disruption_budget] has no Nomad equivalent beyond update.max_parallel") }
        if pool.resources.cpuRequest != nil || pool.resources.cpuLimit != nil {
            notes.append("CPU is written as MHz at 1000 MHz per core; Nomad's cores field reserves whole cores instead")
        }
        return notes
    }

    /// Whole MiB, rounded up.
    func megabytes(_ bytes: Int64) -> Int {
        let mib: Int64 = 1 << 20
        return Int((bytes + mib - 1) / mib)
    }

    func nanoseconds(_ d: Duration) -> Int64 {
        let (s, atto) = d.components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }

    // MARK: - The job's JSON, as Nomad's API spells it

    struct Wrapper: Encodable {
        var job: Job
        enum CodingKeys: String, CodingKey { case job = "Job" }
    }

    struct Job: Encodable {
        var id: String
        var name: String
        var namespace: String?
        var type: String
        var datacenters: [String]
        var meta: [String: String]
        var taskGroups: [TaskGroup]
        enum CodingKeys: String, CodingKey {
            case id = "ID", name = "Name", namespace = "Namespace", type = "Type", datacenters = "Datacenters", meta = "Meta", taskGroups = "TaskGroups"
        }
    }

    struct TaskGroup: Encodable {
        var name: String
        var count: Int
        var meta: [String: String]?
        var scaling: Scaling?
        var update: Update
        var tasks: [Task]
        enum CodingKeys: String, CodingKey {
            case name = "Name", count = "Count", meta = "Meta", scaling = "Scaling", update = "Update", tasks = "Tasks"
        }
    }

    struct Scaling: Encodable {
        var min: Int
        var max: Int
        var enabled: Bool
        var policy: [String: String]
        enum CodingKeys: String, CodingKey { case min = "Min", max = "Max", enabled = "Enabled", policy = "Policy" }
    }

    struct Update: Encodable {
        var maxParallel: Int
        var healthCheck: String
        var minHealthyTime: Int64
        var healthyDeadline: Int64
        enum CodingKeys: String, CodingKey {
            case maxParallel = "MaxParallel", healthCheck = "HealthCheck", minHealthyTime = "MinHealthyTime", healthyDeadline = "HealthyDeadline"
        }
    }

    struct Task: Encodable {
        var name: String
        var driver: String
        var user: String?
        var config: [String: ConfigValue]
        var env: [String: String]
        var killTimeout: Int64
        var killSignal: String
        var resources: Resources
        var templates: [Template]?
        enum CodingKeys: String, CodingKey {
            case name = "Name", driver = "Driver", user = "User", config = "Config", env = "Env", killTimeout = "KillTimeout"
            case killSignal = "KillSignal", resources = "Resources", templates = "Templates"
        }
    }

    enum ConfigValue: Encodable {
        case string(String)
        case strings([String])
        func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .string(let s): try c.encode(s)
            case .strings(let s): try c.encode(s)
            }
        }
    }

    struct Resources: Encodable {
        var cpu: Int
        var memoryMB: Int
        var memoryMaxMB: Int?
        enum CodingKeys: String, CodingKey { case cpu = "CPU", memoryMB = "MemoryMB", memoryMaxMB = "MemoryMaxMB" }
    }

    struct Template: Encodable {
        var sourcePath: String
        var destPath: String
        var envvars: Bool
        enum CodingKeys: String, CodingKey { case sourcePath = "SourcePath", destPath = "DestPath", envvars = "Envvars" }
    }
}
