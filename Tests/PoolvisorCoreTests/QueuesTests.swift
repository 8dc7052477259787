import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

/// `[supervisor] queues`, a pool's `serves`, and Noxus's `worker_subscribe` as one way to fill `serves`.
@Suite struct QueuesTests {
    @Test func aFileWithoutWorkerSubscribeExportsAndWarnsNothing() throws {
        let text = """
            [env]
            WORKER_SUBSCRIBE = "the-apps-own"
            [pools.default]
            command = ["/bin/sleep", "1000"]
            replicas = 2
            """
        let root = table([
            "env": table(["WORKER_SUBSCRIBE": .string("the-apps-own")]),
            "pools": table(["default": table(["command": strings("/bin/sleep", "1000"), "replicas": .integer(2)])]),
        ]).asTable
        let result = decode(text, root)
        let pool = try #require(result.file?.pools.first, "\(result.diagnostics)")
        #expect(result.diagnostics.isEmpty)
        #expect(pool.subscription == nil)
        #expect(pool.servedQueues == nil)
        // Nothing of Noxus's: a variable the file sets itself reaches the worker as any other.
        #expect(pool.environment["WORKER_SUBSCRIBE"] == "the-apps-own")
        #expect(!pool.environment.keys.contains("WORKER_SUBSCRIBE_TENANTS"))
        #expect(!pool.environment.keys.contains("WORKER_SUBSCRIBE_WORKSPACES"))
        #expect(pool.environment["POOLVISOR_POOL"] == "default")

        let bare = decode(
            "[pools.default]\ncommand = [\"/bin/sleep\", \"1000\"]\n",
            table(["pools": table(["default": table(["command": strings("/bin/sleep", "1000")])])]).asTable)
        let plain = try #require(bare.file?.pools.first)
        #expect(bare.diagnostics.isEmpty)
        #expect(plain.environment.keys.filter { $0.hasPrefix("WORKER_SUBSCRIBE") }.isEmpty)
    }

    @Test func oneSubscriptionKeyInAnyPoolGivesEveryPoolTheVariables() throws {
        let text = """
            [pools.a]
            command = ["/bin/sleep", "1000"]
            worker_subscribe_workspaces = "ws_1"
            [pools.b]
            command = ["/bin/sleep", "1000"]
            """
        let root = table([
            "pools": table([
                "a": table(["command": strings("/bin/sleep", "1000"), "worker_subscribe_workspaces": .string("ws_1")]),
                "b": table(["command": strings("/bin/sleep", "1000")]),
            ])
        ]).asTable
        let result = decode(text, root)
        let file = try #require(result.file, "\(result.diagnostics)")
        let b = try #require(file.pool(named: "b"))
        #expect(b.subscription == .allButKb)
        #expect(b.servedQueues == ["flow", "chat"])
        #expect(b.environment["WORKER_SUBSCRIBE"] == "all_but_kb")
        #expect(b.environment["WORKER_SUBSCRIBE_TENANTS"] == "")
        #expect(b.environment["WORKER_SUBSCRIBE_WORKSPACES"] == "")
        #expect(file.pool(named: "a")?.environment["WORKER_SUBSCRIBE_WORKSPACES"] == "ws_1")
        #expect(
            result.diagnostics.map(\.description) == [
                "/etc/poolvisor/pools.toml:1:1: warning: no enabled pool with replicas subscribes to 'kb' tasks: kb tasks would never run"
            ])
    }

    /// queues = default, emails, reports, dbos; `default` serves default, `mail` (disabled) emails,
    /// `reports` is autoscaled from zero, `api` serves nothing (DBOS's API role: it never dequeues).
    @Test func aQueueNoPoolCanServeIsAWarningNamingIt() throws {
        let text = """
            [supervisor]
            queues = ["default", "emails", "reports", "dbos"]
            [pools.default]
            command = ["/bin/sleep", "1000"]
            serves = ["default"]
            [pools.mail]
            enabled = false
            command = ["/bin/sleep", "1000"]
            serves = ["emails"]
            [pools.reports]
            command = ["/bin/sleep", "1000"]
            replicas = 0
            serves = ["reports"]
            [pools.reports.autoscaling]
            min_replicas = 0
            max_replicas = 2
            [pools.reports.autoscaling.cron_trigger]
            start = "0 9 * * *"
            end = "0 18 * * *"
            desired_replicas = 1
            [pools.api]
            command = ["/bin/sleep", "1000"]
            serves = []
            """
        let root = table([
            "supervisor": table(["queues": strings("default", "emails", "reports", "dbos")]),
            "pools": table([
                "default": table(["command": strings("/bin/sleep", "1000"), "serves": strings("default")]),
                "mail": table(["enabled": .boolean(false), "command": strings("/bin/sleep", "1000"), "serves": strings("emails")]),
                "reports": table([
                    "command": strings("/bin/sleep", "1000"), "replicas": .integer(0), "serves": strings("reports"),
                    "autoscaling": table([
                        "min_replicas": .integer(0), "max_replicas": .integer(2),
                        "cron_trigger": table(["start": .string("0 9 * * *"), "end": .string("0 18 * * *"), "desired_replicas": .integer(1)]),
                    ]),
                ]),
                "api": table(["command": strings("/bin/sleep", "1000"), "serves": .array([])]),
            ]),
        ]).asTable
        let result = decode(text, root)
        let file = try #require(result.file, "\(result.diagnostics)")
        #expect(file.supervisor.queues == ["default", "emails", "reports", "dbos"])
        #expect(file.pool(named: "api")?.serves == [])
        #expect(file.pool(named: "default")?.servedQueues == ["default"])
        #expect(file.pools.allSatisfy { $0.subscription == nil && $0.environment[WorkerVariable.subscribe] == nil })
        #expect(
            result.diagnostics.map(\.description) == [
                "/etc/poolvisor/pools.toml:2:1: warning: no enabled pool with replicas serves queue 'emails': its jobs would never run (only disabled pools or pools with replicas = 0 serve it: mail)",
                "/etc/poolvisor/pools.toml:2:1: warning: no enabled pool with replicas serves queue 'dbos': its jobs would never run (a pool's 'serves' lists the queues its workers take)",
            ])
    }

    @Test func listsAreValidatedWithFileLineAndKey() {
        let tooMany = (1...65).map { "q\($0)" }
        let text = """
            [supervisor]
            queues = ["default", "emails", "default", "has space", "-dash"]
            [pools.default]
            command = ["/bin/sleep", "1000"]
            serves = ["default", "emials", "nope"]
            [pools.many]
            command = ["/bin/sleep", "1000"]
            serves = [\(tooMany.map { "\"\($0)\"" }.joined(separator: ", "))]
            [pools.typed]
            command = ["/bin/sleep", "1000"]
            serves = "default"
            """
        let root = table([
            "supervisor": table(["queues": strings("default", "emails", "default", "has space", "-dash")]),
            "pools": table([
                "default": table(["command": strings("/bin/sleep", "1000"), "serves": strings("default", "emials", "nope")]),
                "many": table(["command": strings("/bin/sleep", "1000"), "serves": .array(tooMany.map { .string($0) })]),
                "typed": table(["command": strings("/bin/sleep", "1000"), "serves": .string("default")]),
            ]),
        ]).asTable
        let result = decode(text, root)
        #expect(result.file == nil)
        #expect(
            result.diagnostics.map(\.description) == [
                "/etc/poolvisor/pools.toml:2:1: warning: 'supervisor.queues' lists queue 'default' twice",
                "/etc/poolvisor/pools.toml:2:1: error: 'supervisor.queues': queue name 'has space' must be 1 to 63 letters, digits, '-', '_', '.' or ':', starting with a letter or digit",
                "/etc/poolvisor/pools.toml:2:1: error: 'supervisor.queues': queue name '-dash' must be 1 to 63 letters, digits, '-', '_', '.' or ':', starting with a letter or digit",
                "/etc/poolvisor/pools.toml:5:1: error: 'pools.default.serves' names queue 'emials', which is not in [supervisor] queues; did you mean 'emails'?",
                "/etc/poolvisor/pools.toml:5:1: error: 'pools.default.serves' names queue 'nope', which is not in [supervisor] queues",
                "/etc/poolvisor/pools.toml:8:1: error: 'pools.many.serves' lists 65 queues; at most 64",
                "/etc/poolvisor/pools.toml:11:1: error: 'pools.typed.serves' must be an array of strings, not a string",
            ])

        let empty = decode("[supervisor]\nqueues = []\n", table(["supervisor": table(["queues": .array([])])]).asTable)
        #expect(
            empty.diagnostics.map(\.description) == [
                "/etc/poolvisor/pools.toml:2:1: error: 'supervisor.queues' is empty: list the queues the application has, or leave the key out"
            ])
        let long = String(repeating: "q", count: 64)
        let tooLong = decode("[supervisor]\nqueues = [\"\(long)\"]\n", table(["supervisor": table(["queues": strings(long)])]).asTable)
        #expect(
            tooLong.diagnostics.map(\.message) == [
                "'supervisor.queues': queue name '\(String(repeating: "q", count: 40))…' must be 1 to 63 letters, digits, '-', '_', '.' or ':', starting with a letter or digit"
            ])
    }

    /// Each suggestion compares a name with every listed queue: a file gets 16, however many it misspells.
    @Test func suggestionsForUnknownQueuesAreBoundedPerFile() {
        let misspelt = "abcdefghijklmnopqrst".map { "emails" + String($0) }
        var text = "[supervisor]\nqueues = [\"emails\"]\n"
        var pools: [(key: String, value: ConfigValue)] = []
        for (n, name) in misspelt.enumerated() {
            text += "[pools.p\(n)]\ncommand = [\"/bin/sleep\", \"1000\"]\nserves = [\"\(name)\"]\n"
            pools.append(("p\(n)", table(["command": strings("/bin/sleep", "1000"), "serves": strings(name)])))
        }
        let root = table(["supervisor": table(["queues": strings("emails")]), "pools": .table(ConfigTable(pools))]).asTable
        let messages = decode(text, root).diagnostics.map(\.message)
        #expect(messages.count == 20)
        #expect(messages.filter { $0.hasSuffix("; did you mean 'emails'?") }.count == 16)
        #expect(messages.last == "'pools.p19.serves' names queue 'emailst', which is not in [supervisor] queues")
    }

    @Test func servesWithoutQueuesIsOnlyInformation() throws {
        let text = "[pools.default]\ncommand = [\"/bin/sleep\", \"1000\"]\nserves = [\"arq:queue\", \"high.priority\"]\nreplicas = 0\n"
        let root = table([
            "pools": table([
                "default": table([
                    "command": strings("/bin/sleep", "1000"), "serves": strings("arq:queue", "high.priority"), "replicas": .integer(0),
                ])
            ])
        ]).asTable
        let result = decode(text, root)
        let pool = try #require(result.file?.pools.first, "\(result.diagnostics)")
        #expect(result.diagnostics.isEmpty)
        #expect(pool.serves == ["arq:queue", "high.priority"])
        #expect(pool.servedQueues == ["arq:queue", "high.priority"])
    }

    @Test func workerSubscribeImpliesNoxusQueuesUnlessQueuesAreListed() throws {
        // Without [supervisor] queues, `serves` may only name flow, chat and kb.
        let implied = decode(
            """
            [pools.default]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "all"
            [pools.extra]
            command = ["/bin/sleep", "1000"]
            serves = ["chatt"]
            """,
            table([
                "pools": table([
                    "default": table(["command": strings("/bin/sleep", "1000"), "worker_subscribe": .string("all")]),
                    "extra": table(["command": strings("/bin/sleep", "1000"), "serves": strings("chatt")]),
                ])
            ]).asTable)
        #expect(
            implied.diagnostics.map(\.description) == [
                "/etc/poolvisor/pools.toml:6:1: error: 'pools.extra.serves' names queue 'chatt', which is not one of the queues worker_subscribe implies (flow, chat, kb; to add others, list every queue of the application in [supervisor] queues); did you mean 'chat'?"
            ])

        // With it, a subscription serves its queue types, `serves` the rest, and every listed queue is checked.
        let text = """
            [supervisor]
            queues = ["flow", "chat", "kb", "reports", "exports"]
            [pools.default]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "all_but_kb"
            [pools.kb]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "kb"
            serves = ["kb", "reports"]
            """
        let root = table([
            "supervisor": table(["queues": strings("flow", "chat", "kb", "reports", "exports")]),
            "pools": table([
                "default": table(["command": strings("/bin/sleep", "1000"), "worker_subscribe": .string("all_but_kb")]),
                "kb": table(["command": strings("/bin/sleep", "1000"), "worker_subscribe": .string("kb"), "serves": strings("kb", "reports")]),
            ]),
        ]).asTable
        let result = decode(text, root)
        let file = try #require(result.file, "\(result.diagnostics)")
        #expect(file.pool(named: "kb")?.servedQueues == ["kb", "reports"])
        #expect(file.pool(named: "kb")?.environment["WORKER_SUBSCRIBE"] == "kb")
        #expect(
            result.diagnostics.map(\.description) == [
                "/etc/poolvisor/pools.toml:2:1: warning: no enabled pool with replicas serves queue 'exports': its jobs would never run (a pool's 'serves' lists the queues its workers take)"
            ])
    }

    @Test func withoutASubscriptionTheWorkerSubscribeVariablesAreThePoolsOwn() {
        var old = PoolSpec(name: "default", command: ["/bin/sleep", "1000"])
        old.environment["WORKER_SUBSCRIBE"] = "a"
        var new = old
        new.environment["WORKER_SUBSCRIBE"] = "b"
        #expect(new.workerChanges(from: old) == ["environment (WORKER_SUBSCRIBE)"])

        // With a subscription they are poolvisor's, and a change is named once.
        old.subscription = .all
        new.subscription = .kb
        #expect(new.workerChanges(from: old) == ["subscription"])
        var served = new
        served.serves = ["kb", "reports"]
        #expect(served.workerChanges(from: new).isEmpty)
    }
}
