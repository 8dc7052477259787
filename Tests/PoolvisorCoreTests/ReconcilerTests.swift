import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

@Suite struct ReconcilerTests {
    @Test func startsEveryReplicaWithItsIndexAndTellsSystemdWhenAllAreReady() throws {
        let world = SimulatedWorld([
            pool("default", replicas: 2), pool("kb", replicas: 1),
            {
                var p = pool("off", replicas: 3); p.enabled = false; return p
            }(),
        ])
        world.send(.start)
        #expect(world.spawns.map(\.replica.description) == ["default/0", "default/1", "kb/0"])
        #expect(world.spawns.map { $0.environment["POOLVISOR_REPLICA"] } == ["0", "1", "0"])
        #expect(world.state("default", 0)?.name == "Starting")
        #expect(!world.systemd.contains(.ready))

        world.advance(by: 0.999)
        #expect(world.state("default", 0)?.name == "Starting")
        world.advance(by: 0.001)
        #expect(world.state("default", 0)?.isReady == true)
        #expect(world.systemd == [.ready])
        #expect(world.reconciler.statusLine == "2 pools, 3/3 workers ready")
        #expect(world.reconciler.phase == .running)
        #expect(world.reconciler.nextDeadline == nil)  // nothing left to wake up for: the ready timeout is moot
    }

    @Test func readyTimeoutSendsReadyAnywayWithTheTruthInStatus() {
        let world = SimulatedWorld([pool("kb", replicas: 2, readiness: .notify)])
        world.send(.start)
        world.notify(ReplicaID(pool: "kb", index: 0), NotifyMessage(parsing: "READY=1\nSTATUS=warming up"))
        #expect(world.state("kb", 0)?.isReady == true)
        #expect(world.state("kb", 0)?.worker?.status == "warming up")
        world.advance(by: 60)
        #expect(world.state("kb", 1)?.name == "Running")  // alive, never said READY=1
        #expect(world.systemd == [.ready])
        #expect(world.reconciler.statusLine == "1 pool, 1/2 workers ready")
        #expect(world.logText.contains("1 of 2 workers ready after 60 s; telling systemd READY=1 anyway"))
        // A late READY=1 still counts.
        world.notify(ReplicaID(pool: "kb", index: 1), NotifyMessage(parsing: "READY=1"))
        #expect(world.state("kb", 1)?.isReady == true)
    }

    @Test func aCrashRestartsAtOnceThenBacksOffExponentiallyAndResetsAfterAStableRun() {
        let world = SimulatedWorld([pool("default", backoff: BackoffPolicy(jitter: 0))])
        let id = ReplicaID(pool: "default", index: 0)
        world.send(.start)
        world.advance(by: 5)
        world.exit(id, .signaled(.kill, coreDumped: false))
        #expect(world.state("default", 0)?.name == "Starting")  // first crash after a stable run: immediately
        #expect(world.replica("default", 0).lastExit == .killed(.kill, coreDumped: false))
        #expect(world.logText.contains("worker default/0 (pid 100) exited: killed by SIGKILL; restarting now"))

        var delays: [Double] = []
        for _ in 0..<10 {
            world.exit(id)
            guard case .backOff(let until) = world.state("default", 0)! else { Issue.record("not in backoff"); return }
            delays.append(until.since(world.now).seconds)
            world.advance(to: until)
            #expect(world.state("default", 0)?.name == "Starting")
        }
        #expect(delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300])
        #expect(world.replica("default", 0).restarts == 11)
        #expect(world.logText.contains("worker default/0 (pid 101) exited: exit code 1; restarting in 1 s (CrashLoopBackOff)"))
        #expect(world.reconciler.statusLine == "1 pool, 0/1 workers ready")

        world.advance(by: 600)  // a stable run resets the streak
        world.exit(id)
        #expect(world.state("default", 0)?.name == "Starting")
    }

    @Test func jitterSpreadsAPoolsReplicasApart() {
        let world = SimulatedWorld([pool("default", replicas: 20)])
        world.send(.start)
        for i in 0..<20 { world.exit(ReplicaID(pool: "default", index: i)) }  // immediate restarts
        for i in 0..<20 { world.exit(ReplicaID(pool: "default", index: i)) }  // now backing off
        let untils = (0..<20).compactMap { i -> UInt64? in
            if case .backOff(let u) = world.state("default", i)! { return u.nanoseconds }
            return nil
        }
        #expect(untils.count == 20)
        #expect(Set(untils).count == 20)
        let spread = Double(untils.max()! - untils.min()!) / 1e9
        #expect(spread > 0.05 && spread <= 0.2)
        #expect(world.reconciler.statusLine == "1 pool, 0/20 workers ready, 20 in CrashLoopBackOff")
    }

    @Test func spawnFailuresBackOffWithTheReason() {
        let world = SimulatedWorld([pool("default")])
        world.failingPools = ["default"]
        world.send(.start)
        #expect(world.state("default", 0)?.name == "BackOff")  // failed, retried at once, failed again
        #expect(world.replica("default", 0).lastExit == .spawnFailed("exec /bin/sleep: No such file or directory"))
        #expect(world.spawns.count == 2)
    }

    @Test func stopDrainsEveryWorkerAtOnceAndKillsWhatIsLeftAtTheDeadline() {
        let world = SimulatedWorld([pool("default", replicas: 2, drain: 30), pool("fast", drain: 2), pool("crashy")])
        world.send(.start)
        world.advance(by: 2)
        world.exit(ReplicaID(pool: "crashy", index: 0))
        world.exit(ReplicaID(pool: "crashy", index: 0))  // crashy is in BackOff now
        world.signals.removeAll()

        world.send(.stopRequested(.terminate))
        #expect(world.systemd.last == .stopping(extendTimeout: .seconds(35)))
        #expect(world.signals.map(\.signal) == [.terminate, .terminate, .terminate])
        #expect(world.state("crashy", 0) == .exited)
        #expect(world.reconciler.statusLine == "stopping: 3 workers draining")

        world.exit(ReplicaID(pool: "default", index: 0), .exited(0))  // finishes its job and exits
        #expect(world.state("default", 0) == .exited)  // not restarted during a stop
        world.advance(by: 2)
        #expect(world.signals.last.map { ($0.group, $0.signal) }! == (world.state("fast", 0)!.worker!.pid, .kill))
        world.honour(.kill)
        #expect(world.replica("fast", 0).lastExit == .killedAfterDrainDeadline)
        #expect(world.exitCode == nil)

        world.advance(by: 27.9)
        #expect(world.exitCode == nil)
        world.advance(by: 0.1)  // default/1 ignored SIGTERM for 30 s
        world.honour(.kill)
        #expect(world.replica("default", 1).lastExit == .killedAfterDrainDeadline)
        #expect(world.exitCode == 0)
        #expect(world.reconciler.phase == .stopped)
        #expect(world.logText.contains("worker default/1 (pid 102) stopped: killed after drain deadline"))
    }

    @Test func aSecondInterruptKillsAtOnce() {
        let world = SimulatedWorld([pool("default", replicas: 3)])
        world.send(.start)
        world.send(.stopRequested(.interrupt))
        #expect(world.signals.filter { $0.signal == .terminate }.count == 3)
        world.send(.stopRequested(.terminate))  // SIGTERM while draining changes nothing
        #expect(world.signals.count == 3)
        world.send(.stopRequested(.interrupt))
        #expect(world.signals.filter { $0.signal == .kill }.count == 3)
        world.honour(.kill)
        #expect(world.exitCode == 0)
    }

    @Test func aWorkerExitKillsWhatItLeftInItsProcessGroup() {
        let world = SimulatedWorld([pool("default")])
        world.send(.start)
        world.exit(ReplicaID(pool: "default", index: 0))
        #expect(world.signals.first.map { ($0.group, $0.signal) }! == (100, .kill))
    }

    @Test func orphansAreIgnored() {
        let world = SimulatedWorld([pool("default")])
        world.send(.start)
        let before = world.logs.count
        world.send(.exited(pid: 4242, .exited(0)))
        #expect(world.logs.count == before)
        #expect(world.signals.isEmpty)
    }

    @Test func workersThatMissTheirWatchdogAreAbortedThenKilledAndRestarted() {
        let world = SimulatedWorld([pool("kb", readiness: .notify, drain: 30, watchdog: 5)])
        let id = ReplicaID(pool: "kb", index: 0)
        world.send(.start)
        #expect(world.spawns[0].environment["WATCHDOG_USEC"] == "5000000")
        #expect(world.spawns[0].environment["NOTIFY_SOCKET"] == "/run/test/notify/kb.0")
        #expect(world.spawns[0].notifySocket == "/run/test/notify/kb.0")
        world.advance(by: 20)  // the watchdog is armed by READY=1 (or a first ping), not at spawn
        #expect(world.state("kb", 0)?.name == "Starting")
        world.notify(id, NotifyMessage(parsing: "READY=1"))
        for _ in 0..<10 {
            world.advance(by: 4)
            world.notify(id, NotifyMessage(parsing: "WATCHDOG=1"))
        }
        #expect(world.state("kb", 0)?.isReady == true)
        world.advance(by: 5)
        #expect(world.signals.last!.signal == .abort)
        #expect(world.state("kb", 0)?.name == "Draining")
        world.advance(by: 5)  // ignored SIGABRT: SIGKILL after the grace period
        #expect(world.signals.last!.signal == .kill)
        world.honour(.kill)
        #expect(world.replica("kb", 0).lastExit == .watchdog)
        #expect(world.state("kb", 0)?.name == "Starting")
        #expect(world.logText.contains("worker kb/0 (pid 100) watchdog timeout: no WATCHDOG=1 for 5 s; sending SIGABRT"))
    }

    @Test func aThousandReplicasCrashLoopingForAnHourInMilliseconds() {
        let world = SimulatedWorld([pool("big", replicas: 1000, backoff: BackoffPolicy(initial: .seconds(1), max: .seconds(300), resetAfter: .seconds(600)))])
        world.send(.start)
        world.advance(by: 1)
        #expect(world.reconciler.readyWorkers == 1000)
        let end = world.now + .seconds(3600)
        while world.now < end {
            for pid in Array(world.alive.keys) {
                world.alive[pid] = nil
                world.send(.exited(pid: pid, .exited(1)))
            }
            guard let next = world.reconciler.nextDeadline, next <= end else { break }
            world.advance(to: next)
        }
        let restarts = (0..<1000).map { world.replica("big", $0).restarts }
        #expect(restarts.allSatisfy { $0 >= 15 && $0 <= 25 })
        #expect(world.reconciler.statusLine.hasSuffix("1000 in CrashLoopBackOff") || world.reconciler.statusLine.contains("0/1000"))
    }
}
