import Foundation
import Glibc
import Testing

/// `poolvisor export` as a user runs it: the built binary, real files.
@Suite struct ExportCommandTests {
    @Test func writesAFilePerPoolAndWarnsOnStderrWithoutOpeningTheEnvFiles() throws {
        let dir = try TempDir()
        // Unreadable to everyone (mode 000): export never opens it, so this is no error.
        dir.write("app.env", "DATABASE_URL=postgres://app:TopSecret-123@db/app\n", mode: 0o000)
        let config = dir.write(
            "pools.toml",
            """
            [supervisor]
            name = "acme"
            env_file = "app.env"
            [pools.default]
            command = ["/srv/app/worker"]
            replicas = 2
            stop_signal = "SIGINT"
            [pools.chat]
            command = ["/srv/app/worker", "chat"]
            [pools.chat.autoscaling]
            max_replicas = 5
            [pools.chat.autoscaling.keda]
            postgres_connection_env = "DATABASE_URL"
            query = "SELECT 1"
            target_query_value = 5
            """)
        let out = dir.path + "/k8s"
        let run = try Harness.run(["export", "kubernetes", "--config", config, "--namespace", "workers", "--image", "app:1", "--output", out])
        #expect(run.status == 0, "\(run.allOutput)")
        #expect(run.stderr.contains { $0.contains("warning: pool default: stop_signal = \"SIGINT\"") }, "\(run.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        #expect(files == ["acme.yaml", "chat.yaml", "default.yaml"])
        let chat = try String(contentsOfFile: out + "/chat.yaml", encoding: .utf8)
        #expect(chat.contains("kind: ScaledObject"))
        #expect(chat.contains("namespace: workers"))
        #expect(!run.allOutput.contains("TopSecret") && !chat.contains("TopSecret"))

        let nomad = try Harness.run(["export", "nomad", "--config", config])
        #expect(nomad.status == 0, "\(nomad.allOutput)")
        #expect(nomad.stdout.joined(separator: "\n").contains("\"KillSignal\" : \"SIGINT\""))
    }

    @Test func aBrokenFileOrAnUnknownTargetIsAnErrorAndWritesNothing() throws {
        let dir = try TempDir()
        let config = dir.write("pools.toml", "[pools.default]\nreplicas = 2\n")
        let run = try Harness.run(["export", "kubernetes", "--config", config])
        #expect(run.status == 1)
        #expect(run.stdout.isEmpty)
        #expect(run.stderr.contains { $0.contains("pools.toml") && $0.contains("command") }, "\(run.stderr)")
        let unknown = try Harness.run(["export", "swarm", "--config", config])
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains { $0.contains("kubernetes, helm-values or nomad") }, "\(unknown.stderr)")
    }

    @Test func importsTheSeedValuesAndNamesFileAndLineOfABadOne() throws {
        let dir = try TempDir()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let run = try Harness.run([
            "import", "helm-values", root + "/examples/helm/values.yaml", "-f", root + "/examples/helm/values-tenant-acme.yaml", "--env-dir", dir.path, "--release", "noxus",
        ])
        #expect(run.status == 0, "\(run.allOutput)")
        let toml = run.stdout.joined(separator: "\n")
        #expect(toml.contains("[pools.chat.autoscaling]"))
        #expect(toml.contains("name = \"noxus\""))
        let bad = dir.write("bad.yaml", "worker:\n  pools:\n    chat:\n      replicaCount: -1\n")
        let refused = try Harness.run(["import", "helm-values", bad, "--command", "/bin/sleep 1000"])
        #expect(refused.status == 1)
        #expect(refused.stdout.isEmpty)
        #expect(refused.stderr.contains { $0.contains("bad.yaml:4") && $0.contains("worker.pools.chat.replicaCount") }, "\(refused.stderr)")
    }
}
