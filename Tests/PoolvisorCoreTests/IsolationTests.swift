import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

/// user, group, cpus, nice, umask, [pools.X.resources] and env-file permissions.
@Suite struct IsolationTests {
    /// One pool `kb` (worker_subscribe = "all") with `extra` keys, as text and as values.
    func decodeKB(_ extraText: String, _ extra: KeyValuePairs<String, ConfigValue>, resources: ConfigValue? = nil, host: FakeHost = FakeHost()) -> PoolsFileDecoder.Result {
        let text = """
            [pools.kb]
            command = ["/bin/sleep", "1000"]
            worker_subscribe = "all"
            \(extraText)
            """
        var entries: [(key: String, value: ConfigValue)] = [("command", strings("/bin/sleep", "1000")), ("worker_subscribe", .string("all"))]
        entries += extra.map { ($0.key, $0.value) }
        if let resources { entries.append(("resources", resources)) }
        let root = table(["pools": table(["kb": .table(ConfigTable(entries))])]).asTable
        return decode(text, root, host: host)
    }

    @Test func identityPlacementAndResourcesAreRead() throws {
        let result = decodeKB(
            """
            user = "worker"
            group = "adm"
            cpus = "0-3,6"
            nice = 5
            umask = "0027"
            [pools.kb.resources]
            cpu_request = "500m"
            cpu_limit = 2
            memory_request = "1Gi"
            memory_limit = "1.5G"
            pids_limit = 512
            """, ["user": .string("worker"), "group": .string("adm"), "cpus": .string("0-3,6"), "nice": .integer(5), "umask": .string("0027")],
            resources: table([
                "cpu_request": .string("500m"), "cpu_limit": .integer(2), "memory_request": .string("1Gi"),
                "memory_limit": .string("1.5G"), "pids_limit": .integer(512),
            ]))
        let kb = try #require(result.file?.pools.first, "\(result.diagnostics)")
        #expect(kb.identity == WorkerIdentity(user: "worker", uid: 1001, gid: 4, group: "adm", groups: [1001, 4], home: "/home/worker"))
        #expect(kb.environment["HOME"] == "/home/worker")
        #expect(kb.environment["USER"] == "worker")
        #expect(kb.environment["LOGNAME"] == "worker")
        #expect(kb.cpus == [0, 1, 2, 3, 6])
        #expect(kb.nice == 5)
        #expect(kb.umask == 0o027)
        #expect(kb.resources.cpuRequest == 0.5)
        #expect(kb.resources.cpuLimit == 2)
        #expect(kb.resources.memoryRequest == 1 << 30)
        #expect(kb.resources.memoryLimit == 1_500_000_000)
        #expect(kb.resources.pidsLimit == 512)
    }

    @Test func badValuesAreErrorsWithTheirKey() {
        let result = decodeKB(
            """
            user = "nosuchuser"
            cpus = "0-3,99"
            nice = 25
            umask = "0089"
            [pools.kb.resources]
            cpu_limit = "lots"
            memory_request = "2Gi"
            memory_limit = "1Gi"
            """, ["user": .string("nosuchuser"), "cpus": .string("0-3,99"), "nice": .integer(25), "umask": .string("0089")],
            resources: table(["cpu_limit": .string("lots"), "memory_request": .string("2Gi"), "memory_limit": .string("1Gi")]))
        #expect(result.file == nil)
        #expect(
            result.diagnostics.map(\.description) == [
                "/etc/poolvisor/pools.toml:4:1: error: 'pools.kb.user': there is no user 'nosuchuser' on this host",
                "/etc/poolvisor/pools.toml:5:1: error: 'pools.kb.cpus': this host has no CPU 99 (online: 0-7)",
                "/etc/poolvisor/pools.toml:6:1: error: 'pools.kb.nice' must be between -20 and 19, not 25",
                "/etc/poolvisor/pools.toml:7:1: error: 'pools.kb.umask' must be octal digits in a string such as \"0027\" or a TOML octal number such as 0o027, not '0089'",
                "/etc/poolvisor/pools.toml:9:1: error: 'pools.kb.resources.cpu_limit' must be a number of cores such as 2, 0.5 or \"500m\", from 0.001 (\"1m\") to 4096, not 'lots'",
                "/etc/poolvisor/pools.toml:10:1: error: 'pools.kb.resources.memory_request' (2Gi) is more than 'memory_limit' (1Gi)",
            ])
        let groupAlone = decodeKB("group = \"adm\"", ["group": .string("adm")])
        #expect(groupAlone.diagnostics.first?.message == "'pools.kb.group' needs 'user' (the workers' user; its primary group is replaced by this one)")
    }

    @Test func envFilesOthersCanWriteAreRefusedAndOnesOthersCanReadAreWarned() {
        var host = FakeHost()
        host.files["/etc/poolvisor/open.env"] = "API_KEY=Secret-Open-Value\n"
        host.modes["/etc/poolvisor/open.env"] = 0o666
        host.files["/etc/poolvisor/readable.env"] = "API_KEY=Secret-Readable-Value\n"
        host.modes["/etc/poolvisor/readable.env"] = 0o644
        let refused = decodeKB("env_file = \"open.env\"", ["env_file": .string("open.env")], host: host)
        #expect(refused.file == nil)
        #expect(
            refused.diagnostics.map(\.description) == [
                "/etc/poolvisor/pools.toml:4:1: error: env file '/etc/poolvisor/open.env' is writable by every user (mode 666); it holds secrets: chmod 600 (or 640) it"
            ])
        let warned = decodeKB("env_file = \"readable.env\"", ["env_file": .string("readable.env")], host: host)
        #expect(warned.file != nil)
        #expect(
            warned.diagnostics.map(\.description) == [
                "/etc/poolvisor/pools.toml:4:1: warning: env file '/etc/poolvisor/readable.env' is readable by every user (mode 644); it holds secrets: chmod 600 (or 640) it"
            ])
        #expect(!(refused.diagnostics + warned.diagnostics).map(\.description).joined().contains("Secret-"))
    }

    @Test func quantitiesAndCPUListsReadLikeKubernetesAndTheKernel() {
        #expect(Quantity.bytes("16Gi") == 16 << 30)
        #expect(Quantity.bytes("512Mi") == 512 << 20)
        #expect(Quantity.bytes("1G") == 1_000_000_000)
        #expect(Quantity.bytes("123") == 123)
        #expect(Quantity.bytes("12Gb") == nil)
        #expect(Quantity.cores("250m") == 0.25)
        #expect(Quantity.cores("-1") == nil)
        #expect(Quantity.describe(bytes: 16 << 30) == "16Gi")
        #expect(CPUList.parse("0-3, 8") == [0, 1, 2, 3, 8])
        #expect(CPUList.parse("3-1") == nil)
        #expect(CPUList.parse("a") == nil)
        #expect(CPUList.describe([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11")
    }

    @Test func unenforcedLimitsAreSaidOncePerPoolInTheLogAndInStatus() {
        var limited = pool("kb", replicas: 1)
        limited.resources.memoryLimit = 1 << 30
        let world = SimulatedWorld([limited, pool("chat")])
        world.reconciler.limitsUnenforced = "no cgroups here"
        world.send(.start)
        #expect(world.logs.filter { $0.message.contains("NOT enforced") }.count == 1)
        #expect(world.logText.contains("pool kb: memory_limit 1Gi NOT enforced: no cgroups here"))
        world.reload([limited, pool("chat")])
        #expect(world.logs.filter { $0.message.contains("NOT enforced") }.count == 1)  // unchanged: not again
        let report = world.reconciler.statusReport(at: world.now, version: "1", pid: 1)
        #expect(report.pools.first { $0.name == "kb" }?.warnings == ["resources limits NOT enforced: no cgroups here"])
        #expect(report.pools.first { $0.name == "chat" }?.warnings == [])
        #expect(report.table().contains("  WARNING: resources limits NOT enforced: no cgroups here\n"))
    }

    @Test func statusGivesCPUAsAShareOfTheRequestLikeAnHPA() {
        var requested = pool("kb", replicas: 2)
        requested.resources.cpuRequest = 0.5
        let world = SimulatedWorld([requested])
        world.send(.start)
        world.advance(by: 1)
        let report = world.reconciler.statusReport(at: world.now, version: "1", pid: 1) { pid in
            ProcessUsage(cpuSeconds: 1, cpuPercent: pid == 100 ? 40 : 20, rssBytes: 1)
        }
        let kb = report.pools[0]
        #expect(kb.cpuUtilisation == 60)  // (0.4 + 0.2) cores over 2 × 0.5 requested
        #expect(report.json["pools"]?[0]?["cpu_utilization_percent"]?.double == 60)
        #expect(report.table().contains("POOL kb  Available  ready 2/2  running 2  cpu 60% of request\n"))
    }

    @Test func aNewUserOrPlacementRollsThePool() {
        let world = SimulatedWorld([pool("kb", replicas: 2)])
        world.send(.start)
        world.advance(by: 1)
        var changed = pool("kb", replicas: 2)
        changed.identity = WorkerIdentity(user: "nobody", uid: 65534, gid: 65534, groups: [65534], home: "/nonexistent")
        changed.cpus = [1]
        let outcome = world.reload([changed])
        #expect(outcome.lines.contains("pool kb: user, cpus changed: rolling replacement of 2 workers (at most 1 at a time)"))
        #expect(world.spawns.last?.identity?.uid == 65534)
        #expect(world.spawns.last?.cpus == [1])
    }
}
