import Foundation
import Glibc
import TestServers
import Testing

/// `[supervisor.redis_events]` against a real Redis: the event stream, the heartbeat hashes and their
/// expiry when poolvisor dies, and busy keys that keep a busy worker through a scale-down.
@Suite struct RedisEventsTests {
    func scenario(_ redis: RedisServer, _ pools: String) throws -> Scenario {
        try Scenario(
            """
            [supervisor]
            name = "rtest"
            env_file = "app.env"
            drain_seconds = 2
            [supervisor.redis_events]
            redis_url_env = "REDIS_URL"
            heartbeat_seconds = 0.3
            \(pools)
            """, files: ["app.env": "REDIS_URL=\(redis.url)\n"])
    }

    @Test func eventsGoToTheStreamAndHeartbeatsExpireWhenPoolvisorIsKilled() throws {
        let redis = try RedisServer.start(password: "Redis-Events-Secret-99")
        defer { redis.destroy() }
        let s = try scenario(
            redis,
            """
            [pools.web]
            command = ["/bin/sleep", "1000"]
            replicas = 2
            serves = ["default"]
            ready_after_seconds = 0.1
            """)
        let p = try s.start()
        #expect(waitUntil(timeout: .seconds(15)) { (try? redis.cli("XLEN", "poolvisor:events")).flatMap { Int($0) } ?? 0 >= 4 })
        let stream = try redis.cli("XRANGE", "poolvisor:events", "-", "+")
        #expect(stream.contains("worker.started"))
        #expect(stream.contains("worker.ready"))
        let lines = stream.split(separator: "\n").map(String.init)
        // Each entry's fields come as name/value lines.
        func value(after name: String) -> String? { lines.firstIndex(of: name).flatMap { lines.indices.contains($0 + 1) ? lines[$0 + 1] : nil } }
        #expect(value(after: "pool") == "web")
        #expect(value(after: "queue") == "default")
        #expect(value(after: "timestamp")?.hasSuffix("Z") == true)
        #expect(value(after: "instance") == "rtest")

        let worker = try #require(s.worker("web", 0))
        let key = "poolvisor:worker:rtest:web:0"
        #expect(waitUntil(timeout: .seconds(10)) { (try? redis.cli("HGET", key, "pid")) == String(worker) })
        #expect(try redis.cli("HGET", key, "state") == "Ready")
        #expect(try redis.cli("HGET", key, "restarts") == "0")
        let ttl = try #require(Int(try redis.cli("TTL", key)))
        #expect((1...2).contains(ttl))
        #expect(!p.allOutput.contains("Redis-Events-Secret-99"))

        // A dead host's workers expire: poolvisor killed, its hashes go within a few heartbeats.
        _ = p.kill()
        #expect(waitUntil(timeout: .seconds(10)) { (try? redis.cli("EXISTS", key)) == "0" })
    }

    @Test func aBusyKeyKeepsItsWorkerThroughAScaleDown() throws {
        let redis = try RedisServer.start(password: nil)
        defer { redis.destroy() }
        let s = try scenario(
            redis,
            """
            [pools.work]
            command = ["/bin/sleep", "1000"]
            replicas = 2
            ready_after_seconds = 0.1
            busy_from = "redis-key"
            busy_key = "worker:test:{pid}:busy"
            """)
        _ = try s.start()
        #expect(waitUntil(timeout: .seconds(15)) { (try? s.statusJSON())?.pool("work")?["ready"] as? Int == 2 })
        let idle = try #require(s.worker("work", 0))
        let busy = try #require(s.worker("work", 1))
        _ = try redis.cli("SET", "worker:test:\(busy):busy", "1", "EX", "30")
        #expect(
            waitUntil(timeout: .seconds(10)) {
                let replicas = (try? s.statusJSON())?.pool("work")?["replicas"] as? [[String: Any]] ?? []
                return replicas.first { $0["replica"] as? Int == 1 }?["busy"] as? Bool == true
            })
        // Without the busy key replica 1, the highest, would go: busy, it stays and the idle replica 0 goes.
        #expect(try s.control(["scale", "work", "1"]).status == 0)
        #expect(waitUntil(timeout: .seconds(10)) { !ProcFS.isAlive(idle) })
        #expect(ProcFS.isAlive(busy))
        #expect(s.stop() == 0)
    }
}

@Suite struct RedisEventsCheckTests {
    @Test func redisEventsAndBusyFromAreCheckedWithFileLineAndKey() throws {
        let dir = try TempDir()
        dir.write("app.env", "REDIS_URL=redis://:Check-Secret-55@127.0.0.1:6390/0\n", mode: 0o600)
        let config = dir.write(
            "pools.toml",
            """
            [supervisor]
            env_file = "app.env"
            [supervisor.redis_events]
            redis_url_env = "NOT_SET"
            heartbeat_seconds = 0
            [pools.a]
            command = ["/bin/true"]
            busy_from = "redis-key"
            busy_key = "worker:busy"
            [pools.b]
            command = ["/bin/true"]
            busy_key = "x:{pid}"
            """)
        let run = try Harness.run(["check", "--config", config])
        #expect(run.status == 1)
        for (line, message) in [
            (4, "'supervisor.redis_events.redis_url_env' names $NOT_SET, which the shared environment does not set"),
            (5, "'supervisor.redis_events.heartbeat_seconds' must be between 0.1 and 3600 seconds, not 0"),
            (9, "'pools.a.busy_key' must contain {pid}"),
            (12, "'pools.b.busy_key' needs busy_from = \"redis-key\""),
        ] {
            #expect(run.stderr.contains { $0.hasPrefix("\(config):\(line):") && $0.contains("error: " + message) }, "missing \(line): \(message)\n\(run.stderr)")
        }
        let good = dir.write(
            "good.toml",
            "[supervisor]\nenv_file = \"app.env\"\n[supervisor.redis_events]\nredis_url_env = \"REDIS_URL\"\n[pools.a]\ncommand = [\"/bin/true\"]\nbusy_from = \"redis-key\"\n")
        let ok = try Harness.run(["check", "--config", good])
        #expect(ok.status == 0, "\(ok.allOutput)")
        #expect(ok.stdout.contains("redis events: $REDIS_URL, stream poolvisor:events (MAXLEN ~10000), heartbeats poolvisor:worker:poolvisor:POOL:REPLICA every 10 s"))
        #expect(ok.stdout.contains { $0.hasPrefix("  busy from:   Redis key worker:") && $0.hasSuffix(":{pid}:busy") })
        #expect(!ok.allOutput.contains("Check-Secret-55"))
    }
}
