import Foundation
import Glibc
import Testing

/// `GET /metrics` read by a real Prometheus parser (the `prometheus_client` package's), after things
/// happened: a restart, an OOM kill, a scale, a refused reload.
@Suite struct MetricsTests {
    /// Scrapes and parses with prometheus_client; each sample as (name, labels, value).
    static func scrape(_ port: Int) throws -> [(name: String, labels: [String: String], value: Double)] {
        let script = """
            import json, sys, urllib.request
            from prometheus_client.parser import text_string_to_metric_families
            text = urllib.request.urlopen('http://127.0.0.1:%s/metrics' % sys.argv[1], timeout=10).read().decode()
            out = [[s.name, s.labels, s.value] for f in text_string_to_metric_families(text) for s in f.samples]
            print(json.dumps(out))
            """
        let run = try Harness.run(executable: "/usr/bin/python3", ["-c", script, String(port)], timeout: .seconds(20))
        guard run.status == 0, let line = run.stdout.last,
            let rows = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [[Any]]
        else { throw POSIXError(.EIO) }
        return rows.compactMap { row in
            guard row.count == 3, let name = row[0] as? String, let labels = row[1] as? [String: String], let value = row[2] as? Double else { return nil }
            return (name, labels, value)
        }
    }

    static func value(_ samples: [(name: String, labels: [String: String], value: Double)], _ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?.value
    }

    @Test func aParserReadsTheScrapeAfterARestartAScaleAndARefusedReload() throws {
        let port = try freeTCPPorts(1)
        let file = """
            [supervisor]
            metrics_listen = "127.0.0.1:\(port)"
            [pools.web]
            command = ["/bin/sleep", "1000"]
            replicas = 2
            ready_after_seconds = 0.1
            [pools.crash]
            command = ["/bin/sh", "-c", "exit 3"]
            [pools.crash.backoff]
            initial_seconds = 60
            """
        let s = try Scenario(file)
        let p = try s.start()
        #expect(p.waitForLine(containing: "metrics: http://127.0.0.1:\(port)/metrics"))
        #expect(waitUntil(timeout: .seconds(15)) { (try? s.statusJSON())?.pool("web")?["ready"] as? Int == 2 })
        #expect(try s.control(["scale", "web", "3"]).status == 0)
        #expect(waitUntil(timeout: .seconds(15)) { (try? s.statusJSON())?.pool("web")?["ready"] as? Int == 3 })
        s.dir.write("pools.toml", file + "\nreplicas = \"three\"\n")
        #expect(try s.control(["reload"]).status != 0)

        let samples = try Self.scrape(port)
        #expect(Self.value(samples, "poolvisor_pool_replicas_desired", ["pool": "web"]) == 3)
        #expect(Self.value(samples, "poolvisor_pool_replicas", ["pool": "web", "state": "ready"]) == 3)
        #expect(Self.value(samples, "poolvisor_pool_replicas", ["pool": "web", "state": "running"]) == 3)
        #expect(Self.value(samples, "poolvisor_pool_replicas", ["pool": "web", "state": "updated"]) == 3)
        #expect(Self.value(samples, "poolvisor_worker_ready", ["pool": "web", "replica": "2"]) == 1)
        // The crash pool: restarted once at once, then in back-off for a minute.
        #expect(Self.value(samples, "poolvisor_worker_restarts_total", ["pool": "crash", "replica": "0"]) == 2)
        #expect(Self.value(samples, "poolvisor_worker_last_exit_reason", ["pool": "crash", "replica": "0", "reason": "Error"]) == 1)
        #expect((Self.value(samples, "poolvisor_pool_backoff_seconds", ["pool": "crash"]) ?? 0) > 30)
        #expect(Self.value(samples, "poolvisor_reloads_total", ["result": "refused"]) == 1)
        #expect(Self.value(samples, "poolvisor_reloads_total", ["result": "applied"]) == 0)
        let start = try #require(Self.value(samples, "poolvisor_worker_start_time_seconds", ["pool": "web", "replica": "0"]))
        #expect(abs(start - Date().timeIntervalSince1970) < 60)
        #expect((Self.value(samples, "poolvisor_worker_memory_working_set_bytes", ["pool": "web", "replica": "0"]) ?? 0) > 0)
        #expect((Self.value(samples, "process_resident_memory_bytes") ?? 0) > 1_000_000)
        #expect((Self.value(samples, "process_open_fds") ?? 0) > 3)

        // Scaled down: the replica's series go.
        #expect(try s.control(["scale", "web", "1"]).status == 0)
        #expect(
            waitUntil(timeout: .seconds(15)) {
                guard let after = try? Self.scrape(port) else { return false }
                return Self.value(after, "poolvisor_worker_ready", ["pool": "web", "replica": "2"]) == nil
                    && Self.value(after, "poolvisor_pool_replicas_desired", ["pool": "web"]) == 1
            })
        #expect(s.stop() == 0)
    }

    @Test(.enabled(if: IsolationTests.cgroupsUsable, "needs root and cgroup v1 memory, cpu, cpuacct and pids controllers"))
    func anOOMKillIsItsLastExitReason() throws {
        let port = try freeTCPPorts(1)
        let s = try Scenario(
            """
            [supervisor]
            metrics_listen = "127.0.0.1:\(port)"
            [pools.hog]
            command = ["/usr/bin/python3", "-c", "import time; time.sleep(0.2); x = bytearray(300 * 1024 * 1024); time.sleep(100)"]
            ready_after_seconds = 0.1
            [pools.hog.resources]
            memory_limit = "64Mi"
            [pools.hog.backoff]
            initial_seconds = 30
            """)
        try s.start()
        #expect(s.supervisor.waitForLine(containing: "exited: OOMKilled; restarting in"))
        let samples = try Self.scrape(port)
        #expect(Self.value(samples, "poolvisor_worker_last_exit_reason", ["pool": "hog", "replica": "0", "reason": "OOMKilled"]) == 1)
        #expect(Self.value(samples, "poolvisor_worker_restarts_total", ["pool": "hog", "replica": "0"]) == 2)
        #expect(s.stop() == 0)
    }

    @Test func scrapersThatHangDoNotStallStatusAndOthersAreAnswered404And405() throws {
        let port = try freeTCPPorts(1)
        let s = try Scenario(
            """
            [supervisor]
            metrics_listen = "127.0.0.1:\(port)"
            [pools.web]
            command = ["/bin/sleep", "1000"]
            replicas = 2
            """)
        let p = try s.start()
        #expect(p.waitForLine(containing: "metrics: http://127.0.0.1:\(port)/metrics"))
        #expect(waitUntil(timeout: .seconds(15)) { (try? s.statusJSON())?.pool("web")?["ready"] as? Int == 2 })
        // Five scrapers connect; four send half a request and never read; one more is refused (503).
        var hung: [Int32] = []
        for _ in 0..<4 {
            let fd = try connectTCP(port)
            _ = send(fd, "GET /metr", 9, 0)
            hung.append(fd)
        }
        defer { for fd in hung { close(fd) } }
        #expect(waitUntil(timeout: .seconds(5)) { (try? Self.httpStatus(port, "GET /metrics")) == 503 })
        // The loop goes on: status answers at once.
        let started = ContinuousClock.now
        #expect(try s.control(["status"]).status == 0)
        #expect(ContinuousClock.now - started < .seconds(3))
        // After their 5 s deadline the hung ones are closed and scrapes work again.
        #expect(waitUntil(timeout: .seconds(15)) { (try? Self.httpStatus(port, "GET /metrics")) == 200 })
        #expect(try Self.httpStatus(port, "GET /") == 404)
        #expect(try Self.httpStatus(port, "POST /metrics") == 405)
        #expect(s.stop() == 0)
    }

    /// Sends `request` (a request line) and returns the response's status code.
    static func httpStatus(_ port: Int, _ request: String) throws -> Int? {
        let fd = try connectTCP(port)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let text = Array("\(request) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        _ = text.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n >= 12 else { return nil }
        return Int(String(decoding: buffer[9..<12], as: UTF8.self))
    }
}

/// A TCP connection to 127.0.0.1:`port`.
func connectTCP(_ port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if rc != 0 {
        close(fd)
        throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
    }
    return fd
}

@Suite struct MetricsCheckTests {
    @Test func metricsListenIsCheckedWithFileLineAndKey() throws {
        let dir = try TempDir()
        for (value, message) in [
            ("localhost:9325", "'supervisor.metrics_listen': 'localhost' is not an IP address"),
            ("127.0.0.1", "'supervisor.metrics_listen': expected ADDRESS:PORT, such as 127.0.0.1:9325"),
            ("127.0.0.1:99999", "'supervisor.metrics_listen': the port must be 1-65535, not '99999'"),
            ("::1:9325", "'supervisor.metrics_listen': an IPv6 address goes in brackets: [::1]:9325"),
        ] {
            let config = dir.write("pools.toml", "[supervisor]\nmetrics_listen = \"\(value)\"\n[pools.a]\ncommand = [\"/bin/true\"]\n")
            let run = try Harness.run(["check", "--config", config])
            #expect(run.status == 1)
            #expect(run.stderr.first?.hasPrefix("\(config):2:") == true && run.stderr.first?.contains("error: " + message) == true, "\(run.stderr)")
        }
        let open = dir.write("open.toml", "[supervisor]\nmetrics_listen = \"[::]:9325\"\n[pools.a]\ncommand = [\"/bin/true\"]\n")
        let run = try Harness.run(["check", "--config", open])
        #expect(run.status == 0)
        #expect(run.stderr.first?.contains("warning: 'supervisor.metrics_listen' ([::]:9325) is reachable from other hosts") == true, "\(run.stderr)")
    }
}
