/// The control socket's protocol, version 1: one JSON object per line each way.
///
///     → {"v":1,"command":"status","pool":"kb"}          pool is optional
///     → {"v":1,"command":"reload"}
///     → {"v":1,"command":"scale","pool":"kb","replicas":3}
///     → {"v":1,"command":"restart","pool":"kb"}
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

        /// Only `status` is open to members of `control_group`; the rest need root or poolvisor's user.
        public var isReadOnly: Bool {
            if case .status = self { return true }
            return false
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
            default:
                return .failure(ProtocolError("unknown command '\(command)'\(Suggestion.didYouMean(command, ["status", "reload", "scale", "restart"]))"))
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

    public static func response(_ status: StatusReport) -> JSON {
        .object(["v": .int(version), "ok": true, "status": status.json])
    }
}

// MARK: - StatusReport as JSON

extension StatusReport {
    /// The documented, stable JSON form (README, "poolvisor status --json"). Absent values are null.
    public var json: JSON {
        let s = supervisor
        var sup: JSONObject = [
            "version": .string(s.version), "pid": .int(Int64(s.pid)), "instance": .string(s.instance),
            "file": .string(s.file), "phase": .string(s.phase), "uptime_seconds": .double(s.uptimeSeconds),
            "summary": .string(s.summary), "warnings": .array(s.warnings.map { .string($0) }),
        ]
        sup["last_reload"] = s.lastReload.map { r in
            .object(["ago_seconds": .double(r.agoSeconds), "accepted": .bool(r.accepted),
                     "lines": .array(r.lines.map { .string($0) }), "diagnostics": .array(r.diagnostics.map { .string($0) })])
        } ?? .null
        return .object(["supervisor": .object(sup), "healthy": .bool(exitCode == 0), "pools": .array(pools.map(\.json))])
    }

    public init(json: JSON) throws(ControlProtocol.ProtocolError) {
        guard let s = json["supervisor"], let pools = json["pools"]?.array else { throw .init("status: missing supervisor or pools") }
        let reload: Reload? = try s["last_reload"].flatMap { r throws(ControlProtocol.ProtocolError) in
            if r.isNull { return nil }
            return Reload(agoSeconds: try r.need("ago_seconds").double ?? 0, accepted: try r.need("accepted").bool ?? false,
                          lines: r["lines"]?.array?.compactMap(\.string) ?? [], diagnostics: r["diagnostics"]?.array?.compactMap(\.string) ?? [])
        }
        supervisor = Supervisor(
            version: try s.text("version"), pid: Int32(truncatingIfNeeded: try s.need("pid").int ?? 0), instance: try s.text("instance"),
            file: try s.text("file"), phase: try s.text("phase"), uptimeSeconds: s["uptime_seconds"]?.double ?? 0,
            summary: s["summary"]?.string ?? "", lastReload: reload, warnings: s["warnings"]?.array?.compactMap(\.string) ?? [])
        self.pools = try pools.map { p throws(ControlProtocol.ProtocolError) in try Pool(json: p) }
    }
}

extension StatusReport.Pool {
    public var json: JSON {
        .object(JSONObject(distinctKeys: [
            "name": .string(name), "state": .string(state), "desired": .int(Int64(desired)),
            "replicas_in_file": .int(Int64(replicasInFile)), "scaled_to": scaledTo.map { .int(Int64($0)) } ?? .null,
            "running": .int(Int64(running)), "ready": .int(Int64(ready)), "healthy": .bool(isHealthy),
            "rollout": rollout.map { .string($0) } ?? .null, "waiting": waiting.map { .string($0) } ?? .null,
            "disruption_budget": disruptionBudget.map { .string($0) } ?? .null,
            "warnings": .array(warnings.map { .string($0) }),
            "cpu_request": cpuRequest.map { .double($0) } ?? .null,
            "cpu_utilization_percent": cpuUtilisation.map { .double($0) } ?? .null,
            "autoscaling": autoscaling.map(\.json) ?? .null,
            "replicas": .array(replicas.map(\.json)),
        ]))
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
    public var json: JSON {
        .object(JSONObject(distinctKeys: [
            "type": .string(type), "min_replicas": .int(Int64(minReplicas)), "max_replicas": .int(Int64(maxReplicas)),
            "polling_interval_seconds": .double(pollingIntervalSeconds),
            "triggers": .array(triggers.map { t in
                .object(JSONObject(distinctKeys: [
                    "name": .string(t.name), "value": t.value.map { .double($0) } ?? .null,
                    "target": t.target.map { .double($0) } ?? .null, "activation": t.activation.map { .double($0) } ?? .null,
                    "open": t.open.map { .bool($0) } ?? .null, "replicas": t.replicas.map { .int(Int64($0)) } ?? .null,
                    "error": t.error.map { .string($0) } ?? .null,
                ]))
            }),
            "reason": .string(reason),
            "last_scale": lastScale.map { l in
                .object(["ago_seconds": .double(l.agoSeconds), "from": .int(Int64(l.from)), "to": .int(Int64(l.to)), "reason": .string(l.reason)])
            } ?? .null,
            "failures": .int(Int64(failures)),
            "last_reading_ago_seconds": lastReadingAgoSeconds.map { .double($0) } ?? .null,
        ]))
    }

    init(json a: JSON) throws(ControlProtocol.ProtocolError) {
        let triggers = (a["triggers"]?.array ?? []).map { t in
            Trigger(name: t["name"]?.string ?? "?", value: t["value"]?.double, target: t["target"]?.double,
                    activation: t["activation"]?.double, open: t["open"]?.bool, replicas: t["replicas"]?.int.map { Int($0) },
                    error: t["error"]?.string)
        }
        let last: LastScale? = a["last_scale"].flatMap { l in
            l.isNull ? nil : LastScale(agoSeconds: l["ago_seconds"]?.double ?? 0, from: Int(l["from"]?.int ?? 0),
                                       to: Int(l["to"]?.int ?? 0), reason: l["reason"]?.string ?? "")
        }
        self.init(type: try a.text("type"), minReplicas: try a.count("min_replicas"), maxReplicas: try a.count("max_replicas"),
                  pollingIntervalSeconds: a["polling_interval_seconds"]?.double ?? 0, triggers: triggers,
                  reason: a["reason"]?.string ?? "", lastScale: last, failures: Int(a["failures"]?.int ?? 0),
                  lastReadingAgoSeconds: a["last_reading_ago_seconds"]?.double)
    }
}

extension StatusReport.Replica {
    public var json: JSON {
        .object(JSONObject(distinctKeys: [
            "replica": .int(Int64(index)), "pid": pid.map { .int(Int64($0)) } ?? .null, "state": .string(state),
            "ready": .bool(ready), "restarts": .int(Int64(restarts)), "age_seconds": ageSeconds.map { .double($0) } ?? .null,
            "last_exit": lastExit.map { .string($0) } ?? .null,
            "last_exit_ago_seconds": lastExitAgoSeconds.map { .double($0) } ?? .null,
            "draining": draining.map { .string($0) } ?? .null, "retiring": .bool(retiring), "outdated": .bool(outdated),
            "busy": busy.map { .bool($0) } ?? .null, "message": message.map { .string($0) } ?? .null,
            "cpu_seconds": usage.map { .double($0.cpuSeconds) } ?? .null,
            "cpu_percent": usage.map { .double($0.cpuPercent) } ?? .null,
            "memory_bytes": usage.map { .int($0.rssBytes) } ?? .null,
        ]))
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
            busy: r["busy"]?.bool, message: r["message"]?.string, usage: usage)
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
