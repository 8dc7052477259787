import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

/// Reload, scale and restart: only what changed changes, rolling replacements keep within their
/// allowance and the disruption budget, and the old configuration survives a rejected file.
@Suite struct ReloadTests {
    /// A world whose pools are all up and ready.
    func running(_ pools: [PoolSpec]) -> SimulatedWorld {
        let world = SimulatedWorld(pools)
        world.send(.start)
        world.advance(by: 1)
        #expect(world.reconciler.phase == .running)
        world.systemd = []
        return world
    }

    @Test func anUnchangedFileKeepsEveryWorker() {
        let pools = [pool("chat", replicas: 2), pool("kb", replicas: 3)]
        let world = running(pools)
        let before = world.alive
        let outcome = world.reload(pools)
        #expect(outcome.accepted)
        #expect(outcome.lines.contains("pool chat: unchanged (2 workers keep running)"))
        #expect(outcome.lines.contains("pool kb: unchanged (3 workers keep running)"))
        #expect(world.alive == before)
        #expect(world.signals.isEmpty)
        #expect(world.systemd == [.reloading(file: "pools.toml"), .ready])
        #expect(world.reconciler.nextDeadline == nil)
    }

    @Test func replicasUpStartsOnlyTheNewOnesAndDownDrainsTheHighestFirst() {
        let world = running([pool("chat", replicas: 2), pool("kb", replicas: 1)])
        let kb = world.pids("kb")
        world.reload([pool("chat", replicas: 4), pool("kb", replicas: 1)])
        #expect(world.spawns.suffix(2).map(\.replica.description) == ["chat/2", "chat/3"])
        #expect(world.signals.isEmpty)
        world.advance(by: 1)
        #expect(world.reconciler.readyWorkers == 5)

        let outcome = world.reload([pool("chat", replicas: 1), pool("kb", replicas: 1)])
        #expect(outcome.lines.contains("pool chat: replicas 4 → 1"))
        // chat/3, chat/2, chat/1 drain (SIGTERM to their groups), highest index first; chat/0 stays.
        let chat = world.reconciler.pool(named: "chat")!
        #expect(chat.replicas.map(\.id.index) == [0])
        #expect(chat.retiring.map(\.replica.index) == [1, 2, 3])
        #expect(world.signals.map(\.signal) == [.terminate, .terminate, .terminate])
        #expect(world.reconciler.statusLine == "2 pools, 2/2 workers ready, 3 draining")
        world.honour(.terminate, exitStatus: .exited(0))
        #expect(world.reconciler.pool(named: "chat")!.retiring.isEmpty)
        #expect(world.pids("kb") == kb)
        #expect(world.logText.contains("worker chat/3 (pid 104, scale-down) stopped: exit code 0"))
    }

    @Test func aChangedEnvironmentReplacesOnlyThatPoolOneAtATimeEachReadyBeforeTheNext() {
        let world = running([pool("chat", replicas: 3), pool("kb", replicas: 2)])
        let kb = world.pids("kb")
        var chat = pool("chat", replicas: 3)
        chat.environment["DATABASE_URL"] = "postgres://secret@db/app"
        let outcome = world.reload([chat, pool("kb", replicas: 2)])
        #expect(outcome.lines.contains("pool chat: environment (DATABASE_URL) changed: rolling replacement of 3 workers (at most 1 at a time)"))
        #expect(!outcome.lines.joined().contains("secret"))
        #expect(outcome.lines.contains("pool kb: unchanged (2 workers keep running)"))

        var replaced: [Int] = []
        for _ in 0..<3 {
            // Exactly one chat replica is not ready at any moment: the new worker in the replaced slot.
            let notReady = world.reconciler.pool(named: "chat")!.replicas.filter { !world.reconciler.view($0.id)!.isReady }
            #expect(notReady.count == 1)
            replaced.append(notReady[0].id.index)
            #expect(world.spawns.last?.environment["DATABASE_URL"] == "postgres://secret@db/app")
            world.advance(by: 1)  // the new worker becomes ready; the next old one drains
        }
        #expect(replaced == [0, 1, 2])
        #expect(world.reconciler.pool(named: "chat")!.rollout == nil)
        #expect(world.reconciler.pool(named: "chat")!.retiring.count == 3)
        #expect(world.logText.contains("pool chat: rolling replacement complete (environment (DATABASE_URL); took 3 s)"))
        #expect(world.pids("kb") == kb)
        world.honour(.terminate)
        #expect(world.reconciler.pool(named: "chat")!.retiring.isEmpty)
        #expect(world.reconciler.readyWorkers == 5)
    }

    @Test func maxUnavailableAsAPercentageReplacesSeveralAtOnce() {
        let world = running([pool("chat", replicas: 8)])
        var chat = pool("chat", replicas: 8)
        chat.command = ["/bin/sleep", "2000"]
        chat.maxUnavailable = .percent(50)
        world.reload([chat])
        #expect(world.reconciler.pool(named: "chat")!.views.count { !$0.isReady } == 4)
        world.advance(by: 1)
        #expect(world.reconciler.pool(named: "chat")!.views.count { !$0.isReady } == 4)
        world.advance(by: 1)
        #expect(world.reconciler.pool(named: "chat")!.rollout == nil)
        #expect(world.spawns.suffix(8).allSatisfy { $0.arguments == ["/bin/sleep", "2000"] })
    }

    @Test func theDisruptionBudgetHoldsARolloutAndAScaleDownWhileTooFewAreReady() {
        var spec = pool("chat", replicas: 3)
        spec.disruptionBudget = .minAvailable(.count(2))
        spec.maxUnavailable = .count(3)
        let world = running([spec])
        // chat/2 crashes: 2 ready, budget floor 2, so no ready worker may be taken down.
        world.exit(ReplicaID(pool: "chat", index: 2))
        var restarted = spec
        restarted.environment["X"] = "1"
        world.reload([restarted])
        var chat = world.reconciler.pool(named: "chat")!
        // The restarted, not yet ready worker in chat/2 is replaced at once (taking it down costs
        // nothing); the two ready ones wait for the budget.
        #expect(chat.retiring.map(\.replica.index) == [2])
        #expect(chat.views.map(\.name) == ["Ready", "Ready", "Starting"])
        #expect(chat.rollout?.waiting == "disruption budget: 2 ready, at least 2 must stay")
        world.advance(by: 1)
        chat = world.reconciler.pool(named: "chat")!
        #expect(chat.retiring.count == 2)  // 3 ready now: one may go
        world.advance(by: 1)
        world.advance(by: 1)
        chat = world.reconciler.pool(named: "chat")!
        #expect(chat.rollout == nil)
        #expect(chat.retiring.count == 3)

        // Scale-down 3 → 1 with min_available 1 of 1: two ready surplus replicas go, one stays.
        var budget = restarted
        budget.replicas = 1
        budget.disruptionBudget = .minAvailable(.count(1))
        world.reload([budget])
        #expect(world.reconciler.pool(named: "chat")!.replicas.count == 1)
    }

    @Test func aRejectedFileKeepsEverythingAndIsReported() {
        let world = running([pool("chat", replicas: 2)])
        let before = world.alive
        let problem = Diagnostic(
            .error, SourceLocation(file: "pools.toml", line: 4, column: 1), key: "pools.chat.replicas", "'pools.chat.replicas' must be an integer, not a string")
        let outcome = world.perform(.reload(PoolsFileDecoder.Result(file: nil, diagnostics: [problem])))
        #expect(!outcome.accepted)
        #expect(outcome.lines == ["pools.toml rejected (1 error); nothing changed, the previous pools file keeps running"])
        #expect(outcome.diagnostics == [problem])
        #expect(world.alive == before)
        #expect(world.systemd == [.reloading(file: "pools.toml"), .ready])
        #expect(world.reconciler.lastReload?.outcome.accepted == false)
        #expect(world.reconciler.statusLine == "1 pool, 2/2 workers ready; last reload REJECTED, running the previous pools file")
        #expect(world.logText.contains("pools.toml:4:1: error: 'pools.chat.replicas' must be an integer, not a string"))
        world.reload([pool("chat", replicas: 2)])
        #expect(world.reconciler.statusLine == "1 pool, 2/2 workers ready")
    }

    @Test func newPoolsStartAndRemovedOrDisabledPoolsDrainAndAreForgotten() {
        let world = running([pool("chat", replicas: 1), pool("old", replicas: 2)])
        var off = pool("kb", replicas: 2)
        off.enabled = false
        let outcome = world.reload([pool("chat", replicas: 1), pool("flow", replicas: 2), off])
        #expect(outcome.lines.contains("pool flow: new, starting 2 workers"))
        #expect(outcome.lines.contains("pool kb: new, disabled"))
        #expect(outcome.lines.contains("pool old: removed from the file, draining 2 workers"))
        #expect(world.reconciler.pool(named: "old")!.retiring.count == 2)
        world.honour(.terminate)
        #expect(world.reconciler.pool(named: "old") == nil)
        world.advance(by: 1)
        #expect(world.reconciler.statusLine == "2 pools, 3/3 workers ready")

        var chatOff = pool("chat", replicas: 1)
        chatOff.enabled = false
        let second = world.reload([chatOff, pool("flow", replicas: 2), off])
        #expect(second.lines.contains("pool chat: disabled"))
        #expect(world.reconciler.pool(named: "chat")!.retiring.map { $0.state.drain?.cause } == [.poolRemoved])
    }

    @Test func scaleLastsUntilTheFileChangesThatPoolsReplicas() {
        let world = running([pool("chat", replicas: 2), pool("kb", replicas: 1)])
        let scaled = world.perform(.scale(pool: "chat", replicas: 4))
        #expect(scaled.accepted)
        #expect(scaled.lines[0] == "pool chat scaled from 2 to 4 replicas")
        #expect(scaled.lines[1].contains("lasts until a reload of a pools file that changes chat's replicas"))
        #expect(world.reconciler.pool(named: "chat")!.replicas.count == 4)

        var outcome = world.reload([pool("chat", replicas: 2), pool("kb", replicas: 1)])
        #expect(outcome.lines.contains("pool chat: keeps its runtime scale of 4 (the file's replicas did not change)"))
        #expect(world.reconciler.pool(named: "chat")!.replicas.count == 4)

        outcome = world.reload([pool("chat", replicas: 3), pool("kb", replicas: 1)])
        #expect(outcome.lines.contains("pool chat: replicas 2 → 3 in the file, replacing the runtime scale to 4"))
        #expect(world.reconciler.pool(named: "chat")!.replicas.count == 3)

        #expect(world.perform(.scale(pool: "chta", replicas: 1)).lines == ["no pool 'chta'; did you mean 'chat'?; pools: chat, kb"])
        #expect(!world.perform(.scale(pool: "chat", replicas: -1)).accepted)
    }

    @Test func restartReplacesEveryWorkerOfOnePoolRolling() {
        let world = running([pool("chat", replicas: 2), pool("kb", replicas: 1)])
        let chatBefore = world.pids("chat")
        let kb = world.pids("kb")
        let outcome = world.perform(.restart(pool: "chat"))
        #expect(outcome.lines == ["pool chat: rolling restart of 2 workers, at most 1 at a time, each replacement ready before the next"])
        world.advance(by: 1)
        world.advance(by: 1)
        world.honour(.terminate)
        #expect(world.pids("chat").isDisjoint(with: chatBefore))
        #expect(world.pids("chat").count == 2)
        #expect(world.pids("kb") == kb)
        #expect(world.reconciler.pool(named: "chat")!.rollout == nil)
    }

    @Test func aReloadDuringARolloutSupersedesIt() {
        let world = running([pool("chat", replicas: 3)])
        var first = pool("chat", replicas: 3)
        first.environment["V"] = "1"
        world.reload([first])
        world.advance(by: 1)  // chat/0 replaced with V=1, chat/1 now being replaced
        var second = first
        second.environment["V"] = "2"
        world.reload([second])
        world.advance(by: 1)
        world.advance(by: 1)
        world.advance(by: 1)
        let chat = world.reconciler.pool(named: "chat")!
        #expect(chat.rollout == nil)
        #expect(chat.replicas.allSatisfy { $0.generation == chat.generation } && chat.views.allSatisfy(\.isReady))
        #expect(chat.views.compactMap { $0.worker?.pid }.map { world.launches[$0]?.environment["V"] } == ["2", "2", "2"])
    }

    @Test func aStopDuringARolloutDrainsOldAndNewWorkersAndExits() {
        let world = running([pool("chat", replicas: 2)])
        world.perform(.restart(pool: "chat"))
        world.send(.stopRequested(.terminate))
        #expect(world.reconciler.statusLine == "stopping: 3 workers draining")
        world.honour(.terminate)
        #expect(world.exitCode == 0)
    }

    @Test func aScaleDownDrainsIdleWorkersFirstAndAScaleUpRefillsTheirSlots() {
        let world = SimulatedWorld([pool("kb", replicas: 3, readiness: .notify)])
        world.send(.start)
        for i in 0..<3 { world.notify(ReplicaID(pool: "kb", index: i), NotifyMessage(parsing: "READY=1")) }
        #expect(world.reconciler.phase == .running)
        world.notify(ReplicaID(pool: "kb", index: 0), NotifyMessage(parsing: "BUSY=1"))
        world.notify(ReplicaID(pool: "kb", index: 1), NotifyMessage(parsing: "BUSY=0"))
        world.notify(ReplicaID(pool: "kb", index: 2), NotifyMessage(parsing: "BUSY=1"))
        let busy = [world.state("kb", 0)!.worker!.pid, world.state("kb", 2)!.worker!.pid]

        #expect(world.perform(.scale(pool: "kb", replicas: 2)).accepted)
        let kb = world.reconciler.pool(named: "kb")!
        #expect(kb.retiring.map(\.replica.index) == [1])  // the idle one, although 2 is the highest
        #expect(kb.replicas.map { $0.state == .vacant } == [false, true, false])
        #expect(world.signals.map(\.group) == [kb.retiring[0].pid])
        #expect(busy.allSatisfy { world.alive[$0] != nil })
        let status = world.reconciler.statusReport(at: world.now, version: "1", pid: 1)
        #expect(status.pools[0].replicas.filter { !$0.retiring }.map(\.index) == [0, 2])
        #expect(status.pools[0].ready == 2)
        #expect(status.pools[0].state == "Scaling")
        world.honour(.terminate)
        #expect(world.reconciler.statusReport(at: world.now, version: "1", pid: 1).pools[0].state == "Available")

        // Back to 3: the vacated slot 1 is filled again.
        #expect(world.perform(.scale(pool: "kb", replicas: 3)).accepted)
        #expect(world.spawns.last?.replica == ReplicaID(pool: "kb", index: 1))
        #expect(world.reconciler.pool(named: "kb")!.replicas.map { $0.state == .vacant } == [false, false, false])
    }

    @Test func aScaleDownAmongBusyWorkersTakesTheHighestAndNeverOneStillStarting() {
        let world = running([pool("kb", replicas: 3)])
        for i in 0..<3 { world.notify(ReplicaID(pool: "kb", index: i), NotifyMessage(parsing: "BUSY=1")) }
        world.exit(ReplicaID(pool: "kb", index: 0))  // restarted at once: Starting, not ready
        #expect(world.perform(.scale(pool: "kb", replicas: 2)).accepted)
        // The not-ready replica 0 goes before any busy, ready one.
        #expect(world.reconciler.pool(named: "kb")!.retiring.map(\.replica.index) == [0])
        #expect(world.perform(.scale(pool: "kb", replicas: 1)).accepted)
        #expect(world.reconciler.pool(named: "kb")!.retiring.map(\.replica.index) == [0, 2])
    }

    @Test func servesAndQueuesChangeNothingThatRunsAndSaySo() {
        let world = running([pool("chat", replicas: 2)])
        var changed = pool("chat", replicas: 2)
        changed.serves = ["default"]
        var supervisor = world.reconciler.file.supervisor
        supervisor.queues = ["default"]
        let before = world.alive
        let file = PoolsFile(path: "pools.toml", supervisor: supervisor, pools: [changed])
        let outcome = world.perform(.reload(PoolsFileDecoder.Result(file: file, diagnostics: [])))
        #expect(outcome.lines.contains("pool chat: serves changed (applies without a restart)"))
        #expect(outcome.lines.contains("queues changed (checked with the file; nothing to restart)"))
        #expect(world.alive == before)
    }
}
