import Foundation
import Glibc
import TestServers
import Testing

/// `[supervisor.fleet]` through the real binary: three poolvisor instances on this machine (three
/// "hosts": their own pools file, instance name and control socket) autoscale one pool against one
/// Redis list and run the queue's count between them, not three times over; when one dies, the two
/// left take its share.
@Suite(.serialized) struct FleetTests {
    func host(_ name: String, _ redis: RedisServer, metricsPort: Int? = nil, postgres: PostgresServer? = nil) throws -> Scenario {
        try Scenario(
            """
            [supervisor]
            name = "\(name)"
            env_file = "app.env"
            drain_seconds = 2
            \(metricsPort.map { "metrics_listen = \"127.0.0.1:\($0)\"" } ?? "")
            [supervisor.fleet]
            \(postgres == nil ? "redis_url_env = \"REDIS_URL\"" : "postgres_connection_env = \"DATABASE_URL\"")
            name = "workers"
            heartbeat_seconds = 1
            ttl_seconds = 3
            [pools.work]
            command = \(shell("exec sleep 1000"))
            ready_after_seconds = 0
            [pools.work.autoscaling]
            min_replicas = 0
            max_replicas = 10
            polling_interval = 0.2
            cooldown_period = 1
            [pools.work.autoscaling.keda]
            redis_url_env = "REDIS_URL"
            redis_list = "jobs"
            list_length = 5
            [pools.work.autoscaling.behavior.scale_down]
            stabilization_window_seconds = 0
            """, files: ["app.env": "REDIS_URL=\(redis.url)\n" + (postgres.map { "DATABASE_URL=\($0.url)\n" } ?? "")])
    }

    /// What each host's status says of the pool and the fleet (nil when it does not answer).
    func sample(_ s: Scenario) -> (desired: Int, running: Int, members: Int)? {
        guard let status = try? s.statusJSON(), let pool = status.pool("work"), let fleet = status["fleet"] as? [String: Any] else { return nil }
        return (pool["desired"] as? Int ?? -1, pool["running"] as? Int ?? -1, (fleet["members"] as? [Any])?.count ?? -1)
    }

    /// The hosts together run `total` workers, each knowing `members` members.
    func together(_ hosts: [Scenario], run total: Int, members: Int) -> Bool {
        let samples = hosts.map(sample)
        guard samples.allSatisfy({ $0?.members == members }) else { return false }
        let all = samples.compactMap { $0 }
        return all.reduce(0) { $0 + $1.desired } == total && all.reduce(0) { $0 + $1.running } == total
    }

    @Test func threeHostsRunTheQueuesCountBetweenThemAndTwoTakeOverWhenOneDies() throws {
        let redis = try RedisServer.start(password: "Fleet-Secret-2718")
        defer { redis.destroy() }
        _ = try redis.cli("EVAL", "for i = 1, 30 do redis.call('RPUSH', KEYS[1], i) end", "1", "jobs")
        let port = try freeTCPPorts(1)
        let hosts = try ["host-a", "host-b", "host-c"].map { try host($0, redis, metricsPort: $0 == "host-b" ? port : nil) }
        for h in hosts { try h.start() }
        defer { for h in hosts { h.supervisor.terminate() } }

        // 30 jobs at 5 per replica: 6 in all, 2 on each host, not 6 on each (18).
        #expect(
            waitUntil(timeout: .seconds(30)) { together(hosts, run: 6, members: 3) },
            "\(hosts.map(sample))")
        #expect(hosts.allSatisfy { sample($0)?.desired == 2 })
        let members = try redis.cli("ZRANGE", "poolvisor:fleet:workers", "0", "-1")
        for name in ["host-a", "host-b", "host-c"] { #expect(members.contains("-\(name)")) }
        let table = try hosts[0].control(["status"]).stdout.joined(separator: "\n")
        #expect(table.contains("fleet workers: 3 members"))
        #expect(table.contains("work: this host 2 of 6"))

        // host-a dies with its workers: within the TTL the other two see it gone and run 3 each.
        let orphans = hosts[0].supervisor.descendants
        _ = hosts[0].supervisor.kill()
        for pid in orphans { Glibc.kill(pid, SIGKILL) }
        let survivors = Array(hosts[1...])
        #expect(
            waitUntil(timeout: .seconds(30)) { together(survivors, run: 6, members: 2) },
            "\(survivors.map(sample))")
        #expect(survivors.allSatisfy { sample($0)?.desired == 3 })
        #expect(survivors[0].supervisor.allOutput.contains("fleet workers: 2 members; left: "))
        let metrics = try MetricsTests.scrape(port)
        #expect(MetricsTests.value(metrics, "poolvisor_fleet_members", ["fleet": "workers"]) == 2)
        #expect(MetricsTests.value(metrics, "poolvisor_fleet_share_known", ["fleet": "workers"]) == 1)
        #expect(MetricsTests.value(metrics, "poolvisor_pool_fleet_desired", ["pool": "work", "fleet": "workers"]) == 6)
        #expect(MetricsTests.value(metrics, "poolvisor_pool_fleet_share", ["pool": "work", "fleet": "workers"]) == 3)

        // A host that stops leaves at once: the last one takes the whole count.
        #expect(survivors[0].stop() == 0)
        #expect(waitUntil(timeout: .seconds(30)) { together([survivors[1]], run: 6, members: 1) }, "\(String(describing: sample(survivors[1])))")
        for h in hosts { #expect(!h.supervisor.allOutput.contains("Fleet-Secret-2718")) }
        #expect(survivors[1].stop() == 0)
    }
}

extension FleetTests {
    /// The same fleet meeting in PostgreSQL: rows stamped with the server's clock, stale ones deleted.
    @Test func threeHostsMeetInPostgreSQLAndTwoTakeOverWhenOneDies() throws {
        let redis = try RedisServer.start()
        defer { redis.destroy() }
        let postgres = try PostgresServer.start()
        defer { postgres.destroy() }
        _ = try redis.cli("EVAL", "for i = 1, 30 do redis.call('RPUSH', KEYS[1], i) end", "1", "jobs")
        let hosts = try ["host-a", "host-b", "host-c"].map { try host($0, redis, postgres: postgres) }
        for h in hosts { try h.start() }
        defer { for h in hosts { h.supervisor.terminate() } }

        #expect(waitUntil(timeout: .seconds(30)) { together(hosts, run: 6, members: 3) }, "\(hosts.map(sample))")
        let rows = try postgres.sql("SELECT string_agg(member, ',' ORDER BY member) FROM poolvisor_fleet_members WHERE fleet = 'workers'")
        for name in ["host-a", "host-b", "host-c"] { #expect(rows.contains("-\(name)"), "\(rows)") }

        let orphans = hosts[0].supervisor.descendants
        _ = hosts[0].supervisor.kill()
        for pid in orphans { Glibc.kill(pid, SIGKILL) }
        let survivors = Array(hosts[1...])
        #expect(waitUntil(timeout: .seconds(30)) { together(survivors, run: 6, members: 2) }, "\(survivors.map(sample))")
        // A host that stops deletes its row at once.
        #expect(survivors[0].stop() == 0)
        #expect(waitUntil(timeout: .seconds(30)) { together([survivors[1]], run: 6, members: 1) }, "\(String(describing: sample(survivors[1])))")
        for h in hosts { #expect(!h.supervisor.allOutput.contains(postgres.password)) }
        #expect(survivors[1].stop() == 0)
    }
}

@Suite struct FleetCheckTests {
    @Test func checkNamesTheFleetAndItsErrorsWithFileLineAndKey() throws {
        let dir = try TempDir()
        dir.write("app.env", "REDIS_URL=redis://:Check-Fleet-Secret@127.0.0.1:6390/0\n", mode: 0o600)
        let bad = dir.write(
            "pools.toml",
            """
            [supervisor]
            env_file = "app.env"
            [supervisor.fleet]
            postgres_connection_env = "DATABASE_URL"
            name = "workers"
            heartbeat_seconds = 20
            [pools.a]
            command = ["/bin/true"]
            """)
        let run = try Harness.run(["check", "--config", bad])
        #expect(run.status == 1)
        for (line, message) in [
            (4, "'supervisor.fleet.postgres_connection_env' names $DATABASE_URL, which the shared environment does not set"),
            (6, "'supervisor.fleet.ttl_seconds' (15 s) must be longer than 'supervisor.fleet.heartbeat_seconds' (20 s)"),
        ] {
            #expect(run.stderr.contains { $0.hasPrefix("\(bad):\(line):") && $0.contains("error: " + message) }, "missing \(line): \(message)\n\(run.stderr)")
        }
        let good = dir.write(
            "good.toml",
            "[supervisor]\nname = \"blue\"\nenv_file = \"app.env\"\n[supervisor.fleet]\nredis_url_env = \"REDIS_URL\"\nname = \"workers\"\nmember = \"m-{instance}\"\n[pools.a]\ncommand = [\"/bin/true\"]\n"
        )
        let ok = try Harness.run(["check", "--config", good])
        #expect(ok.status == 0, "\(ok.allOutput)")
        #expect(
            ok.stdout.contains(
                "fleet: workers, member m-blue, in Redis ($REDIS_URL) at poolvisor:fleet:workers, heartbeat every 5 s, gone after 15 s; queue and cron triggers are split between the members, cpu is not"
            ), "\(ok.stdout)")
        #expect(!ok.allOutput.contains("Check-Fleet-Secret"))
    }
}
