import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

/// `WorkerState.decide`, pair by pair: every state against every event, from one table.
@Suite struct WorkerMachineTests {
    static let t0 = Instant(nanoseconds: 1_000_000_000)
    static let shutdown = Drain(cause: .shutdown, signal: .terminate, period: .seconds(30), from: t0)
    static let immediate = Drain(cause: .scaleDown, signal: .terminate, period: .zero, from: t0)
    static let watchdog = Drain(cause: .watchdog, signal: .abort, period: .seconds(5), from: t0)

    static let states: [(String, WorkerState)] = [
        ("starting", .starting), ("running", .running), ("ready", .ready),
        ("draining", .draining(shutdown)), ("killing", .killing(shutdown)), ("gone", .gone(.exited(code: 0))),
    ]
    static let events: [(String, WorkerEvent)] = [
        ("readyAfterStart", .readyAfterStart), ("readyReported", .readyReported), ("readyTimeout", .readyTimeout),
        ("drain", .drain(watchdog)), ("drainDeadline", .drainDeadline), ("killNow", .killNow),
        ("exited", .exited(.exited(3), oomKilled: false)),
    ]

    static let ignore = WorkerStep.ignore
    static func to(_ s: WorkerState, _ o: WorkerOrder...) -> WorkerStep { WorkerStep(next: s, orders: o) }

    /// What each pair must do. A pair missing here fails the coverage check below.
    static let expected: [String: WorkerStep] = [
        "starting/readyAfterStart": to(.ready, .armWatchdog),
        "starting/readyReported": to(.ready, .armWatchdog),
        "starting/readyTimeout": to(.running),
        "starting/drain": to(.draining(watchdog), .startDrain),
        "starting/drainDeadline": ignore,
        "starting/killNow": ignore,
        "starting/exited": to(.gone(.exited(code: 3))),

        "running/readyAfterStart": ignore,
        "running/readyReported": to(.ready, .armWatchdog),
        "running/readyTimeout": ignore,
        "running/drain": to(.draining(watchdog), .startDrain),
        "running/drainDeadline": ignore,
        "running/killNow": ignore,
        "running/exited": to(.gone(.exited(code: 3))),

        "ready/readyAfterStart": ignore,
        "ready/readyReported": ignore,
        "ready/readyTimeout": ignore,
        "ready/drain": to(.draining(watchdog), .startDrain),
        "ready/drainDeadline": ignore,
        "ready/killNow": ignore,
        "ready/exited": to(.gone(.exited(code: 3))),

        "draining/readyAfterStart": ignore,
        "draining/readyReported": ignore,
        "draining/readyTimeout": ignore,
        "draining/drain": ignore,  // the drain under way keeps its cause and deadline
        "draining/drainDeadline": to(.killing(shutdown), .kill),
        "draining/killNow": to(.killing(shutdown), .kill),
        "draining/exited": to(.gone(.exited(code: 3))),

        "killing/readyAfterStart": ignore,
        "killing/readyReported": ignore,
        "killing/readyTimeout": ignore,
        "killing/drain": ignore,
        "killing/drainDeadline": ignore,
        "killing/killNow": ignore,
        "killing/exited": to(.gone(.killedAfterDrainDeadline)),

        "gone/readyAfterStart": ignore,
        "gone/readyReported": ignore,
        "gone/readyTimeout": ignore,
        "gone/drain": ignore,
        "gone/drainDeadline": ignore,
        "gone/killNow": ignore,
        "gone/exited": ignore,
    ]

    @Test func everyPairIsDecidedAsTheTableSays() {
        checkEveryPair(Self.states, Self.events, Self.expected, WorkerState.decide)
    }

    @Test func aDrainOfZeroSecondsKillsAtOnce() {
        for state in [WorkerState.starting, .running, .ready] {
            #expect(WorkerState.decide(state, .drain(Self.immediate)) == Self.to(.killing(Self.immediate), .kill))
        }
    }

    @Test func theReasonAWorkerEndedWith() {
        let killedByTerm = WorkerEvent.exited(.signaled(.terminate, coreDumped: false), oomKilled: false)
        // Its own exit status, unless the kernel's OOM killer or the watchdog says more.
        #expect(WorkerState.decide(.ready, killedByTerm).next == .gone(.killed(.terminate, coreDumped: false)))
        #expect(WorkerState.decide(.draining(Self.shutdown), killedByTerm).next == .gone(.killed(.terminate, coreDumped: false)))
        #expect(WorkerState.decide(.ready, .exited(.signaled(.kill, coreDumped: false), oomKilled: true)).next == .gone(.oomKilled))
        #expect(WorkerState.decide(.killing(Self.shutdown), .exited(.signaled(.kill, coreDumped: false), oomKilled: true)).next == .gone(.oomKilled))
        #expect(WorkerState.decide(.draining(Self.watchdog), killedByTerm).next == .gone(.watchdog))
        #expect(WorkerState.decide(.killing(Self.watchdog), .exited(.signaled(.kill, coreDumped: false), oomKilled: false)).next == .gone(.watchdog))
        #expect(WorkerState.decide(.killing(Self.immediate), .exited(.exited(0), oomKilled: false)).next == .gone(.killedAfterDrainDeadline))
    }

    @Test func namesInStatus() {
        #expect(Self.states.map { $0.1.name } == ["Starting", "Running", "Ready", "Draining", "Draining", "Exited"])
        #expect(Self.states.map { $0.1.isServing } == [true, true, true, false, false, false])
    }
}
