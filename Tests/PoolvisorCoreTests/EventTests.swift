import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

/// The lifecycle events the core emits, in order, with what a dashboard filters on.
@Suite struct EventTests {
    func kinds(_ world: SimulatedWorld, pool: String? = nil) -> [String] {
        world.events.filter { pool == nil || $0.pool == pool }.map(\.kind.rawValue)
    }

    @Test func aCrashItsRestartAScaleAReloadAndAStop() throws {
        var spec = pool("web", replicas: 1)
        let world = SimulatedWorld([spec])
        world.send(.start)
        world.advance(by: 1)
        #expect(kinds(world) == ["supervisor.starting", "worker.started", "worker.ready", "supervisor.ready"])
        let pid = try #require(world.state("web", 0)?.worker?.pid)
        world.events = []
        world.exit(ReplicaID(pool: "web", index: 0), .exited(2))
        #expect(kinds(world) == ["worker.stopped", "worker.restarting", "worker.started"])
        #expect(world.events[0].pid == pid && world.events[0].replica == 0 && world.events[0].detail == "exit code 2")
        #expect(world.events[1].detail == "now, after exit code 2")

        world.events = []
        world.perform(.scale(pool: "web", replicas: 2))
        #expect(kinds(world) == ["pool.scaled", "worker.started"])
        #expect(world.events[0].detail == "1 → 2: poolvisor scale")

        world.events = []
        spec.replicas = 3
        world.reload([spec])
        #expect(kinds(world).prefix(2) == ["pool.scaled", "reload.applied"])
        world.perform(.reload(PoolsFileReading(file: nil, diagnostics: [])))
        #expect(kinds(world).last == "reload.refused")

        world.events = []
        world.notify(ReplicaID(pool: "web", index: 0), NotifyMessage(parsing: "BUSY=1"))
        world.notify(ReplicaID(pool: "web", index: 0), NotifyMessage(parsing: "BUSY=1"))  // no change, no event
        world.notify(ReplicaID(pool: "web", index: 0), NotifyMessage(parsing: "BUSY=0"))
        #expect(kinds(world) == ["worker.busy", "worker.idle"])

        world.events = []
        world.send(.stopRequested(.terminate))
        #expect(kinds(world).first == "supervisor.stopping")
        #expect(kinds(world).filter { $0 == "worker.draining" }.count == 3)
    }

    @Test func anOOMKillAndADrainDeadlineAreEventsOfTheirOwn() throws {
        let world = SimulatedWorld([pool("hog", replicas: 1, drain: 5)])
        world.send(.start)
        world.advance(by: 1)
        world.events = []
        let pid = try #require(world.state("hog", 0)?.worker?.pid)
        world.alive[pid] = nil
        world.send(.exited(pid: pid, .signaled(.kill, coreDumped: false), oomKilled: true))
        #expect(kinds(world).prefix(2) == ["worker.oom_killed", "worker.stopped"])
        #expect(world.events[1].detail == "OOMKilled")

        world.advance(by: 1)
        world.events = []
        world.perform(.scale(pool: "hog", replicas: 0))
        world.advance(by: 5)
        #expect(kinds(world) == ["pool.scaled", "worker.draining", "worker.killed"])
    }

    @Test func aRolloutStartsProgressesAndEnds() throws {
        var spec = pool("web", replicas: 2)
        let world = SimulatedWorld([spec])
        world.send(.start)
        world.advance(by: 1)
        world.events = []
        spec.command = ["/bin/sleep", "2000"]
        world.reload([spec])
        world.honour(.terminate)
        world.advance(by: 1)
        world.honour(.terminate)
        world.advance(by: 1)
        let rollout = kinds(world).filter { $0.hasPrefix("rollout.") }
        #expect(rollout == ["rollout.started", "rollout.progressed", "rollout.progressed", "rollout.done"])
    }
}

/// `[supervisor.redis_events]` in the core: heartbeats on their timer, busy keys read back.
@Suite struct HeartbeatTests {
    @Test func heartbeatsComeOnTheirTimerAndABusyKeyMakesItsWorkerBusy() throws {
        var supervisor = SupervisorSpec()
        var config = RedisEventsSpec(endpoint: Secret("redis://h"), variable: "REDIS_URL")
        config.heartbeat = .seconds(2)
        supervisor.redisEvents = config
        supervisor.name = "acme"
        var spec = pool("work", replicas: 2)
        spec.busyKey = "worker:host:{pid}:busy"
        let world = SimulatedWorld([spec], supervisor: supervisor)
        world.send(.start)
        world.advance(by: 1)
        #expect(world.heartbeats.isEmpty)  // at the start no worker had been spawned yet
        world.advance(by: 1)
        #expect(world.heartbeats.count == 1)
        let beats = try #require(world.heartbeats.last)
        #expect(beats.map(\.key) == ["poolvisor:worker:acme:work:0", "poolvisor:worker:acme:work:1"])
        let pid = try #require(world.state("work", 1)?.worker?.pid)
        #expect(beats[1].busyKey == "worker:host:\(pid):busy")
        #expect(beats[1].state == "Ready")
        world.send(.busyKeysRead([pid: true]))
        #expect(world.state("work", 1)?.worker?.busy == true)
        #expect(world.events.last?.kind == .workerBusy)
        world.perform(.scale(pool: "work", replicas: 1))
        #expect(world.state("work", 1)?.worker?.pid == pid)  // the idle replica 0 went
        // Nothing else wakes it: the next deadline is the next heartbeat.
        #expect(world.reconciler.nextDeadline == world.now + .seconds(2))
    }

    @Test func withoutRedisEventsThereIsNoHeartbeat() {
        let world = SimulatedWorld([pool("work", replicas: 1)])
        world.send(.start)
        world.advance(by: 60)
        #expect(world.heartbeats.isEmpty)
        #expect(world.reconciler.nextDeadline == nil)
    }
}
