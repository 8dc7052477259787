import Foundation
import Glibc
import Testing

/// `poolvisor check` and what `run` does with a file it cannot use.
@Suite struct CheckTests {
    @Test func summarisesAValidFileWithEnvKeysButNeverValues() throws {
        let dir = try TempDir()
        dir.write("app.env", "DATABASE_URL=postgres://app:TopSecret-123@db/app\nexport REDIS_URL='redis://:AlsoSecret-456@cache/0'\n", mode: 0o600)
        let config = dir.write(
            "pools.toml",
            """
            [supervisor]
            name = "acme"
            env_file = "app.env"
            [env]
            LOG_LEVEL = "Secret-Inline-789"
            [pools.default]
            command = ["python3", "-m", "app.worker"]
            replicas = 2
            worker_subscribe_tenants = ["tid_acme_corp_123"]
            [pools.kb]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "kb"
            readiness = "notify"
            watchdog_seconds = 30
            """)
        let run = try Harness.run(["check", "--config", config])
        #expect(run.status == 0, "\(run.allOutput)")
        let out = run.allOutput
        #expect(out.contains("\(config): OK, instance 'acme', 2 enabled pools, 3 workers at start"))
        #expect(out.contains("pool default"))
        #expect(out.contains("  command:     python3 -m app.worker   (/usr/bin/python3)"))
        #expect(out.contains("  subscribes:  all_but_kb tasks, tenants: tid_acme_corp_123, workspaces: all"))
        #expect(out.contains("  readiness:   notify (READY=1 on NOTIFY_SOCKET), watchdog 30 s"))
        #expect(out.contains("  env keys:    DATABASE_URL, LOG_LEVEL, REDIS_URL"))
        for secret in ["TopSecret-123", "AlsoSecret-456", "Secret-Inline-789"] { #expect(!out.contains(secret)) }
    }

    @Test func aFileWithoutWorkerSubscribeHasNoSubscriptionAndNoQueueWarning() throws {
        let dir = try TempDir()
        let config = dir.write(
            "pools.toml",
            """
            [pools.default]
            command = ["/bin/sleep", "1000"]
            """)
        let run = try Harness.run(["check", "--config", config])
        #expect(run.status == 0, "\(run.allOutput)")
        #expect(run.stderr.isEmpty, "\(run.stderr)")
        #expect(run.stdout.first == "\(config): OK, instance 'poolvisor', 1 enabled pool, 1 worker at start")
        #expect(!run.allOutput.contains("subscribes:"))
        #expect(!run.allOutput.contains("serves:"))
        #expect(!run.allOutput.contains("kb"))
    }

    @Test func queuesAndServesAreCheckedWithFileLineAndKeyAndShown() throws {
        let dir = try TempDir()
        let text = """
            [supervisor]
            queues = ["default", "emails", "reports"]
            [pools.default]
            command = ["/bin/sleep", "1000"]
            serves = ["default", "emails"]
            [pools.reports]
            command = ["/bin/sleep", "1000"]
            replicas = 0
            serves = ["reports"]
            [pools.api]
            command = ["/bin/sleep", "1000"]
            serves = []
            """
        let config = dir.write("pools.toml", text)
        let run = try Harness.run(["check", "--config", config])
        #expect(run.status == 0, "\(run.allOutput)")
        #expect(
            run.stderr == [
                "\(config):2:1: warning: no enabled pool with replicas serves queue 'reports': its jobs would never run (only disabled pools or pools with replicas = 0 serve it: reports)"
            ])
        #expect(run.stdout.contains("queues: default, emails, reports"))
        #expect(run.stdout.contains("  serves:      default, emails"))
        #expect(run.stdout.contains("  serves:      no queue"))
        #expect(!run.allOutput.contains("subscribes:"))

        let typo = dir.write("typo.toml", text.replacingOccurrences(of: "serves = [\"default\", \"emails\"]", with: "serves = [\"default\", \"emials\"]"))
        let bad = try Harness.run(["check", "--config", typo])
        #expect(bad.status == 1)
        #expect(
            bad.stderr == [
                "\(typo):5:1: error: 'pools.default.serves' names queue 'emials', which is not in [supervisor] queues; did you mean 'emails'?",
                "\(typo): 1 error; nothing would start",
            ])
    }

    @Test func reportsEveryErrorWithFileLineColumnAndASuggestion() throws {
        let dir = try TempDir()
        dir.write("bad.env", "GOOD=1\nAPI_KEY=\"TopSecret-unterminated\n", mode: 0o600)
        let config = dir.write(
            "pools.toml",
            """
            [supervisor]
            drain_secs = 30

            [pools.default]
            command = ["/bin/sleep", "1000"]
            replicas = "two"
            worker_subscribe = "al"
            env_file = "bad.env"
            [pools.kb]
            replicas = 1
            """)
        let run = try Harness.run(["check", "--config", config])
        #expect(run.status == 1)
        #expect(
            run.stderr == [
                "\(config):2:1: error: unknown key 'drain_secs' in [supervisor]; did you mean 'drain_seconds'?",
                "\(config):6:1: error: 'pools.default.replicas' must be an integer, not a string",
                "\(config):7:1: error: 'pools.default.worker_subscribe' must be one of 'all', 'all_but_kb', 'flow', 'chat', 'kb', not 'al'; did you mean 'all'?",
                "\(config):9:1: error: [pools.kb] has no 'command' (the worker's argv, e.g. command = [\"/usr/bin/python3\", \"-m\", \"app.worker\"])",
                "\(dir.path)/bad.env:2: error: line 2: the value of API_KEY has no closing double quote",
                "\(config): 5 errors; nothing would start",
            ])
        #expect(!run.allOutput.contains("TopSecret"))
    }

    @Test func syntaxErrorsAndDuplicatePoolsCarryTheParsersPosition() throws {
        let dir = try TempDir()
        let config = dir.write(
            "pools.toml",
            """
            [pools.default]
            command = ["/bin/sleep", "1000"]

            [pools.default]
            replicas = 2
            """)
        let run = try Harness.run(["check", "--config", config])
        #expect(run.status == 1)
        let first = try #require(run.stderr.first)
        #expect(first.hasPrefix("\(config):4:"))
        #expect(first.contains("default"))
        #expect(first.contains("each [pools.NAME] may appear only once"))

        let missing = try Harness.run(["check", "--config", dir.path + "/nope.toml"])
        #expect(missing.status == 1)
        #expect(missing.stderr.first == "\(dir.path)/nope.toml: error: cannot read the pools file: No such file or directory")
    }

    @Test func runRefusesAnInvalidFileAndStartsNothing() throws {
        let dir = try TempDir()
        let config = dir.write(
            "pools.toml",
            """
            [pools.default]
            command = ["/bin/sleep", "1000"]
            replicas = 2
            worker_subscribe = "everything"
            """)
        let run = try Harness.run(["run", "--config", config], environment: ["RUNTIME_DIRECTORY": dir.path + "/run"], timeout: .seconds(10))
        #expect(run.status == 1)
        #expect(run.allOutput.contains("\(config):4:1: error: 'pools.default.worker_subscribe' must be one of"))
        #expect(run.allOutput.contains("is invalid (1 error); nothing started"))
        #expect(!run.allOutput.contains("started, pid"))
    }
}
