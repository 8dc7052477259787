import Glibc
import PoolvisorCore
import PoolvisorLinux
import PoolvisorSystem
import Prometheus

/// What `/metrics` shows, in the names kube-state-metrics and KEDA made familiar, built from the
/// reconciler when a scrape comes (nothing runs between scrapes). The supervisor's, pools' and
/// triggers' series live in a swift-prometheus registry, which writes the text format; the
/// per-worker families are written straight from the slots at each scrape, in the same format: the
/// registry copies a family's whole label dictionary for every series it adds, so registering a
/// thousand workers' series took 108 ms of the loop at the first scrape, 7.7 s at 8000 (measured,
/// BENCHMARKS.md), where writing them costs a few ms. A worker's restart keeps its replica's series;
/// a scale-down drops them.
final class Metrics {
    private let registry: PrometheusCollectorRegistry

    private struct PoolSeries {
        var desired: Gauge
        var replicas: [String: Gauge]
        var backoff: Gauge
        var rollout: Gauge
    }

    private struct TriggerSeries {
        var value: Gauge
        var active: Gauge
        var errors: Counter
        var errorsSeen = 0
    }

    private var pools: [String: PoolSeries] = [:]
    /// `[supervisor.fleet]`: the members, whether this host's share is known, and per autoscaled pool
    /// the fleet-wide count and this host's share of it.
    private var fleet: (members: Gauge, known: Gauge)?
    private var fleetPools: [String: (desired: Gauge, share: Gauge)] = [:]
    private var triggers: [String: [String: TriggerSeries]] = [:]
    private let reloadsApplied: Counter
    private let reloadsRefused: Counter
    private var reloadsSeen = (applied: 0, refused: 0)
    private let processCPU: Counter
    private var processCPUSeen = 0.0
    private let processRSS: Gauge
    private let processVirtual: Gauge
    private let processFDs: Gauge
    private let processMaxFDs: Gauge
    private let processStart: Gauge
    private let redisDropped: Counter
    private var redisDroppedSeen = 0
    /// The last body's size, so the next one's buffer grows once.
    private var lastSize = 0

    private func gauge(_ name: String, _ labels: [(String, String)], _ help: String) -> Gauge { Self.gauge(registry, name, labels, help) }
    private func counter(_ name: String, _ labels: [(String, String)], _ help: String) -> Counter { Self.counter(registry, name, labels, help) }

    private static func gauge(_ registry: PrometheusCollectorRegistry, _ name: String, _ labels: [(String, String)], _ help: String) -> Gauge {
        let descriptor = MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
        return labels.isEmpty ? registry.makeGauge(descriptor: descriptor) : registry.makeGauge(descriptor: descriptor, labels: labels)
    }

    private static func counter(_ registry: PrometheusCollectorRegistry, _ name: String, _ labels: [(String, String)], _ help: String) -> Counter {
        let descriptor = MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
        return labels.isEmpty ? registry.makeCounter(descriptor: descriptor) : registry.makeCounter(descriptor: descriptor, labels: labels)
    }

    static let replicaStates = ["running", "ready", "available", "updated", "busy"]

    init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        let help = "Reloads of the pools file, applied or refused (the old file kept running)."
        reloadsApplied = Self.counter(registry, "poolvisor_reloads_total", [("result", "applied")], help)
        reloadsRefused = Self.counter(registry, "poolvisor_reloads_total", [("result", "refused")], help)
        processCPU = Self.counter(registry, "process_cpu_seconds_total", [], "Total user and system CPU time spent in seconds.")
        processRSS = Self.gauge(registry, "process_resident_memory_bytes", [], "Resident memory size in bytes.")
        processVirtual = Self.gauge(registry, "process_virtual_memory_bytes", [], "Virtual memory size in bytes.")
        processFDs = Self.gauge(registry, "process_open_fds", [], "Number of open file descriptors.")
        processMaxFDs = Self.gauge(registry, "process_max_fds", [], "Maximum number of open file descriptors.")
        processStart = Self.gauge(registry, "process_start_time_seconds", [], "Start time of the process since unix epoch in seconds.")
        redisDropped = Self.counter(
            registry, "poolvisor_redis_events_dropped_total", [],
            "Events [supervisor.redis_events] could not write to Redis (down, too slow, or 10,000 waiting).")
    }

    /// The exposition now. `usage` gives a worker's CPU and memory; `wallClock` turns a monotonic
    /// instant into seconds since the epoch.
    /// - Parameter redisDropped: events `[supervisor.redis_events]` could not deliver so far.
    func exposition(_ r: Reconciler, now: Instant, redisDropped: Int = 0, usage: (Int32) -> ProcessUsage?, wallClock: (Instant) -> Double) -> [UInt8] {
        advance(self.redisDropped, from: &redisDroppedSeen, to: redisDropped)
        var livePools = Set<String>()
        for pool in r.pools {
            livePools.insert(pool.spec.name)
            update(pool, now)
            updateTriggers(pool.spec.name, pool.autoscale)
        }
        for (name, series) in pools where !livePools.contains(name) {
            for g in [series.desired, series.backoff, series.rollout] + Array(series.replicas.values) { registry.unregisterGauge(g) }
            for t in triggers[name]?.values.map({ $0 }) ?? [] { unregister(t) }
            triggers[name] = nil
        }
        pools = pools.filter { livePools.contains($0.key) }
        updateFleet(r, now)
        advance(reloadsApplied, from: &reloadsSeen.applied, to: r.reloadsApplied)
        advance(reloadsRefused, from: &reloadsSeen.refused, to: r.reloadsRefused)
        updateProcess()
        var out: [UInt8] = []
        out.reserveCapacity(max(lastSize + lastSize / 8, 4096))
        registry.emit(into: &out)
        WorkerFamilies.write(r, into: &out, usage: usage, wallClock: wallClock)
        lastSize = out.count
        return out
    }

    // MARK: - Pools

    private func update(_ pool: Reconciler.Pool, _ now: Instant) {
        let name = pool.spec.name
        let series =
            pools[name]
            ?? {
                let labels = [("pool", name)]
                var states: [String: Gauge] = [:]
                for state in Self.replicaStates {
                    states[state] = gauge(
                        "poolvisor_pool_replicas", [("pool", name), ("state", state)],
                        "Worker processes of the pool: running (alive, draining ones too), ready, available (ready), updated (running the pool's current command and environment), busy (said BUSY=1)."
                    )
                }
                let s = PoolSeries(
                    desired: gauge("poolvisor_pool_replicas_desired", labels, "Replicas the pool should run now (file, scale or autoscaler)."),
                    replicas: states,
                    backoff: gauge("poolvisor_pool_backoff_seconds", labels, "The longest time one of the pool's replicas still waits in CrashLoopBackOff; 0 when none."),
                    rollout: gauge("poolvisor_rollout_in_progress", labels, "1 while a rolling replacement of the pool is under way."))
                pools[name] = s
                return s
            }()
        let workers = pool.workers.values
        let ready = workers.count { $0.state == .ready }
        let values: [String: Int] = [
            "running": workers.count, "ready": ready, "available": ready,
            "updated": workers.count { $0.generation == pool.generation && !pool.retired.contains($0.pid) },
            "busy": workers.count { $0.busy == true },
        ]
        for (state, gauge) in series.replicas { gauge.set(to: Double(values[state] ?? 0)) }
        series.desired.set(to: Double(pool.desired))
        var longest = Duration.zero
        for replica in pool.replicas {
            if case .backOff(let until) = replica.state, until > now { longest = max(longest, until.since(now)) }
        }
        series.backoff.set(to: longest.seconds)
        series.rollout.set(to: pool.rollout == nil ? 0 : 1)
    }

    // MARK: - Fleet

    private func updateFleet(_ r: Reconciler, _ now: Instant) {
        guard let state = r.fleet else { return }
        let labels = [("fleet", state.spec.name)]
        let series =
            fleet
            ?? (
                gauge("poolvisor_fleet_members", labels, "Live members of this host's fleet, as last read from its store (this host included)."),
                gauge("poolvisor_fleet_share_known", labels, "1 when this host knows its share of the fleet; 0 while the store fails or its answer is older than the TTL.")
            )
        fleet = series
        series.members.set(to: Double(state.members.count))
        if case .success = state.share(at: now) { series.known.set(to: 1) } else { series.known.set(to: 0) }
        for pool in r.pools {
            guard let split = pool.autoscale?.fleet else { continue }
            let name = pool.spec.name
            let labels = [("pool", name), ("fleet", state.spec.name)]
            let gauges =
                fleetPools[name]
                ?? (
                    gauge("poolvisor_pool_fleet_desired", labels, "Replicas the pool's queue and cron triggers ask of the whole fleet."),
                    gauge("poolvisor_pool_fleet_share", labels, "This host's share of poolvisor_pool_fleet_desired, before min/max and the behaviour.")
                )
            fleetPools[name] = gauges
            gauges.desired.set(to: Double(split.desired))
            gauges.share.set(to: Double(split.share))
        }
        // A pool gone keeps no series; one whose share is not known now keeps its last values.
        for (name, gauges) in fleetPools where r.pool(named: name)?.autoscale == nil {
            registry.unregisterGauge(gauges.desired)
            registry.unregisterGauge(gauges.share)
            fleetPools[name] = nil
        }
    }

    // MARK: - Triggers

    private func updateTriggers(_ pool: String, _ state: AutoscaleState?) {
        guard let state else {
            for t in triggers[pool]?.values.map({ $0 }) ?? [] { unregister(t) }
            triggers[pool] = nil
            return
        }
        var current = triggers[pool] ?? [:]
        let names = Set(state.samples.map(\.trigger))
        for (name, t) in current where !names.contains(name) {
            unregister(t)
            current[name] = nil
        }
        for sample in state.samples {
            let labels = [("pool", pool), ("trigger", sample.trigger)]
            var t =
                current[sample.trigger]
                ?? TriggerSeries(
                    value: gauge(
                        "poolvisor_scaler_metric_value", labels,
                        "What the trigger last read: queue depth, CPU % of request, 1/0 for a cron window (KEDA's keda_scaler_metrics_value)."),
                    active: gauge("poolvisor_scaler_active", labels, "1 when the trigger asks for workers (above its activation value, a cron window open)."),
                    errors: counter("poolvisor_scaler_errors_total", labels, "Failed readings of the trigger."))
            switch sample.reading {
            case .success(.queue(_, let value, _, let activation)):
                t.value.set(to: value)
                t.active.set(to: value > activation ? 1 : 0)
            case .success(.cpu(let utilisation, _)):
                t.value.set(to: utilisation)
                t.active.set(to: utilisation > 0 ? 1 : 0)
            case .success(.cron(_, _, let open)):
                t.value.set(to: open ? 1 : 0)
                t.active.set(to: open ? 1 : 0)
            case .failure:
                t.active.set(to: 0)
            }
            advance(t.errors, from: &t.errorsSeen, to: state.errorsByTrigger[sample.trigger] ?? 0)
            current[sample.trigger] = t
        }
        triggers[pool] = current
    }

    private func unregister(_ t: TriggerSeries) {
        registry.unregisterGauge(t.value)
        registry.unregisterGauge(t.active)
        registry.unregisterCounter(t.errors)
    }

    // MARK: - Helpers

    /// Brings a counter kept elsewhere (a running total) into the registry's counter.
    private func advance(_ counter: Counter, from seen: inout Int, to total: Int) {
        if total < seen {
            counter.reset()
            seen = 0
        }
        if total > seen {
            counter.increment(by: Int64(total - seen))
            seen = total
        }
    }

    /// The standard process_* metrics of poolvisor itself, from /proc/self.
    private func updateProcess() {
        guard case .success(let stat) = RegularFile.read("/proc/self/stat"),
            let close = stat.lastIndex(of: ")")
        else { return }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, so utime (14) is at 11, stime at 12, starttime (22) at 19,
        // vsize at 20, rss (pages) at 21.
        guard fields.count > 21, let utime = Double(fields[11]), let stime = Double(fields[12]), let start = Double(fields[19]),
            let vsize = Double(fields[20]), let rss = Double(fields[21])
        else { return }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let cpu = (utime + stime) / ticks
        if cpu > processCPUSeen {
            processCPU.increment(by: cpu - processCPUSeen)
            processCPUSeen = cpu
        }
        processRSS.set(to: rss * Double(sysconf(Int32(_SC_PAGESIZE))))
        processVirtual.set(to: vsize)
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        processMaxFDs.set(to: Double(limit.rlim_cur))
        processFDs.set(to: Double(ProcessTable.openFileCount() ?? 0))
        if case .success(let uptime) = RegularFile.read("/proc/uptime"), let up = Double(uptime.split(separator: " ").first ?? "") {
            processStart.set(to: WallClock.now() - up + start / ticks)
        }
    }
}

/// The per-worker families, written in the text exposition format (version 0.0.4) at each scrape:
/// one series per replica slot that is not vacant.
enum WorkerFamilies {
    static func write(_ r: Reconciler, into out: inout [UInt8], usage: (Int32) -> ProcessUsage?, wallClock: (Instant) -> Double) {
        struct Row {
            var labels: String
            var ready: Bool
            var restarts: Int
            var start: Double
            var cpu: Double
            var memory: Int64
            var lastExit: String?
        }
        var rows: [Row] = []
        for pool in r.pools {
            let name = escape(pool.spec.name)
            for i in pool.replicas.indices where pool.replicas[i].state != .vacant {
                let view = pool.view(i)
                let measured = view.worker.flatMap { usage($0.pid) }
                rows.append(
                    Row(
                        labels: "pool=\"\(name)\",replica=\"\(i)\"", ready: view.isReady, restarts: pool.replicas[i].restarts,
                        start: view.worker.map { wallClock($0.startedAt) } ?? 0, cpu: measured?.cpuSeconds ?? 0, memory: measured?.rssBytes ?? 0,
                        lastExit: pool.replicas[i].lastExit.map(reasonLabel)))
            }
        }
        func family(_ name: String, _ type: String, _ help: String, _ value: (Row) -> String?) {
            out += Array("# HELP \(name) \(help)\n# TYPE \(name) \(type)\n".utf8)
            for row in rows {
                guard let v = value(row) else { continue }
                out += Array(name.utf8)
                out.append(UInt8(ascii: "{"))
                out += Array(row.labels.utf8)
                out += Array(v.utf8)
                out.append(UInt8(ascii: "\n"))
            }
        }
        family("poolvisor_worker_ready", "gauge", "1 when the replica's worker is ready.") { "} \($0.ready ? 1 : 0)" }
        family("poolvisor_worker_restarts_total", "counter", "Restarts of the replica's worker after it ended by itself.") { "} \($0.restarts)" }
        family("poolvisor_worker_start_time_seconds", "gauge", "When the replica's current worker started, in seconds since the epoch; 0 without one.") {
            "} \(number($0.start))"
        }
        family("poolvisor_worker_cpu_seconds_total", "counter", "CPU time of the replica's current worker (its cgroup, or its process tree).") {
            "} \(number($0.cpu))"
        }
        family("poolvisor_worker_memory_working_set_bytes", "gauge", "Memory of the replica's current worker (its cgroup's, or its process tree's RSS).") {
            "} \($0.memory)"
        }
        family("poolvisor_worker_last_exit_reason", "gauge", "1 for the reason the replica's last worker ended (as kube-state-metrics' last_terminated_reason).") {
            $0.lastExit.map { ",reason=\"\($0)\"} 1" }
        }
    }

    /// A label value: backslash, double quote and newline escaped, as the text format wants.
    static func escape(_ value: String) -> String {
        guard value.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return value }
        var out = ""
        for c in value {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    /// A sample value: integers without a fraction, NaN and infinities as the format spells them.
    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        return v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
    }

    /// A bounded set of words for the reason label (never the text of a probe's failure).
    static func reasonLabel(_ reason: ExitReason) -> String {
        switch reason {
        case .exited(0): "Completed"
        case .exited: "Error"
        case .killed: "Signal"
        case .killedAfterDrainDeadline: "DrainDeadline"
        case .watchdog: "Watchdog"
        case .spawnFailed: "SpawnFailed"
        case .oomKilled: "OOMKilled"
        case .livenessProbeFailed: "LivenessProbe"
        case .startupProbeFailed: "StartupProbe"
        case .upgradeFailed: "UpgradeFailed"
        }
    }
}
