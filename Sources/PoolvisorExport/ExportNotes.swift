import PoolvisorCore

/// What a pool does under poolvisor that the target platform has no way to say: each becomes a
/// warning on stderr and a comment beside the pool in the output.
struct ExportNotes {
    let target: Export.Target
    let file: PoolsFile

    func notes(for pool: PoolSpec) -> [String] {
        var notes: [String] = []
        if pool.autoscaling != nil || pool.busyKey != nil {
            notes.append(
                "scale-in picks idle workers first (BUSY=1 / busy_from) under poolvisor; \(target == .nomad ? "Nomad" : "a Deployment") removes \(target == .nomad ? "allocations" : "pods") without asking whether they are in the middle of a job: keep the stop signal's drain long enough to finish one"
            )
        }
        if pool.readiness == .notify {
            notes.append(
                "readiness = \"notify\" (READY=1 on NOTIFY_SOCKET) has no equivalent: \(target == .nomad ? "add a service check" : "add a readiness_probe") so that rollouts wait for real readiness"
            )
        }
        if let watchdog = pool.watchdog {
            notes.append("watchdog_seconds = \(wholeSeconds(watchdog)) (WATCHDOG=1) has no equivalent: a liveness probe is the nearest")
        }
        // poolvisor restarts a crashed worker at once, then after `initial` doubling to `max`; neither
        // platform lets a workload choose its curve.
        notes.append(
            "the backoff curve (restart at once, then \(pool.backoff.initial.humanReadable) doubling to \(pool.backoff.max.humanReadable), reset after \(pool.backoff.resetAfter.humanReadable) up) is not carried over: \(target == .nomad ? "the group's restart and reschedule blocks (Nomad's defaults)" : "Kubernetes' CrashLoopBackOff (10 s doubling to 5 min, reset after 10 min up)") decides"
        )
        if usesReplicaIndex(pool) {
            notes.append(
                "{replica} templates have no equivalent (replicas are interchangeable there): replica 0's values are written; a StatefulSet's pod ordinal or Nomad's NOMAD_ALLOC_INDEX is the nearest"
            )
        }
        if pool.stopSignal != .terminate && target != .nomad {
            notes.append(
                "stop_signal = \"\(pool.stopSignal)\" is not written: Kubernetes sends SIGTERM (a container's lifecycle.stopSignal is alpha in 1.33); make the image's STOPSIGNAL \(pool.stopSignal) or have the worker treat SIGTERM as \(pool.stopSignal)"
            )
        }
        if case .redis(_, let queue) = pool.autoscaling?.queue?.source, queue.library != .list {
            notes.append(
                "the queue depth of \(queue.library.rawValue) (\(queue.name)) is read the library's own way by poolvisor; KEDA's redis trigger only reads a list's length: \(target == .kubernetes ? "the ScaledObject uses KEDA's prometheus trigger on poolvisor's queue-depth gauge instead (serve metrics_listen to Prometheus and set its serverAddress)" : "scrape poolvisor's queue-depth gauge (poolvisor_scaler_metric_value, metrics_listen) into Prometheus and scale on it")"
            )
        }
        if pool.cpus != nil || pool.nice != nil || pool.umask != nil {
            notes.append("cpus, nice and umask are not carried over")
        }
        if pool.resources.pidsLimit != nil && target != .nomad {
            notes.append("resources.pids_limit is a kubelet setting (podPidsLimit), not a pod's")
        }
        if !pool.dependsOn.isEmpty {
            notes.append("depends_on (\(pool.dependsOn.joined(separator: ", "))) is not carried over: run the jobs first (a Helm hook, an init container, a Nomad prestart task)")
        }
        if target == .kubernetes, pool.autoscaling?.kind == .hpa, pool.autoscaling?.rules.minReplicas == 0 {
            notes.append("a HorizontalPodAutoscaler cannot scale to zero: minReplicas is 1")
        }
        for kind in ProbeKind.allCases {
            guard let probe = pool.probes[kind] else { continue }
            if target != .nomad, probe.period.components.attoseconds != 0 || probe.period < .seconds(1) {
                notes.append("\(kind.key).period_seconds is rounded up to whole seconds")
            }
            if case .httpGet(_, _, _, let headers) = probe.handler, !headers.isEmpty {
                notes.append("\(kind.key)'s HTTP header values are not written (they may be credentials): set \(headers.map(\.name).joined(separator: ", ")) by hand")
            }
        }
        notes += connectionNotes(pool)
        return notes
    }

    /// Connection variables written inline: left out of ConfigMaps and environments, and said so once
    /// where written (the file's `[env]` when `pool` is nil).
    func connectionNotes(_ pool: PoolSpec?) -> [String] {
        let inline = Set(pool?.inlineEnvironmentKeys ?? file.supervisor.inlineEnvironmentKeys).intersection(file.connectionVariables)
        var notes = inline.sorted().map {
            "$\($0) is written inline in \(pool == nil ? "[env]" : "[pools.\(pool!.name).env]") but holds a connection string: it is not exported; put it in \(target == .nomad ? "an env file (a template) or Vault" : "a Secret")"
        }
        if target == .kubernetes, let pool, case .redis(_, let queue)? = pool.autoscaling?.queue?.source, queue.library == .list {
            let variable = pool.autoscaling?.queue?.connectionVariable ?? "REDIS_URL"
            notes.append(
                "KEDA's redis trigger takes an address and a password, not a URL: put \(variable)_ADDRESS (host:port) and \(variable)_PASSWORD in the Secret its TriggerAuthentication names"
            )
        }
        return notes
    }

    /// A job as a Kubernetes Job or CronJob.
    func notes(for job: JobSpec) -> [String] {
        var notes: [String] = []
        let dependants = file.pools.filter { $0.dependsOn.contains(job.name) }.map(\.name)
        if !dependants.isEmpty {
            notes.append(
                "pools \(dependants.joined(separator: ", ")) wait for this job under poolvisor; Kubernetes starts them at once: run it as a Helm pre-install/pre-upgrade hook or an init container"
            )
        }
        if job.backoff != JobSpec(name: job.name, command: []).backoff {
            notes.append("[jobs.\(job.name).backoff] is not carried over: the Job controller's own (10 s doubling to 6 min) applies")
        }
        if job.stopSignal != .terminate { notes.append("stop_signal = \"\(job.stopSignal)\" is not written: Kubernetes sends SIGTERM") }
        if job.template.cpus != nil || job.template.nice != nil || job.template.umask != nil { notes.append("cpus, nice and umask are not carried over") }
        if job.schedule == nil && dependants.isEmpty { notes.append("a job without a schedule runs once when applied; poolvisor runs it at each start and by run-job") }
        return notes
    }

    /// `{replica}` anywhere: the command, the pool's env, a probe's port, path or arguments.
    func usesReplicaIndex(_ pool: PoolSpec) -> Bool {
        if !pool.template.perReplicaArguments.isEmpty || !pool.template.perReplicaEnvironment.isEmpty { return true }
        for kind in ProbeKind.allCases {
            switch pool.probes[kind]?.handler {
            case .exec(_, let arguments)?: if arguments.contains(where: \.isPerReplica) { return true }
            case .httpGet(_, let port, let path, _)?: if port.isPerReplica || path.isPerReplica { return true }
            case .tcpSocket(_, let port)?: if port.isPerReplica { return true }
            case nil: break
            }
        }
        return false
    }

    /// What the file as a whole has that is not exported.
    func fileNotes() -> [String] {
        var notes = connectionNotes(nil)
        if !file.jobs.isEmpty && target != .kubernetes {
            notes.append(
                "jobs (\(file.jobs.map(\.name).joined(separator: ", "))) are not exported: \(target == .nomad ? "a batch or periodic job each" : "the chart has no jobs; poolvisor export kubernetes writes them as Jobs and CronJobs")"
            )
        }
        if let fleet = file.supervisor.fleet {
            notes.append(
                "[supervisor.fleet] \(fleet.name) splits each autoscaled pool's count among the hosts; \(target == .nomad ? "the Nomad Autoscaler scales the group as a whole" : "one ScaledObject or HPA scales the whole Deployment"), so no split is needed there"
            )
        }
        if file.pools.contains(where: { !$0.enabled }) {
            notes.append(
                "disabled pools (\(file.pools.filter { !$0.enabled }.map(\.name).joined(separator: ", "))) are \(target == .helmValues ? "written with enabled: false" : "left out")"
            )
        }
        return notes
    }
}

extension ProbeValue {
    var isPerReplica: Bool {
        if case .perReplica = self { return true }
        return false
    }
}

extension PoolsFile {
    /// Variables that hold a connection string: never exported, even when written inline.
    var connectionVariables: Set<String> {
        var names = Set(pools.compactMap { $0.autoscaling?.queue?.connectionVariable })
        if let events = supervisor.redisEvents { names.insert(events.variable) }
        if let fleet = supervisor.fleet { names.insert(fleet.variable) }
        return names
    }
}
