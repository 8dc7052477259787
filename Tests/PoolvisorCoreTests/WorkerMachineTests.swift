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
        ("starting", .starting(.delay)), ("startingBoth", .starting([.notify, .probe])), ("startingStartup", .starting([.startup, .probe])),
        ("running", .running(.notify)), ("ready", .ready),
        ("draining", .draining(shutdown)), ("killing", .killing(shutdown)), ("gone", .gone(.exited(code: 0))),
    ]
    static let events: [(String, WorkerEvent)] = [
        ("readyAfterStart", .readyAfterStart), ("readyReported", .readyReported), ("readyTimeout", .readyTimeout),
        ("startupPassed", .startupProbePassed), ("readinessPassed", .readinessProbePassed), ("readinessFailed", .readinessProbeFailed),
        ("drain", .drain(watchdog)), ("drainDeadline", .drainDeadline), ("killNow", .killNow),
        ("exited", .exited(.exited(3), oomKilled: false)),
    ]

    static let ignore = WorkerStep.ignore
    static func to(_ s: WorkerState, _ o: WorkerOrder...) -> WorkerStep { WorkerStep(next: s, orders: o) }

    /// The stopping and stopped states: only the drain's own events move them.
    static func stopping(_ name: String, deadline: WorkerStep, killNow: WorkerStep, exited: WorkerStep) -> [String: WorkerStep] {
        [
            "\(name)/readyAfterStart": ignore, "\(name)/readyReported": ignore, "\(name)/readyTimeout": ignore,
            "\(name)/startupPassed": ignore, "\(name)/readinessPassed": ignore, "\(name)/readinessFailed": ignore,
            "\(name)/drain": ignore,  // the drain under way keeps its cause and deadline
            "\(name)/drainDeadline": deadline, "\(name)/killNow": killNow, "\(name)/exited": exited,
        ]
    }

    /// A serving state's answer to the drain's events.
    static func serving(_ name: String) -> [String: WorkerStep] {
        [
            "\(name)/drain": to(.draining(watchdog), .startDrain), "\(name)/drainDeadline": ignore, "\(name)/killNow": ignore,
            "\(name)/exited": to(.gone(.exited(code: 3))),
        ]
    }

    /// What each pair must do. A pair missing here fails the coverage check below.
    static let expected: [String: WorkerStep] = [
        "starting/readyAfterStart": to(.ready, .armWatchdog),
        "starting/readyReported": ignore,  // it does not wait for READY=1
        "starting/readyTimeout": to(.running(.delay)),
        "starting/startupPassed": ignore,
        "starting/readinessPassed": ignore,
        "starting/readinessFailed": to(.starting([.delay, .probe])),  // a readiness probe added by a reload

        "startingBoth/readyAfterStart": ignore,
        "startingBoth/readyReported": to(.starting(.probe)),  // READY=1 and the probe must both hold
        "startingBoth/readyTimeout": to(.running([.notify, .probe])),
        "startingBoth/startupPassed": ignore,
        "startingBoth/readinessPassed": to(.starting(.notify)),
        "startingBoth/readinessFailed": ignore,

        "startingStartup/readyAfterStart": ignore,
        "startingStartup/readyReported": ignore,
        "startingStartup/readyTimeout": to(.running([.startup, .probe])),
        "startingStartup/startupPassed": to(.starting(.probe), .beginProbes),
        "startingStartup/readinessPassed": to(.starting(.startup)),
        "startingStartup/readinessFailed": ignore,

        "running/readyAfterStart": ignore,
        "running/readyReported": to(.ready, .armWatchdog),
        "running/readyTimeout": ignore,
        "running/startupPassed": ignore,
        "running/readinessPassed": ignore,
        "running/readinessFailed": to(.running([.notify, .probe])),

        "ready/readyAfterStart": ignore,
        "ready/readyReported": ignore,
        "ready/readyTimeout": ignore,
        "ready/startupPassed": ignore,
        "ready/readinessPassed": ignore,
        "ready/readinessFailed": to(.running(.probe)),  // not ready, not killed
    ]
    .merging(serving("starting")) { a, _ in a }.merging(serving("startingBoth")) { a, _ in a }
    .merging(serving("startingStartup")) { a, _ in a }.merging(serving("running")) { a, _ in a }.merging(serving("ready")) { a, _ in a }
    .merging(stopping("draining", deadline: to(.killing(shutdown), .kill), killNow: to(.killing(shutdown), .kill), exited: to(.gone(.exited(code: 3))))) { a, _ in a }
    .merging(stopping("killing", deadline: ignore, killNow: ignore, exited: to(.gone(.killedAfterDrainDeadline)))) { a, _ in a }
    .merging(stopping("gone", deadline: ignore, killNow: ignore, exited: ignore)) { a, _ in a }

    @Test func everyPairIsDecidedAsTheTableSays() {
        checkEveryPair(Self.states, Self.events, Self.expected, WorkerState.decide)
    }

    @Test func aDrainOfZeroSecondsKillsAtOnce() {
        for state in [WorkerState.starting(.delay), .running(.notify), .ready] {
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
        #expect(Self.states.map { $0.1.name } == ["Starting", "Starting", "Starting", "Running", "Ready", "Draining", "Draining", "Exited"])
        #expect(Self.states.map { $0.1.isServing } == [true, true, true, true, true, false, false, false])
    }

    @Test func theLastConditionMetMakesItReady() {
        #expect(WorkerState.decide(.starting(.startup), .startupProbePassed) == Self.to(.ready, .armWatchdog, .beginProbes))
        #expect(WorkerState.decide(.running(.probe), .readinessProbePassed) == Self.to(.ready, .armWatchdog))
        #expect(WorkerState.decide(.starting(.notify), .readyReported) == Self.to(.ready, .armWatchdog))
    }

    @Test func aFailedProbeDrainEndsWithTheProbesReason() {
        let liveness = Drain(cause: .livenessProbe, signal: .terminate, period: .seconds(30), from: Self.t0, why: "HTTP 500")
        let startup = Drain(cause: .startupProbe, signal: .terminate, period: .seconds(30), from: Self.t0, why: "connection refused")
        let term = WorkerEvent.exited(.signaled(.terminate, coreDumped: false), oomKilled: false)
        #expect(WorkerState.decide(.draining(liveness), term).next == .gone(.livenessProbeFailed("HTTP 500")))
        #expect(WorkerState.decide(.killing(startup), .exited(.signaled(.kill, coreDumped: false), oomKilled: false)).next == .gone(.startupProbeFailed("connection refused")))
        #expect("\(ExitReason.livenessProbeFailed("HTTP 500"))" == "liveness probe failed: HTTP 500")
    }
}
