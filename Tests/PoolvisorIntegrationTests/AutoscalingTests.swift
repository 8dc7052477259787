import Foundation
import Glibc
import TestServers
import Testing

/// Autoscaling through the real binary, against a real PostgreSQL and a real Redis that each test
/// starts on loopback. Windows and intervals are short; every wait is a condition with a deadline.
@Suite(.serialized) struct AutoscalingTests {
    /// A worker that stays up and does nothing.
    static let idleWorker = shell("exec sleep 1000")

    /// A scenario whose shared env file holds the connection strings.
    func scenario(_ pools: String, postgres: PostgresServer? = nil, redis: RedisServer? = nil, env extra: String = "") throws -> Scenario {
        var env = extra
        if let postgres { env += "DATABASE_URL=\(postgres.url)\n" }
        if let redis { env += "REDIS_URL=\(redis.url)\n" }
        return try Scenario(
            """
            [supervisor]
            env_file = "app.env"
            drain_seconds = 5
            [keda]
            postgres_connection_env = "DATABASE_URL"
            redis_url_env = "REDIS_URL"
            polling_interval = 0.2
            cooldown_period = 1
            \(pools)
            """, files: ["app.env": env])
    }

    func workers(_ s: Scenario, _ pool: String) -> [Int32] {
        s.workers.filter { $0.env["POOLVISOR_POOL"] == pool }.map(\.pid)
    }

    func autoscaling(_ s: Scenario, _ pool: String) -> [String: Any] {
        ((try? s.statusJSON())?.pool(pool)?["autoscaling"] as? [String: Any]) ?? [:]
    }

    func desired(_ s: Scenario, _ pool: String) -> Int? {
        (try? s.statusJSON())?.pool(pool)?["desired"] as? Int
    }

    func trigger(_ s: Scenario, _ pool: String) -> [String: Any] {
        (autoscaling(s, pool)["triggers"] as? [[String: Any]])?.first ?? [:]
    }

    func secretsNeverShown(_ s: Scenario, _ secrets: [String]) throws {
        let status = try s.control(["status"]).stdout.joined(separator: "\n")
        let json = try s.control(["status", "--json"]).stdout.joined(separator: "\n")
        for secret in secrets {
            #expect(!status.contains(secret))
            #expect(!json.contains(secret))
            #expect(!s.supervisor.allOutput.contains(secret))
        }
    }

    @Test func aPostgresQueryScalesUpToTheCeilingCappedAtMaxThenDownAfterTheWindowOneAtATime() throws {
        let pg = try PostgresServer.start()
        defer { pg.destroy() }
        _ = try pg.sql("CREATE TABLE runs (id serial PRIMARY KEY, status text NOT NULL, queue_type text NOT NULL)")
        let s = try scenario(
            """
            [pools.chat]
            command = \(Self.idleWorker)
            worker_subscribe = "all"
            readiness = "started"
            ready_after_seconds = 0
            [pools.chat.autoscaling]
            min_replicas = 1
            max_replicas = 4
            [pools.chat.autoscaling.keda]
            query = "SELECT COUNT(*) FROM runs WHERE status = 'Queued' AND queue_type = 'chat'"
            target_query_value = 5
            [pools.chat.autoscaling.behavior.scale_down]
            stabilization_window_seconds = 2
            policies = [{ type = "Pods", value = 1, period_seconds = 1 }]
            """, postgres: pg)
        try s.start()
        #expect(s.waitForWorkers(1))
        _ = try pg.sql("INSERT INTO runs (status, queue_type) SELECT 'Queued', 'chat' FROM generate_series(1, 12)")
        _ = try pg.sql("INSERT INTO runs (status, queue_type) SELECT 'Queued', 'flow' FROM generate_series(1, 50)")
        // ceil(12 / 5) = 3
        #expect(waitUntil(timeout: .seconds(15)) { workers(s, "chat").count == 3 && desired(s, "chat") == 3 })
        #expect(trigger(s, "chat")["value"] as? Double == 12)
        _ = try pg.sql("INSERT INTO runs (status, queue_type) SELECT 'Queued', 'chat' FROM generate_series(1, 30)")
        // ceil(42 / 5) = 9, capped at 4
        #expect(waitUntil(timeout: .seconds(15)) { workers(s, "chat").count == 4 })
        #expect(waitUntil(timeout: .seconds(5)) { (autoscaling(s, "chat")["reason"] as? String)?.contains("capped at max_replicas 4") == true })

        _ = try pg.sql("DELETE FROM runs")
        // A reading of 0 first holds at 4 while the window remembers the 4s…
        #expect(
            waitUntil(timeout: .seconds(10)) {
                let a = autoscaling(s, "chat")
                return trigger(s, "chat")["value"] as? Double == 0 && (a["reason"] as? String)?.hasPrefix("scale-down stabilizing") == true
            })
        #expect(desired(s, "chat") == 4)
        // …then one replica per second: every desired count on the way down is seen.
        var seen: [Int] = []
        #expect(
            waitUntil(timeout: .seconds(20), poll: .milliseconds(50)) {
                if let d = desired(s, "chat"), seen.last != d { seen.append(d) }
                return seen.last == 1
            })
        #expect(seen == [4, 3, 2, 1])
        #expect(s.waitForWorkers(1))
        try secretsNeverShown(s, [pg.password, pg.url])
        #expect(s.stop() == 0)
    }

    @Test func scaleToZeroAfterTheCooldownAndBackFromZero() throws {
        let pg = try PostgresServer.start()
        defer { pg.destroy() }
        _ = try pg.sql("CREATE TABLE runs (id serial PRIMARY KEY, status text NOT NULL)")
        let s = try scenario(
            """
            [pools.flow]
            command = \(Self.idleWorker)
            worker_subscribe = "all"
            ready_after_seconds = 0
            replicas = 1
            [pools.flow.autoscaling]
            min_replicas = 0
            max_replicas = 3
            [pools.flow.autoscaling.keda]
            query = "SELECT COUNT(*) FROM runs WHERE status = 'Queued'"
            target_query_value = 2
            activation_target_query_value = 1
            [pools.flow.autoscaling.behavior.scale_down]
            stabilization_window_seconds = 0
            """, postgres: pg)
        try s.start()
        // It starts at its `replicas`, then goes to zero once the cooldown (1 s) has passed idle.
        #expect(waitUntil(timeout: .seconds(15)) { desired(s, "flow") == 0 && workers(s, "flow").isEmpty })
        #expect(try s.control(["status"]).status == 0)  // zero of zero is healthy
        _ = try pg.sql("INSERT INTO runs (status) VALUES ('Queued')")
        // 1 is not above the activation value 1: still zero.
        #expect(waitUntil(timeout: .seconds(10)) { trigger(s, "flow")["value"] as? Double == 1 })
        #expect(desired(s, "flow") == 0)
        _ = try pg.sql("INSERT INTO runs (status) SELECT 'Queued' FROM generate_series(1, 4)")
        #expect(waitUntil(timeout: .seconds(15)) { workers(s, "flow").count == 3 })  // ceil(5 / 2)
        #expect(s.stop() == 0)
    }

    @Test func aRedisListTriggeredPoolFollowsTheList() throws {
        let redis = try RedisServer.start(password: "Redis-Secret-4711")
        defer { redis.destroy() }
        let s = try scenario(
            """
            [pools.kb]
            command = \(Self.idleWorker)
            worker_subscribe = "all"
            ready_after_seconds = 0
            [pools.kb.autoscaling]
            min_replicas = 1
            max_replicas = 5
            [pools.kb.autoscaling.keda]
            redis_list = "jobs:kb"
            list_length = 2
            [pools.kb.autoscaling.behavior.scale_down]
            stabilization_window_seconds = 0
            """, redis: redis)
        try s.start()
        #expect(s.waitForWorkers(1))
        _ = try redis.cli("RPUSH", "jobs:kb", "a", "b", "c", "d", "e")
        #expect(waitUntil(timeout: .seconds(15)) { workers(s, "kb").count == 3 })
        _ = try redis.cli("LTRIM", "jobs:kb", "0", "1")
        #expect(waitUntil(timeout: .seconds(15)) { desired(s, "kb") == 1 })
        #expect(s.waitForWorkers(1))
        // A key of the wrong type is an error in status, not a silent zero.
        _ = try redis.cli("DEL", "jobs:kb")
        _ = try redis.cli("SET", "jobs:kb", "oops")
        #expect(waitUntil(timeout: .seconds(10)) { (trigger(s, "kb")["error"] as? String)?.contains("key 'jobs:kb' is not a list") == true })
        try secretsNeverShown(s, [redis.password!, redis.url])
        #expect(s.stop() == 0)
    }

    @Test func scaleInDrainsTheIdleWorkerWhileBothBusyOnesKeepRunning() throws {
        let redis = try RedisServer.start()
        defer { redis.destroy() }
        let s = try scenario(
            """
            [pools.chat]
            command = \(python(pythonNotify + """
                notify('READY=1')
                notify('BUSY=0' if os.environ['POOLVISOR_REPLICA'] == '0' else 'BUSY=1')
                time.sleep(1000)
                """))
            worker_subscribe = "all"
            readiness = "notify"
            [pools.chat.autoscaling]
            min_replicas = 1
            max_replicas = 3
            [pools.chat.autoscaling.keda]
            redis_list = "jobs"
            list_length = 1
            [pools.chat.autoscaling.behavior.scale_down]
            stabilization_window_seconds = 0
            """, redis: redis)
        try s.start()
        _ = try redis.cli("RPUSH", "jobs", "1", "2", "3")
        #expect(s.waitForWorkers(3))
        #expect(
            waitUntil(timeout: .seconds(15)) {
                let rows = (try? s.statusJSON().pool("chat")?["replicas"] as? [[String: Any]]) ?? []
                return rows.count == 3 && rows.allSatisfy { $0["busy"] is Bool }
            })
        let idle = try #require(s.worker("chat", 0))
        let busy = [try #require(s.worker("chat", 1)), try #require(s.worker("chat", 2))]
        _ = try redis.cli("LPOP", "jobs")
        #expect(waitUntil(timeout: .seconds(10)) { !ProcFS.isAlive(idle) || ProcFS.state(of: idle) == "Z" })
        #expect(s.waitForWorkers(2))
        #expect(busy.allSatisfy { ProcFS.isAlive($0) })
        #expect(s.supervisor.waitForLine(containing: "worker chat/0 (pid \(idle), scale-down) stopped"))
        #expect(s.stop() == 0)
    }

    @Test func postgresStoppedMidRunHoldsThePoolAndStatusSaysWhyThenItRecovers() throws {
        let pg = try PostgresServer.start()
        defer { pg.destroy() }
        _ = try pg.sql("CREATE TABLE runs (id serial PRIMARY KEY, status text NOT NULL)")
        _ = try pg.sql("INSERT INTO runs (status) SELECT 'Queued' FROM generate_series(1, 10)")
        let s = try scenario(
            """
            [pools.chat]
            command = \(Self.idleWorker)
            worker_subscribe = "all"
            ready_after_seconds = 0
            [pools.chat.autoscaling]
            min_replicas = 0
            max_replicas = 5
            [pools.chat.autoscaling.keda]
            query = "SELECT COUNT(*) FROM runs WHERE status = 'Queued'"
            target_query_value = 5
            [pools.chat.autoscaling.behavior.scale_down]
            stabilization_window_seconds = 0
            """, postgres: pg)
        try s.start()
        #expect(waitUntil(timeout: .seconds(15)) { workers(s, "chat").count == 2 })
        let before = Set(workers(s, "chat"))
        pg.stop()
        #expect(waitUntil(timeout: .seconds(15)) { trigger(s, "chat")["error"] is String })
        let status = try s.control(["status"])
        #expect(status.stdout.contains { $0.contains("ERROR:") })
        #expect(waitUntil(timeout: .seconds(10)) { (autoscaling(s, "chat")["failures"] as? Int ?? 0) >= 8 })
        #expect(desired(s, "chat") == 2)
        #expect(Set(workers(s, "chat")) == before)
        #expect(s.supervisor.waitForLine(containing: "pool chat: scaler failed: postgres query:"))
        // Logged when the error changes, not at every failed reading (the reconnect countdown aside).
        #expect(s.supervisor.allOutput.components(separatedBy: "pool chat: scaler failed").count - 1 <= 3)

        try pg.restart()
        _ = try pg.sql("INSERT INTO runs (status) SELECT 'Queued' FROM generate_series(1, 10)")
        #expect(waitUntil(timeout: .seconds(40)) { workers(s, "chat").count == 4 })
        #expect(trigger(s, "chat")["error"] == nil || trigger(s, "chat")["error"] is NSNull)
        #expect(s.supervisor.waitForLine(containing: "pool chat: scaler recovered after"))
        try secretsNeverShown(s, [pg.password, pg.url])
        #expect(s.stop() == 0)
    }

    /// Neither libpq nor hiredis bounds a host name lookup by the call's timeout. A resolver that never
    /// answers must not freeze the pool: once the reading is overdue every poll counts as a failure, so
    /// status says why and the pool falls back, while the stuck lookup goes on in the scaler's thread.
    @Test(.enabled(if: AutoscalingTests.canBindMountResolvConf, "needs root and unshare --mount"))
    func aHostNameLookupThatNeverAnswersIsAnErrorAndTheFallbackApplies() throws {
        // A name server that takes queries and never answers, on a loopback address of its own.
        let nameServer = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(nameServer) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(53).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.77")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(nameServer, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0, "bind 127.0.0.77:53: \(String(cString: strerror(errno)))")
        let s = try scenario(
            """
            [pools.kb]
            command = \(Self.idleWorker)
            worker_subscribe = "all"
            ready_after_seconds = 0
            [pools.kb.autoscaling]
            min_replicas = 1
            max_replicas = 5
            fallback_replicas = 3
            failure_threshold = 2
            [pools.kb.autoscaling.keda]
            redis_list = "jobs:kb"
            list_length = 2
            """, env: "REDIS_URL=redis://redis.poolvisor.test:6379/0\n")
        let resolvConf = s.dir.write("resolv.conf", "nameserver 127.0.0.77\noptions timeout:30 attempts:5\n")
        // poolvisor alone sees this resolv.conf, in a mount namespace of its own.
        try s.start(through: ["/usr/bin/unshare", "--mount", "/bin/sh", "-c", "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"", resolvConf])
        #expect(s.waitForWorkers(1))
        #expect(
            waitUntil(timeout: .seconds(30)) { (trigger(s, "kb")["error"] as? String)?.contains("no reading for") == true },
            "\(trigger(s, "kb"))")
        #expect(waitUntil(timeout: .seconds(10)) { workers(s, "kb").count == 3 })
        #expect(s.supervisor.waitForLine(containing: "pool kb: scaler failed: "))
        #expect(s.stop() == 0)
    }

    static let canBindMountResolvConf: Bool =
        getuid() == 0
        && ((try? runCommand(["/usr/bin/unshare", "--mount", "/bin/true"]))?.succeeded ?? false)

    @Test func anOpenCronWindowRaisesTheFloor() throws {
        let s = try scenario(
            """
            [pools.flow]
            command = \(Self.idleWorker)
            worker_subscribe = "all"
            ready_after_seconds = 0
            [pools.flow.autoscaling]
            min_replicas = 0
            max_replicas = 5
            [pools.flow.autoscaling.cron_trigger]
            timezone = "UTC"
            start = "* * * * *"
            end = "0 0 1 1 *"
            desired_replicas = 2
            [pools.kb]
            command = \(Self.idleWorker)
            worker_subscribe = "all"
            ready_after_seconds = 0
            [pools.kb.autoscaling]
            min_replicas = 0
            max_replicas = 5
            [pools.kb.autoscaling.cron_trigger]
            timezone = "Europe/Berlin"
            start = "0 0 1 1 *"
            end = "* * * * *"
            desired_replicas = 3
            """)
        try s.start()
        // Open (started this minute, ends on 1 January): 2 workers. Closed: none.
        #expect(waitUntil(timeout: .seconds(15)) { workers(s, "flow").count == 2 })
        #expect(trigger(s, "flow")["open"] as? Bool == true)
        #expect(trigger(s, "kb")["open"] as? Bool == false)
        #expect(workers(s, "kb").isEmpty)
        #expect(s.stop() == 0)
    }

    @Test func aCPUBoundPoolScalesUpUnderHPA() throws {
        let s = try Scenario(
            """
            [pools.kb]
            command = \(python("while True: pass"))
            worker_subscribe = "all"
            ready_after_seconds = 0
            [pools.kb.resources]
            cpu_request = "100m"
            [pools.kb.autoscaling]
            type = "hpa"
            min_replicas = 1
            max_replicas = 3
            polling_interval = 0.5
            target_cpu_utilization_percentage = 50
            """)
        try s.start()
        // One core busy against a 0.1-core request is 1000 %: ceil(1 × 1000 / 50) = 20, capped at 3.
        #expect(waitUntil(timeout: .seconds(20)) { workers(s, "kb").count == 3 })
        let a = autoscaling(s, "kb")
        #expect(a["type"] as? String == "hpa")
        #expect((trigger(s, "kb")["value"] as? Double ?? 0) > 100)
        #expect(s.stop() == 0)
    }

    @Test func manualScaleOfAnAutoscaledPoolIsRefused() throws {
        let s = try scenario(
            """
            [pools.flow]
            command = \(Self.idleWorker)
            worker_subscribe = "all"
            [pools.flow.autoscaling]
            min_replicas = 1
            max_replicas = 2
            [pools.flow.autoscaling.cron_trigger]
            start = "0 0 1 1 *"
            end = "* * * * *"
            desired_replicas = 2
            """)
        try s.start()
        #expect(s.waitForWorkers(1))
        let scale = try s.control(["scale", "flow", "2"])
        #expect(scale.status == 1)
        #expect(scale.allOutput.contains("pool flow is autoscaled (keda: cron 0 0 1 1 * → * * * * * UTC; 1–2 replicas, now 1): the autoscaler sets its replicas"))
        #expect(s.stop() == 0)
    }
}
