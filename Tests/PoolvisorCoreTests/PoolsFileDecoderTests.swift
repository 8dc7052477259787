import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

@Suite struct PoolsFileDecoderTests {
    var host: FakeHost {
        var h = FakeHost()
        h.files["/etc/poolvisor/app.env"] = "DATABASE_URL=postgres://app:pw-from-app-env@db/app\nSHARED=from-app-env\nLAYER=app-env\n"
        h.files["/etc/poolvisor/pools/default.env"] = "LAYER=pool-env\nPOOL_SECRET=pool-secret-value\n"
        return h
    }

    @Test func layersTheEnvironmentInTheDocumentedOrder() throws {
        let text = """
            [supervisor]
            name = "acme"
            env_file = "app.env"
            [env]
            LAYER = "env-table"
            INLINE_SHARED = "1"
            [pools.default]
            command = ["python3", "-m", "app.worker"]
            replicas = 2
            worker_subscribe_tenants = "tid_a, tid_b"
            env_file = "pools/default.env"
            [pools.default.env]
            LAYER = "pool-table"
            PATH = "/opt/app/bin:/usr/bin"
            WORKER_SUBSCRIBE = "ignored"
            """
        var h = host
        h.executables.insert("/opt/app/bin/python3")
        let root = table([
            "supervisor": table(["name": .string("acme"), "env_file": .string("app.env")]),
            "env": table(["LAYER": .string("env-table"), "INLINE_SHARED": .integer(1)]),
            "pools": table([
                "default": table([
                    "command": strings("python3", "-m", "app.worker"), "replicas": .integer(2),
                    "worker_subscribe_tenants": .string("tid_a, tid_b"), "env_file": .string("pools/default.env"),
                    "env": table(["LAYER": .string("pool-table"), "PATH": .string("/opt/app/bin:/usr/bin"), "WORKER_SUBSCRIBE": .string("ignored")]),
                ])
            ]),
        ]).asTable
        let result = decode(text, root, host: h)
        let file = try #require(result.file, "\(result.diagnostics)")
        let env = file.pools[0].environment
        #expect(env["LAYER"] == "pool-table")  // [pools.X.env] beats the pool's env file, [env], the shared file
        #expect(env["POOL_SECRET"] == "pool-secret-value")
        #expect(env["INLINE_SHARED"] == "1")
        #expect(env["SHARED"] == "from-app-env")
        #expect(env["HOME"] == "/root")  // inherited base
        #expect(env["LANG"] == "C.UTF-8")
        #expect(env["SECRET_OF_SUPERVISOR"] == nil)  // nothing else is inherited
        #expect(env["PATH"] == "/opt/app/bin:/usr/bin")  // the pool may override the base
        #expect(env["WORKER_SUBSCRIBE"] == "all_but_kb")  // poolvisor's own variables win
        #expect(env["WORKER_SUBSCRIBE_TENANTS"] == "tid_a,tid_b")
        #expect(env["WORKER_SUBSCRIBE_WORKSPACES"] == "")
        #expect(env["POOLVISOR_POOL"] == "default")
        #expect(env["POOLVISOR_INSTANCE"] == "acme")
        #expect(file.pools[0].executable == "/opt/app/bin/python3")  // resolved with the worker's PATH
        #expect(
            result.diagnostics.map(\.description) == [
                "/etc/poolvisor/pools.toml:7:1: warning: no enabled pool with replicas subscribes to 'kb' tasks: kb tasks would never run",
                "/etc/poolvisor/pools.toml:15:1: warning: 'WORKER_SUBSCRIBE' is set by poolvisor for every worker; the value in [pools.default.env] is ignored",
            ])
    }

    @Test func reportsEveryErrorWithLineKeyAndSuggestion() {
        let text = """
            [supervisor]
            drain_seconds = "30"
            [pools.default]
            command = ["/usr/bin/python3"]
            replcias = 2
            worker_subscribe = "chatt"
            [pools.kb]
            replicas = -1
            readiness = "ready"
            [pools.Bad]
            command = "/bin/sh"
            """
        let root = table([
            "supervisor": table(["drain_seconds": .string("30")]),
            "pools": table([
                "default": table(["command": strings("/usr/bin/python3"), "replcias": .integer(2), "worker_subscribe": .string("chatt")]),
                "kb": table(["replicas": .integer(-1), "readiness": .string("ready")]),
                "Bad": table(["command": .string("/bin/sh")]),
            ]),
        ]).asTable
        let result = decode(text, root)
        #expect(result.file == nil)
        #expect(
            result.diagnostics.map(\.description) == [
                "/etc/poolvisor/pools.toml:2:1: error: 'supervisor.drain_seconds' must be a number of seconds, not a string",
                "/etc/poolvisor/pools.toml:5:1: error: unknown key 'replcias' in [pools.default]; did you mean 'replicas'?",
                "/etc/poolvisor/pools.toml:6:1: error: 'pools.default.worker_subscribe' must be one of 'all', 'all_but_kb', 'flow', 'chat', 'kb', not 'chatt'; did you mean 'chat'?",
                "/etc/poolvisor/pools.toml:7:1: error: [pools.kb] has no 'command' (the worker's argv, e.g. command = [\"/usr/bin/python3\", \"-m\", \"app.worker\"])",
                "/etc/poolvisor/pools.toml:8:1: error: 'pools.kb.replicas' must be between 0 and 10000, not -1",
                "/etc/poolvisor/pools.toml:9:1: error: 'pools.kb.readiness' must be one of 'started', 'notify', not 'ready'",
                "/etc/poolvisor/pools.toml:10:1: error: pool name 'Bad' must be 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter or digit",
                "/etc/poolvisor/pools.toml:11:1: error: 'pools.Bad.command' must be an array of strings, not a string",
            ])
    }

    @Test func unreadableEnvFileAndMissingProgramAndDirectoryAreErrors() {
        let text = """
            [pools.default]
            command = ["app-worker"]
            env_file = "/etc/missing.env"
            working_directory = "/srv/nowhere"
            """
        let root = table([
            "pools": table([
                "default": table([
                    "command": strings("app-worker"), "env_file": .string("/etc/missing.env"), "working_directory": .string("/srv/nowhere"),
                ])
            ])
        ]).asTable
        let result = decode(text, root)
        #expect(result.file == nil)
        #expect(
            result.diagnostics.errors.map(\.description) == [
                "/etc/poolvisor/pools.toml:2:1: error: 'pools.default.command': program 'app-worker' was not found in the worker's PATH or is not executable",
                "/etc/poolvisor/pools.toml:3:1: error: 'pools.default.env_file': cannot read env file '/etc/missing.env': No such file or directory",
                "/etc/poolvisor/pools.toml:4:1: error: 'pools.default.working_directory': directory '/srv/nowhere' does not exist",
            ])
    }

    @Test func warnsWhenAQueueTypeHasNoEnabledPool() throws {
        let text = "[pools.chat]\ncommand = [\"/bin/sh\"]\nworker_subscribe = \"chat\"\n[pools.off]\nenabled = false\ncommand = [\"/bin/sh\"]\nworker_subscribe = \"all\"\n"
        let root = table([
            "pools": table([
                "chat": table(["command": strings("/bin/sh"), "worker_subscribe": .string("chat")]),
                "off": table(["enabled": .boolean(false), "command": strings("/bin/sh"), "worker_subscribe": .string("all")]),
            ])
        ]).asTable
        let result = decode(text, root)
        _ = try #require(result.file)
        #expect(
            result.diagnostics.warnings.map(\.message) == [
                "no enabled pool with replicas subscribes to 'flow' tasks: flow tasks would never run",
                "no enabled pool with replicas subscribes to 'kb' tasks: kb tasks would never run",
            ])
    }

    @Test func defaultsAndOverrides() throws {
        let text =
            "[supervisor]\ndrain_seconds = 10\n[pools.kb]\ncommand = [\"/bin/sh\"]\nworker_subscribe = \"all\"\nreadiness = \"notify\"\nwatchdog_seconds = 5\n[pools.kb.backoff]\ninitial_seconds = 0.5\nmax_seconds = 60\n[pools.b]\ncommand = [\"/bin/sh\"]\ndrain_seconds = 2.5\nworker_subscribe = \"all\"\nreplicas = 0\n"
        let root = table([
            "supervisor": table(["drain_seconds": .integer(10)]),
            "pools": table([
                "kb": table([
                    "command": strings("/bin/sh"), "worker_subscribe": .string("all"), "readiness": .string("notify"), "watchdog_seconds": .integer(5),
                    "backoff": table(["initial_seconds": .float(0.5), "max_seconds": .integer(60)]),
                ]),
                "b": table(["command": strings("/bin/sh"), "drain_seconds": .float(2.5), "worker_subscribe": .string("all"), "replicas": .integer(0)]),
            ]),
        ]).asTable
        let file = try #require(decode(text, root).file)
        #expect(file.pools.map(\.name) == ["b", "kb"])
        let (b, kb) = (file.pools[0], file.pools[1])
        #expect(b.drain == .seconds(2.5))
        #expect(b.replicas == 0)
        #expect(b.readiness == .started(after: .seconds(1)))
        #expect(kb.drain == .seconds(10))
        #expect(kb.replicas == 1)
        #expect(kb.readiness == .notify)
        #expect(kb.watchdog == .seconds(5))
        #expect(kb.needsNotifySocket)
        #expect(kb.backoff.initial == .seconds(0.5))
        #expect(kb.backoff.max == .seconds(60))
        #expect(kb.backoff.resetAfter == .seconds(600))
        #expect(file.supervisor.name == "poolvisor")
    }
}
