import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

@Suite struct StatusTests {
    func world() -> SimulatedWorld {
        var budget = pool("kb", replicas: 2)
        budget.disruptionBudget = .minAvailable(.count(1))
        let world = SimulatedWorld([pool("chat", replicas: 2), budget])
        world.send(.start)
        world.advance(by: 1)
        world.advance(by: 64)
        world.exit(ReplicaID(pool: "chat", index: 1), .exited(3))
        world.exit(ReplicaID(pool: "chat", index: 1), .exited(3))  // second crash in a row: back-off
        return world
    }

    @Test func reportsPoolsAndReplicasAsRunning() {
        let w = world()
        let report = w.reconciler.statusReport(at: w.now, version: "9.9", pid: 42) { pid in
            ProcessUsage(cpuSeconds: 1.5, cpuPercent: 2.25, rssBytes: Int64(pid) * 1024 * 1024)
        }
        #expect(report.supervisor.phase == "running")
        #expect(report.supervisor.uptimeSeconds == 65)
        #expect(report.pools.map(\.name) == ["chat", "kb"])
        let chat = report.pools[0]
        #expect(chat.state == "Degraded")
        #expect((chat.ready, chat.desired, chat.running) == (1, 2, 1))
        #expect(chat.replicas[1].state == "BackOff")
        #expect(chat.replicas[1].lastExit == "exit code 3")
        #expect(chat.replicas[1].restarts == 2)
        #expect(report.pools[1].state == "Available")
        #expect(report.pools[1].disruptionBudget == "min_available = 1")
        #expect(report.exitCode == 3)

        let table = report.table()
        #expect(table.contains("POOL chat  Degraded  ready 1/2  running 1\n"))
        #expect(table.contains("  REPLICA  PID  STATE    READY  RESTARTS  AGE   CPU   MEMORY  LAST EXIT\n"))
        #expect(
            table.contains("  chat/0   100  Ready    1/1    0         1m5s  2.3%  100Mi   -\n")
                || table.contains("  chat/0   100  Ready    1/1    0         1m5s  2.2%  100Mi   -\n"))
        #expect(table.contains("  chat/1   -    BackOff  0/1    2         -     -     -       exit code 3 (0s ago)\n"))
    }

    @Test func jsonRoundTripsAndNamesItsFieldsAsDocumented() throws {
        let w = world()
        _ = w.perform(.restart(pool: "kb"))
        let report = w.reconciler.statusReport(at: w.now, version: "9.9", pid: 42) { _ in ProcessUsage(cpuSeconds: 0.5, cpuPercent: 1, rssBytes: 4096) }
        let text = report.json.serialized
        let parsed = try StatusReport(json: JSON.parse(text))
        #expect(parsed == report)
        let kb = try #require(report.json["pools"]?[1])
        #expect(kb["state"]?.string == "Progressing")
        #expect(kb["rollout"]?.string == "poolvisor restart")
        let draining = try #require(kb["replicas"]?.array?.first { $0["retiring"]?.bool == true })
        #expect(draining["draining"]?.string == "rolling replacement")
        #expect(draining["memory_bytes"]?.int == 4096)
        for key in ["replica", "pid", "state", "ready", "restarts", "age_seconds", "last_exit", "cpu_percent", "busy", "outdated"] {
            #expect(kb["replicas"]?[0]?.object?.keys.contains(key) == true, "missing \(key)")
        }
    }

    @Test func aRejectedReloadShowsItsErrorsButNoValues() {
        let w = world()
        let d = Diagnostic(.error, SourceLocation(file: "/etc/poolvisor/app.env", line: 2, column: 1), key: "", "line 2: expected KEY=value")
        _ = w.perform(.reload(PoolsFileDecoder.Result(file: nil, diagnostics: [d])))
        let table = w.reconciler.statusReport(at: w.now, version: "1", pid: 1).table()
        #expect(table.contains("last reload 0s ago: REJECTED, running the previous pools file\n  /etc/poolvisor/app.env:2:1: error: line 2: expected KEY=value\n"))
    }

    @Test func agesReadLikeKubectl() {
        #expect(StatusReport.age(45) == "45s")
        #expect(StatusReport.age(192) == "3m12s")
        #expect(StatusReport.age(7200) == "2h")
        #expect(StatusReport.age(7500) == "2h5m")
        #expect(StatusReport.age(3 * 86400 + 4 * 3600 + 59) == "3d4h")
    }
}

@Suite struct ControlProtocolTests {
    @Test func requestsRoundTrip() throws {
        let all: [ControlProtocol.Request] = [.status(pool: nil), .status(pool: "kb"), .reload, .scale(pool: "kb", replicas: 3), .restart(pool: "kb")]
        for r in all {
            #expect(try ControlProtocol.Request.parse(Array(r.json.serialized.utf8)).get() == r)
        }
        #expect(ControlProtocol.Request.status(pool: nil).isReadOnly)
        #expect(!ControlProtocol.Request.reload.isReadOnly)
    }

    @Test func badRequestsAreExplained() {
        func error(_ text: String) -> String? {
            if case .failure(let e) = ControlProtocol.Request.parse(Array(text.utf8)) { return e.message }
            return nil
        }
        #expect(error("{") == "bad request: invalid JSON at byte 1: expected a string key or '}'" || error("{")?.hasPrefix("bad request: invalid JSON") == true)
        #expect(error("[1]") == "bad request: expected a JSON object")
        #expect(error(#"{"command":"status"}"#) == #"bad request: no protocol version "v""#)
        #expect(error(#"{"v":2,"command":"status"}"#) == "protocol version 2 is not supported; this poolvisor speaks version 1")
        #expect(error(#"{"v":1,"command":"stauts"}"#) == "unknown command 'stauts'; did you mean 'status'?")
        #expect(error(#"{"v":1,"command":"scale","pool":"kb","replicas":"3"}"#) == #"bad request: scale needs an integer "replicas""#)
        #expect(error(#"{"v":1,"command":"restart"}"#) == #"bad request: restart needs "pool""#)
    }
}
