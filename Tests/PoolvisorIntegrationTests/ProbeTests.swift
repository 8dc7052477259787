import Foundation
import Glibc
import Testing

/// Startup, readiness and liveness probes against real workers: Python HTTP servers, a TCP listener,
/// exec probes that fail or hang.
@Suite struct ProbeTests {
    /// An HTTP server on 127.0.0.1:argv[1]: /healthz answers 500 while the file argv[2] exists, or
    /// (with argv[3] other than "v1") 503 until the file argv[2] exists; 200 otherwise.
    static let server = """
        import http.server, os, sys
        port, flag, version = int(sys.argv[1]), sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else None)
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if version is None: code = 500 if os.path.exists(flag) else 200
                else: code = 200 if version == 'v1' or os.path.exists(flag) else 503
                self.send_response(code); self.end_headers(); self.wfile.write(b'ok' if code == 200 else b'no')
            def log_message(self, *a): pass
        http.server.HTTPServer(('127.0.0.1', port), H).serve_forever()
        """

    /// `command = [...]` running `script` with Python and these arguments.
    static func python(_ script: String, _ arguments: String...) -> String {
        let escaped = script.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
        return "[\"/usr/bin/python3\", \"-c\", \"\(escaped)\"" + arguments.map { ", \"\($0)\"" }.joined() + "]"
    }

    static func replica(_ s: Scenario, _ pool: String, _ index: Int) -> [String: Any]? {
        ((try? s.statusJSON())?.pool(pool)?["replicas"] as? [[String: Any]])?.first { $0["replica"] as? Int == index && $0["retiring"] as? Bool != true }
    }

    static func probe(_ replica: [String: Any]?, _ kind: String) -> [String: Any]? {
        (replica?["probes"] as? [[String: Any]])?.first { $0["kind"] as? String == kind }
    }

    @Test func anHTTPLivenessProbeThatGets500ThreeTimesRestartsTheWorkerAndSaysWhy() throws {
        let base = try freeTCPPorts(1)
        let s = try Scenario(
            """
            [pools.web]
            command = \(Self.python(Self.server, "{replica + \(base)}", "@DIR@/sick"))
            [pools.web.readiness_probe]
            http_get = { port = "{replica + \(base)}", path = "/healthz" }
            period_seconds = 0.2
            [pools.web.liveness_probe]
            http_get = { port = "{replica + \(base)}", path = "/healthz", headers = { X-Probe = "poolvisor" } }
            period_seconds = 0.2
            failure_threshold = 3
            """)
        let p = try s.start()
        #expect(waitUntil(timeout: .seconds(15)) { Self.replica(s, "web", 0)?["ready"] as? Bool == true })
        let first = try #require(s.worker("web", 0))
        s.dir.write("sick", "")
        #expect(
            waitUntil(timeout: .seconds(15)) {
                let r = Self.replica(s, "web", 0)
                return r?["restarts"] as? Int == 1 && r?["last_exit"] as? String == "liveness probe failed: HTTP 500"
            })
        #expect(p.waitForLine(containing: "web/0 (pid \(first)) liveness probe failed: HTTP 500; sending SIGTERM"))
        #expect(!ProcFS.isAlive(first))
        // The text status says it too.
        let table = try s.control(["status"]).stdout.joined(separator: "\n")
        #expect(table.contains("liveness probe failed: HTTP 500"), "\(table)")
        unlink(s.dir.url("sick"))
        #expect(waitUntil(timeout: .seconds(15)) { Self.replica(s, "web", 0)?["ready"] as? Bool == true })
        #expect(s.stop() == 0)
    }

    @Test func aTCPReadinessProbeHoldsReadyUntilThePortListens() throws {
        let port = try freeTCPPorts(1)
        let listener = """
            import os, socket, sys, time
            while not os.path.exists(sys.argv[2]): time.sleep(0.05)
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(16)
            while True: s.accept()[0].close()
            """
        let s = try Scenario(
            """
            [pools.tcp]
            command = \(Self.python(listener, String(port), "@DIR@/listen"))
            [pools.tcp.readiness_probe]
            tcp_socket = { port = \(port) }
            period_seconds = 0.2
            failure_threshold = 2
            """)
        _ = try s.start()
        #expect(
            waitUntil(timeout: .seconds(15)) {
                let probe = Self.probe(Self.replica(s, "tcp", 0), "readiness")
                return probe?["state"] as? String == "failing" && probe?["last_failure"] as? String == "connection refused"
            })
        #expect(Self.replica(s, "tcp", 0)?["state"] as? String == "Starting")
        #expect((try s.statusJSON())["supervisor"].flatMap { ($0 as? [String: Any])?["summary"] as? String } == "1 pool, 0/1 workers ready")
        s.dir.write("listen", "")
        #expect(waitUntil(timeout: .seconds(15)) { Self.replica(s, "tcp", 0)?["ready"] as? Bool == true })
        #expect(Self.probe(Self.replica(s, "tcp", 0), "readiness")?["state"] as? String == "passing")
        #expect(Self.replica(s, "tcp", 0)?["restarts"] as? Int == 0)
        #expect(s.stop() == 0)
    }

    @Test func anExecProbeThatHangsIsKilledAtItsTimeoutAndOneThatFailsShowsItsLastLines() throws {
        let s = try Scenario(
            """
            [pools.hang]
            command = ["/bin/sleep", "1000"]
            [pools.hang.env]
            ROLE = "checker-{replica}"
            [pools.hang.readiness_probe]
            exec = ["/bin/sh", "-c", "echo $$ >> @DIR@/probe.pids; echo $ROLE > @DIR@/probe.env; exec sleep 1000"]
            timeout_seconds = 0.3
            period_seconds = 0.5
            [pools.fail]
            command = ["/bin/sleep", "1000"]
            [pools.fail.readiness_probe]
            exec = ["/bin/sh", "-c", "echo checking the broker; echo 'broker unreachable: ECONNREFUSED' >&2; exit 3"]
            period_seconds = 0.2
            """)
        _ = try s.start()
        let probePID = try #require(s.waitForPID(in: "probe.pids"))
        #expect(
            waitUntil(timeout: .seconds(15)) {
                Self.probe(Self.replica(s, "hang", 0), "readiness")?["last_failure"] as? String == "timed out after 300 ms"
            })
        // Killed, and reaped: no sleep of its is left.
        #expect(waitUntil(timeout: .seconds(5)) { !ProcFS.isAlive(probePID) })
        #expect(s.dir.read("probe.env") == "checker-0\n")  // it ran in the worker's environment
        let worker = try #require(s.worker("hang", 0))
        #expect(ProcFS.isAlive(worker))  // a readiness probe kills nothing
        #expect(
            waitUntil(timeout: .seconds(15)) {
                let probe = Self.probe(Self.replica(s, "fail", 0), "readiness")
                return probe?["state"] as? String == "failing" && probe?["last_failure"] as? String == "exit code 3"
                    && probe?["output"] as? [String] == ["checking the broker", "broker unreachable: ECONNREFUSED"]
            })
        let table = try s.control(["status"]).stdout.joined(separator: "\n")
        #expect(table.contains("fail/0 readiness probe: exit code 3"), "\(table)")
        #expect(table.contains("| broker unreachable: ECONNREFUSED"), "\(table)")
        #expect(table.contains("readiness failing 3/3"), "\(table)")
        #expect(s.stop() == 0)
        // No probe process is left behind.
        let pids = (s.dir.read("probe.pids") ?? "").split(separator: "\n").compactMap { Int32($0) }
        #expect(pids.allSatisfy { !ProcFS.isAlive($0) })
    }

    @Test func aFailingReadinessProbeHoldsARollingReplacement() throws {
        let base = try freeTCPPorts(2)
        func file(_ version: String) -> String {
            """
            [pools.api]
            command = \(Self.python(Self.server, "{replica + \(base)}", "@DIR@/v2-ok", version))
            replicas = 2
            drain_seconds = 5
            [pools.api.readiness_probe]
            http_get = { port = "{replica + \(base)}", path = "/healthz" }
            period_seconds = 0.2
            failure_threshold = 2
            """
        }
        let s = try Scenario(file("v1"))
        _ = try s.start()
        #expect(waitUntil(timeout: .seconds(15)) { (try? s.statusJSON())?.pool("api")?["ready"] as? Int == 2 })
        let old = [try #require(s.worker("api", 0)), try #require(s.worker("api", 1))]
        s.dir.write("pools.toml", file("v2").replacingOccurrences(of: "@DIR@", with: s.dir.path))
        #expect(try s.control(["reload"]).status == 0)
        // One old worker is replaced; its replacement never passes, so the other old one stays.
        #expect(
            waitUntil(timeout: .seconds(15)) {
                let pool = (try? s.statusJSON())?.pool("api")
                let replicas = pool?["replicas"] as? [[String: Any]] ?? []
                return pool?["waiting"].flatMap { $0 as? String }?.contains("not ready") == true
                    && replicas.contains { Self.probe($0, "readiness")?["state"] as? String == "failing" }
            })
        #expect(old.filter { ProcFS.isAlive($0) }.count == 1)
        #expect((try s.statusJSON()).pool("api")?["state"] as? String == "Progressing")
        s.dir.write("v2-ok", "")
        #expect(
            waitUntil(timeout: .seconds(20)) {
                let pool = (try? s.statusJSON())?.pool("api")
                return pool?["state"] as? String == "Available" && pool?["ready"] as? Int == 2
            })
        #expect(old.allSatisfy { !ProcFS.isAlive($0) })
        #expect(s.stop() == 0)
    }
}

/// The first of `count` consecutive TCP ports on 127.0.0.1 that are free now.
func freeTCPPorts(_ count: Int) throws -> Int {
    for _ in 0..<50 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { continue }
        let base = Int(UInt16(bigEndian: address.sin_port))
        guard base + count < 65536 else { continue }
        if (1..<count).allSatisfy({ isFree(base + $0) }) { return base }
    }
    throw POSIXError(.EADDRINUSE)
}

private func isFree(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// `check` on probes: every new key's mistakes with file, line and key; a valid file's summary.
@Suite struct ProbeCheckTests {
    @Test func everyProbeKeyIsCheckedWithFileLineAndKey() throws {
        let dir = try TempDir()
        let config = dir.write(
            "pools.toml",
            """
            [pools.a]
            command = ["/bin/sleep", "1000"]
            [pools.a.liveness_probe]
            http_get = { port = 70000, path = "healthz", host = "db.internal", scheme = "HTTPS", headers = { "Bad Name" = "x" } }
            success_threshold = 2
            perod_seconds = 5
            [pools.a.readiness_probe]
            exec = ["/bin/sleep", "1"]
            tcp_socket = { port = 80 }
            termination_grace_period_seconds = 5
            timeout_seconds = 0
            [pools.a.startup_probe]
            failure_threshold = 0
            [pools.b]
            command = ["/bin/sleep", "1000"]
            replicas = 2
            [pools.b.liveness_probe]
            http_get = { port = "{replica + 65535}" }
            [pools.b.readiness_probe]
            exec = ["no-such-checker", "{replcia}"]
            """)
        let run = try Harness.run(["check", "--config", config])
        #expect(run.status == 1)
        let expected: [(line: Int, message: String)] = [
            (4, "'pools.a.liveness_probe.http_get.host' must be an IP address such as 127.0.0.1 or ::1, not 'db.internal' (probes do not look names up)"),
            (4, "'pools.a.liveness_probe.http_get.port' must be between 1 and 65535, not 70000"),
            (4, "'pools.a.liveness_probe.http_get.path' must start with / and hold no spaces or control characters, not 'healthz'"),
            (4, "'pools.a.liveness_probe.http_get.scheme': HTTPS probes are not supported"),
            (4, "'Bad Name' in [pools.a.liveness_probe.http_get.headers] is not a valid HTTP header name"),
            (5, "'pools.a.liveness_probe.success_threshold' must be 1 for a liveness probe (as in Kubernetes), not 2"),
            (6, "unknown key 'perod_seconds' in [pools.a.liveness_probe]; did you mean 'period_seconds'?"),
            (7, "[pools.a.readiness_probe] takes exactly one of exec, http_get and tcp_socket, not exec and tcp_socket"),
            (10, "'pools.a.readiness_probe.termination_grace_period_seconds' applies to liveness and startup probes only"),
            (11, "'pools.a.readiness_probe.timeout_seconds' must be between 0.01 and"),
            (12, "[pools.a.startup_probe] needs one of exec"),
            (13, "'pools.a.startup_probe.failure_threshold' must be between 1 and 1000, not 0"),
            (18, "'pools.b.liveness_probe.http_get.port' is 65536 for replica 1, which is not a port (1-65535)"),
            (20, "'pools.b.readiness_probe.exec': unknown name '{replcia}'; did you mean 'replica'?"),
            (20, "'pools.b.readiness_probe.exec': program 'no-such-checker' was not found in the worker's PATH or is not executable"),
        ]
        for (line, message) in expected {
            #expect(
                run.stderr.contains { $0.hasPrefix("\(config):\(line):") && $0.contains(": error: " + message) },
                "missing: \(line): \(message)\n\(run.stderr.joined(separator: "\n"))")
        }
        #expect(run.stderr.last == "\(config): \(expected.count) errors; nothing would start")
    }

    @Test func aValidFileShowsItsProbesWithThePerReplicaPortsAndNoHeaderValues() throws {
        let dir = try TempDir()
        let config = dir.write(
            "pools.toml",
            """
            [pools.web]
            command = ["/bin/sleep", "1000"]
            replicas = 3
            ready_after_seconds = 2
            [pools.web.startup_probe]
            tcp_socket = { port = "{replica + 8000}", host = "::1" }
            period_seconds = 1
            failure_threshold = 30
            [pools.web.readiness_probe]
            http_get = { port = "{replica + 8000}", path = "/healthz", headers = { Authorization = "Bearer TopSecret-probe-token" } }
            [pools.web.liveness_probe]
            exec = ["sleep", "0"]
            initial_delay_seconds = 5
            termination_grace_period_seconds = 10
            """)
        let run = try Harness.run(["check", "--config", config])
        #expect(run.status == 0, "\(run.allOutput)")
        let out = run.allOutput
        #expect(
            out.contains("  startup:     tcp_socket [::1]:{replica + 8000} (replica 0: 8000, replica 1: 8001, replica 2: 8002); every 1 s, timeout 1 s, fails after 30 failures"),
            "\(out)")
        #expect(
            out.contains(
                "  readiness:   http_get http://127.0.0.1:{replica + 8000}/healthz, headers Authorization (replica 0: 8000/healthz, replica 1: 8001/healthz, replica 2: 8002/healthz); every 10 s, timeout 1 s, fails after 3 failures"
            ), "\(out)")
        #expect(out.contains("  liveness:    exec sleep 0 (/usr/bin/sleep); every 10 s, timeout 1 s, first after 5 s, fails after 3 failures, drain 10 s"), "\(out)")
        #expect(out.contains("'pools.web.ready_after_seconds' has no effect with a readiness probe"), "\(out)")
        #expect(!out.contains("TopSecret"))
    }
}
