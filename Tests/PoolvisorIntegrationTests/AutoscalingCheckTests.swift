import Foundation
import Glibc
import Testing

/// `poolvisor check` on `[keda]` and `[pools.X.autoscaling]`: the Helm values operators have, summarised
/// with the keys each trigger reads; every mistake with file, line and key; never a connection string.
@Suite struct AutoscalingCheckTests {
    @Test func summarisesTheTriggersAndTheKeysTheyReadButNeverTheConnectionStrings() throws {
        let dir = try TempDir()
        dir.write("app.env", "DATABASE_URL=postgresql://app:Pg-Secret-1@db/app\nREDIS_URL=redis://:Redis-Secret-2@cache:6379/0\n", mode: 0o600)
        let config = dir.write(
            "pools.toml",
            """
            [supervisor]
            env_file = "app.env"
            [keda]
            postgres_connection_env = "DATABASE_URL"
            redis_url_env = "REDIS_URL"
            polling_interval = 15
            query = "SELECT COALESCE(COUNT(*), 0) FROM runs WHERE status IN ('Queued','Running')"
            target_query_value = 10
            [keda.cron_trigger]
            enabled = true
            timezone = "UTC"
            start = "0 9 * * *"
            end = "0 20 * * *"
            desired_replicas = 1

            [pools.chat]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "chat"
            [pools.chat.autoscaling]
            enabled = true
            type = "keda"
            min_replicas = 0
            max_replicas = 5
            [pools.chat.autoscaling.keda]
            query = "SELECT COUNT(*) FROM runs WHERE status = 'Queued' AND queue_type = 'chat'"
            target_query_value = 5
            activation_target_query_value = 0
            [pools.chat.autoscaling.behavior.scale_down]
            stabilization_window_seconds = 300
            policies = [{ type = "Percent", value = 10, period_seconds = 60 }]

            [pools.flow]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "flow"
            [pools.flow.autoscaling]
            max_replicas = 8
            [pools.flow.autoscaling.keda]
            queue_library = "bullmq"
            queue_name = "system"
            list_length = 5
            count = "ready+delayed"

            [pools.kb]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "kb"
            [pools.kb.resources]
            cpu_request = "500m"
            [pools.kb.autoscaling]
            type = "hpa"
            min_replicas = 1
            max_replicas = 5
            target_cpu_utilization_percentage = 75
            """)
        let run = try Harness.run(["check", "--config", config])
        #expect(run.status == 0, "\(run.allOutput)")
        let out = run.allOutput
        #expect(out.contains("\(config): OK, instance 'poolvisor', 3 enabled pools, 1 worker at start"))
        #expect(out.contains("  replicas:    autoscaled, 0–5, starting at 0"))
        #expect(out.contains("    scale up:  window none, 100% per 15 s or 4 pods per 15 s"))
        #expect(out.contains("    trigger:   PostgreSQL ($DATABASE_URL): SELECT COUNT(*) FROM runs WHERE status = 'Queued' AND queue_type = 'chat'"))
        #expect(out.contains("    trigger:   cron 0 9 * * * → 0 20 * * * (UTC): at least 1 replica"))
        #expect(out.contains("    scale down: window 5 min, 10% per 60 s"))
        #expect(out.contains("    trigger:   Redis ($REDIS_URL), bullmq queue 'system', counting ready+delayed"))
        #expect(out.contains("               reads bull:system:wait (list, waiting jobs)"))
        #expect(out.contains("               reads bull:system:delayed (sorted set, delayed jobs)"))
        #expect(out.contains("    trigger:   CPU, target 75% of cpu_request"))
        for secret in ["Pg-Secret-1", "Redis-Secret-2", "db/app", "cache:6379"] { #expect(!out.contains(secret)) }
    }

    @Test func reportsEveryMistakeWithFileLineAndKeyAndNoValue() throws {
        let dir = try TempDir()
        dir.write("app.env", "DATABASE_URL=postgresql://app:Pg-Secret-1@db/app\n", mode: 0o600)
        let config = dir.write(
            "pools.toml",
            """
            [supervisor]
            env_file = "app.env"
            [pools.chat]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "all"
            [pools.chat.autoscaling]
            min_replicas = 0
            [pools.chat.autoscaling.keda]
            query = "SELECT 1"
            target_query_value = 5
            postgres_connection_env = "PG_URL"
            [pools.kb]
            command = ["/bin/sleep", "1000"]
            [pools.kb.autoscaling]
            type = "hpa"
            max_replicas = 3
            target_cpu_utilization_percentage = 75
            [pools.flow]
            command = ["/bin/sleep", "1000"]
            [pools.flow.autoscaling]
            max_replicas = 3
            [pools.flow.autoscaling.keda]
            queue_library = "sidekiq"
            queue_name = "x"
            list_length = 5
            [pools.flow.autoscaling.cron_trigger]
            timezone = "Mars/Olympus"
            start = "0 25 * * *"
            end = "0 20 * * *"
            desired_replicas = 1
            [pools.flow.autoscaling.behavior.scale_up]
            policies = [{ type = "Pod", value = 4, period_seconds = 15 }]
            """)
        let run = try Harness.run(["check", "--config", config])
        #expect(run.status == 1)
        let err = run.stderr
        #expect(err.contains("\(config):6:1: error: [pools.chat.autoscaling] needs 'max_replicas' (the most workers the autoscaler may run)"))
        #expect(
            err.contains(
                "\(config):11:1: error: 'pools.chat.autoscaling.keda.postgres_connection_env' names $PG_URL, which this pool's environment does not set (set it in an env_file, [env] or [pools.chat.env])"
            ))
        #expect(err.contains { $0.hasPrefix("\(config):15:1: error: type = \"hpa\" scales on CPU as a percentage of the request: set cpu_request in [pools.kb.resources]") })
        #expect(
            err.contains {
                $0.hasPrefix(
                    "\(config):23:1: error: 'pools.flow.autoscaling.keda.queue_library' must be one of 'arq', 'dramatiq', 'taskiq', 'bullmq', 'celery', 'rq', 'list', not 'sidekiq'"
                )
            })
        #expect(err.contains { $0.hasPrefix("\(config):27:1: error: 'pools.flow.autoscaling.cron_trigger.timezone': unknown time zone 'Mars/Olympus'") })
        #expect(err.contains("\(config):28:1: error: 'pools.flow.autoscaling.cron_trigger.start' is not a cron expression: the hour field '25' is out of range 0–23"))
        #expect(
            err.contains { $0.hasPrefix("\(config):32:") && $0.contains("'pools.flow.autoscaling.behavior.scale_up.policies.1.type' must be one of 'Pods', 'Percent', not 'Pod'") })
        #expect(!run.allOutput.contains("Pg-Secret-1"))
    }
}

/// `stop_signal` through the real binary: a worker that only stops cleanly on SIGINT.
@Suite struct StopSignalIntegrationTests {
    @Test func aPoolsStopSignalReachesItsWorkers() throws {
        let s = try Scenario(
            """
            [pools.celery]
            command = \(shell("trap 'echo stopping on INT; exit 0' INT; trap 'echo wrong signal TERM; exit 3' TERM; echo traps set; while true; do sleep 0.05; done"))
            worker_subscribe = "all"
            stop_signal = "SIGINT"
            drain_seconds = 10
            """)
        try s.start()
        #expect(s.waitForWorkers(1))
        // A signal that lands before the shell has set its traps would kill it outright.
        #expect(s.supervisor.waitForLine(containing: "traps set"))
        #expect(s.stop() == 0)
        #expect(s.supervisor.allOutput.contains("stopping on INT"))
        #expect(!s.supervisor.allOutput.contains("wrong signal"))
        #expect(s.supervisor.allOutput.contains("worker celery/0") && s.supervisor.allOutput.contains("stopped: exit code 0"))
    }

    @Test func anUnsupportedStopSignalIsAnError() throws {
        let dir = try TempDir()
        let config = dir.write(
            "pools.toml",
            """
            [pools.a]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "all"
            stop_signal = "SIGKILL"
            """)
        let run = try Harness.run(["check", "--config", config])
        #expect(run.status == 1)
        #expect(
            run.stderr.contains(
                "\(config):4:1: error: 'pools.a.stop_signal' must be one of SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, not 'SIGKILL' (SIGKILL follows by itself after drain_seconds)"
            ))
    }
}
