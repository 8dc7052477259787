import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

/// The autoscaler's arithmetic against Kubernetes' and KEDA's, with a fake clock.
@Suite struct AutoscalingTests {
    func at(_ s: Double) -> Instant { Instant(nanoseconds: UInt64((1000 + s) * 1e9)) }
    func queue(_ value: Double, target: Double = 5, activation: Double = 0) -> [TriggerReading] {
        [.queue(name: "queue chat", value: value, target: target, activation: activation)]
    }

    @Test func desiredIsTheCeilingOfMetricOverTargetCappedAtMax() {
        var a = Autoscaler(spec: AutoscalingSpec(minReplicas: 1, maxReplicas: 5))
        let d = a.decide(current: 5, readings: queue(23), at: at(0))
        #expect(d.replicas == 5)
        #expect(d.reason == "queue chat: 23 / 5 per replica → 5")
        let capped = a.decide(current: 5, readings: queue(100), at: at(1))
        #expect(capped.replicas == 5)
        #expect(capped.reason == "queue chat: 100 / 5 per replica → 20 (capped at max_replicas 5)")
    }

    @Test func scaleUpFollowsTheDefaultPoliciesPer15Seconds() {
        var a = Autoscaler(spec: AutoscalingSpec(minReplicas: 1, maxReplicas: 50))
        // From 1: 100 % gives 2, 4 pods gives 5; Max picks 5.
        #expect(a.decide(current: 1, readings: queue(200), at: at(0)).replicas == 5)
        // Within the same 15 s the period started at 1 replica: no further.
        #expect(a.decide(current: 5, readings: queue(200), at: at(5)).replicas == 5)
        // A new period from 5: 100 % gives 10, 4 pods 9 → 10.
        #expect(a.decide(current: 5, readings: queue(200), at: at(16)).replicas == 10)
    }

    @Test func scaleDownWaitsForTheStabilizationWindowThenFollowsThePolicy() {
        var spec = AutoscalingSpec(minReplicas: 1, maxReplicas: 10)
        spec.scaleDown = ScalingRules(stabilizationWindow: .seconds(60), policies: [.init(.percent, 50, per: .seconds(30))])
        var a = Autoscaler(spec: spec)
        #expect(a.decide(current: 8, readings: queue(40), at: at(0)).replicas == 8)
        // The queue empties: held at 8 while the window remembers the 8.
        let held = a.decide(current: 8, readings: queue(0), at: at(30))
        #expect(held.replicas == 8)
        #expect(held.reason == "scale-down stabilizing (60 s window): 8, wanted 1")
        // Past the window: down, but at most 50 % per 30 s: 8 → 4 → 2 → 1.
        #expect(a.decide(current: 8, readings: queue(0), at: at(61)).replicas == 4)
        #expect(a.decide(current: 4, readings: queue(0), at: at(70)).replicas == 4)
        #expect(a.decide(current: 4, readings: queue(0), at: at(92)).replicas == 2)
        #expect(a.decide(current: 2, readings: queue(0), at: at(123)).replicas == 1)
    }

    @Test func scaleToZeroAfterTheCooldownAndBackFromZeroPastTheActivation() {
        var spec = AutoscalingSpec(minReplicas: 0, maxReplicas: 5)
        spec.cooldown = .seconds(100)
        spec.scaleDown = ScalingRules(stabilizationWindow: .zero, policies: [.init(.percent, 100, per: .seconds(15))])
        var a = Autoscaler(spec: spec)
        #expect(a.decide(current: 0, readings: queue(3, activation: 5), at: at(0)).replicas == 0)  // not above activation
        #expect(a.decide(current: 0, readings: queue(7, activation: 5), at: at(1)).replicas == 2)  // active: ceil(7/5)
        let cooling = a.decide(current: 2, readings: queue(0, activation: 5), at: at(50))
        #expect(cooling.replicas == 1)
        #expect(cooling.reason == "idle, scaling to zero after the 100 s cooldown")
        #expect(a.decide(current: 1, readings: queue(0, activation: 5), at: at(102)).replicas == 0)
    }

    @Test func cpuUsesTheHPAFormulaWithItsTolerance() {
        var spec = AutoscalingSpec(minReplicas: 1, maxReplicas: 10)
        spec.scaleDown.stabilizationWindow = .zero
        var a = Autoscaler(spec: spec)
        #expect(a.decide(current: 4, readings: [.cpu(utilisation: 80, target: 75)], at: at(0)).replicas == 4)  // 1.07: within 0.1
        #expect(a.decide(current: 4, readings: [.cpu(utilisation: 150, target: 75)], at: at(1)).replicas == 8)
        #expect(a.decide(current: 8, readings: [.cpu(utilisation: 30, target: 75)], at: at(20)).replicas == 4)  // ceil(8 × 0.4)
    }

    @Test func theLargestTriggerWinsAndACronWindowRaisesTheFloor() {
        var a = Autoscaler(spec: AutoscalingSpec(minReplicas: 0, maxReplicas: 5))
        let d = a.decide(current: 0, readings: queue(0) + [.cron(name: "cron office hours", replicas: 2, open: true)], at: at(0))
        #expect(d.replicas == 2)
        #expect(d.reason == "cron office hours: window open → 2")
        #expect(a.decide(current: 2, readings: queue(20) + [.cron(name: "cron office hours", replicas: 2, open: true)], at: at(1)).replicas == 4)
    }
}
