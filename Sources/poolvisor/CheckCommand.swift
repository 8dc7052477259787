import ArgumentParser
import PoolvisorCore
import PoolvisorDaemon
import PoolvisorLinux

/// `poolvisor check`: validate a pools file and summarise it, without starting anything.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a pools file and print a summary of its pools.",
        discussion: "Prints every error and warning with file, line and key, and exits 1 if there is an error. Shows environment variable names only, never their values."
    )

    @OptionGroup var options: ConfigOption

    func run() throws {
        let result = PoolsFileLoader.load(options.config, parser: .ownBinary)
        for d in result.diagnostics { printError(d.description) }
        guard let file = result.file else {
            printError("\(options.config): \(plural(result.diagnostics.errors.count, "error")); nothing would start")
            throw ExitCode(1)
        }
        print(PoolsSummary.render(file))
    }
}

enum PoolsSummary {
    static func render(_ file: PoolsFile) -> String {
        let enabled = file.pools.filter(\.enabled)
        var out =
            "\(file.path): OK, instance '\(file.supervisor.name)', \(plural(enabled.count, "enabled pool")), \(plural(enabled.reduce(0) { $0 + ($1.autoscaling?.initialReplicas ?? $1.replicas) }, "worker")) at start\n"
        if let queues = file.supervisor.queues { out += "queues: \(queues.joined(separator: ", "))\n" }
        if let metrics = file.supervisor.metricsListen { out += "metrics: http://\(metrics)/metrics\n" }
        if let r = file.supervisor.redisEvents {
            out +=
                "redis events: $\(r.variable), stream \(r.stream) (MAXLEN ~\(r.maxlen)), heartbeats \(r.keyPrefix):\(file.supervisor.name):POOL:REPLICA every \(r.heartbeat.humanReadable)\n"
        }
        if let f = file.supervisor.fleet {
            out +=
                "fleet: \(f.name), member \(f.member), in Redis ($\(f.variable)) at \(f.key), heartbeat every \(f.heartbeat.humanReadable), gone after \(f.ttl.humanReadable); queue and cron triggers are split between the members, cpu is not\n"
        }
        for pool in file.pools {
            out += "\npool \(pool.name)\(pool.enabled ? "" : " (disabled)")\n"
            if let a = pool.autoscaling {
                out += "  replicas:    autoscaled, \(a.rules.minReplicas)–\(a.rules.maxReplicas), starting at \(a.initialReplicas)\n"
                out += autoscaling(a)
            } else {
                out += "  replicas:    \(pool.replicas)\n"
            }
            out += "  command:     \(pool.command.joined(separator: " "))"
            if pool.executable != pool.command[0] { out += "   (\(pool.executable))" }
            out += "\n"
            if !pool.template.perReplicaArguments.isEmpty || !pool.template.perReplicaEnvironment.isEmpty {
                // What the first replicas get: the command in full (never a secret), env keys only.
                let shown = min(max(pool.replicas, 1), 3)
                for replica in 0..<shown {
                    let arguments = pool.command.indices.map { i in
                        pool.template.perReplicaArguments[i]?.expand(pool: pool.name, instance: "", hostname: "", replica: replica) ?? pool.command[i]
                    }
                    out += "  replica \(replica):   \(arguments.joined(separator: " "))\n"
                }
                if !pool.template.perReplicaEnvironment.isEmpty {
                    out += "  per replica: \(pool.template.perReplicaEnvironment.keys.sorted().joined(separator: ", ")) (env, values not shown)\n"
                }
            }
            if let serves = pool.serves { out += "  serves:      \(serves.isEmpty ? "no queue" : serves.joined(separator: ", "))\n" }
            if let subscription = pool.subscription {
                out += "  subscribes:  \(subscription.rawValue) tasks, tenants: \(list(pool.tenants)), workspaces: \(list(pool.workspaces))\n"
            }
            let readiness: String =
                switch pool.readiness {
                case .notify: "notify (READY=1 on NOTIFY_SOCKET)"
                case .started(let after): "started (ready after \(after.humanReadable))"
                }
            out += "  readiness:   \(readiness)\(pool.watchdog.map { ", watchdog \($0.humanReadable)" } ?? "")\n"
            for kind in ProbeKind.allCases {
                guard let probe = pool.probes[kind] else { continue }
                let label = kind.rawValue + ":"
                out += "  \(label)\(String(repeating: " ", count: max(13 - label.count, 1)))\(describe(probe, pool))\n"
            }
            if let key = pool.busyKey { out += "  busy from:   Redis key \(key)\n" }
            if !pool.dependsOn.isEmpty { out += "  depends on:  \(pool.dependsOn.joined(separator: ", "))\n" }
            out += "  drain:       \(pool.stopSignal == .terminate ? "" : "\(pool.stopSignal), ")\(pool.drain.humanReadable), then SIGKILL\n"
            out += "  rollout:     max_unavailable \(pool.maxUnavailable)\(pool.disruptionBudget.map { ", disruption budget \($0)" } ?? "")\n"
            if let wd = pool.workingDirectory { out += "  directory:   \(wd)\n" }
            if let id = pool.identity {
                out += "  runs as:     \(id.user) (uid \(id.uid), gid \(id.gid)\(id.group.map { " \($0)" } ?? ""), home \(id.home))\n"
            }
            var placement: [String] = []
            if let cpus = pool.cpus { placement.append("cpus \(CPUList.describe(cpus))") }
            if let nice = pool.nice { placement.append("nice \(nice)") }
            if let umask = pool.umask { placement.append("umask 0" + String(umask, radix: 8)) }
            if !placement.isEmpty { out += "  placement:   \(placement.joined(separator: ", "))\n" }
            var resources = pool.resources.limitNames
            if let c = pool.resources.cpuRequest { resources.insert("cpu_request \(c)", at: 0) }
            if !resources.isEmpty { out += "  resources:   \(resources.joined(separator: ", ")) (per worker)\n" }
            // Without a subscription, WORKER_SUBSCRIBE* are the pool's own variables, listed like any other.
            let own = Set(WorkerVariable.all + WorkerVariable.inherited).subtracting(pool.subscription == nil ? WorkerVariable.subscription : [])
            let keys = pool.environment.keys.filter { !own.contains($0) }.sorted()
            out += "  env keys:    \(keys.isEmpty ? "(none)" : keys.joined(separator: ", "))\n"
        }
        for job in file.jobs {
            out += "\njob \(job.name)\n"
            out += "  command:     \(job.template.command.joined(separator: " "))"
            if job.template.executable != job.template.command[0] { out += "   (\(job.template.executable))" }
            out += "\n"
            if let s = job.schedule {
                out += "  schedule:    \(s.cron) (\(s.timeZone)), concurrency_policy \(s.concurrency.rawValue)\n"
            } else {
                let dependants = file.pools.filter { $0.dependsOn.contains(job.name) }.map(\.name)
                out += "  runs:        at the start\(dependants.isEmpty ? "" : ", before pool\(dependants.count == 1 ? "" : "s") \(dependants.joined(separator: ", "))")\n"
            }
            out += "  retries:     backoff_limit \(job.backoffLimit)\(job.activeDeadline.map { ", active_deadline \($0.humanReadable)" } ?? "")\n"
            let keys = job.template.environment.keys.filter { !Set(WorkerVariable.all + WorkerVariable.inherited).contains($0) }.sorted()
            out += "  env keys:    \(keys.isEmpty ? "(none)" : keys.joined(separator: ", "))\n"
        }
        return out
    }

    /// The triggers, what they read (the keys of a Redis queue, never a connection string), and the
    /// behaviour.
    private static func autoscaling(_ a: PoolAutoscaling) -> String {
        var out = "  autoscaling: \(a.kind.rawValue), read every \(a.pollingInterval.humanReadable)"
        if a.rules.minReplicas == 0 { out += ", to zero after \(a.rules.cooldown.humanReadable) idle" }
        out += "\n"
        if let q = a.queue {
            switch q.source {
            case .postgres(_, let query):
                out += "    trigger:   PostgreSQL ($\(q.connectionVariable)): \(query)\n"
            case .redis(_, let queue):
                out += "    trigger:   Redis ($\(q.connectionVariable)), \(queue.library.rawValue) queue '\(queue.name)', counting \(queue.count.rawValue)\n"
                for key in queue.keys { out += "               reads \(key)\n" }
            }
            out += "               \(Autoscaler.number(q.target)) per replica, active above \(Autoscaler.number(q.activation))\n"
        }
        if let cpu = a.cpuTarget { out += "    trigger:   CPU, target \(Autoscaler.number(cpu))% of cpu_request\n" }
        if let cron = a.cron { out += "    trigger:   cron \(cron.window.start) → \(cron.window.end) (\(cron.timeZone)): at least \(plural(cron.replicas, "replica"))\n" }
        func rules(_ r: ScalingRules) -> String {
            let policies = r.policies.map { "\($0.value)\($0.type == .percent ? "%" : " pods") per \($0.period.humanReadable)" }
            return
                "window \(r.stabilizationWindow == .zero ? "none" : r.stabilizationWindow.humanReadable), \(r.select == .disabled ? "disabled" : policies.joined(separator: r.select == .max ? " or " : " and "))"
        }
        out += "    scale up:  \(rules(a.rules.scaleUp))\n"
        out += "    scale down: \(rules(a.rules.scaleDown))\n"
        if let f = a.fallback { out += "    fallback:  \(plural(f.replicas, "replica")) after \(plural(f.failureThreshold, "failed reading")) in a row\n" }
        return out
    }

    /// What a probe does and when, with the first replicas' values when they differ per replica
    /// (header names only: their values may be credentials).
    private static func describe(_ probe: ProbeSpec, _ pool: PoolSpec) -> String {
        let shown = min(max(pool.replicas, 1), 3)
        func perReplica(_ value: (Int) -> String, varies: Bool) -> String {
            varies ? " (" + (0..<shown).map { "replica \($0): \(value($0))" }.joined(separator: ", ") + ")" : ""
        }
        func varies(_ values: ProbeValue...) -> Bool { values.contains { if case .perReplica = $0 { true } else { false } } }
        var what: String
        switch probe.handler {
        case .exec(let executable, let arguments):
            what = "exec \(arguments.map(\.description).joined(separator: " "))"
            if let first = arguments.first, executable != first.description { what += " (\(executable))" }
            what += perReplica({ r in arguments.map { $0.value(for: r, pool: pool.name) }.joined(separator: " ") }, varies: arguments.contains { varies($0) })
        case .httpGet(let host, let port, let path, let headers):
            let address = host.contains(":") ? "[\(host)]" : host
            what = "http_get http://\(address):\(port)\(path)"
            if !headers.isEmpty { what += ", headers \(headers.map(\.name).joined(separator: ", "))" }
            what += perReplica({ r in "\(port.value(for: r, pool: pool.name))\(path.value(for: r, pool: pool.name))" }, varies: varies(port, path))
        case .tcpSocket(let host, let port):
            what = "tcp_socket \(host.contains(":") ? "[\(host)]" : host):\(port)" + perReplica({ port.value(for: $0, pool: pool.name) }, varies: varies(port))
        }
        what += "; every \(probe.period.humanReadable), timeout \(probe.timeout.humanReadable)"
        if probe.initialDelay > .zero { what += ", first after \(probe.initialDelay.humanReadable)" }
        what += ", fails after \(plural(probe.failureThreshold, "failure"))"
        if probe.successThreshold > 1 { what += ", passes after \(probe.successThreshold) successes" }
        if let grace = probe.terminationGracePeriod { what += ", drain \(grace.humanReadable)" }
        return what
    }

    private static func list(_ items: [String]) -> String { items.isEmpty ? "all" : items.joined(separator: ",") }
}

func printError(_ line: String) {
    writeStandardError(line + "\n")
}
