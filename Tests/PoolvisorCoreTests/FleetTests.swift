import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

/// `[supervisor.fleet]` in the core: the split of a fleet-wide count, the autoscaler working on this
/// host's share, the members read back from the store, and a store that fails or goes stale. Fake clock.
@Suite struct FleetTests {
    func at(_ s: Double) -> Instant { Instant(nanoseconds: UInt64((1000 + s) * 1e9)) }
    func queue(_ value: Double, activation: Double = 0) -> [TriggerReading] {
        [.queue(name: "queue chat", value: value, target: 5, activation: activation)]
    }
    func shares(_ desired: Int, over count: Int) -> [Int] { (0..<count).map { FleetShare(index: $0, count: count).of(desired) } }

    @Test func theSplitIsEvenWithTheFirstMembersTakingTheRest() {
        #expect(shares(6, over: 3) == [2, 2, 2])
        #expect(shares(7, over: 3) == [3, 2, 2])
        #expect(shares(1, over: 3) == [1, 0, 0])
        #expect(shares(0, over: 3) == [0, 0, 0])
        #expect(shares(5, over: 2) == [3, 2])
        #expect(FleetShare.alone.of(7) == 7)
        // Whatever the count, the shares add up to it.
        for n in 1...7 { for d in 0...40 { #expect(shares(d, over: n).reduce(0, +) == d) } }
    }

    @Test func eachHostRunsItsShareOfTheQueuesCountNotTheWholeOfIt() {
        var hosts = (0..<3).map { _ in Autoscaler(spec: AutoscalingSpec(minReplicas: 0, maxReplicas: 10)) }
        // 30 jobs at 5 per replica: 6 for the fleet, 2 on each host (not 6 on each: 18).
        let six = (0..<3).map { hosts[$0].decide(current: 0, readings: queue(30), share: FleetShare(index: $0, count: 3), at: at(0)) }
        #expect(six.map(\.replicas) == [2, 2, 2])
        #expect(six[1].reason == "queue chat: 30 / 5 per replica → 6 for the fleet; this host's share 2 (member 2 of 3)")
        #expect(six[1].fleet?.desired == 6 && six[1].fleet?.share == 2)
        // 31: 7 for the fleet, 3, 2, 2.
        let seven = (0..<3).map { hosts[$0].decide(current: 2, readings: queue(31), share: FleetShare(index: $0, count: 3), at: at(20)) }
        #expect(seven.map(\.replicas) == [3, 2, 2])
        // Alone nothing changes: the whole count, and no fleet in the decision.
        var alone = Autoscaler(spec: AutoscalingSpec(minReplicas: 0, maxReplicas: 10))
        let all = alone.decide(current: 6, readings: queue(30), at: at(0))
        #expect(all.replicas == 6)
        #expect(all.reason == "queue chat: 30 / 5 per replica → 6")
        #expect(all.fleet == nil)
    }

    @Test func aboveActivationTheFleetNeedsOneReplicaNotOnePerHost() {
        var spec = AutoscalingSpec(minReplicas: 0, maxReplicas: 10)
        spec.cooldown = .seconds(60)
        spec.scaleDown.stabilizationWindow = .zero
        var hosts = (0..<3).map { _ in Autoscaler(spec: spec) }
        let one = (0..<3).map { hosts[$0].decide(current: 0, readings: queue(1, activation: 0), share: FleetShare(index: $0, count: 3), at: at(0)) }
        #expect(one.map(\.replicas) == [1, 0, 0])
        // The fleet was busy on 3 replicas; the queue empties: through the cooldown the fleet keeps one,
        // on the first member, not one on every host.
        let busy = (0..<3).map { hosts[$0].decide(current: 1, readings: queue(15), share: FleetShare(index: $0, count: 3), at: at(10)) }
        #expect(busy.map(\.replicas) == [1, 1, 1])
        let idle = (0..<3).map { hosts[$0].decide(current: 1, readings: queue(0), share: FleetShare(index: $0, count: 3), at: at(20)) }
        #expect(idle.map(\.replicas) == [1, 0, 0])
    }

    @Test func minAndMaxAreThisHostsOwnAndCPUIsNotSplit() {
        var small = Autoscaler(spec: AutoscalingSpec(minReplicas: 1, maxReplicas: 2))
        // 60 jobs: 12 for the fleet, 4 for this host, capped at this host's max_replicas 2.
        #expect(small.decide(current: 2, readings: queue(60), share: FleetShare(index: 0, count: 3), at: at(0)).replicas == 2)
        // No jobs: this host's min_replicas 1 holds.
        var floor = Autoscaler(spec: AutoscalingSpec(minReplicas: 1, maxReplicas: 5))
        #expect(floor.decide(current: 1, readings: queue(0), share: FleetShare(index: 2, count: 3), at: at(0)).replicas == 1)
        // CPU is this host's own utilisation: 4 workers at 150 % of a 75 % target want 8 here, whatever the fleet.
        var cpu = Autoscaler(spec: AutoscalingSpec(minReplicas: 1, maxReplicas: 10))
        let d = cpu.decide(current: 4, readings: [.cpu(utilisation: 150, target: 75)], share: FleetShare(index: 2, count: 3), at: at(0))
        #expect(d.replicas == 8)
        #expect(d.fleet?.desired == 0)
    }

    // MARK: In the reconciler

    static let trigger = QueueTrigger(
        source: .redis(endpoint: Secret("redis://:Fleet-Secret@127.0.0.1/0"), queue: RedisQueue(library: .list, name: "jobs")), target: 5, activation: 0,
        connectionVariable: "REDIS_URL")

    func world(member: String = "b", fallback: PoolAutoscaling.Fallback? = nil) -> SimulatedWorld {
        var rules = AutoscalingSpec(minReplicas: 0, maxReplicas: 10)
        rules.scaleDown.stabilizationWindow = .zero
        var a = PoolAutoscaling(kind: .keda, rules: rules, pollingInterval: .seconds(2), initialReplicas: 0)
        a.queue = Self.trigger
        a.fallback = fallback
        var p = pool("work", replicas: 0)
        p.autoscaling = a
        var supervisor = SupervisorSpec()
        var fleet = FleetSpec(name: "workers", store: .redis(Secret("redis://:Fleet-Secret@127.0.0.1/0")), variable: "REDIS_URL", member: member)
        fleet.heartbeat = .seconds(1)
        fleet.ttl = .seconds(3)
        supervisor.fleet = fleet
        return SimulatedWorld([p], supervisor: supervisor)
    }

    func depth(_ value: Double) -> [TriggerSample] {
        [TriggerSample(trigger: Self.trigger.name, reading: .success(.queue(name: Self.trigger.name, value: value, target: 5, activation: 0)))]
    }

    func desired(_ world: SimulatedWorld) -> Int { world.reconciler.pool(named: "work")!.desired }

    @Test func heartbeatsOnTheirTimerAndAMemberThatLeavesHasItsShareTakenOver() {
        let world = world()
        world.send(.start)
        #expect(world.fleetHeartbeats == 1)
        world.advance(by: 1)
        #expect(world.fleetHeartbeats == 2)
        // Members not known yet: the pool holds where it is.
        world.send(.triggersRead(pool: "work", depth(30)))
        #expect(desired(world) == 0)
        #expect(world.reconciler.pool(named: "work")!.autoscale!.reason == "holding at 0: the scaler failed")
        // Three members, this host the second: 2 of 6. The change is an event, and the pool is read at once.
        let reads = world.reads.count
        world.send(.fleetRead(.success(["c", "a", "b"])))
        #expect(world.reconciler.fleet?.members == ["a", "b", "c"])
        #expect(world.events.contains { $0.kind == .fleetChanged && $0.detail == "3 members; joined: a, b, c" })
        #expect(world.reads.count == reads + 1)
        world.send(.triggersRead(pool: "work", depth(30)))
        #expect(desired(world) == 2)
        #expect(world.reconciler.pool(named: "work")!.autoscale!.fleet?.desired == 6)
        // 'a' dies: two left, this host the first of them, 3 of 6.
        world.send(.fleetRead(.success(["b", "c"])))
        #expect(world.events.contains { $0.kind == .fleetChanged && $0.detail == "2 members; left: a" })
        world.send(.triggersRead(pool: "work", depth(30)))
        #expect(desired(world) == 3)
        // Stopping leaves the fleet at once.
        world.send(.stopRequested(.terminate))
        #expect(world.leftFleet)
    }

    @Test func aStoreThatFailsOrGoesStaleHoldsThePoolThenFallsBack() {
        let world = world(fallback: .init(failureThreshold: 3, replicas: 1))
        world.send(.start)
        world.send(.fleetRead(.success(["a", "b"])))
        world.send(.triggersRead(pool: "work", depth(30)))
        #expect(desired(world) == 3)
        // The store fails: held at 3 (never the fleet's 6), then after three rounds the fallback.
        world.send(.fleetRead(.failure(ScalerError("cannot connect to Redis at 127.0.0.1:6379: Connection refused"))))
        #expect(world.logText.contains("fleet workers: cannot connect to Redis at 127.0.0.1:6379: Connection refused; autoscaled pools hold"))
        world.send(.triggersRead(pool: "work", depth(30)))
        #expect(desired(world) == 3)
        let status = world.reconciler.pool(named: "work")!.autoscale!
        #expect(status.samples.contains { $0.trigger == "fleet workers" })
        world.send(.triggersRead(pool: "work", depth(30)))
        world.send(.triggersRead(pool: "work", depth(30)))
        #expect(desired(world) == 1)
        #expect(world.reconciler.pool(named: "work")!.autoscale!.reason == "fallback to 1: 3 failed readings in a row (failure_threshold 3)")
        // Back: the share again (a scale-up period later, so the policy lets it up at once).
        world.advance(by: 16)
        world.send(.fleetRead(.success(["a", "b"])))
        world.send(.triggersRead(pool: "work", depth(30)))
        #expect(desired(world) == 3)
        // No answer for longer than the TTL (a store that hangs): stale, held.
        world.now = world.now + .seconds(4)
        world.send(.triggersRead(pool: "work", depth(60)))
        #expect(desired(world) == 3)
        #expect(world.reconciler.fleet!.share(at: world.now) == .failure(ScalerError("the fleet's members were last read 4 s ago (ttl 3 s)")))
        #expect(!world.logText.contains("Fleet-Secret"))
    }

    @Test func statusShowsTheFleetAndThisHostsShareInTheTableAndInJSON() throws {
        let world = world()
        world.send(.start)
        world.send(.fleetRead(.success(["a", "b", "c"])))
        world.send(.triggersRead(pool: "work", depth(30)))
        let report = world.reconciler.statusReport(at: world.now, version: "t", pid: 1)
        #expect(report.fleet == StatusReport.Fleet(name: "workers", member: "b", members: ["a", "b", "c"], error: nil, lastReadAgoSeconds: 0))
        let table = report.table()
        #expect(table.contains("fleet workers: 3 members, this host b (a, b, c)\n  work: this host 2 of 6\n"))
        #expect(table.contains("  autoscaling: keda, 0–10 replicas, every 2 s; last scale 0s ago: 0 → 2; fleet: this host 2 of 6"))
        var bytes: [UInt8] = []
        report.json.serialize(into: &bytes)
        let text = String(decoding: bytes, as: UTF8.self)
        let back = try StatusReport(json: try JSON.parse(text))
        #expect(back.fleet == report.fleet)
        #expect(back.pools[0].autoscaling?.fleetDesired == 6)
        #expect(back.pools[0].autoscaling?.fleetShare == 2)
        #expect(!text.contains("Fleet-Secret"))
        // The store fails: the error, and the fleet as a failed trigger of the pool.
        world.send(.fleetRead(.failure(ScalerError("cannot connect to Redis at 127.0.0.1:6379: Connection refused"))))
        world.send(.triggersRead(pool: "work", depth(30)))
        let failing = world.reconciler.statusReport(at: world.now, version: "t", pid: 1)
        #expect(failing.fleet?.error == "the fleet's store failed: cannot connect to Redis at 127.0.0.1:6379: Connection refused")
        #expect(failing.pools[0].autoscaling?.triggers.contains { $0.name == "fleet workers" && $0.error != nil } == true)
        #expect(failing.table().contains("  ERROR: the fleet's store failed: cannot connect to Redis"))
    }

    @Test func aListWithoutThisHostIsAnError() {
        let world = world(member: "z")
        world.send(.start)
        world.send(.fleetRead(.success(["a", "b"])))
        #expect(world.reconciler.fleet?.error == "this host (z) is not among the fleet's live members")
        world.send(.triggersRead(pool: "work", depth(30)))
        #expect(desired(world) == 0)
    }
}

/// `[supervisor.fleet]` as the pools file writes it: each key, its default, and every error with its
/// line and key.
@Suite struct FleetDecoderTests {
    func decodeFleet(_ lines: [(String, ConfigValue)], env: [(String, ConfigValue)] = [("REDIS_URL", .string("redis://:Fleet-Secret@10.0.0.5:6379/2"))]) -> (
        PoolsFileDecoder.Result, String
    ) {
        var text = "[supervisor]\nname = \"acme\"\n[supervisor.fleet]\n"
        for (k, v) in lines {
            switch v {
            case .string(let s): text += "\(k) = \"\(s)\"\n"
            case .integer(let n): text += "\(k) = \(n)\n"
            case .float(let f): text += "\(k) = \(f)\n"
            default: text += "\(k) = ?\n"
            }
        }
        text += "[env]\n" + env.map { "\($0.0) = \"x\"\n" }.joined() + "[pools.a]\ncommand = [\"/bin/true\"]\n"
        let root = table([
            "supervisor": table(["name": .string("acme"), "fleet": .table(ConfigTable(lines))]),
            "env": .table(ConfigTable(env)),
            "pools": table(["a": table(["command": strings("/bin/true")])]),
        ]).asTable
        var host = FakeHost()
        host.executables.insert("/bin/true")
        return (decode(text, root, host: host), text)
    }

    func errors(_ r: PoolsFileDecoder.Result) -> [String] { r.diagnostics.errors.map { "\($0.location.line): \($0.message)" } }

    @Test func defaultsAreTheHostAndInstanceFiveAndFifteenSeconds() throws {
        let (r, _) = decodeFleet([("redis_url_env", .string("REDIS_URL")), ("name", .string("workers"))])
        let fleet = try #require(r.file?.supervisor.fleet, "\(r.diagnostics)")
        #expect(fleet.name == "workers")
        #expect(fleet.member == "testhost-acme")
        #expect(fleet.heartbeat == .seconds(5))
        #expect(fleet.ttl == .seconds(15))
        #expect(fleet.key == "poolvisor:fleet:workers")
        #expect(fleet.store == .redis(Secret("redis://:Fleet-Secret@10.0.0.5:6379/2")))
        #expect(!"\(fleet)".contains("Fleet-Secret"))
    }

    @Test func everyKeyIsRead() throws {
        let (r, _) = decodeFleet([
            ("redis_url_env", .string("REDIS_URL")), ("name", .string("workers")), ("member", .string("{hostname}/{instance}/blue")),
            ("heartbeat_seconds", .float(0.5)), ("ttl_seconds", .integer(2)),
        ])
        let fleet = try #require(r.file?.supervisor.fleet, "\(r.diagnostics)")
        #expect(fleet.member == "testhost/acme/blue")
        #expect(fleet.heartbeat == .milliseconds(500))
        #expect(fleet.ttl == .seconds(2))
    }

    @Test func errorsNameTheLineAndTheKey() {
        let (missing, _) = decodeFleet([("heartbeat_seconds", .integer(5)), ("ttl_seconds", .integer(5))])
        #expect(
            errors(missing) == [
                "3: [supervisor.fleet] needs 'redis_url_env' or 'postgres_connection_env' (the name of the variable holding the Redis URL or the PostgreSQL connection string the hosts meet in)",
                "3: [supervisor.fleet] needs 'name' (the fleet's name: the hosts running the same pools against one queue share it)",
                "5: 'supervisor.fleet.ttl_seconds' (5 s) must be longer than 'supervisor.fleet.heartbeat_seconds' (5 s): a live host would drop out between heartbeats",
            ])
        let (bad, _) = decodeFleet([
            ("redis_url_env", .string("NOT_SET")), ("name", .string("Workers!")), ("member", .string("two words")), ("heartbeat_seconds", .integer(0)),
            ("ttl_seconds", .integer(20)), ("heartbeat", .integer(1)),
        ])
        #expect(
            errors(bad) == [
                "4: 'supervisor.fleet.redis_url_env' names $NOT_SET, which the shared environment does not set (set it in [supervisor] env_file or [env])",
                "5: 'supervisor.fleet.name' must be 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter or digit, not 'Workers!'",
                "6: 'supervisor.fleet.member' must be at most 200 bytes with no spaces or control characters",
                "7: 'supervisor.fleet.heartbeat_seconds' must be between 0.1 and 3600 seconds, not 0",
                "9: unknown key 'heartbeat' in [supervisor.fleet]",
            ])
        let (postgres, _) = decodeFleet(
            [("postgres_connection_env", .string("DATABASE_URL")), ("name", .string("workers"))],
            env: [("DATABASE_URL", .string("postgresql://app:Fleet-Secret@db/app"))])
        #expect(errors(postgres).isEmpty)
        #expect(postgres.file?.supervisor.fleet?.store == .postgres(Secret("postgresql://app:Fleet-Secret@db/app")))
        #expect(postgres.file?.supervisor.fleet?.variable == "DATABASE_URL")
        let (both, _) = decodeFleet([("redis_url_env", .string("REDIS_URL")), ("postgres_connection_env", .string("DATABASE_URL")), ("name", .string("w"))])
        #expect(errors(both) == ["5: [supervisor.fleet] takes one store: 'redis_url_env' or 'postgres_connection_env', not both"])
        let (url, _) = decodeFleet([("redis_url_env", .string("REDIS_URL")), ("name", .string("w"))], env: [("REDIS_URL", .string("http://:Fleet-Secret@x"))])
        #expect(errors(url).count == 1)
        #expect(errors(url).first?.hasPrefix("4: the Redis URL in $REDIS_URL is not valid") == true)
        #expect(!errors(url).joined().contains("Fleet-Secret"))
    }
}
