import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

/// Probes in the core, against a fake clock: when they run, how results count, what a turn does.
@Suite struct ProbeTests {
    static func http(port: Int = 8000, _ configure: (inout ProbeSpec) -> Void = { _ in }) -> ProbeSpec {
        var spec = ProbeSpec(handler: .httpGet(host: "127.0.0.1", port: .fixed(String(port)), path: .fixed("/healthz"), headers: []))
        configure(&spec)
        return spec
    }

    static func probed(_ name: String, replicas: Int = 1, readiness: Readiness = .started(after: .seconds(1)), _ probes: Probes) -> PoolSpec {
        var p = pool(name, replicas: replicas, readiness: readiness)
        p.probes = probes
        return p
    }

    let id0 = ReplicaID(pool: "web", index: 0)

    @Test func aLivenessProbeThatFailsThreeTimesInARowRestartsTheWorkerWithTheReason() throws {
        let world = SimulatedWorld([Self.probed("web", Probes(liveness: Self.http()))])
        world.send(.start)
        let pid = try #require(world.state("web", 0)?.worker?.pid)
        world.advance(by: 0)
        #expect(world.answerProbes(.liveness, .success) == 1)  // the first probe at initial_delay_seconds = 0
        for n in 1...2 {
            world.advance(by: 10)
            #expect(world.answerProbes(.liveness, .failure("HTTP 500")) == 1)
            #expect(world.reconciler.tally(pid, .liveness)?.failures == n)
            #expect(!world.signals.contains { $0.group == pid })  // not yet
        }
        world.advance(by: 10)
        world.answerProbes(.liveness, .failure("HTTP 500"))
        #expect(world.signals.map(\.signal) == [.terminate])
        #expect(world.state("web", 0)?.name == "Draining")
        world.honour(.terminate)
        #expect(world.replica("web", 0).lastExit == .livenessProbeFailed("HTTP 500"))
        #expect(world.replica("web", 0).restarts == 1)
        #expect(world.logText.contains("liveness probe failed: HTTP 500"))
        #expect(world.state("web", 0)?.worker?.pid != pid)  // restarted (the first restart is immediate)
    }

    @Test func aSuccessInBetweenStartsTheCountAgain() throws {
        let world = SimulatedWorld([Self.probed("web", Probes(liveness: Self.http()))])
        world.send(.start)
        world.advance(by: 0)
        for outcome in [ProbeOutcome.failure("x"), .failure("x"), .success, .failure("x"), .failure("x"), .success] {
            #expect(world.answerProbes(.liveness, outcome) == 1)
            world.advance(by: 10)
        }
        #expect(world.signals.isEmpty)
        #expect(world.state("web", 0)?.isReady == true)
    }

    @Test func aReadinessProbeDecidesReadyAndAWorkerThatStopsPassingIsNotReadyButKept() throws {
        let world = SimulatedWorld([Self.probed("web", replicas: 2, Probes(readiness: Self.http()))])
        world.send(.start)
        world.advance(by: 0)
        world.answerProbes(.readiness, .failure("connection refused"))
        world.advance(by: 5)  // ready_after_seconds no longer decides
        #expect(world.state("web", 0)?.name == "Starting")
        #expect(!world.systemd.contains(.ready))
        #expect(world.startTimeoutExtensions == [.seconds(65)])  // systemd waits for poolvisor's ready timeout
        world.advance(by: 5)
        world.answerProbes(.readiness, .success)
        #expect(world.state("web", 0)?.isReady == true)
        #expect(world.systemd == [.ready])  // only once every worker's probe passed

        let pid = try #require(world.state("web", 1)?.worker?.pid)
        for _ in 1...3 {
            world.advance(by: 10)
            world.answerProbes(.readiness, .success, pid: world.state("web", 0)?.worker?.pid)
            world.answerProbes(.readiness, .failure("HTTP 503"), pid: pid)
        }
        #expect(world.state("web", 1)?.name == "Running")
        #expect(world.reconciler.readyWorkers == 1)
        #expect(world.signals.isEmpty)  // not killed
        #expect(world.logText.contains("worker web/1 is not ready: its readiness probe failed (3/3: HTTP 503)"))
        world.advance(by: 10)
        world.answerProbes(.readiness, .success)
        #expect(world.state("web", 1)?.isReady == true)
    }

    @Test func withNotifyReadinessBothReadyAndTheProbeMustHold() throws {
        let world = SimulatedWorld([Self.probed("web", readiness: .notify, Probes(readiness: Self.http()))])
        world.send(.start)
        world.advance(by: 0)
        world.answerProbes(.readiness, .success)
        #expect(world.state("web", 0)?.name == "Starting")
        world.notify(id0, NotifyMessage(parsing: "READY=1"))
        #expect(world.state("web", 0)?.isReady == true)
    }

    @Test func aStartupProbeHoldsTheOthersOffAndFailingItIsAFailedStartWithBackoff() throws {
        let startup = Self.http {
            $0.period = .seconds(1); $0.failureThreshold = 5
        }
        let world = SimulatedWorld([Self.probed("web", Probes(startup: startup, readiness: Self.http(), liveness: Self.http()))])
        world.send(.start)
        for _ in 1...4 {
            world.advance(by: 1)
            world.answerProbes(.startup, .failure("connection refused"))
        }
        #expect(world.probesRun.allSatisfy { $0.kind == .startup })  // nothing else before it passes
        world.advance(by: 1)
        world.answerProbes(.startup, .failure("connection refused"))
        #expect(world.signals.map(\.signal) == [.terminate])
        world.honour(.terminate)
        #expect(world.replica("web", 0).lastExit == .startupProbeFailed("connection refused"))

        // The replacement passes its startup probe: readiness and liveness begin.
        world.advance(by: 1)
        world.answerProbes(.startup, .success)
        #expect(world.state("web", 0)?.name == "Starting")  // the readiness probe decides now
        world.advance(by: 0)
        #expect(Set(world.probesUnderWay.values.map(\.kind)) == [.readiness, .liveness])
        world.answerProbes(.readiness, .success)
        #expect(world.state("web", 0)?.isReady == true)
        let before = world.probesRun.count { $0.kind == .startup }
        world.advance(by: 30)
        #expect(world.probesRun.count { $0.kind == .startup } == before)  // it ran until it first passed
    }

    @Test func aProbeThatDoesNotAnswerIsCancelledAtItsTimeoutAndCountsAsFailed() throws {
        let world = SimulatedWorld([Self.probed("web", Probes(liveness: Self.http { $0.timeout = .seconds(2) }))])
        world.send(.start)
        let pid = try #require(world.state("web", 0)?.worker?.pid)
        world.advance(by: 0)
        let attempt = try #require(world.probesUnderWay.keys.first)
        world.advance(by: 1.999)
        #expect(world.cancelledProbes.isEmpty)
        world.advance(by: 0.001)
        #expect(world.cancelledProbes == [attempt])
        #expect(world.reconciler.tally(pid, .liveness)?.lastFailure == "timed out after 2 s")
        // A late answer of the cancelled attempt counts for nothing.
        world.send(.probed(pid: pid, .liveness, attempt: attempt, .success))
        #expect(world.reconciler.tally(pid, .liveness)?.failures == 1)
        // The next one is due a period after the last one started.
        world.advance(by: 7.999)
        #expect(world.probesRun.count == 1)
        world.advance(by: 0.001)
        #expect(world.probesRun.count == 2)
    }

    @Test func aWorkerThatExitsHasItsProbesUnderWayCancelledAndNoMoreRun() throws {
        let world = SimulatedWorld([Self.probed("web", Probes(readiness: Self.http(), liveness: Self.http()))])
        world.send(.start)
        world.advance(by: 0)
        #expect(world.probesUnderWay.count == 2)
        world.exit(id0)
        #expect(world.probesUnderWay.isEmpty)
        #expect(world.cancelledProbes.count == 2)
    }

    @Test func aFailingReadinessProbeHoldsARollout() throws {
        var spec = Self.probed("web", replicas: 2, Probes(readiness: Self.http()))
        let world = SimulatedWorld([spec])
        world.send(.start)
        world.advance(by: 0)
        world.answerProbes(.readiness, .success)
        #expect(world.reconciler.readyWorkers == 2)
        spec.command = ["/bin/sleep", "2000"]
        world.reload([spec])
        // One old worker at a time (max_unavailable 1): its replacement never passes.
        let old = world.reconciler.pool(named: "web")!.workers.values.filter { $0.state == .ready }.map(\.pid)
        #expect(old.count == 1)
        world.honour(.terminate)
        for _ in 1...5 {
            world.advance(by: 10)
            world.answerProbes(.readiness, .success, pid: old[0])
            let others = world.probesUnderWay.values.filter { $0.pid != old[0] }
            for run in others { world.send(.probed(pid: run.pid, .readiness, attempt: run.attempt, .failure("HTTP 503"))) }
            world.probesUnderWay = world.probesUnderWay.filter { $0.value.pid == old[0] }
        }
        #expect(world.reconciler.pool(named: "web")!.workers[old[0]]?.state == .ready)  // still there
        #expect(world.reconciler.pool(named: "web")!.rollout?.waiting?.contains("not ready") == true)
        world.advance(by: 10)
        world.answerProbes(.readiness, .success)
        world.honour(.terminate)
        world.advance(by: 10)
        world.answerProbes(.readiness, .success)
        #expect(world.reconciler.pool(named: "web")!.rollout == nil)
    }

    @Test func perReplicaPortsAndPaths() throws {
        let port = try ReplicaTemplate.parse("{replica + 8000}").get()
        let path = try ReplicaTemplate.parse("/healthz/{pool}-{replica}").get()
        let probe = ProbeSpec(handler: .httpGet(host: "::1", port: .perReplica(port), path: .perReplica(path), headers: []))
        let world = SimulatedWorld([Self.probed("web", replicas: 3, Probes(liveness: probe))])
        world.send(.start)
        world.advance(by: 0)
        let checks = world.probesRun.sorted { $0.attempt < $1.attempt }.map(\.check)
        #expect(
            checks == (0..<3).map { .httpGet(host: "::1", port: 8000 + $0, path: "/healthz/web-\($0)", headers: []) })
    }

    @Test func anExecProbeRunsAsItsWorkerWithoutTheWorkersNotifySocket() throws {
        var spec = Self.probed(
            "web", readiness: .notify,
            Probes(liveness: ProbeSpec(handler: .exec(executable: "/usr/bin/arq", arguments: [.fixed("arq"), .fixed("--check")]))))
        spec.workingDirectory = "/srv/app"
        spec.environment["APP"] = "1"
        let world = SimulatedWorld([spec])
        world.send(.start)
        world.advance(by: 0)
        guard case .exec(let launch)? = world.probesRun.first?.check else {
            Issue.record("no exec probe")
            return
        }
        #expect(launch.executable == "/usr/bin/arq")
        #expect(launch.arguments == ["arq", "--check"])
        #expect(launch.workingDirectory == "/srv/app")
        #expect(launch.environment["APP"] == "1")
        #expect(launch.environment["POOLVISOR_REPLICA"] == "0")
        #expect(launch.environment["NOTIFY_SOCKET"] == nil)
        #expect(launch.notifySocket == nil)
    }

    @Test func anExecProbeOfAnOutdatedWorkerRunsWithItsOwnGenerationsEnvironment() throws {
        var spec = Self.probed(
            "web", replicas: 2, readiness: .notify, Probes(liveness: ProbeSpec(handler: .exec(executable: "/bin/check", arguments: [.fixed("check")]))))
        spec.environment["DATABASE_URL"] = "old"
        let world = SimulatedWorld([spec])
        world.send(.start)
        for i in 0..<2 { world.notify(ReplicaID(pool: "web", index: i), NotifyMessage(parsing: "READY=1")) }
        world.advance(by: 0)
        world.answerProbes(.liveness, .success)
        spec.environment["DATABASE_URL"] = "new"
        world.reload([spec])
        // Replica 0 is replaced first; replica 1's old worker keeps being probed as it runs.
        let old = try #require(world.state("web", 1)?.worker)
        #expect(old.generation == 0)
        world.probesRun = []
        world.advance(by: 10)
        let runs = world.probesRun.filter { $0.pid == old.pid }
        guard case .exec(let launch)? = runs.first?.check else {
            Issue.record("no probe of the old worker")
            return
        }
        #expect(launch.environment["DATABASE_URL"] == "old")
        let fresh = world.probesRun.filter { $0.pid != old.pid }.compactMap { run -> String? in
            if case .exec(let l) = run.check { return l.environment["DATABASE_URL"] } else { return nil }
        }
        #expect(fresh.allSatisfy { $0 == "new" } && !fresh.isEmpty)
    }

    @Test func aReloadThatChangesProbesRestartsNoWorker() throws {
        var spec = Self.probed("web", Probes(readiness: Self.http()))
        let world = SimulatedWorld([spec])
        world.send(.start)
        world.advance(by: 0)
        world.answerProbes(.readiness, .success)
        let pid = try #require(world.state("web", 0)?.worker?.pid)
        spec.probes = Probes(liveness: Self.http(port: 9000))
        let outcome = world.reload([spec])
        #expect(outcome.lines.contains { $0.contains("readiness_probe, liveness_probe changed (applies without a restart)") })
        #expect(world.state("web", 0)?.worker?.pid == pid)
        #expect(world.state("web", 0)?.isReady == true)
        world.advance(by: 0)
        #expect(world.probesUnderWay.values.map(\.kind) == [.liveness])
        #expect(world.probesUnderWay.values.first?.check == .httpGet(host: "127.0.0.1", port: 9000, path: "/healthz", headers: []))
    }

    @Test func aWaitingWorkerWhoseReadinessProbeIsRemovedIsReady() throws {
        var spec = Self.probed("web", Probes(readiness: Self.http()))
        let world = SimulatedWorld([spec])
        world.send(.start)
        world.advance(by: 0)
        world.answerProbes(.readiness, .failure("HTTP 503"))
        spec.probes = Probes()
        world.reload([spec])
        #expect(world.state("web", 0)?.isReady == true)
        #expect(world.probesUnderWay.isEmpty)
    }

    @Test func poolsWithoutProbesNeverWakeForThem() {
        let world = SimulatedWorld([pool("plain", replicas: 3)])
        world.send(.start)
        world.advance(by: 1)
        #expect(world.reconciler.nextDeadline == nil)
        #expect(world.probesRun.isEmpty)
    }

    @Test func theThresholdsCountAsKubernetesDoes() {
        var spec = Self.http()
        spec.successThreshold = 2
        spec.failureThreshold = 2
        var tally = ProbeTally()
        let t = seconds(1)
        #expect(tally.record(.success, spec, at: t) == .none)
        #expect(tally.record(.success, spec, at: t) == .nowPassing)
        #expect(tally.record(.success, spec, at: t) == .none)
        #expect(tally.record(.failure("a"), spec, at: t) == .none)
        #expect(tally.record(.failure("b"), spec, at: t) == .nowFailing("b"))
        #expect(tally.record(.failure("c"), spec, at: t) == .none)  // failing already
        #expect(tally.passing == false && tally.failures == 3 && tally.lastFailure == "c")
    }
}
