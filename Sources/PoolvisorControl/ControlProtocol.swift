import PoolvisorCore

/// The control socket's protocol, version 1: one JSON object per line each way.
///
///     → {"v":1,"command":"status","pool":"kb"}          pool is optional
///     → {"v":1,"command":"reload"}
///     → {"v":1,"command":"scale","pool":"kb","replicas":3}
///     → {"v":1,"command":"restart","pool":"kb"}
///     → {"v":1,"command":"run-job","job":"migrate"}
///     → {"v":1,"command":"upgrade","binary":"/usr/bin/poolvisor"}      binary is optional
///     → {"v":1,"command":"events","pool":"kb","since_seconds":600}   both optional
///     ← {"v":1,"ok":true,"events":[{…}]}                 see the README; with "follow":true the
///       connection stays open and each new event follows as {"v":1,"event":{…}}
///     ← {"v":1,"ok":true,"status":{…}}                   see `StatusReport.json`
///     ← {"v":1,"ok":true,"lines":["…"],"diagnostics":[]} reload, scale, restart
///     ← {"v":1,"ok":false,"error":"…","lines":[…],"diagnostics":["file:line:col: error: …"]}
///
/// A request with a higher `v` than the server speaks gets an error naming the version it does speak.
public enum ControlProtocol {
    public static let version: Int64 = 1

    public enum Request: Sendable, Equatable {
        case status(pool: String?)
        case reload
        case scale(pool: String, replicas: Int)
        case restart(pool: String)
        case runJob(job: String)
        /// An in-place upgrade to `binary` (nil: the binary installed where this one was started from).
        case upgrade(binary: String?)
        /// The last lifecycle events, of one pool if given, of the last `sinceSeconds` if given.
        case events(pool: String?, sinceSeconds: Double?, follow: Bool = false)

        /// Only `status` is open to members of `control_group`; the rest need root or poolvisor's user.
        public var isReadOnly: Bool {
            switch self {
            case .status, .events: return true
            case .reload, .scale, .restart, .runJob, .upgrade: return false
            }
        }

        public var json: JSON {
            var o: JSONObject = ["v": .int(ControlProtocol.version)]
            switch self {
            case .status(let pool):
                o["command"] = "status"
                if let pool { o["pool"] = .string(pool) }
            case .reload:
                o["command"] = "reload"
            case .scale(let pool, let replicas):
                o["command"] = "scale"
                o["pool"] = .string(pool)
                o["replicas"] = .int(Int64(replicas))
            case .restart(let pool):
                o["command"] = "restart"
                o["pool"] = .string(pool)
            case .runJob(let job):
                o["command"] = "run-job"
                o["job"] = .string(job)
            case .upgrade(let binary):
                o["command"] = "upgrade"
                if let binary { o["binary"] = .string(binary) }
            case .events(let pool, let since, let follow):
                o["command"] = "events"
                if let pool { o["pool"] = .string(pool) }
                if let since { o["since_seconds"] = .double(since) }
                if follow { o["follow"] = true }
            }
            return .object(o)
        }

        /// Reads a request line; the error is what the client is told.
        public static func parse(_ line: some Collection<UInt8>) -> Result<Request, ProtocolError> {
            let json: JSON
            do { json = try JSON.parse(line, maximumDepth: 8) } catch { return .failure(ProtocolError("bad request: \(error)")) }
            guard json.object != nil else { return .failure(ProtocolError("bad request: expected a JSON object")) }
            guard let v = json["v"]?.int else { return .failure(ProtocolError("bad request: no protocol version \"v\"")) }
            guard v <= ControlProtocol.version, v >= 1 else {
                return .failure(ProtocolError("protocol version \(v) is not supported; this poolvisor speaks version \(ControlProtocol.version)"))
            }
            guard let command = json["command"]?.string else { return .failure(ProtocolError("bad request: no \"command\"")) }
            let pool = json["pool"]?.string
            switch command {
            case "status":
                if let p = json["pool"], p.string == nil, !p.isNull { return .failure(ProtocolError("bad request: \"pool\" must be a string")) }
                return .success(.status(pool: pool))
            case "reload":
                return .success(.reload)
            case "scale":
                guard let pool else { return .failure(ProtocolError("bad request: scale needs \"pool\"")) }
                guard let n = json["replicas"]?.int, let replicas = Int(exactly: n) else {
                    return .failure(ProtocolError("bad request: scale needs an integer \"replicas\""))
                }
                return .success(.scale(pool: pool, replicas: replicas))
            case "restart":
                guard let pool else { return .failure(ProtocolError("bad request: restart needs \"pool\"")) }
                return .success(.restart(pool: pool))
            case "events":
                if let p = json["pool"], p.string == nil, !p.isNull { return .failure(ProtocolError("bad request: \"pool\" must be a string")) }
                var since: Double?
                if let s = json["since_seconds"], !s.isNull {
                    guard let d = s.double, d.isFinite, d >= 0 else { return .failure(ProtocolError("bad request: \"since_seconds\" must be a number of seconds")) }
                    since = d
                }
                if let f = json["follow"], f.bool == nil, !f.isNull { return .failure(ProtocolError("bad request: \"follow\" must be true or false")) }
                return .success(.events(pool: pool, sinceSeconds: since, follow: json["follow"]?.bool ?? false))
            case "run-job":
                guard let job = json["job"]?.string else { return .failure(ProtocolError("bad request: run-job needs \"job\"")) }
                return .success(.runJob(job: job))
            case "upgrade":
                if let b = json["binary"], b.string == nil, !b.isNull { return .failure(ProtocolError("bad request: \"binary\" must be a string")) }
                if let binary = json["binary"]?.string, !binary.hasPrefix("/") || binary.utf8.count > 4096 {
                    return .failure(ProtocolError("bad request: \"binary\" must be an absolute path"))
                }
                return .success(.upgrade(binary: json["binary"]?.string))
            default:
                return .failure(
                    ProtocolError("unknown command '\(command)'\(Suggestion.didYouMean(command, ["status", "reload", "scale", "restart", "run-job", "events", "upgrade"]))"))
            }
        }
    }

    public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public init(_ message: String) { self.message = message }
        public var description: String { message }
    }

    /// `{"v":1,"ok":false,"error":…}`
    public static func error(_ message: String) -> JSON {
        .object(["v": .int(version), "ok": false, "error": .string(message)])
    }

    /// The answer to reload, scale and restart.
    public static func response(_ outcome: CommandOutcome) -> JSON {
        var o: JSONObject = ["v": .int(version), "ok": .bool(outcome.accepted)]
        if !outcome.accepted { o["error"] = .string(outcome.lines.first ?? "refused") }
        o["lines"] = .array(outcome.lines.map { .string($0) })
        o["diagnostics"] = .array(outcome.diagnostics.map { .string($0.description) })
        return .object(o)
    }

    /// The answer to status, written straight as bytes (at 10,000 workers it is 2.8 MB; see
    /// `JSONWriter`). `reservingCapacity`: the size of the last one, so the buffer grows once.
    public static func response(_ status: StatusReport, reservingCapacity capacity: Int = 0) -> [UInt8] {
        var w = JSONWriter(reservingCapacity: capacity)
        w.object { w in
            w.member("v", Int(version))
            w.member("ok", true)
            w.object("status") { status.write(to: &$0) }
        }
        return w.bytes
    }
}

// MARK: - StatusReport as JSON

extension StatusReport {
    /// The documented, stable JSON form (README, "poolvisor status --json"), as a value: what
    /// `write(to:)` writes, read back. Absent values are null.
    public var json: JSON {
        var w = JSONWriter()
        w.object { write(to: &$0) }
        return (try? JSON.parse(w.bytes)) ?? .null
    }

    /// The members of the JSON form, into an object `w` has open.
    public func write(to w: inout JSONWriter) {
        let s = supervisor
        w.object("supervisor") { w in
            w.member("version", s.version)
            w.member("pid", Int(s.pid))
            w.member("instance", s.instance)
            w.member("file", s.file)
            w.member("phase", s.phase)
            w.member("uptime_seconds", s.uptimeSeconds)
            w.member("upgrades", s.upgrades)
            w.member("upgrade_refusals", s.upgradeRefusals)
            w.member("upgrade_refused", s.upgradeRefused)
            w.member("summary", s.summary)
            w.member("warnings", s.warnings)
            w.object("last_reload", s.lastReload) { w, r in
                w.member("ago_seconds", r.agoSeconds)
                w.member("accepted", r.accepted)
                w.member("lines", r.lines)
                w.member("diagnostics", r.diagnostics)
            }
        }
        w.member("healthy", exitCode == 0)
        w.object("fleet", fleet) { w, f in
            w.member("name", f.name)
            w.member("member", f.member)
            w.member("members", f.members)
            w.member("error", f.error)
            w.member("last_read_ago_seconds", f.lastReadAgoSeconds)
        }
        w.array("pools") { w in for pool in pools { w.object { pool.write(to: &$0) } } }
        w.array("jobs") { w in
            for j in jobs {
                w.object { w in
                    w.member("name", j.name)
                    w.member("state", j.state)
                    w.member("schedule", j.schedule)
                    w.member("pid", j.pid.map { Int($0) })
                    w.member("runs_under_way", j.runsUnderWay)
                    w.member("attempt", j.attempt)
                    w.member("last_start_ago_seconds", j.lastStartAgoSeconds)
                    w.member("duration_seconds", j.durationSeconds)
                    w.member("result", j.result)
                    w.member("next_run", j.nextRun)
                }
            }
        }
    }

    public init(json: JSON) throws(ControlProtocol.ProtocolError) {
        guard let s = json["supervisor"], let pools = json["pools"]?.array else { throw .init("status: missing supervisor or pools") }
        let reload: Reload? = try s["last_reload"].flatMap { r throws(ControlProtocol.ProtocolError) in
            if r.isNull { return nil }
            return Reload(
                agoSeconds: try r.need("ago_seconds").double ?? 0, accepted: try r.need("accepted").bool ?? false,
                lines: r["lines"]?.array?.compactMap(\.string) ?? [], diagnostics: r["diagnostics"]?.array?.compactMap(\.string) ?? [])
        }
        supervisor = Supervisor(
            version: try s.text("version"), pid: Int32(truncatingIfNeeded: try s.need("pid").int ?? 0), instance: try s.text("instance"),
            file: try s.text("file"), phase: try s.text("phase"), uptimeSeconds: s["uptime_seconds"]?.double ?? 0,
            summary: s["summary"]?.string ?? "", lastReload: reload, warnings: s["warnings"]?.array?.compactMap(\.string) ?? [],
            upgrades: Int(clamping: s["upgrades"]?.int ?? 0), upgradeRefusals: Int(clamping: s["upgrade_refusals"]?.int ?? 0),
            upgradeRefused: s["upgrade_refused"]?.string)
        self.pools = try pools.map { p throws(ControlProtocol.ProtocolError) in try Pool(json: p) }
        self.fleet = json["fleet"].flatMap { f in
            f.isNull
                ? nil
                : Fleet(
                    name: f["name"]?.string ?? "?", member: f["member"]?.string ?? "?", members: f["members"]?.array?.compactMap(\.string) ?? [],
                    error: f["error"]?.string, lastReadAgoSeconds: f["last_read_ago_seconds"]?.double)
        }
        self.jobs = (json["jobs"]?.array ?? []).map { j in
            StatusReport.Job(
                name: j["name"]?.string ?? "?", state: j["state"]?.string ?? "?", schedule: j["schedule"]?.string,
                pid: j["pid"]?.int.map { Int32(truncatingIfNeeded: $0) }, runsUnderWay: Int(clamping: j["runs_under_way"]?.int ?? 0),
                attempt: j["attempt"]?.int.map { Int(clamping: $0) }, lastStartAgoSeconds: j["last_start_ago_seconds"]?.double,
                durationSeconds: j["duration_seconds"]?.double, result: j["result"]?.string, nextRun: j["next_run"]?.string)
        }
    }
}

extension StatusReport.Pool {
    func write(to w: inout JSONWriter) {
        w.member("name", name)
        w.member("state", state)
        w.member("desired", desired)
        w.member("replicas_in_file", replicasInFile)
        w.member("scaled_to", scaledTo)
        w.member("running", running)
        w.member("ready", ready)
        w.member("healthy", isHealthy)
        w.member("rollout", rollout)
        w.member("waiting", waiting)
        w.member("disruption_budget", disruptionBudget)
        w.member("warnings", warnings)
        w.member("cpu_request", cpuRequest)
        w.member("cpu_utilization_percent", cpuUtilisation)
        w.object("autoscaling", autoscaling) { $1.write(to: &$0) }
        w.array("replicas") { w in for r in replicas { w.object { r.write(to: &$0) } } }
    }

    init(json p: JSON) throws(ControlProtocol.ProtocolError) {
        self.init(
            name: try p.text("name"), state: try p.text("state"), desired: try p.count("desired"),
            replicasInFile: try p.count("replicas_in_file"), scaledTo: p["scaled_to"]?.int.map { Int($0) },
            running: try p.count("running"), ready: try p.count("ready"), rollout: p["rollout"]?.string,
            waiting: p["waiting"]?.string, disruptionBudget: p["disruption_budget"]?.string,
            warnings: p["warnings"]?.array?.compactMap(\.string) ?? [], cpuRequest: p["cpu_request"]?.double,
            autoscaling: try p["autoscaling"].flatMap { a throws(ControlProtocol.ProtocolError) in a.isNull ? nil : try StatusReport.Autoscaling(json: a) },
            replicas: try (p["replicas"]?.array ?? []).map { r throws(ControlProtocol.ProtocolError) in try StatusReport.Replica(json: r) })
    }
}

extension StatusReport.Autoscaling {
    func write(to w: inout JSONWriter) {
        w.member("type", type)
        w.member("min_replicas", minReplicas)
        w.member("max_replicas", maxReplicas)
        w.member("polling_interval_seconds", pollingIntervalSeconds)
        w.array("triggers") { w in
            for t in triggers {
                w.object { w in
                    w.member("name", t.name)
                    w.member("value", t.value)
                    w.member("target", t.target)
                    w.member("activation", t.activation)
                    w.member("open", t.open)
                    w.member("replicas", t.replicas)
                    w.member("error", t.error)
                }
            }
        }
        w.member("reason", reason)
        w.object("last_scale", lastScale) { w, l in
            w.member("ago_seconds", l.agoSeconds)
            w.member("from", l.from)
            w.member("to", l.to)
            w.member("reason", l.reason)
        }
        w.member("failures", failures)
        w.member("last_reading_ago_seconds", lastReadingAgoSeconds)
        w.member("fleet_desired", fleetDesired)
        w.member("fleet_share", fleetShare)
    }

    init(json a: JSON) throws(ControlProtocol.ProtocolError) {
        let triggers = (a["triggers"]?.array ?? []).map { t in
            Trigger(
                name: t["name"]?.string ?? "?", value: t["value"]?.double, target: t["target"]?.double,
                activation: t["activation"]?.double, open: t["open"]?.bool, replicas: t["replicas"]?.int.map { Int($0) },
                error: t["error"]?.string)
        }
        let last: LastScale? = a["last_scale"].flatMap { l in
            l.isNull
                ? nil
                : LastScale(
                    agoSeconds: l["ago_seconds"]?.double ?? 0, from: Int(l["from"]?.int ?? 0),
                    to: Int(l["to"]?.int ?? 0), reason: l["reason"]?.string ?? "")
        }
        self.init(
            type: try a.text("type"), minReplicas: try a.count("min_replicas"), maxReplicas: try a.count("max_replicas"),
            pollingIntervalSeconds: a["polling_interval_seconds"]?.double ?? 0, triggers: triggers,
            reason: a["reason"]?.string ?? "", lastScale: last, failures: Int(a["failures"]?.int ?? 0),
            lastReadingAgoSeconds: a["last_reading_ago_seconds"]?.double, fleetDesired: a["fleet_desired"]?.int.map { Int(clamping: $0) },
            fleetShare: a["fleet_share"]?.int.map { Int(clamping: $0) })
    }
}

extension StatusReport.Replica {
    func write(to w: inout JSONWriter) {
        w.member("replica", index)
        w.member("pid", pid.map { Int($0) })
        w.member("state", state)
        w.member("ready", ready)
        w.member("restarts", restarts)
        w.member("age_seconds", ageSeconds)
        w.member("last_exit", lastExit)
        w.member("last_exit_ago_seconds", lastExitAgoSeconds)
        w.member("draining", draining)
        w.member("retiring", retiring)
        w.member("restart_in_seconds", restartInSeconds)
        w.member("sigkill_in_seconds", sigkillInSeconds)
        w.member("outdated", outdated)
        w.member("busy", busy)
        w.member("message", message)
        w.member("cpu_seconds", usage?.cpuSeconds)
        w.member("cpu_percent", usage?.cpuPercent)
        w.member("memory_bytes", usage.map { Int($0.rssBytes) })
        if !probes.isEmpty {
            w.array("probes") { w in
                for p in probes {
                    w.object { w in
                        w.member("kind", p.kind)
                        w.member("state", p.state)
                        w.member("failures", p.failures)
                        w.member("failure_threshold", p.failureThreshold)
                        w.member("last_failure", p.lastFailure)
                        w.member("output", p.output)
                        w.member("last_probe_ago_seconds", p.lastProbeAgoSeconds)
                    }
                }
            }
        }
    }

    init(json r: JSON) throws(ControlProtocol.ProtocolError) {
        var usage: ProcessUsage?
        if let cpu = r["cpu_seconds"]?.double, let percent = r["cpu_percent"]?.double, let rss = r["memory_bytes"]?.int {
            usage = ProcessUsage(cpuSeconds: cpu, cpuPercent: percent, rssBytes: rss)
        }
        self.init(
            index: try r.count("replica"), pid: r["pid"]?.int.map { Int32(truncatingIfNeeded: $0) }, state: try r.text("state"),
            ready: r["ready"]?.bool ?? false, restarts: try r.count("restarts"), ageSeconds: r["age_seconds"]?.double,
            lastExit: r["last_exit"]?.string, lastExitAgoSeconds: r["last_exit_ago_seconds"]?.double,
            draining: r["draining"]?.string, retiring: r["retiring"]?.bool ?? false, outdated: r["outdated"]?.bool ?? false,
            busy: r["busy"]?.bool, message: r["message"]?.string, usage: usage,
            probes: (r["probes"]?.array ?? []).prefix(3).map { p in
                StatusReport.Probe(
                    kind: p["kind"]?.string ?? "?", state: p["state"]?.string ?? "unknown", failures: Int(clamping: p["failures"]?.int ?? 0),
                    failureThreshold: Int(clamping: p["failure_threshold"]?.int ?? 0), lastFailure: p["last_failure"]?.string,
                    output: (p["output"]?.array ?? []).prefix(ProbeOutcome.keptLines).compactMap(\.string),
                    lastProbeAgoSeconds: p["last_probe_ago_seconds"]?.double)
            })
        restartInSeconds = r["restart_in_seconds"]?.double
        sigkillInSeconds = r["sigkill_in_seconds"]?.double
    }
}

private extension JSON {
    func need(_ key: String) throws(ControlProtocol.ProtocolError) -> JSON {
        guard let v = self[key] else { throw .init("status: missing \"\(key)\"") }
        return v
    }

    func text(_ key: String) throws(ControlProtocol.ProtocolError) -> String {
        guard let s = try need(key).string else { throw .init("status: \"\(key)\" is not a string") }
        return s
    }

    func count(_ key: String) throws(ControlProtocol.ProtocolError) -> Int {
        guard let n = try need(key).int else { throw .init("status: \"\(key)\" is not an integer") }
        return Int(n)
    }
}
