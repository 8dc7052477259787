import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

/// `SlotState.decide`, pair by pair: every state against every event, from one table.
@Suite struct SlotMachineTests {
    static let until = Instant(nanoseconds: 9_000_000_000)

    static let states: [(String, SlotState)] = [
        ("vacant", .vacant), ("pending", .pending), ("backOff", .backOff(until: until)),
        ("occupied", .occupied(pid: 100)), ("releasing", .releasing(pid: 100)),
    ]
    static let events: [(String, SlotEvent)] = [
        ("fill", .fill), ("spawned", .spawned(pid: 200)), ("spawnFailed", .spawnFailed("ENOENT")),
        ("occupantExited", .occupantExited(.exited(code: 1))), ("holdOff", .holdOff(until: until)),
        ("backoffOver", .backoffOver), ("scaleIn", .scaleIn(.scaleDown)), ("replace", .replace), ("stop", .stop),
    ]

    static let ignore = SlotStep.ignore
    static func to(_ s: SlotState, _ o: SlotOrder...) -> SlotStep { SlotStep(next: s, orders: o) }
    static func orders(_ o: SlotOrder...) -> SlotStep { SlotStep(next: nil, orders: o) }

    /// What each pair must do. A pair missing here fails the coverage check below.
    static let expected: [String: SlotStep] = [
        "vacant/fill": to(.pending, .spawn),
        "vacant/spawned": orders(.killStray(pid: 200)),
        "vacant/spawnFailed": ignore,
        "vacant/occupantExited": ignore,
        "vacant/holdOff": ignore,
        "vacant/backoffOver": ignore,
        "vacant/scaleIn": ignore,
        "vacant/replace": ignore,
        "vacant/stop": ignore,

        "pending/fill": ignore,
        "pending/spawned": to(.occupied(pid: 200)),
        "pending/spawnFailed": orders(.restart(.spawnFailed("ENOENT"))),
        "pending/occupantExited": ignore,
        "pending/holdOff": to(.backOff(until: until), .armBackoff),
        "pending/backoffOver": ignore,
        "pending/scaleIn": to(.vacant),
        "pending/replace": ignore,
        "pending/stop": to(.vacant),

        "backOff/fill": ignore,
        "backOff/spawned": orders(.killStray(pid: 200)),
        "backOff/spawnFailed": ignore,
        "backOff/occupantExited": ignore,
        "backOff/holdOff": ignore,
        "backOff/backoffOver": to(.pending, .spawn),
        "backOff/scaleIn": to(.vacant),
        "backOff/replace": to(.pending, .resetCrashStreak, .spawn),
        "backOff/stop": to(.vacant),

        "occupied/fill": ignore,
        "occupied/spawned": orders(.killStray(pid: 200)),
        "occupied/spawnFailed": ignore,
        "occupied/occupantExited": to(.pending, .restart(.exited(code: 1))),
        "occupied/holdOff": ignore,
        "occupied/backoffOver": ignore,
        "occupied/scaleIn": to(.vacant, .retire(pid: 100, .scaleDown)),
        "occupied/replace": to(.pending, .retire(pid: 100, .replaced), .spawn),
        "occupied/stop": to(.releasing(pid: 100), .drain(pid: 100)),

        "releasing/fill": ignore,
        "releasing/spawned": orders(.killStray(pid: 200)),
        "releasing/spawnFailed": ignore,
        "releasing/occupantExited": to(.vacant, .record(.exited(code: 1))),
        "releasing/holdOff": ignore,
        "releasing/backoffOver": ignore,
        "releasing/scaleIn": to(.vacant, .retire(pid: 100, .scaleDown)),
        "releasing/replace": ignore,
        "releasing/stop": ignore,
    ]

    @Test func everyPairIsDecidedAsTheTableSays() {
        checkEveryPair(Self.states, Self.events, Self.expected, SlotState.decide)
    }

    @Test func theOccupantIsTheWorkerHoldingTheSlot() {
        #expect(Self.states.map { $0.1.occupant } == [nil, nil, nil, 100, 100])
    }
}
