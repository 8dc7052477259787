import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

/// An autoscaled pool in the reconciler: polled at its interval, run at the autoscaler's replicas,
/// held (or sent to its fallback) when a scaler fails, refused to `poolvisor scale`, reconfigured by
/// a reload; scale-in drains idle workers first. Fake clock, simulated kernel.
@Suite struct AutoscaledPoolTests {
    static let trigger = QueueTrigger(
        source: .postgres(connection: Secret("postgresql://app:TopSecret@db/app"), query: "SELECT 1"),
        target: 5, activation: 0, connectionVariable: "DATABASE_URL")

    func autoscaled(
        _ name: String = "chat", min: Int = 0, max: Int = 5, initial: Int? = nil, polling: Double = 10,
        scaleDownWindow: Double = 0, fallback: PoolAutoscaling.Fallback? = nil
    ) -> PoolSpec {
        var rules = AutoscalingSpec(minReplicas: min, maxReplicas: max)
        rules.scaleDown.stabilizationWindow = .seconds(scaleDownWindow)
        rules.cooldown = .seconds(30)
        var a = PoolAutoscaling(kind: .keda, rules: rules, pollingInterval: .seconds(polling), initialReplicas: initial ?? min)
        a.queue = Self.trigger
        a.fallback = fallback
        var p = pool(name, replicas: 1)
        p.autoscaling = a
        return p
    }

    func depth(_ value: Double) -> [TriggerSample] {
        [TriggerSample(trigger: Self.trigger.name, reading: .success(.queue(name: Self.trigger.name, value: value, target: 5, activation: 0)))]
    }

    func failure(_ message: String) -> [TriggerSample] {
        [TriggerSample(trigger: Self.trigger.name, reading: .failure(ScalerError(message)))]
    }

    @Test func startsAtItsMinimumReadsAtOnceAndFollowsTheQueue() {
        let world = SimulatedWorld([autoscaled(min: 1)])
        world.send(.start)
        #expect(world.reads == ["chat"])
        #expect(world.reconciler.pool(named: "chat")!.desired == 1)
        world.send(.triggersRead(pool: "chat", depth(23)))
        // ceil(23 / 5) = 5, within the default scale-up policy (4 pods or 100 % per 15 s: 1 → 5).
        #expect(world.reconciler.pool(named: "chat")!.desired == 5)
        #expect(world.pids("chat").count == 5)
        #expect(world.logText.contains("pool chat: autoscaling 1 → 5 replicas (postgres query: 23 / 5 per replica → 5)"))
        // The next reading comes one polling interval later, not before.
        world.advance(by: 9.9)
        #expect(world.reads == ["chat"])
        world.advance(by: 0.1)
        #expect(world.reads == ["chat", "chat"])
    }

    @Test func aQueueReadingOverdueCountsAsFailedAndTheRoundGoesOnWithoutIt() {
        let world = SimulatedWorld([autoscaled(min: 1, polling: 4)])
        world.send(.start)
        #expect(world.queueReads == [true])
        // Under way, not overdue: the polls at 4 and 8 s ask for nothing, not even a second reading.
        world.advance(by: 8)
        #expect(world.queueReads == [true])
        // At 12 s it is overdue (twice the readers' 5 s timeout): the round goes on with CPU and cron
        // only, and the queue trigger counts as failed.
        world.advance(by: 4)
        #expect(world.queueReads == [true, false])
        world.send(.triggersRead(pool: "chat", []))
        let sample = world.reconciler.pool(named: "chat")!.autoscale!.samples.first { $0.trigger == Self.trigger.name }
        guard case .failure(let error)? = sample?.reading else {
            Issue.record("no failed queue reading: \(String(describing: sample))")
            return
        }
        #expect(error.message.hasPrefix("no reading for 12 s: the scaler is stuck where its 5 s timeout does not reach"))
        // The late reading comes back and counts; the next poll asks the queue again.
        world.send(.triggersRead(pool: "chat", depth(10)))
        #expect(world.reconciler.pool(named: "chat")!.desired == 2)
        world.advance(by: 4)
        #expect(world.queueReads == [true, false, true])
    }

    @Test func scalesToZeroAfterTheCooldownAndBackFromZero() {
        let world = SimulatedWorld([autoscaled(min: 0)])
        world.send(.start)
        world.send(.triggersRead(pool: "chat", depth(7)))
        #expect(world.pids("chat").count == 2)
        world.advance(by: 10)
        world.send(.triggersRead(pool: "chat", depth(0)))
        #expect(world.reconciler.pool(named: "chat")!.desired == 1)  // cooling down
        world.advance(by: 30)
        world.send(.triggersRead(pool: "chat", depth(0)))
        #expect(world.reconciler.pool(named: "chat")!.desired == 0)
        world.honour(.terminate, exitStatus: .exited(0))
        #expect(world.pids("chat").isEmpty)
        #expect(world.reconciler.phase == .running)
        world.send(.triggersRead(pool: "chat", depth(1)))
        #expect(world.pids("chat").count == 1)
    }

    @Test func aFailingScalerHoldsThenFallsBackThenRecovers() {
        let world = SimulatedWorld([autoscaled(min: 0, fallback: .init(failureThreshold: 3, replicas: 2))])
        world.send(.start)
        world.send(.triggersRead(pool: "chat", depth(20)))
        #expect(world.reconciler.pool(named: "chat")!.desired == 4)
        world.send(.triggersRead(pool: "chat", failure("connection refused")))
        world.send(.triggersRead(pool: "chat", failure("reconnecting in 1 s: connection refused")))
        #expect(world.reconciler.pool(named: "chat")!.desired == 4)
        // Logged once, not at every poll.
        #expect(world.logs.filter { $0.message.contains("scaler failed") }.count == 1)
        world.send(.triggersRead(pool: "chat", failure("reconnecting in 2 s: connection refused")))
        #expect(world.reconciler.pool(named: "chat")!.desired == 2)
        let status = world.reconciler.statusReport(at: world.now, version: "t", pid: 1).pools[0].autoscaling!
        #expect(status.failures == 3)
        #expect(status.triggers[0].error == "reconnecting in 2 s: connection refused")
        #expect(status.reason == "fallback to 2: 3 failed readings in a row (failure_threshold 3)")
        world.send(.triggersRead(pool: "chat", depth(10)))
        #expect(world.reconciler.pool(named: "chat")!.desired == 2)
        #expect(world.logText.contains("pool chat: scaler recovered after 3 failed readings"))
    }

    @Test func manualScaleIsRefusedWithAnExplanation() {
        let world = SimulatedWorld([autoscaled(min: 1, max: 5)])
        world.send(.start)
        let outcome = world.perform(.scale(pool: "chat", replicas: 3))
        #expect(!outcome.accepted)
        #expect(outcome.lines[0] == "pool chat is autoscaled (keda: postgres query; 1–5 replicas, now 1): the autoscaler sets its replicas")
        #expect(world.reconciler.pool(named: "chat")!.desired == 1)
    }

    @Test func scaleInDrainsIdleWorkersFirstAndKeepsBusyOnes() {
        let world = SimulatedWorld([autoscaled(min: 1, max: 5)])
        world.send(.start)
        world.send(.triggersRead(pool: "chat", depth(15)))
        world.advance(by: 1)
        #expect(world.reconciler.readyWorkers == 3)
        world.notify(ReplicaID(pool: "chat", index: 1), NotifyMessage(parsing: "BUSY=1"))
        world.notify(ReplicaID(pool: "chat", index: 2), NotifyMessage(parsing: "BUSY=1"))
        let idle = world.state("chat", 0)!.worker!.pid
        world.advance(by: 9)
        world.send(.triggersRead(pool: "chat", depth(10)))
        #expect(world.reconciler.pool(named: "chat")!.desired == 2)
        #expect(world.signals.map(\.group) == [idle])
        #expect(world.reconciler.pool(named: "chat")!.retiring.map(\.pid) == [idle])
    }

    @Test func reloadTurnsAutoscalingOnAndOffAndKeepsItWhenUnchanged() {
        let world = SimulatedWorld([pool("chat", replicas: 3)])
        world.send(.start)
        world.advance(by: 1)
        var outcome = world.reload([autoscaled(min: 1, max: 2)])
        #expect(outcome.lines.contains("pool chat: autoscaling on (keda: postgres query; 1–2 replicas), from 2 replicas"))
        #expect(world.reads == ["chat"])
        #expect(world.reconciler.pool(named: "chat")!.desired == 2)
        world.send(.triggersRead(pool: "chat", depth(10)))
        outcome = world.reload([autoscaled(min: 1, max: 2)])
        #expect(outcome.lines.contains("pool chat: unchanged (2 workers keep running)"))
        outcome = world.reload([autoscaled(min: 1, max: 4)])
        #expect(outcome.lines.contains { $0.hasPrefix("pool chat: autoscaling changed (keda: postgres query; 1–4 replicas") })
        outcome = world.reload([pool("chat", replicas: 1)])
        #expect(outcome.lines.contains("pool chat: autoscaling off: back to the file's 1 replica"))
        #expect(world.reconciler.pool(named: "chat")!.desired == 1)
        #expect(world.perform(.scale(pool: "chat", replicas: 2)).accepted)
    }

    @Test func statusShowsTheAutoscalerInTheTableAndInJSON() throws {
        let world = SimulatedWorld([autoscaled(min: 0, max: 5)])
        world.send(.start)
        world.send(.triggersRead(pool: "chat", depth(12)))
        let report = world.reconciler.statusReport(at: world.now + .seconds(5), version: "t", pid: 1)
        let a = try #require(report.pools[0].autoscaling)
        #expect(a.type == "keda" && a.minReplicas == 0 && a.maxReplicas == 5)
        #expect(a.triggers[0].value == 12 && a.triggers[0].target == 5)
        #expect(a.lastScale?.from == 0 && a.lastScale?.to == 3)
        let table = report.table()
        #expect(table.contains("  autoscaling: keda, 0–5 replicas, every 10 s; last scale 5s ago: 0 → 3"))
        #expect(table.contains("postgres query  12      5/replica  0"))
        #expect(table.contains("why: postgres query: 12 / 5 per replica → 3"))
        #expect(!table.contains("TopSecret"))
        var bytes: [UInt8] = []
        report.json.serialize(into: &bytes)
        let back = try StatusReport(json: try JSON.parse(String(decoding: bytes, as: UTF8.self)))
        #expect(back.pools[0].autoscaling == a)
        #expect(!String(decoding: bytes, as: UTF8.self).contains("TopSecret"))
    }
}

/// `stop_signal`: the signal every voluntary drain starts with.
@Suite struct StopSignalTests {
    @Test func scaleDownRolloutAndShutdownSendThePoolsStopSignalThenSIGKILL() {
        var chat = pool("chat", replicas: 2, drain: 5)
        chat.stopSignal = .interrupt
        let world = SimulatedWorld([chat, pool("kb", replicas: 1)])
        world.send(.start)
        world.advance(by: 1)
        #expect(world.perform(.scale(pool: "chat", replicas: 1)).accepted)
        #expect(world.signals.map(\.signal) == [.interrupt])
        world.advance(by: 5)
        #expect(world.signals.map(\.signal) == [.interrupt, .kill])
        world.honour(.kill)
        world.signals = []
        world.send(.stopRequested(.terminate))
        #expect(Set(world.signals.map(\.signal)) == [.interrupt, .terminate])
        #expect(world.logText.contains("draining 2 workers (each pool's stop_signal now, SIGKILL after up to 30 s)"))
    }
}
